/**
 * The UHCI host controller: register file (UHCI Design Guide §2.1), frame
 * clock, interrupt logic and the two root ports; the schedule walk itself is
 * in schedule.ts. Register access semantics follow QEMU 7.2 (hcd-uhci.c and
 * its memory core: the I/O BAR implements 16-bit accesses, a byte access is
 * carried out as a 16-bit access at that address, a dword access as two
 * 16-bit accesses, misaligned accesses are rejected and read as 0).
 *
 * Nothing here knows about Xen, QEMU or libusb: guest memory, the IRQ line
 * and time come in through the platform interfaces.
 */
import type { Clock, TimerHandle } from '../platform/clock.js';
import { HarnessAbort } from '../platform/harness-abort.js';
import type { IrqLine } from '../platform/irq.js';
import { LogLimiter, type Logger, type LogLevel } from '../platform/logger.js';
import { GuestMemoryFault, type GuestMemory } from '../platform/memory.js';
import type { UsbDevice, UsbPacket } from '../usb/packet.js';
import { FLBASEADD, FRNUM, NUM_PORTS, PORTSC, REG, SOFMOD, UNIMPLEMENTED_READ, USBCMD, USBINTR, USBSTS } from './registers.js';
import { SAVED_REGISTERS, loadedPendingInt, loadedPort, loadedRegisters, type UhciControllerState } from './controller-state.js';
import { splitRead, splitWrite } from './io-access.js';
import { RootPort } from './root-port.js';
import { ScheduleEngine } from './schedule.js';
import { PENDING_IOC, PENDING_SPD, type ScheduleHost } from './schedule-host.js';
import type { WireTimer } from './wire-timer.js';
import { uhciWireTimer } from './timing.js';

/** One frame is 1 ms (USB 2.0 §5.12.2 / UHCI DG §2.1.4). */
export const FRAME_NS = 1_000_000;
/** Frames processed per timer callback before yielding to the event loop. */
export const DEFAULT_MAX_BATCH = 64;
/**
 * A host that falls further behind than this (e.g. the process was stopped)
 * skips frames instead of replaying them all (frames are counted, the
 * schedule is not run; isochronous data of those frames is lost).
 */
export const MAX_CATCH_UP_FRAMES = 2048;
/** Consecutive idle frames before the controller starts coalescing wake-ups. */
export const IDLE_THRESHOLD_FRAMES = 8;

export interface UhciControllerOptions {
  mem: GuestMemory;
  irq: IrqLine;
  clock: Clock;
  /** PCI bus-master enable: DMA is only possible while this returns true. */
  busMaster?: () => boolean;
  timer?: WireTimer;
  logger?: Logger;
  /** Frames per timer wake-up at most (catch-up batches). */
  maxBatch?: number;
  /**
   * Idle coalescing: once the schedule has been idle (frames that changed
   * nothing: no write-back, no interrupt, nothing in flight) for
   * IDLE_THRESHOLD_FRAMES, wake up only every `idleCoalesce` frames. Frames
   * are still processed one by one, in order, with their own frame numbers;
   * guest I/O and device activity catch up at once. 1 = wake every frame.
   */
  idleCoalesce?: number;
  /**
   * Replay quiescent frames instead of walking them (default true): see
   * ScheduleEngine.replayQuiescentFrame. Exact; off only for comparisons.
   */
  replayQuiescent?: boolean;
}

export class UhciController {
  cmd = USBCMD.reset;
  status = USBSTS.reset;
  /** Hidden status: which of IOC (bit 0) / short packet (bit 1) caused USBINT (as QEMU). */
  status2 = 0;
  intr = USBINTR.reset;
  frnum = FRNUM.reset;
  flBase = FLBASEADD.reset;
  sofmod = SOFMOD.reset;
  readonly ports: RootPort[] = [];
  readonly engine: ScheduleEngine;
  private irqLevel = false;
  private frameEndNs = 0;
  private timerHandle: TimerHandle | null = null;
  private readonly mem: GuestMemory;
  private readonly irq: IrqLine;
  private readonly clock: Clock;
  private readonly busMaster: () => boolean;
  /** Every line the controller logs is guest-triggerable: all go through per-key rate limits. */
  private readonly logs: LogLimiter;
  private readonly maxBatch: number;
  private readonly idleCoalesce: number;
  /** Consecutive frames that changed nothing. */
  private idleRun = 0;
  private timerAtNs = 0;
  private inCatchUp = false;
  /** Frames processed since creation (statistics). */
  framesProcessed = 0;
  framesSkipped = 0;

  constructor(opts: UhciControllerOptions) {
    this.mem = opts.mem;
    this.irq = opts.irq;
    this.clock = opts.clock;
    this.busMaster = opts.busMaster ?? (() => true);
    this.logs = new LogLimiter(opts.logger, { nowNs: () => opts.clock.nowNs() });
    this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
    this.idleCoalesce = Math.max(1, Math.floor(opts.idleCoalesce ?? 1));
    for (let i = 0; i < NUM_PORTS; i++) {
      this.ports.push(new RootPort(i, { resume: () => this.resume() }));
    }
    const self = this;
    const timer = opts.timer ?? uhciWireTimer;
    const host: ScheduleHost = {
      get mem() {
        // Bus mastering is sampled once per frame (it cannot change while a frame runs).
        return self.busMaster() ? self.mem : self.dmaDisabled;
      },
      timer,
      findDevice: (addr) => this.findDevice(addr),
      raiseStatus: (bits) => {
        this.status |= bits;
        this.updateIrq();
      },
      fatal: (kind, why) => this.fatal(kind, why),
      get singleStep() {
        return (self.cmd & USBCMD.bit.SWDBG) !== 0;
      },
      stopAfterTransaction: () => {
        this.cmd &= ~USBCMD.bit.RS;
        this.status |= USBSTS.bit.HCHALTED;
      },
      get maxp64() {
        return (self.cmd & USBCMD.bit.MAXP) !== 0;
      },
      get sofmod() {
        return SOFMOD.get(self.sofmod, 'SOF');
      },
      log: (level, msg) => this.log(`schedule-${level}`, level, msg),
    };
    this.engine = new ScheduleEngine(host);
    this.engine.replayEnabled = opts.replayQuiescent ?? true;
    this.updateIrq();
  }

  /** Guest memory as DMA sees it while bus mastering is disabled: every access fails. */
  private readonly dmaDisabled: GuestMemory = {
    read: (addr, buf) => {
      throw new DmaDisabled(addr, buf.length, false);
    },
    write: (addr, buf) => {
      throw new DmaDisabled(addr, buf.length, true);
    },
  };

  private log(key: string, level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    this.logs.log(key, level, 'uhci', msg, { frame: this.frnum, ...fields });
  }

  get running(): boolean {
    return (this.cmd & USBCMD.bit.RS) !== 0;
  }

  // ---------------------------------------------------------------- I/O BAR

  /** Read `size` bytes at `offset` inside the 32-byte I/O BAR, split as QEMU 7.2 does (io-access.ts). */
  ioRead(offset: number, size: 1 | 2 | 4): number {
    offset &= 0x1f;
    this.catchUp();
    return splitRead(offset, size, (off) => this.readWord(off));
  }

  /** Write `size` bytes at `offset`, split as for ioRead. */
  ioWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    offset &= 0x1f;
    this.catchUp();
    // Any register may change what a walk does (FLBASEADD, MAXP, SOFMOD, ports).
    this.engine.forgetQuiescence();
    splitWrite(offset, size, value, (off, v) => this.writeWord(off, v));
  }

  /** One 16-bit register read at a byte offset (QEMU uhci_port_read). */
  private readWord(offset: number): number {
    switch (offset) {
      case REG.USBCMD:
        return this.cmd;
      case REG.USBSTS:
        return this.status;
      case REG.USBINTR:
        return this.intr;
      case REG.FRNUM:
        return this.frnum;
      case REG.FLBASEADD:
        return this.flBase & 0xffff;
      case REG.FLBASEADD + 2:
        return (this.flBase >>> 16) & 0xffff;
      case REG.SOFMOD:
        return this.sofmod;
      default:
        if (offset >= 0x10 && offset <= 0x1f) {
          const n = (offset >> 1) & 7;
          if (n < NUM_PORTS) return this.ports[n]!.read();
        }
        return UNIMPLEMENTED_READ;
    }
  }

  /** One 16-bit register write at a byte offset (QEMU uhci_port_write). */
  private writeWord(offset: number, val: number): void {
    switch (offset) {
      case REG.USBCMD:
        this.writeCommand(val);
        return;
      case REG.USBSTS:
        // Every status bit is write-1-to-clear (UHCI DG §2.1.2; the USBSTS declaration).
        this.status = USBSTS.applyWrite(this.status, val);
        if (val & USBSTS.bit.USBINT) this.status2 = 0;
        this.updateIrq();
        return;
      case REG.USBINTR:
        this.intr = USBINTR.applyWrite(this.intr, val);
        this.updateIrq();
        return;
      case REG.FRNUM:
        // Writable only while halted (UHCI DG §2.1.4).
        if (this.status & USBSTS.bit.HCHALTED) this.frnum = FRNUM.applyWrite(this.frnum, val);
        return;
      case REG.FLBASEADD:
      case REG.FLBASEADD + 2:
        // Base must be 4 KiB aligned: bits 11:0 are not stored (UHCI DG §2.1.5).
        this.flBase = FLBASEADD.applyHalfWrite(this.flBase, offset === REG.FLBASEADD ? 0 : 1, val);
        return;
      case REG.SOFMOD:
        this.sofmod = SOFMOD.applyWrite(this.sofmod, val);
        return;
      default:
        if (offset >= 0x10 && offset <= 0x1f) {
          const n = (offset >> 1) & 7;
          if (n < NUM_PORTS) this.ports[n]!.write(val);
        }
        return;
    }
  }

  private writeCommand(val: number): void {
    const wasRunning = (this.cmd & USBCMD.bit.RS) !== 0;
    if (val & USBCMD.bit.RS && !wasRunning) {
      // Start: the first frame ends 1 ms from now (QEMU expire_time).
      this.frameEndNs = this.clock.nowNs() + FRAME_NS;
      this.status &= ~USBSTS.bit.HCHALTED;
      this.armTimer();
    } else if (!(val & USBCMD.bit.RS)) {
      this.status |= USBSTS.bit.HCHALTED;
    }
    if (val & USBCMD.bit.GRESET) {
      // Global reset: reset signalling on the bus, then a controller reset.
      for (const p of this.ports) p.device?.reset();
      this.reset();
      return;
    }
    if (val & USBCMD.bit.HCRESET) {
      this.reset();
      return;
    }
    this.cmd = USBCMD.applyWrite(this.cmd, val);
    if (!(val & USBCMD.bit.RS)) {
      this.stopFrames();
    }
    if (val & USBCMD.bit.EGSM) {
      // Entering global suspend with a resume already pending resumes at once.
      if (this.ports.some((p) => p.ctrl & PORTSC.bit.RD)) this.resume();
    }
    this.updateIrq();
  }

  /** Resume signalling during global suspend (QEMU uhci_resume). */
  private resume(): void {
    if (this.cmd & USBCMD.bit.EGSM) {
      this.cmd |= USBCMD.bit.FGR;
      this.status |= USBSTS.bit.RD;
      this.updateIrq();
    }
  }

  // -------------------------------------------------------------- interrupts

  /**
   * INTx level (UHCI DG §2.1.3, QEMU uhci_update_irq): IOC and short-packet
   * causes are told apart through the hidden status2; HSE and HCPE always
   * interrupt.
   */
  private updateIrq(): void {
    const level =
      (this.status2 & PENDING_IOC && this.intr & USBINTR.bit.IOC) ||
      (this.status2 & PENDING_SPD && this.intr & USBINTR.bit.SP) ||
      (this.status & USBSTS.bit.USBERRINT && this.intr & USBINTR.bit.TOCRC) ||
      (this.status & USBSTS.bit.RD && this.intr & USBINTR.bit.RESUME) ||
      this.status & USBSTS.bit.HSE ||
      this.status & USBSTS.bit.HCPE
        ? true
        : false;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq.set(level);
    }
  }

  get irqAsserted(): boolean {
    return this.irqLevel;
  }

  private fatal(kind: 'hcpe' | 'hse', why: string): void {
    this.status |= kind === 'hcpe' ? USBSTS.bit.HCPE : USBSTS.bit.HSE;
    this.cmd &= ~USBCMD.bit.RS;
    this.status |= USBSTS.bit.HCHALTED;
    this.log(`fatal-${kind}`, 'warn', `${kind === 'hcpe' ? 'HC process error' : 'host system error'}: ${why}`);
    this.updateIrq();
  }

  /** A harness ending the run (replay's divergence) passes; anything else is a Host System Error. */
  private contain(where: string, e: unknown): void {
    if (e instanceof HarnessAbort) throw e;
    this.hostSystemError(where, e);
  }

  /**
   * The fault entry point for anything that throws where it should not (a
   * bug of ours, a device, a backend): the controller does what the hardware
   * does on an internal fault, a Host System Error (UHCI DG §2.1.2: HSE set,
   * Run/Stop cleared, HCHalted set; HSE interrupts whatever USBINTR says, as
   * QEMU's uhci_update_irq). Packets in flight are cancelled; one error line
   * per fault (none while HSE is still set; rate limited; the stack at debug
   * level once). The guest sees a halted controller and recovers with
   * HCRESET; every register access keeps working meanwhile. Never throws.
   */
  hostSystemError(where: string, error: unknown): void {
    try {
      this.stopFrames();
    } catch {
      // The engine or a device may be what is broken; the controller halts regardless.
    }
    this.cmd &= ~USBCMD.bit.RS;
    const msg = `internal error in ${where}: host system error, controller halted`;
    if (!(this.status & USBSTS.bit.HSE)) this.logs.error('internal-fault', 'uhci', msg, error, { frame: this.frnum });
    this.status |= USBSTS.bit.HSE | USBSTS.bit.HCHALTED;
    this.updateIrq();
  }

  // ------------------------------------------------------------------ frames

  private armTimer(): void {
    if (this.timerHandle) return;
    const frames = this.coalescedFrames();
    const at = this.frameEndNs + (frames - 1) * FRAME_NS;
    this.timerAtNs = at;
    this.timerHandle = this.clock.setTimer(at, () => {
      this.timerHandle = null;
      this.onTimer();
    });
  }

  /**
   * Frames to run per wake-up: 1 while the schedule is active; once idle for
   * IDLE_THRESHOLD_FRAMES, a power of two that grows with the idle time (half
   * the idle run) up to `idleCoalesce`, so a schedule that just went quiet is
   * still polled often and a long-idle one costs few wake-ups.
   */
  private coalescedFrames(): number {
    if (this.idleRun < IDLE_THRESHOLD_FRAMES || this.idleCoalesce <= 1) return 1;
    let n = 1;
    while (n * 2 <= this.idleRun / 2 && n * 2 <= this.idleCoalesce) n *= 2;
    return n;
  }

  /**
   * Something may have changed outside the controller's view (a device got
   * data, a device was plugged): stop coalescing and run the next frame on time.
   */
  kick(): void {
    // Frames that ended before this change saw the old device state: if they
    // are known to be quiescent, account them now, so that what changed is
    // seen from the current frame on (not from the last wake-up on).
    if (this.running && !this.inCatchUp) this.replayDueQuiescentFrames();
    this.engine.forgetQuiescence();
    this.idleRun = 0;
    if (!this.running) return;
    if (this.timerHandle && this.timerAtNs > this.frameEndNs) {
      this.clock.clearTimer(this.timerHandle);
      this.timerHandle = null;
    }
    this.armTimer();
  }

  /** Stop the frame clock (also reset and restore): packets cancelled, nothing remembered. */
  private stopFrames(): void {
    this.engine.forgetQuiescence();
    if (this.timerHandle) {
      this.clock.clearTimer(this.timerHandle);
      this.timerHandle = null;
    }
    this.engine.cancelAll();
  }

  private onTimer(): void {
    if (!this.running) return;
    // A coalesced wake-up runs its whole batch at once (one wake-up per batch).
    const more = this.runDueFrames(Math.max(this.maxBatch, this.coalescedFrames() + 1));
    if (!this.running) return;
    if (more) {
      // Still behind: continue as soon as the event loop allows.
      this.timerHandle = this.clock.setTimer(this.clock.nowNs(), () => {
        this.timerHandle = null;
        this.onTimer();
      });
    } else {
      this.armTimer();
    }
  }

  /**
   * Bring the controller up to the current time before a guest access, so
   * that FRNUM and the schedule's write-backs are consistent with the clock.
   */
  catchUp(): void {
    if (!this.running || this.inCatchUp) return;
    this.runDueFrames(MAX_CATCH_UP_FRAMES);
  }

  /** Process frames whose end time has passed, at most `limit`. Returns true if more are due. */
  private runDueFrames(limit: number): boolean {
    this.inCatchUp = true;
    try {
      const now = this.clock.nowNs();
      let due = Math.floor((now - this.frameEndNs) / FRAME_NS) + 1;
      if (due <= 0) return false;
      if (due > MAX_CATCH_UP_FRAMES) {
        const skip = due - MAX_CATCH_UP_FRAMES;
        this.frnum = (this.frnum + skip) & FRNUM.bit.FN;
        this.frameEndNs += skip * FRAME_NS;
        this.framesSkipped += skip;
        this.log('catch-up-skip', 'warn', `host fell ${due} frames behind; skipped ${skip}`);
        due = MAX_CATCH_UP_FRAMES;
      }
      const n = Math.min(due, limit);
      this.engine.newBatch();
      for (let i = 0; i < n && this.running; i++) this.runOneFrame();
      return this.running && due > n;
    } catch (e) {
      // Reached from the frame timer and from guest I/O: neither may die of it.
      this.contain('frame processing', e);
      return false;
    } finally {
      this.inCatchUp = false;
    }
  }

  /**
   * Process the frame FRNUM (walk it, or replay it when it is known to be
   * quiescent), then advance FRNUM and raise end-of-frame interrupts.
   */
  runOneFrame(): void {
    const engine = this.engine;
    // Called on its own (not from a batch): guest memory may have changed since the last frame.
    if (!this.inCatchUp) engine.newBatch();
    if (!engine.replayQuiescentFrame(this.flBase, this.frnum)) engine.processFrame(this.flBase, this.frnum);
    this.framesProcessed++;
    if (engine.stats.effects === 0 && engine.pendingInt === 0 && engine.inflight.size === 0) this.idleRun++;
    else this.idleRun = 0;
    // FRNUM counts the frame being processed; it advances at its end (UHCI DG §2.1.4).
    this.frnum = (this.frnum + 1) & FRNUM.bit.FN;
    this.frameEndNs += FRAME_NS;
    const pending = this.engine.pendingInt;
    if (pending) {
      this.engine.pendingInt = 0;
      this.status2 |= pending;
      this.status |= USBSTS.bit.USBINT;
      this.updateIrq();
    }
  }

  /**
   * Account the due frames that are known to be quiescent (no walk), up to
   * the first one that is not. Used before a device changes what it answers.
   */
  private replayDueQuiescentFrames(): void {
    const now = this.clock.nowNs();
    let due = Math.floor((now - this.frameEndNs) / FRAME_NS) + 1;
    if (due <= 0 || due > MAX_CATCH_UP_FRAMES) return;
    const engine = this.engine;
    engine.newBatch();
    while (due-- > 0 && engine.replayQuiescentFrame(this.flBase, this.frnum)) {
      this.framesProcessed++;
      this.idleRun++;
      this.frnum = (this.frnum + 1) & FRNUM.bit.FN;
      this.frameEndNs += FRAME_NS;
    }
  }

  // ------------------------------------------------------------------- reset

  /** HCRESET / PCI reset: registers to defaults, ports reset, packets cancelled. */
  reset(): void {
    this.stopFrames();
    this.idleRun = 0;
    this.cmd = USBCMD.reset;
    this.status = USBSTS.reset;
    this.status2 = 0;
    this.intr = USBINTR.reset;
    this.flBase = FLBASEADD.reset;
    this.sofmod = SOFMOD.reset;
    // FRNUM is left as it was: QEMU 7.2's uhci_reset does not touch it (the
    // design guide is silent on FRNUM for HCRESET; guests write FRNUM after
    // a reset, Linux writes 0).
    for (const p of this.ports) p.controllerReset();
    this.updateIrq();
  }

  // ----------------------------------------------------------------- devices

  private findDevice(addr: number): UsbDevice | null {
    for (const p of this.ports) {
      if (!p.enabled || !p.device) continue;
      if (p.device.address === addr) return p.device;
    }
    return null;
  }

  attach(portIndex: number, dev: UsbDevice): void {
    const port = this.ports[portIndex];
    if (!port) throw new RangeError(`no root port ${portIndex}`);
    if (port.device) throw new Error(`root port ${portIndex + 1} is occupied by ${port.device.productName}`);
    this.catchUp();
    // Device callbacks arrive from the device's own sources (libusb, timers): contained here.
    const contain = (where: string, f: () => void) => () => {
      try {
        f();
      } catch (e) {
        this.contain(where, e);
      }
    };
    dev.attach({
      complete: (packet: UsbPacket) =>
        contain('a packet completion', () => {
          this.engine.asyncComplete(packet);
          this.kick();
        })(),
      wakeup: contain('a remote wakeup', () => {
        port.wakeup();
        this.updateIrq();
        this.kick();
      }),
      activity: contain('device activity', () => this.kick()),
    });
    port.attach(dev);
    this.engine.forgetQuiescence();
    this.updateIrq();
    this.kick();
  }

  detach(portIndex: number): UsbDevice | null {
    const port = this.ports[portIndex];
    if (!port || !port.device) return null;
    this.catchUp();
    const dev = port.device;
    this.engine.cancelDevice(dev);
    port.detach();
    dev.detach();
    this.engine.forgetQuiescence();
    this.updateIrq();
    return dev;
  }

  // ------------------------------------------------------------ save/restore

  /** Snapshot, fields as declared in controller-state.ts (SAVED_REGISTERS). */
  saveState(): UhciControllerState {
    this.catchUp();
    const regs = {} as Record<(typeof SAVED_REGISTERS)[number][0], number>;
    for (const [name] of SAVED_REGISTERS) regs[name] = this[name];
    return {
      version: 1,
      ...regs,
      ports: this.ports.map((p) => p.ctrl),
      pendingInt: this.engine.pendingInt,
      frameRemainingNs: this.running ? Math.max(0, this.frameEndNs - this.clock.nowNs()) : null,
    };
  }

  /**
   * Restore a snapshot. Packets that were in flight are not carried over:
   * their TDs are still Active in guest memory and run again (as QEMU does
   * after migration).
   */
  loadState(s: UhciControllerState): void {
    const regs = loadedRegisters(s);
    this.stopFrames();
    for (const [name] of SAVED_REGISTERS) this[name] = regs[name];
    s.ports.forEach((v, i) => {
      const p = this.ports[i];
      if (p) p.ctrl = loadedPort(v);
    });
    this.engine.pendingInt = loadedPendingInt(s.pendingInt);
    if (this.running) {
      this.frameEndNs = this.clock.nowNs() + (s.frameRemainingNs ?? FRAME_NS);
      this.armTimer();
    }
    this.updateIrq();
  }

  /** Decoded register view for logs and the monitor. */
  describe(): string {
    return [
      USBCMD.format(this.cmd),
      USBSTS.format(this.status),
      USBINTR.format(this.intr),
      `FRNUM=0x${this.frnum.toString(16)}`,
      `FLBASEADD=0x${this.flBase.toString(16)}`,
      `SOFMOD=${this.sofmod}`,
      ...this.ports.map((p, i) => `PORTSC${i + 1}=${p.format()}`),
    ].join(' ');
  }
}

/** DMA attempted while PCI bus mastering is disabled (treated as a master abort → HSE). */
export class DmaDisabled extends GuestMemoryFault {
  constructor(addr: number, length: number, write: boolean) {
    super(addr, length, write);
    this.message = `DMA ${write ? 'write' : 'read'} at 0x${addr.toString(16)} with bus mastering disabled`;
    this.name = 'DmaDisabled';
  }
}
