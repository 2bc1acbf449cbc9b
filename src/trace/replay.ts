/**
 * Replay: run a trace's inputs against the current model and check that
 * every output matches, byte for byte, in order.
 *
 * The model is a fresh UhciPciFunction built with the recorded options and
 * replay stand-ins for its platform: a clock that stands at each event's
 * recorded time and fires timers exactly when the trace says they fired
 * (a live transport's timers fire late, and the controller's work depends on
 * the time it sees), guest memory that answers reads from the trace and
 * checks writes, an IRQ line that checks level changes, and devices that
 * check each packet and answer it as the real device did. The first
 * mismatch stops the replay and is reported with the event, the time, the
 * frame number and a decoded view of the schedule at that point
 * (divergence.ts). The file is read by readTrace (reader.ts), which holds
 * every event to TRACE_LIMITS before it gets here.
 */
import type { Clock, TimerHandle } from '../platform/clock.js';
import type { IrqLine } from '../platform/irq.js';
import { GuestMemoryFault, type GuestMemory } from '../platform/memory.js';
import { UhciPciFunction, type UhciPciFunctionOptions, type UhciPciFunctionState } from '../device/uhci-pci-function.js';
import type { Logger } from '../platform/logger.js';
import { PID_IN, type UsbDevice, type UsbPacket, type UsbPortHooks, type UsbSpeed, type UsbStatus } from '../usb/packet.js';
import { CALL_NAMES, END_OF_EVENT as END, ReplayDivergence, describeItem, describePacket, divergenceContext, type Divergence } from './divergence.js';
import {
  INPUT_KINDS,
  OUTPUT_KINDS,
  TraceFormatError,
  corruptTrace as corrupt,
  traceNumber as num,
  fromHex,
  hex32,
  isInputKind,
  toHex,
  type DeviceIdentity,
  type TraceHeader,
  type TraceSummary,
} from './format.js';
import { readTrace, type TraceSource } from './reader.js';
import { snapshotDigest } from './recorded-function.js';
import { ShadowMemory } from './shadow-memory.js';

export interface ReplayOptions {
  /**
   * Build the model under test (default: `new UhciPciFunction(opts)`).
   * Lets tests replay against a deliberately altered model.
   */
  createFunction?: (opts: UhciPciFunctionOptions) => UhciPciFunction;
  logger?: Logger;
}

export type ReplayResult =
  | { ok: true; header: TraceHeader; summary: TraceSummary; events: number; frames: number }
  | { ok: false; header: TraceHeader; events: number; divergence: Divergence };

type Item = unknown;
type Rec = unknown[];

function str(x: unknown, what: string): string {
  if (typeof x !== 'string') corrupt(`${what} is not a string`);
  return x;
}
function list(x: unknown, what: string): Rec {
  if (!Array.isArray(x)) corrupt(`${what} is not a list`);
  return x;
}
const STATUSES = new Set<UsbStatus>(['ack', 'nak', 'stall', 'babble', 'ioerror', 'nodev', 'async']);
function status(x: unknown): UsbStatus {
  if (typeof x !== 'string' || !STATUSES.has(x as UsbStatus)) corrupt(`unknown packet status ${JSON.stringify(x)}`);
  return x as UsbStatus;
}

// ----------------------------------------------------------------- platform

class ReplayClock implements Clock {
  now = 0;
  private serial = 0;
  private readonly timers = new Map<number, { at: number; cb: () => void }>();
  constructor(private readonly s: ReplaySession) {}

  nowNs(): number {
    return this.now;
  }
  setTimer(atNs: number, cb: () => void): TimerHandle {
    const serial = ++this.serial;
    const it = this.s.takeOutput();
    const got = `arm timer #${serial} for now+${atNs - this.now} ns`;
    if (!Array.isArray(it) || it[0] !== OUTPUT_KINDS.setTimer) throw new ReplayDivergence(describeItem(it), got);
    if (it[1] !== serial || this.now + num(it[2], 'timer time') !== atNs) throw new ReplayDivergence(describeItem(it), got);
    this.timers.set(serial, { at: atNs, cb });
    return { id: serial };
  }
  clearTimer(handle: TimerHandle): void {
    const it = this.s.takeOutput();
    if (!Array.isArray(it) || it[0] !== OUTPUT_KINDS.clearTimer || it[1] !== handle.id) {
      throw new ReplayDivergence(describeItem(it), `clear timer #${handle.id}`);
    }
    this.timers.delete(handle.id);
  }
  fire(serial: number): void {
    const tm = this.timers.get(serial);
    if (!tm) throw new ReplayDivergence(`timer #${serial} fires now`, `the model has no timer #${serial} armed`);
    // No check against the deadline: a live clock may fire a little early
    // (Node's timers run on a cached millisecond loop time); the model copes.
    this.timers.delete(serial);
    tm.cb();
  }
}

class ReplayMemory implements GuestMemory {
  readonly shadow = new ShadowMemory();
  /** Last TD fetched (16-byte read) and QH (4-byte reads at a, a+4): the "involved" elements. */
  lastTd = -1;
  lastQh = -1;
  private prev4 = -1;
  constructor(private readonly s: ReplaySession) {}

  private track(addr: number, len: number): void {
    if (len === 16) this.lastTd = addr;
    else if (len === 4) {
      if (addr === this.prev4 + 4) this.lastQh = this.prev4;
      this.prev4 = addr;
    }
  }

  read(addr: number, buf: Uint8Array): void {
    const it = this.s.takeOutput();
    const n = buf.length;
    if (typeof it === 'number') {
      if (it !== addr || n !== 4) throw this.mismatch(it, addr, n);
      this.shadow.read(addr, buf);
      this.track(addr, 4);
      return;
    }
    if (Array.isArray(it)) {
      const a = it[0];
      if (typeof a === 'number') {
        const x = it[1];
        if (typeof x === 'number') {
          if (a !== addr || x !== n) throw this.mismatch(it, addr, n);
          this.shadow.read(addr, buf);
        } else {
          const bytes = fromHex(str(x, 'read data'));
          if (a !== addr || bytes.length !== n) throw this.mismatch(it, addr, n);
          buf.set(bytes);
          this.shadow.write(addr, bytes);
        }
        this.track(addr, n);
        return;
      }
      if (a === OUTPUT_KINDS.readFault) {
        if (it[1] !== addr || it[2] !== n) throw this.mismatch(it, addr, n);
        throw new GuestMemoryFault(addr, n, false);
      }
    }
    throw this.mismatch(it, addr, n);
  }

  private mismatch(it: Item, addr: number, n: number): ReplayDivergence {
    return new ReplayDivergence(describeItem(it), `read ${n} bytes at ${hex32(addr)}`, { addr });
  }

  write(addr: number, buf: Uint8Array): void {
    const it = this.s.takeOutput();
    const got = toHex(buf);
    if (Array.isArray(it) && (it[0] === OUTPUT_KINDS.write || it[0] === OUTPUT_KINDS.writeFault)) {
      const h = str(it[2], 'write data');
      if (it[1] !== addr || h !== got) {
        throw new ReplayDivergence(describeItem(it), `write ${hex32(addr)} = ${got}`, {
          addr: num(it[1], 'write address'),
          expected: fromHex(h),
          got: it[1] === addr ? buf.slice() : undefined,
        });
      }
      if (it[0] === OUTPUT_KINDS.writeFault) throw new GuestMemoryFault(addr, buf.length, true);
      this.shadow.write(addr, buf);
      return;
    }
    throw new ReplayDivergence(describeItem(it), `write ${hex32(addr)} = ${got}`, { addr, got: buf.slice() });
  }
}

class ReplayIrq implements IrqLine {
  constructor(private readonly s: ReplaySession) {}
  set(level: boolean): void {
    const it = this.s.takeOutput();
    if (!Array.isArray(it) || it[0] !== OUTPUT_KINDS.irq || it[1] !== (level ? 1 : 0)) {
      throw new ReplayDivergence(describeItem(it), `IRQ ${level ? 'asserted' : 'deasserted'}`);
    }
  }
}

/** A device that answers as the recorded one did, and checks what it is asked. */
class ReplayDevice implements UsbDevice {
  readonly speed: UsbSpeed;
  readonly productName: string;
  readonly vendorId: number;
  readonly productId: number;
  address: number;
  hooks: UsbPortHooks | null = null;
  private readonly pending = new Map<number, UsbPacket>();
  private readonly ids = new Map<UsbPacket, number>();

  constructor(
    private readonly s: ReplaySession,
    readonly port: number,
    id: DeviceIdentity,
  ) {
    if (id.speed !== 'low' && id.speed !== 'full') corrupt(`device speed ${JSON.stringify(id.speed)}`);
    this.speed = id.speed;
    this.productName = String(id.name);
    this.vendorId = num(id.vendorId, 'vendor id');
    this.productId = num(id.productId, 'product id');
    this.address = num(id.address, 'device address');
  }

  attach(hooks: UsbPortHooks): void {
    this.hooks = hooks;
  }
  detach(): void {
    this.hooks = null;
    this.pending.clear();
    this.ids.clear();
  }

  reset(): void {
    const it = this.s.takeOutput();
    if (!Array.isArray(it) || it[0] !== OUTPUT_KINDS.deviceReset || it[1] !== this.port) {
      throw new ReplayDivergence(describeItem(it), `USB reset of the device on port ${this.port + 1}`);
    }
    this.s.runNested(list(it[3], 'reset nested events'));
    this.address = num(it[2], 'address after reset');
  }

  handlePacket(p: UsbPacket): void {
    const it = this.s.takeOutput();
    const r = Array.isArray(it) ? it : null;
    const req = p.pid === PID_IN ? p.data.length : toHex(p.data);
    if (
      !r ||
      r[0] !== OUTPUT_KINDS.packet ||
      r[1] !== this.port ||
      r[2] !== p.pid ||
      r[3] !== p.devaddr ||
      r[4] !== p.endpoint ||
      r[5] !== (p.iso ? 1 : 0) ||
      r[6] !== req
    ) {
      throw new ReplayDivergence(describeItem(it), describePacket(this.port, p));
    }
    this.s.runNested(list(r[12], 'packet nested events'));
    p.status = status(r[7]);
    p.actualLength = num(r[8], 'actual length');
    const data = fromHex(str(r[9], 'packet IN data'));
    if (data.length > p.data.length) corrupt(`packet IN data longer than the buffer`);
    if (data.length) p.data.set(data);
    this.address = num(r[10], 'address after packet');
    const id = num(r[11], 'async id');
    if (p.status === 'async') {
      this.pending.set(id, p);
      this.ids.set(p, id);
    }
  }

  cancelPacket(p: UsbPacket): void {
    const it = this.s.takeOutput();
    const id = this.ids.get(p) ?? 0;
    if (!Array.isArray(it) || it[0] !== OUTPUT_KINDS.cancel || it[1] !== this.port || it[2] !== id) {
      throw new ReplayDivergence(describeItem(it), `cancel async packet #${id} on port ${this.port + 1}`);
    }
    this.pending.delete(id);
    this.ids.delete(p);
    this.s.runNested(list(it[3], 'cancel nested events'));
  }

  /** The device finishes an async packet (event 'C'). */
  complete(rec: Rec): void {
    const id = num(rec[3], 'async id');
    const p = this.pending.get(id);
    if (!p) throw new ReplayDivergence(`port ${this.port + 1} completes async packet #${id}`, `the model has no such packet pending`);
    this.pending.delete(id);
    this.ids.delete(p);
    p.status = status(rec[4]);
    p.actualLength = num(rec[5], 'actual length');
    const data = fromHex(str(rec[6], 'completion data'));
    if (data.length > p.data.length) corrupt('completion data longer than the buffer');
    if (data.length) p.data.set(data);
    this.address = num(rec[7], 'address after completion');
    if (!this.hooks) throw new ReplayDivergence(`port ${this.port + 1} completes a packet`, 'the device is not attached');
    this.hooks.complete(p);
  }

  saveState(): unknown {
    return null;
  }
  loadState(_state: unknown): void {}
}

// ------------------------------------------------------------------ session

class ReplaySession {
  readonly clock = new ReplayClock(this);
  readonly mem = new ReplayMemory(this);
  readonly irq = new ReplayIrq(this);
  fn: UhciPciFunction | null = null;
  readonly devices: (ReplayDevice | null)[] = [];
  private items: Rec = [];
  private pos = 0;
  private depth = 0;
  t = 0;
  event = 0;
  kind = '';
  /** Position in the top-level event when the divergence happened. */
  private topPos = 0;

  constructor(
    readonly header: TraceHeader,
    private readonly opts: ReplayOptions,
  ) {}

  /** The next output the recorded model produced, performing nested inputs on the way. */
  takeOutput(): Item {
    for (;;) {
      if (this.pos >= this.items.length) return END;
      const it = this.items[this.pos++];
      if (typeof it !== 'number' && Array.isArray(it) && isInputKind(it[0])) {
        this.perform(it, false);
        continue;
      }
      return it;
    }
  }

  /** Run the inputs a device made during a call into it. */
  runNested(nested: Rec): void {
    if (!nested.length) return;
    const saved = this.items;
    const savedPos = this.pos;
    this.items = nested;
    this.pos = 0;
    while (this.pos < nested.length) {
      const it = nested[this.pos++];
      if (!Array.isArray(it) || !isInputKind(it[0])) corrupt('device call holds a model output');
      this.perform(it, false);
    }
    this.items = saved;
    this.pos = savedPos;
  }

  private get model(): UhciPciFunction {
    if (!this.fn) corrupt(`event ${this.event} comes before the function was created`);
    return this.fn;
  }

  private device(port: unknown): ReplayDevice {
    const d = this.devices[num(port, 'port')];
    if (!d) throw new ReplayDivergence(`a device on port ${Number(port) + 1}`, 'nothing attached there');
    return d;
  }

  performTop(rec: Rec, event: number): void {
    this.event = event;
    this.kind = String(rec[0]);
    this.perform(rec, true);
  }

  /** Perform one input event and check its outputs and result. */
  perform(rec: Rec, top: boolean): void {
    const kind = rec[0] as string;
    const dt = num(rec[1], 'event time');
    if (top) {
      this.t += dt;
      this.clock.now = this.t;
    }
    if (rec.length < 4) corrupt(`event '${kind}' is too short`);
    const items = list(rec[rec.length - 1], 'event items');
    const expected = rec[rec.length - 2];
    const savedItems = this.items;
    const savedPos = this.pos;
    this.items = items;
    this.pos = 0;
    this.depth++;
    let got: unknown = 0;
    let threw: unknown = null;
    try {
      try {
        got = this.dispatch(kind, rec, expected);
      } catch (e) {
        if (e instanceof ReplayDivergence || e instanceof TraceFormatError) throw e;
        threw = e;
      }
      // Outputs the recorded model made that this one did not.
      const left = this.takeOutput();
      if (left !== END) {
        throw new ReplayDivergence(describeItem(left), `the model finished event '${kind}'`);
      }
      this.pos = items.length;
      this.compareResult(kind, expected, got, threw);
    } catch (e) {
      if (this.depth === 1) this.topPos = this.pos;
      throw e;
    } finally {
      this.depth--;
      this.items = savedItems;
      this.pos = savedPos;
    }
  }

  private compareResult(kind: string, expected: unknown, got: unknown, threw: unknown): void {
    const recordedError = expected && typeof expected === 'object' && !Array.isArray(expected) && 'e' in expected ? String((expected as { e: unknown }).e) : null;
    if (threw !== null) {
      const msg = threw instanceof Error ? threw.message : String(threw);
      if (recordedError === msg) return;
      throw new ReplayDivergence(recordedError !== null ? `error "${recordedError}"` : `result ${JSON.stringify(expected)}`, `error "${msg}"`);
    }
    if (recordedError !== null) throw new ReplayDivergence(`error "${recordedError}"`, `result ${JSON.stringify(got)}`);
    const same = typeof got === 'object' && got !== null ? JSON.stringify(got) === JSON.stringify(expected) : got === expected;
    if (!same) {
      const fmt = (v: unknown) => (typeof v === 'number' && (kind === 'cr' || kind === 'ir' || kind === 'pr') ? hex32(v) : JSON.stringify(v));
      throw new ReplayDivergence(`${CALL_NAMES[kind] ?? ''}returned ${fmt(expected)}`, `returned ${fmt(got)}`);
    }
  }

  private dispatch(kind: string, rec: Rec, expected: unknown): unknown {
    const size = (x: unknown): 1 | 2 | 4 => {
      if (x !== 1 && x !== 2 && x !== 4) corrupt(`access size ${JSON.stringify(x)}`);
      return x;
    };
    switch (kind) {
      case INPUT_KINDS.construct: {
        if (this.fn) corrupt('the function is created twice');
        const o = this.header.options;
        const opts: UhciPciFunctionOptions = {
          mem: this.mem,
          irq: this.irq,
          clock: this.clock,
          variant: o.variant,
          maxBatch: o.maxBatch,
          idleCoalesce: o.idleCoalesce,
          logger: this.opts.logger,
        };
        const fn = this.opts.createFunction ? this.opts.createFunction(opts) : new UhciPciFunction(opts);
        fn.config.onBarChange = (base) => {
          const it = this.takeOutput();
          if (!Array.isArray(it) || it[0] !== OUTPUT_KINDS.ioWindow || it[1] !== base) {
            throw new ReplayDivergence(describeItem(it), `I/O window ${base === null ? 'off' : `at ${hex32(base)}`}`);
          }
        };
        this.fn = fn;
        return 0;
      }
      case INPUT_KINDS.configRead:
        return this.model.configRead(num(rec[2], 'offset'), size(rec[3]));
      case INPUT_KINDS.configWrite:
        this.model.configWrite(num(rec[2], 'offset'), size(rec[3]), num(rec[4], 'value'));
        return 0;
      case INPUT_KINDS.ioRead:
        return this.model.ioRead(num(rec[2], 'offset'), size(rec[3]));
      case INPUT_KINDS.ioWrite:
        this.model.ioWrite(num(rec[2], 'offset'), size(rec[3]), num(rec[4], 'value'));
        return 0;
      case INPUT_KINDS.portRead: {
        const v = this.model.portRead(num(rec[2], 'port'), size(rec[3]));
        return v === undefined ? null : v;
      }
      case INPUT_KINDS.portWrite:
        return this.model.portWrite(num(rec[2], 'port'), size(rec[3]), num(rec[4], 'value'));
      case INPUT_KINDS.attach: {
        const port = num(rec[2], 'port');
        const id = rec[3];
        if (!id || typeof id !== 'object') corrupt('attach event without a device identity');
        const dev = new ReplayDevice(this, port, id as DeviceIdentity);
        this.model.attach(port, dev);
        this.devices[port] = dev;
        return 0;
      }
      case INPUT_KINDS.detach: {
        const port = num(rec[2], 'port');
        const d = this.model.detach(port);
        this.devices[port] = null;
        return d !== null;
      }
      case INPUT_KINDS.reset:
        this.model.reset();
        return 0;
      case INPUT_KINDS.save:
        return snapshotDigest(this.model.saveState());
      case INPUT_KINDS.load: {
        const addrs = Array.isArray(expected) ? expected : [];
        addrs.forEach((a, i) => {
          const d = this.devices[i];
          if (d && typeof a === 'number') d.address = a;
        });
        this.model.loadState(rec[2] as UhciPciFunctionState);
        return this.model.controller.ports.map((p) => (p.device ? p.device.address : null));
      }
      case INPUT_KINDS.timer:
        this.clock.fire(num(rec[2], 'timer serial'));
        return 0;
      case INPUT_KINDS.complete:
        this.device(rec[2]).complete(rec);
        return 0;
      case INPUT_KINDS.wakeup: {
        const d = this.device(rec[2]);
        if (!d.hooks) throw new ReplayDivergence('remote wakeup from an attached device', 'the device is not attached');
        d.hooks.wakeup();
        return 0;
      }
      case INPUT_KINDS.activity: {
        const d = this.device(rec[2]);
        if (!d.hooks) throw new ReplayDivergence('activity from an attached device', 'the device is not attached');
        d.hooks.activity?.();
        return 0;
      }
      case INPUT_KINDS.orphan:
        throw new ReplayDivergence(
          'the model acting outside any recorded input (the recording cannot be replayed here)',
          'nothing (the model only acts on inputs)',
        );
      default:
        corrupt(`unknown event kind ${JSON.stringify(kind)}`);
    }
  }

  /** Turn a ReplayDivergence into a report with the model's state and the schedule. */
  report(e: ReplayDivergence): Divergence {
    const fn = this.fn;
    return {
      event: this.event,
      kind: this.kind,
      tNs: this.t,
      frnum: fn ? fn.controller.frnum : 0,
      frames: fn ? fn.controller.framesProcessed : 0,
      where: this.topPos > 0 ? `at output #${this.topPos} of the event` : 'at the start of the event',
      expected: e.expected,
      got: e.got,
      context: divergenceContext(e, this.mem, fn),
    };
  }
}

/**
 * Replay a trace against the current model. Resolves with ok or the first
 * divergence; rejects with TraceFormatError when the file cannot be used
 * (also when it turns out corrupt after a divergence was seen).
 */
export async function replayTrace(source: TraceSource, opts: ReplayOptions = {}): Promise<ReplayResult> {
  const name = typeof source === 'string' ? source : 'trace';
  let session: ReplaySession | null = null;
  let divergence: Divergence | null = null;
  const { header, summary, events } = await readTrace(source, {
    header: (h) => (session = new ReplaySession(h, opts)),
    event: (rec, n) => {
      if (divergence || !session) return; // keep reading: the file must still be intact
      try {
        session.performTop(rec, n);
      } catch (e) {
        if (!(e instanceof ReplayDivergence)) throw e;
        divergence = session.report(e);
      }
    },
  });
  const s = session as ReplaySession | null;
  if (!s) throw new TraceFormatError(`${name} is empty (no header line)`);
  if (summary.events !== events) {
    throw new TraceFormatError(`${name} is corrupt: the summary counts ${summary.events} events, the file has ${events}`);
  }
  if (divergence) return { ok: false, header, events, divergence };
  const frames = s.fn ? s.fn.controller.framesProcessed : 0;
  const skipped = s.fn ? s.fn.controller.framesSkipped : 0;
  if (frames !== summary.frames || skipped !== summary.skipped) {
    const e = new ReplayDivergence(`${summary.frames} frames processed, ${summary.skipped} skipped`, `${frames} frames processed, ${skipped} skipped`);
    const d = s.report(e);
    d.where = 'end of the trace';
    return { ok: false, header, events, divergence: d };
  }
  return { ok: true, header, summary, events, frames };
}
