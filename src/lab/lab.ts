/**
 * The lab: boot a real Linux guest under QEMU (TCG) whose UHCI controller
 * is our model, served through QEMU's x-pci-proxy-dev, and report what the
 * guest saw (USB devices, kernel log, input events). With `reference` the
 * same guest boots with QEMU's own piix3-usb-uhci + usb-tablet/usb-kbd
 * instead, for a side-by-side comparison.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UserFacingError } from '../platform/user-facing-error.js';
import type { Logger, LogLevel } from '../platform/logger.js';
import { HidUsbDevice } from '../usb/hid/hid-device.js';
import { nativeAvailable } from '../qemu/libc.js';
import type { ProxyEnd, ProxyStats } from '../qemu/proxy-transport.js';
import { checkQemu } from '../qemu/qemu-binary.js';
import { prepareGuestImage, type GuestImage } from './guest-image.js';
import { GuestReportParser, type GuestReport } from './lab-report.js';
import { applyToModel, applyToQemu, defaultPlan, type InputAction, type LabDeviceKind } from './input-plan.js';
import type { LabPort, ModelRegisters, ProxyModel } from './proxy-model.js';
import { LabRig, referenceUhciQemuArgs, sharedRamQemuArgs } from './proxy-rig.js';
import { QmpClient } from './qmp.js';

export interface LabOptions {
  /** Devices on root ports 1 and 2 (default tablet, keyboard). */
  ports?: readonly LabPort[];
  /** Boot with QEMU's own UHCI and devices instead of our model. */
  reference?: boolean;
  /** Shell script (contents) the guest runs after its report; its output is returned. */
  script?: string;
  /** Extra kernel modules to load. */
  modules?: readonly string[];
  onProgress?: (msg: string) => void;
  /** QEMU binary (default qemu-system-x86_64 or $UHCI_DM_QEMU). */
  qemu?: string;
  /** Whole run limit (default 240 s); QEMU is killed after it. */
  timeoutMs?: number;
  /** How long the guest records input after the host injected it (default 2500 ms). */
  eventWindowMs?: number;
  /** Seconds the guest waits for its devices to bind (default 90). */
  settleSeconds?: number;
  /** Minimum level of controller/transport log records kept in the result (default 'info'). */
  modelLogLevel?: LogLevel;
  cacheDir?: string;
  /** Extra kernel command-line arguments. */
  kernelArgs?: readonly string[];
  /** Model mode: record everything crossing the model's boundary to this trace file. */
  record?: string;
  /** Free text for the trace header. */
  recordNotes?: string;
  /**
   * Model mode: after the input, unplug the device on this root port (1 or 2)
   * while the guest runs, then plug a new one of the same kind back in.
   */
  replugPort?: 1 | 2;
  /** Extra QEMU arguments (e.g. hostRootQemuArgs() to give the guest the host's files over 9p). */
  extraQemuArgs?: readonly string[];
  /**
   * Autosuspend scenario: the guest puts every USB device and the root hub
   * on runtime autosuspend (delay `delayMs`) with its input readers open and
   * says ready only once all are suspended; the host then watches the idle
   * suspended model for `holdMs` (CPU, frames) before injecting the input,
   * which must wake the guest up (remote wakeup).
   */
  autosuspend?: { delayMs: number; holdMs?: number };
}

export interface LabSuspendReport {
  /** Runtime PM status per USB device path when the guest said ready, and after the event window. */
  guestBefore: Record<string, string>;
  guestAfter: Record<string, string>;
  /** Model mode: registers when the guest said ready, and right after the first input was injected. */
  atReady: ModelRegisters | null;
  afterFirstInput: ModelRegisters | null;
  /** Model mode: ms from the first input until the guest had the controller running again (null: not seen). */
  resumedAfterMs: number | null;
  /** Model mode: what the lab process did while the guest stayed suspended for holdMs. */
  hold: { ms: number; cpuMs: number; frames: number; timerWakeups: number; barReads: number; barWrites: number } | null;
}

export interface LabInjection {
  port: number;
  device: LabDeviceKind;
  actions: InputAction[];
}

export interface LabResult extends GuestReport {
  /** The trace written with `record`. */
  trace: { path: string; events: number; frames: number } | null;
  /** The replug of `replugPort` happened. */
  replugged: boolean;
  /** The autosuspend scenario's observations (null without `autosuspend`). */
  suspend: LabSuspendReport | null;
  mode: 'model' | 'reference';
  ports: LabPort[];
  qemuVersion: string;
  kernel: string;
  kernelVersion: string;
  initrdCached: boolean;
  elapsedMs: number;
  /** QEMU's exit code (null if killed). */
  qemuExit: number | null;
  timedOut: boolean;
  injected: LabInjection[];
  /** Model mode: what crossed the proxy socket. */
  proxy: ProxyStats | null;
  proxyEnd: ProxyEnd['reason'] | null;
  /** Model mode: controller and transport log records (level >= modelLogLevel). */
  modelLog: string[];
  /** Console lines that were not lab markers (boot messages, errors), last 200. */
  console: string[];
  qemuStderr: string;
}

const LOG_ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
/** Console lines kept for the report. */
const CONSOLE_KEEP = 200;

class CollectingLogger implements Logger {
  readonly lines: string[] = [];
  constructor(private readonly min: number) {}
  log(level: LogLevel, component: string, msg: string, fields?: Record<string, unknown>): void {
    if (LOG_ORDER[level] < this.min || this.lines.length >= 2000) return;
    const f = fields && Object.keys(fields).length ? ' ' + JSON.stringify(fields) : '';
    this.lines.push(`${level} ${component}: ${msg}${f}`);
  }
}

/** The lab options cannot work together (user-facing). */
export class LabConfigError extends UserFacingError {}

let runCounter = 0;

export async function runLab(opts: LabOptions = {}): Promise<LabResult> {
  const t0 = Date.now();
  const ports = [...(opts.ports ?? ['tablet', 'keyboard'])];
  const mode = opts.reference ? 'reference' : 'model';
  const progress = opts.onProgress ?? (() => {});
  const qemu = await checkQemu(opts.qemu);
  const image = prepareGuestImage({ modules: guestModules(opts, ports), script: opts.script, cacheDir: opts.cacheDir });
  progress(`guest: kernel ${image.kernelVersion}, initramfs ${image.cached ? 'cached' : 'built'} (${image.initrd})`);
  const qmpPath = opts.reference ? join(tmpdir(), `uhci-lab-${process.pid}-${++runCounter}.qmp`) : null;
  const logger = new CollectingLogger(LOG_ORDER[opts.modelLogLevel ?? 'info']);
  const record = opts.record ? { path: opts.record, notes: opts.recordNotes ?? `uhci-dm lab: Linux guest, ports ${ports.join(', ')}` } : undefined;

  progress(`starting ${qemu.binary} (${mode}: ${ports.join(', ')})`);
  const rig = await LabRig.start({
    binary: qemu.binary,
    args: [...guestQemuArgs(opts, ports, image), ...(qmpPath ? referenceQemuArgs(ports, qmpPath) : [])],
    model: opts.reference ? undefined : { ports, logger, record },
    resetModelAtEnd: true,
    console: true,
    timeoutMs: opts.timeoutMs ?? 240_000,
    onTimeout: () => progress('timeout: killing QEMU'),
    removeAtEnd: qmpPath ? [qmpPath] : [],
  });
  const session = new GuestSession(rig, opts, ports, progress);
  const end = await rig.run(
    () => {
      if (qmpPath) session.connectQmp(qmpPath);
    },
    () => session.close(),
  );
  return {
    ...session.report(end.consoleTail),
    mode,
    ports,
    qemuVersion: qemu.version,
    kernel: image.kernel,
    kernelVersion: image.kernelVersion,
    initrdCached: image.cached,
    elapsedMs: Date.now() - t0,
    qemuExit: end.qemuExit,
    timedOut: end.timedOut,
    proxy: end.proxyEnd ? end.proxyEnd.stats : null,
    proxyEnd: end.proxyEnd ? end.proxyEnd.reason : null,
    modelLog: logger.lines,
    trace: end.trace && opts.record ? { path: opts.record, events: end.trace.events, frames: end.trace.frames } : null,
    qemuStderr: end.stderr,
  };
}

/** The guest's kernel modules (usbtest for gadget zero); refuses what the mode cannot do. */
function guestModules(opts: LabOptions, ports: readonly LabPort[]): string[] {
  if (!opts.reference) nativeAvailable();
  if (opts.reference && ports.includes('gadget-zero')) {
    throw new LabConfigError('QEMU has no gadget-zero device: --reference supports tablet, mouse and keyboard');
  }
  const modules = [...(opts.modules ?? [])];
  if (ports.includes('gadget-zero') && !modules.includes('usbtest')) modules.push('usbtest');
  return modules;
}

/** QEMU's arguments for the lab guest, the same in both modes (without the UHCI function). */
function guestQemuArgs(opts: LabOptions, ports: readonly LabPort[], image: GuestImage): string[] {
  const wanted = ports.filter((p) => p !== 'none').length;
  const wantedInputs = ports.filter((p) => p !== 'none' && p !== 'gadget-zero').length;
  // Interrupts: under TCG, QEMU 7.2's proxy cannot deliver our INTx (it only
  // wires the irqfd into KVM), so the guest polls. `irqpoll` makes every
  // IRQ 0 run all shared handlers (kernel/irq/spurious.c misrouted_irq), and
  // `nolapic_timer` keeps the tick on the PIT's IRQ 0, so uhci_irq runs every
  // tick (4 ms at Debian's HZ=250). Without nolapic_timer completions are only
  // noticed by the root-hub status poll and enumeration takes ~3.5 s per
  // device instead of ~0.4 s (measured here). Both modes boot the same way.
  const append = [
    'console=ttyS0',
    'quiet',
    'irqpoll',
    'nolapic_timer',
    'panic=-1',
    `lab.devices=${wanted}`,
    `lab.inputs=${wantedInputs}`,
    `lab.wait=${opts.settleSeconds ?? 90}`,
    'lab.evwait=60',
    ...(opts.autosuspend ? [`lab.autosuspend=${Math.max(1, Math.round(opts.autosuspend.delayMs))}`] : []),
    ...(opts.kernelArgs ?? []),
  ].join(' ');
  return [
    '-accel', 'tcg', '-m', '512', '-smp', '1', '-nodefaults', '-display', 'none', '-serial', 'stdio', '-no-reboot',
    '-kernel', image.kernel, '-initrd', image.initrd, '-append', append,
    ...sharedRamQemuArgs('512M'),
    ...(opts.extraQemuArgs ?? []),
  ];
}

/** Reference mode: QEMU's own UHCI and devices, and QMP to inject input into them. */
function referenceQemuArgs(ports: readonly LabPort[], qmpPath: string): string[] {
  return ['-qmp', `unix:${qmpPath},server=on,wait=off`, ...referenceUhciQemuArgs(ports)];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The guest's side of one lab run: reads its console (boot, settled, ready,
 * done markers and the report), injects the input plan once the guest is
 * ready (through the model's devices, or QMP in reference mode), runs the
 * autosuspend observations and the replug, then lets the guest finish.
 */
class GuestSession {
  private readonly parser = new GuestReportParser();
  private readonly consoleLines: string[] = [];
  private readonly injected: LabInjection[] = [];
  private readonly suspend: LabSuspendReport | null;
  private readySeen = false;
  private replugged = false;
  private qmp: QmpClient | null = null;

  constructor(
    private readonly rig: LabRig,
    private readonly opts: LabOptions,
    private readonly ports: readonly LabPort[],
    private readonly progress: (msg: string) => void,
  ) {
    this.suspend = opts.autosuspend
      ? { guestBefore: {}, guestAfter: {}, atReady: null, afterFirstInput: null, resumedAfterMs: null, hold: null }
      : null;
    rig.onConsoleLine((line) => this.consoleLine(line));
  }

  connectQmp(path: string): void {
    QmpClient.connect(path)
      .then((c) => {
        if (this.rig.alive) this.qmp = c;
        else c.close();
      })
      .catch((e: Error) => this.progress(`QMP unavailable: ${e.message}`));
  }

  close(): void {
    this.qmp?.close();
  }

  /** The guest's report (with the console's unterminated last line) and what this session did. */
  report(consoleTail: string): GuestReport & Pick<LabResult, 'injected' | 'replugged' | 'suspend' | 'console'> {
    if (consoleTail) this.parser.line(consoleTail);
    return { ...this.parser.finish(), injected: this.injected, replugged: this.replugged, suspend: this.suspend, console: this.consoleLines };
  }

  private consoleLine(line: string): void {
    const kw = this.parser.line(line);
    switch (kw) {
      case null:
        this.consoleLines.push(line.replace(/\r$/, ''));
        if (this.consoleLines.length > CONSOLE_KEEP) this.consoleLines.shift();
        break;
      case 'boot':
        this.progress('guest booted, loading modules');
        break;
      case 'settled': {
        const s = this.parser.report.settled!;
        this.progress(`guest settled at ${s.uptime}s: ${s.boundInterfaces} interfaces bound, ${s.eventDevices} input devices`);
        break;
      }
      case 'power':
        if (this.suspend) {
          const [, path = '', status = ''] = line.slice(line.indexOf('@@LAB:')).split(' ');
          (this.readySeen ? this.suspend.guestAfter : this.suspend.guestBefore)[path] = status;
        }
        break;
      case 'ready':
        this.readySeen = true;
        this.progress(this.suspend ? 'guest ready (autosuspended): holding, then injecting input' : 'guest ready: injecting input');
        this.inject().catch((e: unknown) => this.rig.fail(e));
        break;
      case 'done':
        this.progress('guest done');
        break;
    }
  }

  /** The input plan, the event window, the replug; then the guest may finish. */
  private async inject(): Promise<void> {
    const plans = this.ports.map((p, i) => (p === 'none' || p === 'gadget-zero' ? null : { port: i + 1, device: p, actions: defaultPlan(p) }));
    const steps = Math.max(0, ...plans.map((p) => p?.actions.length ?? 0));
    const model = this.rig.model;
    if (this.suspend && model) await this.holdSuspended(this.suspend, model);
    for (let s = 0; s < steps; s++) {
      for (const plan of plans) {
        const a = plan?.actions[s];
        if (plan && a) await this.apply(plan.port, a);
      }
      await sleep(100);
    }
    plans.forEach((p) => p && this.injected.push(p));
    await sleep(this.opts.eventWindowMs ?? 2500);
    const rp = this.opts.replugPort;
    if (rp && model) await this.replug(model, rp);
    this.rig.sendConsole('\n');
  }

  private async apply(port: number, a: InputAction): Promise<void> {
    if (!this.rig.alive) return;
    try {
      if (this.opts.reference) {
        if (!this.qmp) throw new Error('no QMP connection');
        await applyToQemu(this.qmp, null, a);
      } else {
        const model = this.rig.model!;
        const dev = model.device(port - 1);
        if (!(dev instanceof HidUsbDevice)) throw new Error('no HID device on that port');
        applyToModel(dev, a);
        if (this.suspend && !this.suspend.afterFirstInput) this.watchResume(this.suspend, model);
      }
    } catch (e) {
      this.progress(`input on port ${port} failed: ${(e as Error).message}`);
    }
  }

  /** The guest is suspended: watch the model sit idle for holdMs before waking it. */
  private async holdSuspended(suspend: LabSuspendReport, model: ProxyModel): Promise<void> {
    const holdMs = this.opts.autosuspend?.holdMs ?? 3000;
    suspend.atReady = model.registers();
    const st = model.transport.stats;
    const hc = model.fn.controller;
    const before = { cpu: process.cpuUsage(), frames: hc.framesProcessed, wakeups: model.clock.timerWakeups, r: st.barReads, w: st.barWrites };
    await sleep(holdMs);
    const cpu = process.cpuUsage(before.cpu);
    suspend.hold = {
      ms: holdMs,
      cpuMs: (cpu.user + cpu.system) / 1000,
      frames: hc.framesProcessed - before.frames,
      timerWakeups: model.clock.timerWakeups - before.wakeups,
      barReads: st.barReads - before.r,
      barWrites: st.barWrites - before.w,
    };
  }

  /** After the first input on a suspended guest: registers now, and how soon the guest runs the controller again. */
  private watchResume(suspend: LabSuspendReport, model: ProxyModel): void {
    suspend.afterFirstInput = model.registers();
    const t = Date.now();
    const hc = model.fn.controller;
    this.rig.every(5, () => {
      if (hc.running) suspend.resumedAfterMs = Date.now() - t;
      return hc.running || Date.now() - t > 10_000;
    });
  }

  /** Disconnect the device on `port` while the guest runs, then plug a fresh one of the same kind in. */
  private async replug(model: ProxyModel, port: 1 | 2): Promise<void> {
    const kind = this.ports[port - 1];
    if (!kind || kind === 'none') return;
    this.progress(`unplugging port ${port}`);
    model.unplug(port - 1);
    await sleep(1500);
    if (!this.rig.alive) return;
    model.plug(port - 1, kind);
    this.progress(`plugged a new ${kind} into port ${port}`);
    await sleep(4000);
    this.replugged = true;
  }
}
