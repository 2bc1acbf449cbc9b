/**
 * Decodes a uhci-dm trace (traces/README.md) into what a driver developer
 * reasons about: frames with their schedule walk (frame list entry → QHs →
 * TDs, each TD with the token the model fetched, the status it wrote back
 * and the data that moved) and the events between frames (register and
 * config accesses, IRQ edges, hot plug, device resets, async completions).
 *
 * Nothing is re-executed: the walk is read off the trace's own record of
 * what the model fetched and wrote, in order, with guest memory rebuilt
 * along the way in a ShadowMemory exactly as the recorder kept it. The
 * model's fetch pattern (UHCI DG §3.4; src/uhci/schedule.ts) is what makes
 * this possible:
 *  - each frame starts with a 4-byte read of its frame list entry
 *    (FLBASEADD + (FRNUM & 0x3ff) * 4), which lies in the 4 KiB frame list;
 *  - a QH is fetched as two dword reads (head at a, element at a + 4);
 *  - a TD is fetched as one 16-byte read (or four dword reads at a..a+12);
 *  - an OUT/SETUP TD's data is read from its buffer (MaxLen bytes) right
 *    after the TD, before the packet goes to the device;
 *  - results are written back as the TD's ctrl dword (a + 4), the QH's
 *    element (qh + 4) and IN data at the TD's buffer.
 */
import { ShadowMemory } from '../trace/shadow-memory.js';
import { INPUT_KINDS, OUTPUT_KINDS, corruptTrace as corrupt, fromHex, traceNumber as num, isInputKind, type DeviceIdentity } from '../trace/format.js';
import { readTrace, type TraceSource } from '../trace/reader.js';
import { LINK, TD_CTRL, decodeTd, tokenMaxLen, tokenPid } from '../uhci/descriptors.js';
import { MAX_TD_LENGTH, tokenProblem } from '../uhci/td-status.js';
import { PID_IN, PID_OUT, PID_SETUP } from '../usb/packet.js';
import { BoundedMap, BoundedSet, DEFAULT_MEMORY_CAP, DropCounter } from './bounded.js';
import type { BoundaryEvent, DecodedTrace, DecoderSink, EventBase, FrameRecord, TdVisit, WalkStep } from './decoded-trace.js';
import { RegisterMirror, type MirroredState } from './register-mirror.js';
import { writeBackResult } from './td-outcome.js';

function le32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

type Rec = unknown[];

interface WordRun {
  addr: number;
  bytes: Uint8Array;
  n: number;
  changed: boolean;
  previous: Uint8Array;
}

/** Streams one trace through a DecoderSink. */
export class TraceDecoder {
  readonly shadow = new ShadowMemory();
  readonly regs = new RegisterMirror((reset) => {
    if (reset) this.asyncByTd.clear();
    this.haltEpoch++;
  });
  /** Frames processed so far. */
  frames = 0;
  tNs = 0;
  eventNo = 0;
  /** Times the controller was halted or reset (a TD cannot be "continuously linked" across one). */
  haltEpoch = 0;

  private frame: FrameRecord | null = null;
  private td: TdVisit | null = null;
  private expectData: { addr: number; len: number } | null = null;
  private qhCtx: { addr: number; head: number } | null = null;
  private expectTd: number | null = null;
  private lastNode = -1;
  private run: WordRun | null = null;
  /**
   * What the decoder remembers per guest address is bounded (a hostile
   * guest can touch millions of them): each collection keeps at most
   * `memoryCap` entries and forgets the oldest, counted in `dropped`.
   */
  private readonly drops = new DropCounter();
  private readonly activeSince: BoundedMap<number, { token: number; ns: number; frame: number }>;
  /** 4 KiB pages of guest memory accessed without a fault. */
  private readonly mappedPages: BoundedSet<number>;
  /** Frame list entries, QHs and TDs the walk has fetched before (a first fetch is not a change). */
  private readonly seen: BoundedSet<number>;
  /** Async packets by TD address: port, id, OUT data. */
  private readonly asyncByTd: BoundedMap<number, { port: number; id: number; out: Uint8Array | null }>;
  private effects: BoundaryEvent[] = [];

  constructor(
    private readonly sink: DecoderSink,
    memoryCap = DEFAULT_MEMORY_CAP,
  ) {
    this.activeSince = new BoundedMap(memoryCap, this.drops);
    this.mappedPages = new BoundedSet(memoryCap, this.drops);
    this.seen = new BoundedSet(memoryCap, this.drops);
    this.asyncByTd = new BoundedMap(memoryCap, this.drops);
  }

  /** Entries forgotten at the memory cap so far (0: the decoder remembers everything it saw). */
  get dropped(): number {
    return this.drops.dropped;
  }

  // ------------------------------------------------------------ events

  /** Decode one top-level event line. */
  event(rec: Rec): void {
    this.eventNo++;
    this.tNs += num(rec[1], 'event time');
    this.effects = [];
    const main = this.input(rec);
    this.closeFrame();
    if (main) this.sink.event(main);
    for (const e of this.effects) this.sink.event(e);
    this.effects = [];
  }

  private base(): EventBase {
    return { tNs: this.tNs, event: this.eventNo, frame: this.frames };
  }

  /** Perform an input (top level or nested); returns its event record. */
  private input(rec: Rec): BoundaryEvent | null {
    const kind = rec[0];
    if (typeof kind !== 'string' || rec.length < 4) corrupt(`event ${this.eventNo} is not an event`);
    const items = rec[rec.length - 1];
    if (!Array.isArray(items)) corrupt(`event ${this.eventNo} has no item list`);
    const result = rec[rec.length - 2];
    let ev: BoundaryEvent | null = null;
    const b = this.base();
    switch (kind) {
      case INPUT_KINDS.configRead:
        ev = { ...b, kind: 'config', write: false, offset: num(rec[2], 'offset'), size: num(rec[3], 'size'), value: typeof result === 'number' ? result : 0 };
        break;
      case INPUT_KINDS.configWrite:
        ev = { ...b, kind: 'config', write: true, offset: num(rec[2], 'offset'), size: num(rec[3], 'size'), value: num(rec[4], 'value') };
        break;
      case INPUT_KINDS.ioRead:
      case INPUT_KINDS.ioWrite:
      case INPUT_KINDS.portRead:
      case INPUT_KINDS.portWrite: {
        const write = kind === INPUT_KINDS.ioWrite || kind === INPUT_KINDS.portWrite;
        const absolute = kind === INPUT_KINDS.portRead || kind === INPUT_KINDS.portWrite;
        const where = num(rec[2], 'port');
        const size = num(rec[3], 'size');
        // Frames the controller caught up on run before the access itself.
        this.items(items);
        const claimed = absolute ? (write ? result === true : result !== null) : true;
        const base = this.regs.ioBase;
        const offset = absolute ? (base === null ? -1 : where - base) : where & 0x1f;
        const value = write ? num(rec[4], 'value') : typeof result === 'number' ? result : 0;
        if (!claimed || offset < 0 || offset >= 0x20) return null;
        if (write) this.regs.write(offset, size, value);
        else this.regs.read(offset, size, value);
        return { ...b, kind: 'io', write, offset, size, value, claimed };
      }
      case INPUT_KINDS.attach: {
        const id = rec[3] as DeviceIdentity;
        ev = { ...b, kind: 'attach', port: num(rec[2], 'port'), identity: id };
        break;
      }
      case INPUT_KINDS.detach:
        ev = { ...b, kind: 'detach', port: num(rec[2], 'port'), hadDevice: result === true };
        break;
      case INPUT_KINDS.reset:
        this.regs.reset();
        this.regs.ioBase = null;
        ev = { ...b, kind: 'pci-reset' };
        break;
      case INPUT_KINDS.save:
        ev = { ...b, kind: 'save' };
        break;
      case INPUT_KINDS.load: {
        const st = rec[2] as { controller?: MirroredState } | null;
        if (st?.controller) this.regs.load(st.controller);
        this.asyncByTd.clear();
        this.haltEpoch++;
        ev = { ...b, kind: 'load' };
        break;
      }
      case INPUT_KINDS.complete: {
        const port = num(rec[2], 'port');
        const id = num(rec[3], 'async id');
        ev = { ...b, kind: 'complete', port, asyncId: id, status: String(rec[4]), actualLength: num(rec[5], 'actual length'), data: String(rec[6] ?? '') };
        break;
      }
      case INPUT_KINDS.wakeup:
        ev = { ...b, kind: 'wakeup', port: num(rec[2], 'port') };
        break;
      case INPUT_KINDS.activity:
        ev = { ...b, kind: 'activity', port: num(rec[2], 'port') };
        break;
      case INPUT_KINDS.orphan:
        ev = { ...b, kind: 'orphan' };
        break;
      case INPUT_KINDS.construct:
      case INPUT_KINDS.timer:
        break;
      default:
        corrupt(`unknown event kind ${JSON.stringify(kind)}`);
    }
    this.items(items);
    return ev;
  }

  // ------------------------------------------------------------- items

  private items(items: unknown[]): void {
    for (const it of items) this.item(it);
    this.flushRun();
  }

  private item(it: unknown): void {
    if (typeof it === 'number') {
      this.read(it, this.shadow.bytes(it, 4), false, null);
      return;
    }
    if (!Array.isArray(it)) corrupt('an item is neither a number nor a list');
    const k = it[0];
    if (typeof k === 'number') {
      const x = it[1];
      if (typeof x === 'number') this.read(k, this.shadow.bytes(k, x), false, null);
      else {
        const bytes = fromHex(String(x));
        const previous = this.shadow.bytes(k, bytes.length);
        this.shadow.write(k, bytes);
        this.read(k, bytes, true, previous);
      }
      return;
    }
    if (isInputKind(k)) {
      // An input that happened while the model was busy with another one.
      this.flushRun();
      const ev = this.input(it);
      if (ev) this.effects.push(ev);
      return;
    }
    switch (k) {
      case OUTPUT_KINDS.write:
      case OUTPUT_KINDS.writeFault: {
        this.flushRun();
        const addr = num(it[1], 'write address');
        const bytes = fromHex(String(it[2]));
        if (k === OUTPUT_KINDS.write) this.shadow.write(addr, bytes);
        this.write(addr, bytes, k === OUTPUT_KINDS.writeFault);
        return;
      }
      case OUTPUT_KINDS.readFault:
        this.flushRun();
        this.readFault(num(it[1], 'fault address'), num(it[2], 'fault length'));
        return;
      case OUTPUT_KINDS.irq: {
        this.flushRun();
        const level = it[1] ? 1 : 0;
        this.regs.irq = level;
        const f = this.frame;
        if (f && level === 1) this.finishTd();
        if (f && level === 1 && (f.ioc || f.spd || f.error)) {
          // Raised at the end of the frame by its own interrupt causes.
          f.irq = 1;
          f.busy = true;
        } else this.effects.push({ ...this.base(), kind: 'irq', level });
        return;
      }
      case OUTPUT_KINDS.packet:
        this.flushRun();
        this.packet(it);
        return;
      case OUTPUT_KINDS.cancel: {
        this.flushRun();
        const port = num(it[1], 'port');
        const id = num(it[2], 'async id');
        for (const [a, p] of this.asyncByTd) if (p.id === id && p.port === port) this.asyncByTd.delete(a);
        if (this.frame) {
          this.frame.steps.push({ kind: 'cancel', port, asyncId: id });
          this.frame.busy = true;
        } else this.effects.push({ ...this.base(), kind: 'cancel', port, asyncId: id });
        if (Array.isArray(it[3])) this.items(it[3]);
        return;
      }
      case OUTPUT_KINDS.deviceReset: {
        this.flushRun();
        const port = num(it[1], 'port');
        this.effects.push({ ...this.base(), kind: 'device-reset', port, address: num(it[2], 'address') });
        if (Array.isArray(it[3])) this.items(it[3]);
        return;
      }
      case OUTPUT_KINDS.ioWindow: {
        const base = it[1] === null ? null : num(it[1], 'I/O base');
        this.regs.ioBase = base;
        this.effects.push({ ...this.base(), kind: 'io-window', base });
        return;
      }
      case OUTPUT_KINDS.setTimer:
      case OUTPUT_KINDS.clearTimer:
        return;
      default:
        corrupt(`unknown item ${JSON.stringify(it).slice(0, 60)}`);
    }
  }

  // -------------------------------------------------------- the walk

  private read(addr: number, bytes: Uint8Array, changed: boolean, previous: Uint8Array | null): void {
    const len = bytes.length;
    this.mappedPages.add(Math.floor(addr / 4096));
    const exp = this.expectData;
    if (exp && this.td && addr === exp.addr && len === exp.len) {
      this.flushRun();
      this.expectData = null;
      this.td.out = bytes.slice();
      return;
    }
    this.expectData = null;
    if (this.regs.inFrameList(addr, len) && !this.continuesRun(addr)) {
      this.flushRun();
      this.startFrame(addr);
      const link = le32(bytes, 0);
      const seen = this.seen.has(addr);
      if (!seen) this.seen.add(addr);
      this.frame!.steps.push({ kind: 'fl', index: (addr - this.regs.flBase) >> 2, addr, link, changed: changed && seen });
      this.lastNode = addr;
      if (changed && seen) this.frame!.busy = true;
      return;
    }
    if (len === 4) {
      const r = this.run;
      if (r && addr === r.addr + 4 * r.n && r.n < 4) {
        r.bytes.set(bytes, 4 * r.n);
        r.previous.set(previous ?? bytes, 4 * r.n);
        r.changed ||= changed;
        r.n++;
        if (r.n === 4) {
          this.run = null;
          this.tdFetched(r.addr, r.bytes, r.changed, r.changed ? r.previous : null);
        }
        return;
      }
      this.flushRun();
      const nr: WordRun = { addr, bytes: new Uint8Array(16), n: 1, changed, previous: new Uint8Array(16) };
      nr.bytes.set(bytes, 0);
      nr.previous.set(previous ?? bytes, 0);
      this.run = nr;
      return;
    }
    this.flushRun();
    if (len === 16) {
      this.tdFetched(addr, bytes, changed, previous);
      return;
    }
    this.step({ kind: 'mem', addr, length: len, write: false, hex: Buffer.from(bytes).toString('hex') });
  }

  /** A dword read that continues a QH/TD word run (never the case for the frame list, but be safe). */
  private continuesRun(addr: number): boolean {
    const r = this.run;
    return r !== null && addr === r.addr + 4 * r.n && r.n < 4 && r.n !== 2;
  }

  private flushRun(): void {
    const r = this.run;
    if (!r) return;
    this.run = null;
    if (r.n === 2) {
      this.qhFetched(r.addr, le32(r.bytes, 0), le32(r.bytes, 4), r.changed);
      return;
    }
    for (let i = 0; i < r.n; i++) {
      this.step({ kind: 'mem', addr: r.addr + 4 * i, length: 4, write: false, hex: Buffer.from(r.bytes.subarray(4 * i, 4 * i + 4)).toString('hex') });
    }
  }

  private step(s: WalkStep): void {
    if (!this.frame) this.startFrame(-1);
    this.frame!.steps.push(s);
    if (s.kind !== 'fl' && s.kind !== 'qh' && s.kind !== 'td') this.frame!.busy = true;
  }

  private startFrame(flAddr: number): void {
    this.closeFrame();
    this.frames++;
    if (flAddr >= 0) this.regs.startFrame(flAddr);
    this.frame = { serial: this.frames, frnum: this.regs.frnum, tNs: this.tNs, event: this.eventNo, steps: [], irq: null, ioc: false, spd: false, error: false, busy: false };
    this.qhCtx = null;
    this.expectTd = null;
    this.td = null;
  }

  private closeFrame(): void {
    this.flushRun();
    const f = this.frame;
    if (!f) return;
    this.finishTd();
    this.frame = null;
    this.regs.endFrame();
    this.sink.frame(f);
  }

  private qhFetched(addr: number, head: number, element: number, changedBytes: boolean): void {
    this.finishTd();
    const changed = changedBytes && this.seen.has(addr);
    this.seen.add(addr);
    this.step({ kind: 'qh', addr, head, element, changed });
    if (changed) this.frame!.busy = true;
    this.lastNode = addr;
    if (element & (LINK.bit.T | LINK.bit.Q)) {
      this.qhCtx = null;
      this.expectTd = null;
    } else {
      this.qhCtx = { addr, head };
      this.expectTd = (element & LINK.bit.PTR) >>> 0;
    }
  }

  private tdFetched(addr: number, bytes: Uint8Array, changedBytes: boolean, previous: Uint8Array | null): void {
    this.finishTd();
    const td = decodeTd(bytes);
    const fresh = !this.seen.has(addr);
    if (fresh) this.seen.add(addr);
    const changed = changedBytes && !fresh;
    const via = this.qhCtx && this.expectTd === addr ? this.qhCtx.addr : -1;
    let since = this.activeSince.get(addr);
    if (td.ctrl & TD_CTRL.bit.ACTIVE) {
      if (!since || since.token !== td.token || changed) {
        since = { token: td.token, ns: this.tNs, frame: this.frames };
        this.activeSince.set(addr, since);
      }
    }
    const visit: TdVisit = {
      addr,
      td,
      changed,
      previous: changed && previous ? decodeTd(previous) : null,
      via,
      ctrlAfter: null,
      result: 'not-run',
      port: null,
      out: null,
      in: null,
      elementAdvance: null,
      activeSinceNs: since ? since.ns : this.tNs,
      activeSinceFrame: since ? since.frame : this.frames,
    };
    this.step({ kind: 'td', visit });
    // Work the guest just queued (a new or rewritten active TD) is worth showing.
    if ((changed || fresh) && td.ctrl & TD_CTRL.bit.ACTIVE) this.frame!.busy = true;
    this.td = visit;
    this.lastNode = addr;
    const pid = tokenPid(td.token);
    const maxLen = tokenMaxLen(td.token);
    if (td.ctrl & TD_CTRL.bit.ACTIVE && (pid === PID_OUT || pid === PID_SETUP) && maxLen > 0 && maxLen <= MAX_TD_LENGTH && !this.asyncByTd.has(addr)) {
      this.expectData = { addr: td.buffer >>> 0, len: maxLen };
    }
  }

  private write(addr: number, bytes: Uint8Array, fault: boolean): void {
    const v = this.td;
    const f = this.frame;
    const page = Math.floor(addr / 4096);
    if (fault) {
      this.step({ kind: 'fault', addr, length: bytes.length, write: true, what: v && addr === v.td.buffer ? 'data buffer' : 'memory', from: v ? v.addr : -1, wasMapped: this.mappedPages.has(page) });
      return;
    }
    this.mappedPages.add(page);
    if (v && addr === v.addr + 4 && bytes.length === 4) {
      v.ctrlAfter = le32(bytes, 0);
      if (f) f.busy ||= !(v.ctrlAfter & TD_CTRL.bit.ACTIVE) || (v.ctrlAfter & ~TD_CTRL.bit.NAK) !== (v.td.ctrl & ~TD_CTRL.bit.NAK);
      return;
    }
    if (bytes.length === 4 && this.qhCtx && addr === this.qhCtx.addr + 4) {
      const e = le32(bytes, 0);
      if (v) v.elementAdvance = e;
      this.expectTd = e & (LINK.bit.T | LINK.bit.Q) ? null : (e & LINK.bit.PTR) >>> 0;
      if (f) f.busy = true;
      return;
    }
    if (v && addr === v.td.buffer && tokenPid(v.td.token) === PID_IN) {
      v.in = bytes.slice();
      if (f) f.busy = true;
      return;
    }
    this.step({ kind: 'mem', addr, length: bytes.length, write: true, hex: Buffer.from(bytes).toString('hex') });
  }

  private readFault(addr: number, len: number): void {
    const what: 'frame list entry' | 'QH' | 'TD' | 'data buffer' | 'memory' = this.regs.inFrameList(addr, len)
      ? 'frame list entry'
      : this.expectData && addr === this.expectData.addr
        ? 'data buffer'
        : len === 16
          ? 'TD'
          : len === 4
            ? 'QH'
            : 'memory';
    if (what === 'frame list entry') this.startFrame(addr);
    const from = what === 'data buffer' && this.td ? this.td.addr : what === 'frame list entry' ? -1 : this.lastNode;
    this.step({ kind: 'fault', addr, length: len, write: false, what, from, wasMapped: this.mappedPages.has(Math.floor(addr / 4096)) });
    this.expectData = null;
    const f = this.frame!;
    f.error = true;
  }

  private packet(it: unknown[]): void {
    const v = this.td;
    const port = num(it[1], 'port');
    const status = String(it[7]);
    const id = num(it[11], 'async id');
    if (v) {
      v.port = port;
      if (typeof it[6] === 'string' && !v.out && it[6].length) v.out = fromHex(it[6]);
      if (status === 'async') this.asyncByTd.set(v.addr, { port, id, out: v.out });
      else if (status === 'nak') v.result = 'nak';
    }
    if (Array.isArray(it[12])) this.items(it[12]);
    if (this.frame && status !== 'nak') this.frame.busy = true;
  }

  /** Settle the current TD's result and the frame's interrupt causes. */
  private finishTd(): void {
    const v = this.td;
    if (!v) return;
    this.td = null;
    this.expectData = null;
    const f = this.frame;
    const before = v.td.ctrl;
    const pending = this.asyncByTd.get(v.addr);
    if (!(before & TD_CTRL.bit.ACTIVE)) {
      v.result = 'inactive';
      // An inactive TD with IOC still requests the interrupt (QEMU; schedule.ts handleTd).
      if (before & TD_CTRL.bit.IOC && f) f.ioc = true;
      return;
    }
    const after = v.ctrlAfter;
    if (after === null) {
      if (v.result === 'nak') return;
      if (pending) {
        v.result = v.port !== null ? 'async' : 'in-flight';
        if (v.port === null) v.port = pending.port;
        if (!v.out) v.out = pending.out;
      } else {
        v.result = 'not-run';
        // An invalid TD stops the controller with HC Process Error (schedule.ts handleTd), which interrupts.
        if (f && tokenProblem(v.td.token) !== null) f.error = true;
      }
      return;
    }
    if (pending) {
      if (v.port === null) v.port = pending.port;
      if (!v.out) v.out = pending.out;
    }
    v.result = writeBackResult(before, after, v.td.token);
    if (after & TD_CTRL.bit.ACTIVE) return;
    this.asyncByTd.delete(v.addr);
    this.activeSince.delete(v.addr);
    if (v.result === 'short' && after & TD_CTRL.bit.SPD && f) f.spd = true;
    if (f) {
      if (after & TD_CTRL.bit.IOC) f.ioc = true;
      if (v.result !== 'ok' && v.result !== 'short') f.error = true;
    }
  }
}


/** Decode a whole trace file (or its bytes) into `sink`. Throws TraceFormatError for unusable files. */
export async function decodeTrace(source: TraceSource, sink: DecoderSink, onDecoder?: (d: TraceDecoder) => void, memoryCap?: number): Promise<DecodedTrace> {
  const dec = new TraceDecoder(sink, memoryCap);
  onDecoder?.(dec);
  const r = await readTrace(source, { event: (rec) => dec.event(rec) });
  return { ...r, frames: dec.frames };
}
