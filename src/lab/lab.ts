/**
 * The lab: boot a real Linux guest under QEMU (TCG) whose UHCI controller
 * is our model, served through QEMU's x-pci-proxy-dev, and report what the
 * guest saw (USB devices, kernel log, input events). With `reference` the
 * same guest boots with QEMU's own piix3-usb-uhci + usb-tablet/usb-kbd
 * instead, for a side-by-side comparison.
 */
import { UserFacingError } from '../platform/user-facing-error.js';
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UhciPciFunction } from '../device/uhci-pci-function.js';
import { createRecordedFunction } from '../trace/recorded-function.js';
import { Recorder } from '../trace/recorder.js';
import { RealClock } from '../platform/clock.js';
import type { Logger, LogLevel } from '../platform/logger.js';
import { createUsbDevice } from '../usb/devices.js';
import type { UsbDevice } from '../usb/packet.js';
import { HidUsbDevice } from '../usb/hid/hid-device.js';
import { nativeAvailable, socketPair, closeFd } from '../qemu/libc.js';
import { QemuProxyTransport, type ProxyEnd, type ProxyStats } from '../qemu/proxy-transport.js';
import { checkQemu } from '../qemu/qemu-binary.js';
import { prepareGuestImage } from './guest-image.js';
import { GuestReportParser, type GuestReport } from './lab-report.js';
import { applyToModel, applyToQemu, defaultPlan, type InputAction, type LabDeviceKind } from './input-plan.js';
import { QmpClient } from './qmp.js';

/**
 * What sits on a root port. 'gadget-zero' (Linux's gadget zero, model mode
 * only) has no input; the guest loads `usbtest` for it.
 */
export type LabPort = LabDeviceKind | 'gadget-zero' | 'none';

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

/** Model registers at one moment of the autosuspend scenario. */
export interface LabModelRegisters {
  usbcmd: number;
  usbsts: number;
  usbintr: number;
  portsc: number[];
  running: boolean;
  framesProcessed: number;
}

export interface LabSuspendReport {
  /** Runtime PM status per USB device path when the guest said ready, and after the event window. */
  guestBefore: Record<string, string>;
  guestAfter: Record<string, string>;
  /** Model mode: registers when the guest said ready, and right after the first input was injected. */
  atReady: LabModelRegisters | null;
  afterFirstInput: LabModelRegisters | null;
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

/** The PCI slot of the UHCI function in both modes, so device serials match. */
const PCI_ADDR = '05.0';
const HCD_PATH = '0000:00:05.0';
const LOG_ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

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
  if (!opts.reference) nativeAvailable();
  if (opts.reference && ports.includes('gadget-zero')) {
    throw new LabConfigError('QEMU has no gadget-zero device: --reference supports tablet, mouse and keyboard');
  }
  const modules = [...(opts.modules ?? [])];
  if (ports.includes('gadget-zero') && !modules.includes('usbtest')) modules.push('usbtest');
  const image = prepareGuestImage({ modules, script: opts.script, cacheDir: opts.cacheDir });
  progress(`guest: kernel ${image.kernelVersion}, initramfs ${image.cached ? 'cached' : 'built'} (${image.initrd})`);

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
  const args = [
    '-accel', 'tcg', '-m', '512', '-smp', '1', '-nodefaults', '-display', 'none', '-serial', 'stdio', '-no-reboot',
    '-kernel', image.kernel, '-initrd', image.initrd, '-append', append,
    // Guest RAM in a shared file (an unlinked temporary in /dev/shm) so the proxy can map it.
    '-object', `memory-backend-file,id=mem,size=512M,mem-path=${existsSync('/dev/shm') ? '/dev/shm' : tmpdir()},share=on`,
    '-machine', 'pc,memory-backend=mem',
    ...(opts.extraQemuArgs ?? []),
  ];

  const logger = new CollectingLogger(LOG_ORDER[opts.modelLogLevel ?? 'info']);
  let transport: QemuProxyTransport | null = null;
  let fn: UhciPciFunction | null = null;
  let recorder: Recorder | null = null;
  let labClock: RealClock | null = null;
  let replugged = false;
  const modelDevices: (UsbDevice | null)[] = [];
  let childFd = -1;
  let qmpPath: string | null = null;
  let timerWakeups = 0;
  const suspend: LabSuspendReport | null = opts.autosuspend
    ? { guestBefore: {}, guestAfter: {}, atReady: null, afterFirstInput: null, resumedAfterMs: null, hold: null }
    : null;
  let readySeen = false;
  const registers = (): LabModelRegisters | null => {
    if (!fn) return null;
    const hc = fn.controller;
    return {
      // Fields, not ioRead: no catch-up, nothing a recorded trace would miss.
      usbcmd: hc.cmd,
      usbsts: hc.status,
      usbintr: hc.intr,
      portsc: hc.ports.map((p) => p.read()),
      running: hc.running,
      framesProcessed: hc.framesProcessed,
    };
  };

  if (opts.reference) {
    qmpPath = join(tmpdir(), `uhci-lab-${process.pid}-${++runCounter}.qmp`);
    args.push('-qmp', `unix:${qmpPath},server=on,wait=off`);
    args.push('-device', `piix3-usb-uhci,id=uhci,addr=${PCI_ADDR}`);
    const qdev: Record<LabDeviceKind, string> = { tablet: 'usb-tablet', mouse: 'usb-mouse', keyboard: 'usb-kbd' };
    ports.forEach((p, i) => {
      if (p !== 'none' && p !== 'gadget-zero') args.push('-device', `${qdev[p]},id=port${i + 1},bus=uhci.0,port=${i + 1}`);
    });
  } else {
    const [ours, theirs] = socketPair();
    childFd = theirs;
    transport = new QemuProxyTransport({ fd: ours, logger });
    const clock = new RealClock();
    // Count the model's timer wake-ups (the autosuspend scenario reports them).
    const setTimer = clock.setTimer.bind(clock);
    clock.setTimer = (at, cb) => setTimer(at, () => {
      timerWakeups++;
      cb();
    });
    if (opts.record) {
      recorder = Recorder.toFile(opts.record, { notes: opts.recordNotes ?? `uhci-dm lab: Linux guest, ports ${ports.join(', ')}` });
      fn = createRecordedFunction({ mem: transport.mem, irq: transport.irq, clock, logger, recorder });
    } else {
      fn = new UhciPciFunction({ mem: transport.mem, irq: transport.irq, clock, logger });
    }
    labClock = clock;
    ports.forEach((p, i) => {
      if (p === 'none') {
        modelDevices.push(null);
        return;
      }
      const dev = createUsbDevice(p, { clock, hcdPath: HCD_PATH, portPath: String(i + 1) });
      fn!.attach(i, dev);
      modelDevices.push(dev);
    });
    args.push('-device', `x-pci-proxy-dev,id=uhci0,addr=${PCI_ADDR},fd=3`);
  }

  progress(`starting ${qemu.binary} (${mode}: ${ports.join(', ')})`);
  const child = spawn(qemu.binary, args, {
    stdio: ['pipe', 'pipe', 'pipe', ...(childFd >= 0 ? [childFd] : [])],
  });
  if (childFd >= 0) closeFd(childFd);
  const served = transport && fn ? transport.serve(fn) : null;

  const parser = new GuestReportParser();
  const consoleLines: string[] = [];
  let stderr = '';
  const injected: LabInjection[] = [];
  let timedOut = false;
  let qmp: QmpClient | null = null;
  if (qmpPath) {
    QmpClient.connect(qmpPath)
      .then((c) => (qmp = c))
      .catch((e: Error) => progress(`QMP unavailable: ${e.message}`));
  }

  const inject = async () => {
    const plans = ports.map((p, i) => (p === 'none' || p === 'gadget-zero' ? null : { port: i + 1, device: p, actions: defaultPlan(p) }));
    const steps = Math.max(0, ...plans.map((p) => p?.actions.length ?? 0));
    if (suspend && fn && transport) {
      // The guest is suspended: watch the model sit idle before waking it.
      const holdMs = opts.autosuspend?.holdMs ?? 3000;
      suspend.atReady = registers();
      const st = transport.stats;
      const before = { cpu: process.cpuUsage(), frames: fn.controller.framesProcessed, wakeups: timerWakeups, r: st.barReads, w: st.barWrites };
      await new Promise((r) => setTimeout(r, holdMs));
      const cpu = process.cpuUsage(before.cpu);
      suspend.hold = {
        ms: holdMs,
        cpuMs: (cpu.user + cpu.system) / 1000,
        frames: fn.controller.framesProcessed - before.frames,
        timerWakeups: timerWakeups - before.wakeups,
        barReads: st.barReads - before.r,
        barWrites: st.barWrites - before.w,
      };
    }
    for (let s = 0; s < steps; s++) {
      for (const plan of plans) {
        const a = plan?.actions[s];
        if (!plan || !a) continue;
        try {
          if (opts.reference) {
            if (!qmp) throw new Error('no QMP connection');
            await applyToQemu(qmp, null, a);
          } else {
            const dev = modelDevices[plan.port - 1];
            if (!(dev instanceof HidUsbDevice)) throw new Error('no HID device on that port');
            applyToModel(dev, a);
            if (suspend && !suspend.afterFirstInput) {
              suspend.afterFirstInput = registers();
              const t = Date.now();
              const hc = fn!.controller;
              const watch = setInterval(() => {
                if (hc.running) suspend.resumedAfterMs = Date.now() - t;
                if (hc.running || Date.now() - t > 10_000) clearInterval(watch);
              }, 5);
            }
          }
        } catch (e) {
          progress(`input on port ${plan.port} failed: ${(e as Error).message}`);
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    plans.forEach((p) => p && injected.push(p));
    await new Promise((r) => setTimeout(r, opts.eventWindowMs ?? 2500));
    const rp = opts.replugPort;
    if (rp && fn && labClock && ports[rp - 1] !== 'none') {
      // Disconnect while the guest runs, then a fresh device on the same port.
      progress(`unplugging port ${rp}`);
      const old = fn.detach(rp - 1);
      if (old instanceof HidUsbDevice) old.dispose();
      await new Promise((r) => setTimeout(r, 1500));
      const dev = createUsbDevice(ports[rp - 1]!, { clock: labClock, hcdPath: HCD_PATH, portPath: String(rp) });
      fn.attach(rp - 1, dev);
      modelDevices[rp - 1] = dev;
      progress(`plugged a new ${ports[rp - 1]} into port ${rp}`);
      await new Promise((r) => setTimeout(r, 4000));
      replugged = true;
    }
    child.stdin!.write('\n');
  };

  let pending = '';
  const stdout = child.stdout!;
  const stderrStream = child.stderr!;
  stdout.setEncoding('utf8');
  stdout.on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      const kw = parser.line(line);
      if (kw === null) {
        consoleLines.push(line.replace(/\r$/, ''));
        if (consoleLines.length > 200) consoleLines.shift();
      } else if (kw === 'boot') progress('guest booted, loading modules');
      else if (kw === 'settled') {
        const s = parser.report.settled!;
        progress(`guest settled at ${s.uptime}s: ${s.boundInterfaces} interfaces bound, ${s.eventDevices} input devices`);
      } else if (kw === 'power' && suspend) {
        const [, path = '', status = ''] = line.slice(line.indexOf('@@LAB:')).split(' ');
        (readySeen ? suspend.guestAfter : suspend.guestBefore)[path] = status;
      } else if (kw === 'ready') {
        readySeen = true;
        progress(suspend ? 'guest ready (autosuspended): holding, then injecting input' : 'guest ready: injecting input');
        void inject();
      } else if (kw === 'done') progress('guest done');
    }
  });
  stderrStream.setEncoding('utf8');
  stderrStream.on('data', (c: string) => {
    if (stderr.length < 64 << 10) stderr += c;
  });

  const timeout = setTimeout(() => {
    timedOut = true;
    progress('timeout: killing QEMU');
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 240_000);

  const qemuExit = await new Promise<number | null>((resolve) => {
    child.on('exit', (code) => resolve(code));
    child.on('error', (e) => {
      stderr += String(e);
      resolve(null);
    });
  });
  clearTimeout(timeout);
  (qmp as QmpClient | null)?.close();
  if (qmpPath) rmSync(qmpPath, { force: true });
  let proxyEnd: ProxyEnd | null = null;
  if (served && transport) {
    // QEMU has exited, so the socket reports EOF; stop() covers a peer that never connected.
    const t = setTimeout(() => transport!.stop(), 2000);
    proxyEnd = await served;
    clearTimeout(t);
  }
  if (fn) fn.reset();
  modelDevices.forEach((d) => {
    if (d instanceof HidUsbDevice) d.dispose();
  });
  const traceSummary = recorder ? await recorder.close() : null;
  if (pending) parser.line(pending);
  const report = parser.finish();
  return {
    ...report,
    mode,
    ports,
    qemuVersion: qemu.version,
    kernel: image.kernel,
    kernelVersion: image.kernelVersion,
    initrdCached: image.cached,
    elapsedMs: Date.now() - t0,
    qemuExit,
    timedOut,
    injected,
    proxy: proxyEnd ? proxyEnd.stats : null,
    proxyEnd: proxyEnd ? proxyEnd.reason : null,
    modelLog: logger.lines,
    trace: traceSummary && opts.record ? { path: opts.record, events: traceSummary.events, frames: traceSummary.frames } : null,
    replugged,
    suspend,
    console: consoleLines,
    qemuStderr: stderr,
  };
}
