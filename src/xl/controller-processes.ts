/**
 * The UHCI controllers a wrapped domain has: each one a `uhci-dm xen`
 * process (its own ioreq server for one PCI function), driven over its
 * control socket. One process per controller keeps them as independent as
 * QEMU's PCI devices are: a fault in one never stops QEMU or the other.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../platform/logger.js';
import { UserFacingError } from '../platform/user-facing-error.js';
import { ControlClient } from './control-client.js';

/** bin/uhci-dm.js: two levels up from src/xl/ (sources under test), three from dist/src/xl/. */
function uhciDmBin(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const near = join(here, '..', '..', 'bin', 'uhci-dm.js');
  return existsSync(near) ? near : join(here, '..', '..', '..', 'bin', 'uhci-dm.js');
}

/** A controller's process did not come up. */
export class ControllerStartError extends UserFacingError {}

export interface ControllerSpec {
  /** qdev id: libxl's `xenusb-<devid>`, or `usb` for the `-usb` controller. */
  id: string;
  /** PCI address in the guest, BB:DD.F. */
  bdf: string;
  /** Devices at start, in `uhci-dm xen --device/--usbdevice` syntax. */
  devices: readonly string[];
}

export interface ProcessOptions {
  domid: number;
  /** Private directory for the control sockets. */
  runDir: string;
  logger: Logger;
  /** Extra `uhci-dm xen` options (e.g. --runas, --host-usb). */
  extraArgs?: readonly string[];
  /** How long a controller may take to start serving (its control socket answers). */
  startTimeoutMs?: number;
  /** Program and leading arguments that run uhci-dm (tests); default: this Node and bin/uhci-dm.js. */
  command?: readonly string[];
}

export class ControllerProcess {
  private exited: Promise<number | null>;

  private constructor(
    readonly spec: ControllerSpec,
    private readonly child: ChildProcess,
    readonly control: ControlClient,
    exited: Promise<number | null>,
  ) {
    this.exited = exited;
  }

  /** Start `uhci-dm xen` for this controller and wait until it serves (its control socket answers). */
  static async start(spec: ControllerSpec, o: ProcessOptions): Promise<ControllerProcess> {
    const sock = join(o.runDir, `${spec.id}.ctl`);
    const args = ['xen', '--domid', String(o.domid), '--bdf', spec.bdf, '--control', sock, ...spec.devices.flatMap((d) => ['--device', d]), ...(o.extraArgs ?? [])];
    const [cmd, ...lead] = o.command ?? [process.execPath, uhciDmBin()];
    const child = spawn(cmd!, [...lead, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    const exited = new Promise<number | null>((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.once('error', () => resolve(null));
    });
    let dead = false;
    void exited.then(() => (dead = true));
    const deadline = Date.now() + (o.startTimeoutMs ?? 120_000);
    for (;;) {
      if (dead) throw new ControllerStartError(`controller ${spec.id} (${spec.bdf}): uhci-dm exited while starting (see the device-model log)`);
      try {
        const control = await ControlClient.connect(sock);
        o.logger.log('info', 'xl', 'controller serving', { id: spec.id, bdf: spec.bdf, pid: child.pid });
        return new ControllerProcess(spec, child, control, exited);
      } catch {
        if (Date.now() > deadline) {
          child.kill('SIGKILL');
          throw new ControllerStartError(`controller ${spec.id} (${spec.bdf}): uhci-dm did not start serving within ${Math.round((o.startTimeoutMs ?? 120_000) / 1000)} s`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Resolves with the exit code when the process ends (null: killed by a signal). */
  get ended(): Promise<number | null> {
    return this.exited;
  }

  /** Ask it to stop (quit, then SIGTERM, then SIGKILL) and wait until it has. */
  async stop(graceMs = 5000): Promise<void> {
    const gone = () => this.child.exitCode !== null || this.child.signalCode !== null;
    if (!gone()) await this.control.execute('quit').catch(() => undefined);
    this.control.close();
    const timer = setTimeout(() => this.child.kill('SIGTERM'), graceMs);
    const killer = setTimeout(() => this.child.kill('SIGKILL'), graceMs * 2);
    await this.exited;
    clearTimeout(timer);
    clearTimeout(killer);
  }
}
