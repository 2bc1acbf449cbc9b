import { FlatMemory } from '../../src/platform/memory.js';
import { makeToken, LINK, TD_CTRL } from '../../src/uhci/descriptors.js';

/** Lays out a UHCI schedule in a FlatMemory for tests. */
export class ScheduleBuilder {
  private next: number;
  constructor(
    readonly mem: FlatMemory,
    readonly flBase = 0x10000,
    heap = 0x20000,
  ) {
    this.next = heap;
    this.clearFrameList();
  }
  clearFrameList(): void {
    for (let i = 0; i < 1024; i++) this.mem.writeU32(this.flBase + i * 4, LINK.bit.T);
  }
  alloc(size: number, align = 16): number {
    this.next = (this.next + align - 1) & ~(align - 1);
    const a = this.next;
    this.next += size;
    return a;
  }
  /** Point every frame-list entry (or one) at `link`. */
  setFrame(link: number, frame?: number): void {
    if (frame === undefined) for (let i = 0; i < 1024; i++) this.mem.writeU32(this.flBase + i * 4, link);
    else this.mem.writeU32(this.flBase + (frame & 0x3ff) * 4, link);
  }
  qh(head = LINK.bit.T, element = LINK.bit.T): number {
    const a = this.alloc(16);
    this.mem.writeU32(a, head);
    this.mem.writeU32(a + 4, element);
    return a;
  }
  td(opts: {
    pid: number;
    dev?: number;
    ep?: number;
    toggle?: number;
    maxLen: number;
    buffer?: number;
    link?: number;
    ioc?: boolean;
    spd?: boolean;
    ls?: boolean;
    iso?: boolean;
    cerr?: number;
    active?: boolean;
  }): number {
    const a = this.alloc(32);
    let ctrl = ((opts.cerr ?? 3) << TD_CTRL.lsb.CERR) | 0x7ff;
    if (opts.active !== false) ctrl |= TD_CTRL.bit.ACTIVE;
    if (opts.ioc) ctrl |= TD_CTRL.bit.IOC;
    if (opts.spd) ctrl |= TD_CTRL.bit.SPD;
    if (opts.ls) ctrl |= TD_CTRL.bit.LS;
    if (opts.iso) ctrl |= TD_CTRL.bit.IOS;
    this.mem.writeU32(a, opts.link ?? LINK.bit.T);
    this.mem.writeU32(a + 4, ctrl >>> 0);
    this.mem.writeU32(a + 8, makeToken(opts.pid, opts.dev ?? 0, opts.ep ?? 0, opts.toggle ?? 0, opts.maxLen));
    this.mem.writeU32(a + 12, opts.buffer ?? 0);
    return a;
  }
  buffer(bytes: number[] | number): number {
    const n = typeof bytes === 'number' ? bytes : bytes.length;
    const a = this.alloc(Math.max(n, 1), 16);
    if (typeof bytes !== 'number') this.mem.write(a, Uint8Array.from(bytes));
    return a;
  }
  ctrlOf(td: number): number {
    return this.mem.readU32(td + 4);
  }
  linkOf(td: number): number {
    return this.mem.readU32(td);
  }
  bytes(addr: number, n: number): number[] {
    const b = new Uint8Array(n);
    this.mem.read(addr, b);
    return [...b];
  }
  static q(addr: number): number {
    return (addr | LINK.bit.Q) >>> 0;
  }
  static vf(addr: number): number {
    return (addr | LINK.bit.VF) >>> 0;
  }
}
