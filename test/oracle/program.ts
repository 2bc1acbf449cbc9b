/**
 * Oracle programs: what a guest driver does to the UHCI function, written as
 * plain data so the same program runs on QEMU and on the model, and a builder
 * that lays out schedules (frame list → QH → TD) in a fixed region of guest RAM.
 *
 * Guest memory map used by every program (below 1 MiB is left alone):
 *   0x100000  frame list (1024 links, 4 KiB aligned — UHCI DG §2.1.5)
 *   0x101000  QHs and TDs (16-byte aligned — UHCI DG §3.2, §3.3)
 *   0x102000  data buffers
 */
import {
  encodeQh,
  encodeTd,
  makeToken,
  LINK,
  TD_CTRL,
} from '../../src/uhci/descriptors.js';
import { PID_IN, PID_OUT, PID_SETUP } from '../../src/usb/packet.js';
import type { IoSize } from './target.js';
import { PORTSC, USBCMD, REG } from '../../src/uhci/registers.js';

export const IO_BASE = 0xc000;
export const FL_BASE = 0x100000;
export const STRUCT_BASE = 0x101000;
export const STRUCT_END = 0x102000;
export const BUF_BASE = 0x102000;
export const BUF_END = 0x104000;
/** The anchor QH every frame-list entry points to (set up by the prologue). */
export const ANCHOR_QH = STRUCT_BASE;

export type Step =
  /** PCI config read of the UHCI function (observed). */
  | { op: 'cfgRead'; offset: number; size: IoSize }
  | { op: 'cfgWrite'; offset: number; size: IoSize; value: number }
  /** Remember a config dword per side / write it back (undo a program's config changes). */
  | { op: 'cfgSave'; offset: number }
  | { op: 'cfgRestore'; offset: number }
  /** Port read at IO_BASE + offset (observed, `mask` applied; mask 0 = not compared). */
  | { op: 'ioRead'; offset: number; size: IoSize; mask?: number }
  | { op: 'ioWrite'; offset: number; size: IoSize; value: number }
  | { op: 'memWrite'; addr: number; bytes: Uint8Array }
  | { op: 'memFill'; addr: number; len: number; byte: number }
  | { op: 'wait'; ms: number }
  /**
   * Let the schedule run until every TD in `tds` is inactive, or nothing in the
   * observed memory changes for a few frames, or `maxFrames` pass; observes
   * which of these ended the wait.
   */
  | { op: 'runUntilQuiet'; tds: number[]; maxFrames: number }
  /** Observe whether FRNUM moves over a few milliseconds. */
  | { op: 'frnumMoves' }
  /** Observe the register file (FRNUM only if `frnum`), the IRQ level and the program's memory. */
  | { op: 'observe'; frnum: boolean };

export interface Region {
  addr: number;
  len: number;
}

export interface Program {
  /** Unique, reproducible name, e.g. `gen:control#1234` or `hand:cfg-dump`. */
  name: string;
  steps: Step[];
  /** Memory compared by `observe` (schedule structures and buffers in use). */
  regions: Region[];
  /** What lives where, for decoding memory differences. */
  tds: number[];
  qhs: number[];
  buffers: Region[];
}

export interface TdSpec {
  pid: number;
  dev: number;
  ep: number;
  toggle?: number;
  /** Bytes the TD may move (0..1280); the token encodes maxLen - 1. */
  maxLen: number;
  /** OUT/SETUP payload (written to the buffer). */
  data?: Uint8Array;
  ioc?: boolean;
  spd?: boolean;
  cerr?: number;
  active?: boolean;
  /** Depth-first flag on this TD's link (Vf). */
  depthFirst?: boolean;
  /** Extra raw ctrl bits (e.g. LS, IOS). */
  extraCtrl?: number;
  /** Use this token instead of building one (invalid PIDs etc.). */
  rawToken?: number;
}

export function setupPacket(bmRequestType: number, bRequest: number, wValue: number, wIndex: number, wLength: number): Uint8Array {
  return Uint8Array.from([
    bmRequestType & 0xff,
    bRequest & 0xff,
    wValue & 0xff,
    (wValue >>> 8) & 0xff,
    wIndex & 0xff,
    (wIndex >>> 8) & 0xff,
    wLength & 0xff,
    (wLength >>> 8) & 0xff,
  ]);
}

export interface ControlSpec {
  dev: number;
  ep?: number;
  setup: Uint8Array;
  /** Data stage packet size (bytes per TD). */
  packet: number;
  /** For OUT data stages: the payload. */
  outData?: Uint8Array;
  spd?: boolean;
  /** IOC on: 'last' TD only, 'all', or none. */
  ioc?: 'last' | 'all' | 'none';
  cerr?: number;
  depthFirst?: boolean;
  /** Leave out the status stage. */
  noStatus?: boolean;
}

/** Builds a program: steps plus memory layout bookkeeping. */
export class ProgramBuilder {
  readonly steps: Step[] = [];
  readonly tds: number[] = [];
  readonly qhs: number[] = [];
  readonly buffers: Region[] = [];
  private structTop = ANCHOR_QH + 16;
  private bufTop = BUF_BASE;
  /** USBCMD bits the program keeps set besides RS (CF, MAXP, ...). */
  cmdBits = USBCMD.bit.MAXP | USBCMD.bit.CF;

  constructor(readonly name: string) {
    this.qhs.push(ANCHOR_QH);
  }

  build(): Program {
    const regions: Region[] = [{ addr: STRUCT_BASE, len: this.structTop - STRUCT_BASE }];
    if (this.bufTop > BUF_BASE) regions.push({ addr: BUF_BASE, len: this.bufTop - BUF_BASE });
    return { name: this.name, steps: this.steps, regions, tds: this.tds, qhs: this.qhs, buffers: this.buffers };
  }

  step(s: Step): this {
    this.steps.push(s);
    return this;
  }
  ioWrite(offset: number, size: IoSize, value: number): this {
    return this.step({ op: 'ioWrite', offset, size, value });
  }
  ioRead(offset: number, size: IoSize, mask?: number): this {
    return this.step(mask === undefined ? { op: 'ioRead', offset, size } : { op: 'ioRead', offset, size, mask });
  }
  wait(ms: number): this {
    return this.step({ op: 'wait', ms });
  }
  observe(frnum = false): this {
    return this.step({ op: 'observe', frnum });
  }

  allocTd(): number {
    const a = this.structTop;
    if (a + 16 > STRUCT_END) throw new RangeError(`${this.name}: schedule area full`);
    this.structTop += 16;
    this.tds.push(a);
    return a;
  }
  allocQh(): number {
    const a = this.structTop;
    if (a + 16 > STRUCT_END) throw new RangeError(`${this.name}: schedule area full`);
    this.structTop += 16;
    this.qhs.push(a);
    return a;
  }
  allocBuf(len: number): number {
    const a = this.bufTop;
    const size = Math.max(16, (len + 15) & ~15);
    if (a + size > BUF_END) throw new RangeError(`${this.name}: buffer area full`);
    this.bufTop += size;
    this.buffers.push({ addr: a, len: size });
    return a;
  }

  writeQh(addr: number, head: number, element: number): void {
    this.step({ op: 'memWrite', addr, bytes: encodeQh({ head: head >>> 0, element: element >>> 0 }) });
  }
  writeLink(addr: number, link: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, link >>> 0, true);
    this.step({ op: 'memWrite', addr, bytes: b });
  }

  /**
   * Write a chain of TDs; returns their addresses. Each links to the next
   * (Vf per spec); the last links to `tail` (default: terminate).
   */
  tdChain(specs: TdSpec[], tail: number = LINK.bit.T): number[] {
    const addrs = specs.map(() => this.allocTd());
    specs.forEach((s, i) => {
      const next = i + 1 < addrs.length ? addrs[i + 1]! : tail;
      const nextIsPtr = i + 1 < addrs.length;
      const link = nextIsPtr ? (next | (s.depthFirst ? LINK.bit.VF : 0)) >>> 0 : next;
      let buffer = 0;
      if (s.maxLen > 0) {
        buffer = this.allocBuf(s.maxLen);
        if (s.data) this.step({ op: 'memWrite', addr: buffer, bytes: s.data.slice(0, s.maxLen) });
      }
      const ctrl =
        ((s.active ?? true ? TD_CTRL.bit.ACTIVE : 0) |
          (s.ioc ? TD_CTRL.bit.IOC : 0) |
          (s.spd ? TD_CTRL.bit.SPD : 0) |
          ((s.cerr ?? 3) << TD_CTRL.lsb.CERR) |
          (s.extraCtrl ?? 0)) >>>
        0;
      const token = s.rawToken ?? makeToken(s.pid, s.dev, s.ep, s.toggle ?? 0, s.maxLen);
      this.step({ op: 'memWrite', addr: addrs[i]!, bytes: encodeTd({ link, ctrl, token, buffer }) });
    });
    return addrs;
  }

  /** TD specs of a control transfer: SETUP, data stage, status stage (USB 2.0 §8.5.3). */
  controlTds(c: ControlSpec): TdSpec[] {
    const ep = c.ep ?? 0;
    const cerr = c.cerr ?? 3;
    const df = c.depthFirst ?? true;
    const specs: TdSpec[] = [{ pid: PID_SETUP, dev: c.dev, ep, toggle: 0, maxLen: 8, data: c.setup, cerr, depthFirst: df }];
    const wLength = c.setup[6]! | (c.setup[7]! << 8);
    const isIn = (c.setup[0]! & 0x80) !== 0;
    let toggle = 1;
    for (let off = 0; off < wLength; off += c.packet) {
      const n = Math.min(c.packet, wLength - off);
      specs.push({
        pid: isIn ? PID_IN : PID_OUT,
        dev: c.dev,
        ep,
        toggle,
        maxLen: n,
        data: isIn ? undefined : c.outData?.slice(off, off + n) ?? new Uint8Array(n).fill(0x5a),
        spd: isIn && c.spd,
        cerr,
        depthFirst: df,
      });
      toggle ^= 1;
    }
    if (!c.noStatus) {
      specs.push({ pid: isIn && wLength > 0 ? PID_OUT : PID_IN, dev: c.dev, ep, toggle: 1, maxLen: 0, cerr, depthFirst: df });
    }
    const ioc = c.ioc ?? 'last';
    if (ioc === 'all') specs.forEach((s) => (s.ioc = true));
    else if (ioc === 'last') specs[specs.length - 1]!.ioc = true;
    return specs;
  }

  /** A QH whose element is `tds` (written as a chain); returns [qh, tds]. */
  queue(specs: TdSpec[], head: number = LINK.bit.T): { qh: number; tds: number[] } {
    const qh = this.allocQh();
    const tds = this.tdChain(specs);
    this.writeQh(qh, head, tds.length ? tds[0]! : LINK.bit.T);
    return { qh, tds };
  }

  /** Point the anchor QH (every frame-list entry) at `head` (QH or TD link) as its next element. */
  hang(head: number, asElement = false): void {
    if (asElement) this.writeQh(ANCHOR_QH, LINK.bit.T, head);
    else this.writeQh(ANCHOR_QH, head, LINK.bit.T);
  }

  /** Fill all 1024 frame-list entries with `link`. */
  frameListAll(link: number): void {
    const b = new Uint8Array(4096);
    const v = new DataView(b.buffer);
    for (let i = 0; i < 1024; i++) v.setUint32(i * 4, link >>> 0, true);
    this.step({ op: 'memWrite', addr: FL_BASE, bytes: b });
  }

  /** Start the schedule, wait until it is quiet, stop it, observe everything. */
  runAndObserve(tds: number[], maxFrames = 64): void {
    this.ioWrite(REG.USBCMD, 2, this.cmdBits | USBCMD.bit.RS);
    this.step({ op: 'runUntilQuiet', tds, maxFrames });
    this.stop();
    this.observe();
  }

  stop(): void {
    this.ioWrite(REG.USBCMD, 2, this.cmdBits);
    this.wait(3);
  }

  /**
   * Port reset and enable (USB 2.0 §7.1.7.5: reset ≥ 10 ms; UHCI DG §2.1.7),
   * then clear the change bits.
   */
  resetAndEnablePort(reg = REG.PORTSC1): void {
    this.ioWrite(reg, 2, PORTSC.bit.PR);
    this.wait(10);
    this.ioWrite(reg, 2, 0);
    this.wait(1);
    this.ioWrite(reg, 2, PORTSC.bit.PE);
    this.ioWrite(reg, 2, PORTSC.bit.PE | PORTSC.bit.CSC | PORTSC.bit.PEC);
    this.ioRead(reg, 2);
  }

  /** Run one control transfer to completion on the anchor and observe. */
  controlTransfer(c: ControlSpec, maxFrames = 64): number[] {
    const { qh, tds } = this.queue(this.controlTds(c));
    this.hang(qh | LINK.bit.Q);
    this.runAndObserve(tds, maxFrames);
    return tds;
  }
}

/**
 * Every program starts from the same state: BAR4 at IO_BASE, I/O and bus
 * master on, controller stopped, global reset (≥ 10 ms, UHCI DG §2.1.1),
 * HCRESET, FRNUM 0, status cleared, interrupts off, schedule memory zeroed,
 * every frame-list entry pointing at an empty anchor QH.
 */
export function prologue(b: ProgramBuilder): void {
  b.step({ op: 'cfgWrite', offset: 0x20, size: 4, value: IO_BASE | 1 });
  b.step({ op: 'cfgWrite', offset: 0x04, size: 2, value: 0x0005 });
  b.ioWrite(REG.USBCMD, 2, 0);
  b.wait(2);
  b.ioWrite(REG.USBCMD, 2, USBCMD.bit.GRESET);
  b.wait(10);
  b.ioWrite(REG.USBCMD, 2, 0);
  b.ioWrite(REG.USBCMD, 2, USBCMD.bit.HCRESET);
  b.wait(1);
  b.ioWrite(REG.USBINTR, 2, 0);
  b.ioWrite(REG.FRNUM, 2, 0);
  b.ioWrite(REG.USBSTS, 2, 0x3f);
  b.ioWrite(REG.SOFMOD, 1, 64);
  b.step({ op: 'memFill', addr: STRUCT_BASE, len: BUF_END - STRUCT_BASE, byte: 0 });
  b.writeQh(ANCHOR_QH, LINK.bit.T, LINK.bit.T);
  b.frameListAll(ANCHOR_QH | LINK.bit.Q);
  b.ioWrite(REG.FLBASEADD, 4, FL_BASE);
}
