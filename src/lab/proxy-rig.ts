/**
 * The rig every proxy lab runs in: it starts QEMU with the lab's arguments
 * and, in model mode, our UHCI function served through x-pci-proxy-dev
 * (ProxyModel); it splits QEMU's serial console into lines, keeps its
 * stderr, kills QEMU at the deadline, and tears everything down once:
 * QEMU killed if still running, the model closed (socket, devices, trace),
 * the lab's temporary files removed. On SIGINT, SIGTERM or SIGHUP it kills
 * QEMU, lets the lab end as usual, and after the teardown dies of the same
 * signal. An error in a lab's callback ends the run the same way and is
 * thrown by finish().
 *
 * A lab: build args → LabRig.start → wait for the guest (console lines) →
 * inject → `await rig.exited` → `await rig.finish()` → report.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { LabDeviceKind } from './input-plan.js';
import { LAB_PCI_ADDR, ProxyModel, type ProxyModelEnd, type ProxyModelOptions, type LabPort } from './proxy-model.js';
import type { ProxyEnd } from '../qemu/proxy-transport.js';
import type { RecordingSummary } from '../trace/recorder.js';

/** QEMU's stderr kept for the report. */
const STDERR_LIMIT = 64 << 10;
const SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export interface LabRigOptions {
  /** The QEMU binary and its arguments (the rig adds the proxy device in model mode). */
  binary: string;
  args: readonly string[];
  /** Serve our model as the UHCI function; without it QEMU runs alone (reference mode). */
  model?: ProxyModelOptions;
  /** PCI-reset the model once QEMU is gone, before the trace closes. */
  resetModelAtEnd?: boolean;
  /** Connect QEMU's stdin and stdout (the serial console; see onConsoleLine). */
  console?: boolean;
  /** Kill QEMU (SIGKILL) after this long. */
  timeoutMs: number;
  onTimeout?: () => void;
  /** Files and directories the lab made for this run, removed at the end. */
  removeAtEnd?: readonly string[];
}

export interface LabRigEnd {
  /** QEMU's exit code (null if killed or it could not start). */
  qemuExit: number | null;
  timedOut: boolean;
  /** The first 64 KiB of QEMU's stderr (and a spawn error). */
  stderr: string;
  /** Console output after the last newline. */
  consoleTail: string;
  /** Model mode: how serving ended, and the trace's summary when recording. */
  proxyEnd: ProxyEnd | null;
  trace: RecordingSummary | null;
}

export class LabRig {
  /** Resolves with QEMU's exit code (null: killed, or it could not start). */
  readonly exited: Promise<number | null>;
  private running = true;
  private timedOut = false;
  private stderr = '';
  private consoleTail = '';
  private failure: { error: unknown } | null = null;
  private signal: NodeJS.Signals | null = null;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly onSignal = (sig: NodeJS.Signals) => {
    this.signal ??= sig;
    this.kill('SIGKILL');
  };
  private ending: Promise<LabRigEnd> | null = null;

  private constructor(
    private readonly opts: LabRigOptions,
    private readonly child: ChildProcess,
    readonly model: ProxyModel | null,
  ) {
    this.exited = new Promise<number | null>((resolve) => {
      child.on('exit', (code) => resolve(code));
      child.on('error', (e) => {
        this.stderr += String(e);
        resolve(null);
      });
    }).then((code) => {
      this.running = false;
      return code;
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (c: string) => {
      if (this.stderr.length < STDERR_LIMIT) this.stderr += c;
    });
    // Writes after QEMU is gone fail with EPIPE: nothing to tell anyone.
    child.stdin?.on('error', () => undefined);
    this.after(opts.timeoutMs, () => {
      if (!this.running) return;
      this.timedOut = true;
      opts.onTimeout?.();
      this.kill('SIGKILL');
    });
    for (const s of SIGNALS) process.once(s, this.onSignal);
  }

  /** Start QEMU (and the model); if that fails, what was made is removed again. */
  static async start(opts: LabRigOptions): Promise<LabRig> {
    let model: ProxyModel | null = null;
    try {
      model = opts.model ? await ProxyModel.open(opts.model) : null;
      const args = [...opts.args, ...(model ? model.qemuArgs() : [])];
      const io = opts.console ? 'pipe' : 'ignore';
      const child = spawn(opts.binary, args, { stdio: [io, io, 'pipe', ...(model ? [model.qemuEnd] : [])] });
      const rig = new LabRig(opts, child, model);
      model?.serve();
      return rig;
    } catch (e) {
      await model?.close(false).catch(() => undefined);
      removePaths(opts.removeAtEnd);
      throw e;
    }
  }

  /** QEMU is still running. */
  get alive(): boolean {
    return this.running;
  }

  /** Call `onLine` with each complete line QEMU prints on its serial console (needs `console`). */
  onConsoleLine(onLine: (line: string) => void): void {
    const stdout = this.child.stdout;
    if (!stdout) throw new Error('LabRig.onConsoleLine needs the console option');
    stdout.setEncoding('utf8');
    stdout.on('data', (chunk: string) => {
      this.consoleTail += chunk;
      let nl: number;
      while ((nl = this.consoleTail.indexOf('\n')) >= 0) {
        const line = this.consoleTail.slice(0, nl);
        this.consoleTail = this.consoleTail.slice(nl + 1);
        this.guard(() => onLine(line));
      }
    });
  }

  /** Type on the guest's serial console. */
  sendConsole(text: string): void {
    if (this.running) this.child.stdin?.write(text);
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** Run `fn` after `ms` unless the run has ended (timers end with the rig). */
  after(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.guard(fn);
    }, ms);
    this.timers.add(t);
  }

  /** Run `fn` every `ms` until it returns true or the run ends. */
  every(ms: number, fn: () => boolean | void): void {
    const t = setInterval(() => {
      if (this.guard(fn) === true) {
        clearInterval(t);
        this.timers.delete(t);
      }
    }, ms);
    this.timers.add(t);
  }

  /** End the run because of `error` (QEMU is killed; finish() throws it after the teardown). */
  fail(error: unknown): void {
    this.failure ??= { error };
    this.kill('SIGKILL');
  }

  /** Run a lab callback: an exception in it ends the run (fail) instead of the process. */
  guard<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (e) {
      this.fail(e);
      return undefined;
    }
  }

  /**
   * The lab's part of the run: `body` starts it (console handlers, pollers;
   * an exception in it fails the run), then QEMU's exit is awaited, `atExit`
   * reads what the run left behind (before the teardown removes it), and
   * the run is finished: the end, or the error given to fail().
   */
  async run(body: () => void, atExit?: () => void): Promise<LabRigEnd> {
    this.guard(body);
    await this.exited;
    if (atExit) this.guard(atExit);
    return this.finish();
  }

  /**
   * End the run (QEMU is killed if it still runs) and tear everything down,
   * once; every later call returns the same end. Throws what fail() was given.
   */
  finish(): Promise<LabRigEnd> {
    this.ending ??= this.teardown();
    return this.ending;
  }

  private async teardown(): Promise<LabRigEnd> {
    this.kill('SIGKILL');
    const qemuExit = await this.exited;
    this.timers.forEach((t) => clearTimeout(t));
    this.timers.clear();
    let model: ProxyModelEnd | null = null;
    try {
      model = this.model ? await this.model.close(this.opts.resetModelAtEnd ?? false) : null;
    } finally {
      removePaths(this.opts.removeAtEnd);
      for (const s of SIGNALS) process.off(s, this.onSignal);
      if (this.signal) process.kill(process.pid, this.signal);
    }
    if (this.failure) throw this.failure.error;
    return {
      qemuExit,
      timedOut: this.timedOut,
      stderr: this.stderr,
      consoleTail: this.consoleTail,
      proxyEnd: model?.proxyEnd ?? null,
      trace: model?.trace ?? null,
    };
  }

}

/** Guest RAM of `size` (QEMU syntax, e.g. 512M) in a shared file (an unlinked temporary in /dev/shm), so the proxy can map it. */
export function sharedRamQemuArgs(size: string): string[] {
  const dir = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  return ['-object', `memory-backend-file,id=mem,size=${size},mem-path=${dir},share=on`, '-machine', 'pc,memory-backend=mem'];
}

const QEMU_DEVICES: Record<LabDeviceKind, string> = { tablet: 'usb-tablet', mouse: 'usb-mouse', keyboard: 'usb-kbd' };

/** Reference mode: QEMU's own piix3-usb-uhci at the lab's PCI address, its own HID devices on the root ports. */
export function referenceUhciQemuArgs(ports: readonly LabPort[]): string[] {
  const args = ['-device', `piix3-usb-uhci,id=uhci,addr=${LAB_PCI_ADDR}`];
  ports.forEach((p, i) => {
    if (p !== 'none' && p !== 'gadget-zero') args.push('-device', `${QEMU_DEVICES[p]},id=port${i + 1},bus=uhci.0,port=${i + 1}`);
  });
  return args;
}

function removePaths(paths: readonly string[] = []): void {
  for (const p of paths) rmSync(p, { recursive: true, force: true });
}
