/**
 * Hostile-ioreq fuzzing of the Xen ioreq server (src/xen/ioreq-server.ts),
 * driven through the in-process simulated hypervisor (src/xen/sim/) exactly
 * as Xen drives a device model: a struct ioreq written into the vCPU's slot of
 * the shared page, an event on the vCPU's port, the answer read back once the
 * slot says IORESP_READY; buffered writes through the buffered ring.
 *
 * The requests are hostile: every ioreq type (PIO, COPY, PCI_CONFIG,
 * TIMEOFFSET, INVALIDATE, unknown), sizes 0..8 and beyond, counts 0, 1, >1,
 * 4096, 4097 and 2^32-1 with and without data_is_ptr, buffers inside, across
 * the end of and outside guest RAM (and past 2^53), df=1, ports in, next to
 * and far from BAR4, config cycles for other BDFs / past 256 / unaligned,
 * slots in states other than READY, slots of vCPUs that do not exist, extra
 * and spurious notifications, several vCPUs at once with events delivered in
 * any order, a buffered ring full of garbage with any read/write pointers,
 * BAR4 moved or disabled mid-stream, time passing (the controller's own DMA),
 * and the server stopping at the end.
 *
 * Checked after every step (what the server code defines, see ioreq-server.ts):
 *  - no exception escapes the server, nothing is logged at error level
 *    (the server's own "internal error" path) and the server keeps running;
 *  - every READY request in a served slot gets exactly one response: state
 *    IORESP_READY and one notification of that vCPU's port; immediate reads
 *    answer a defined value (all-ones of the size for anything unclaimed or
 *    malformed, 2^64-1 for malformed sizes, at most the access size for a
 *    claimed register), writes and pointer requests leave `data` alone;
 *  - a slot that is not READY, or belongs to no served vCPU, is not touched
 *    and not answered;
 *  - the event ping-pong settles within a fixed number of deliveries, and
 *    the work per step is bounded (BAR4 accesses <= reps honoured);
 *  - guest RAM changes only where a legitimate rep ins of this step may
 *    write (its count*size window) or where the controller's own DMA wrote;
 *    every changed frame is reported with modified_memory;
 *  - the buffered ring is consumed (read == write) after an event;
 *  - the I/O range mapped at the hypervisor is exactly BAR4's decoded window;
 *  - the INTx level at the hypervisor equals the controller's request gated
 *    by COMMAND.INTX_DISABLE, and is consistent with USBSTS & USBINTR;
 *  - at the end, every vCPU still gets correct answers (vendor/device ID);
 *  - after a stop: server destroyed at Xen, no guest mapping left, no frame
 *    runs and no event is answered any more.
 *
 * Speed: the simulated hypervisor's event delivery is replaced by a queue the
 * harness drains synchronously, and rigs are pooled per shape and reset
 * between cases (PCI reset, RAM and pages zeroed); a failure on a reused rig
 * is re-run on a fresh one and the report says whether it reproduces there.
 */
import fc from 'fast-check';
import { UhciPciFunction, type UhciPciFunctionOptions } from '../../src/device/uhci-pci-function.js';
import type { Logger, LogLevel } from '../../src/platform/logger.js';
import { ManualClock } from '../../src/platform/clock.js';
import type { GuestMemory } from '../../src/platform/memory.js';
import { FRAME_NS } from '../../src/uhci/controller.js';
import {
  BUF_IOREQ_SLOT_NUM,
  IOREQ_READ,
  IOREQ_SIZE,
  IOREQ_TYPE_COPY,
  IOREQ_TYPE_INVALIDATE,
  IOREQ_TYPE_PCI_CONFIG,
  IOREQ_TYPE_PIO,
  IOREQ_TYPE_TIMEOFFSET,
  IOREQ_WRITE,
  PAGE_SIZE,
  STATE_IOREQ_NONE,
  STATE_IOREQ_READY,
  STATE_IORESP_READY,
  bufPointers,
  bufSlotOffset,
  decodeIoreq,
  encodeIoreq,
  encodePciConfigAddr,
  ioreqOffset,
  setIoreqState,
  type Ioreq,
} from '../../src/xen/ioreq.js';
import { IoreqServer } from '../../src/xen/ioreq-server.js';
import { SimHypervisor, type SimServer } from '../../src/xen/sim/hypervisor.js';
import { InvariantViolation } from './checking-memory.js';
import { qemuIrqLevel } from './frame-invariants.js';

/** Guest RAM of the simulated domain: 16 frames, so "outside RAM" is easy to hit. */
export const IOREQ_FUZZ_RAM = 0x10000;
const DOMID = 3;
const BDF = { bus: 0, device: 5, fn: 0 };
/** vCPU slots the generators address: up to 3 served vCPUs, plus slots of vCPUs that do not exist. */
const MAX_VCPUS = 3;
const SLOTS = MAX_VCPUS + 2;
/** Event deliveries one step may cause (each request: one event, one answer; plus the ring). */
const MAX_DELIVERIES = 64;
/** Most repetitions the server honours (ioreq-server.ts MAX_REPS). */
const MAX_REPS = 4096;
const PIIX3_ID = 0x70208086;

const ones = (size: number): bigint => (size >= 4 ? 0xffffffffn : (1n << BigInt(size * 8)) - 1n);
const isAccessSize = (n: number): n is 1 | 2 | 4 => n === 1 || n === 2 || n === 4;
const ALL_ONES_64 = 0xffffffffffffffffn;

// ---------------------------------------------------------------- generators

/** Where a port-I/O address points, resolved against BAR4's base when the step runs. */
const portArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 31 }).map((off) => ({ kind: 'bar' as const, off })) },
  { weight: 2, arbitrary: fc.integer({ min: -8, max: 40 }).map((off) => ({ kind: 'bar' as const, off })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }).map((v) => ({ kind: 'abs' as const, v: BigInt(v) })) },
  { weight: 1, arbitrary: fc.constantFrom(0xcf8n, 0xcfcn, 0xffffn, 0x10000n, 0xffffffffn, ALL_ONES_64).map((v) => ({ kind: 'abs' as const, v })) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: ALL_ONES_64 }).map((v) => ({ kind: 'abs' as const, v })) },
);

/** A PCI_CONFIG address: mostly our BDF with interesting registers, sometimes anything. */
const cfgAddrArb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .oneof(
        { weight: 4, arbitrary: fc.constantFrom(0x00, 0x02, 0x04, 0x06, 0x08, 0x0c, 0x20, 0x21, 0x22, 0x3c, 0x3d, 0x60, 0xc0, 0xfc, 0xfe, 0xff) },
        { weight: 3, arbitrary: fc.integer({ min: 0, max: 255 }) },
        { weight: 1, arbitrary: fc.constantFrom(0x100, 0xffc, 0x1000, 0x7fffffff, 0xfffffffc, 0xffffffff) },
      )
      .map((reg) => encodePciConfigAddr({ segment: 0, ...BDF }, reg)),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 31 }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 255 }))
      .map(([segment, bus, device, fn, reg]) => encodePciConfigAddr({ segment, bus, device, fn }, reg)),
  },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: ALL_ONES_64 }) },
);

const sizeArb = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(1, 2, 4) },
  { weight: 2, arbitrary: fc.constantFrom(0, 3, 5, 8, 16, 4096, 0x80000000, 0xffffffff) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
);

const countArb = fc.oneof(
  { weight: 10, arbitrary: fc.constant(1) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 20 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, 511, 4095, 4096, 4097, 0x10000, 0x7fffffff, 0xffffffff) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
);

/** `data` as a guest-physical buffer address (data_is_ptr): inside, across the end of, outside RAM, huge. */
const ptrArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: IOREQ_FUZZ_RAM - 1 }).map(BigInt) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 64 }).map((k) => BigInt(IOREQ_FUZZ_RAM - k)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 64 }).map((k) => BigInt(PAGE_SIZE * (1 + (k % 8)) - (k >> 3))) },
  { weight: 1, arbitrary: fc.integer({ min: IOREQ_FUZZ_RAM, max: 0x7fffffff }).map(BigInt) },
  { weight: 1, arbitrary: fc.constantFrom(2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, ALL_ONES_64, ALL_ONES_64 - 3n) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: ALL_ONES_64 }) },
);

const immArb = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }).map(BigInt), fc.bigInt({ min: 0n, max: ALL_ONES_64 }));

/** Type and address together (a port for PIO, an SBDF+register for PCI_CONFIG, anything for the rest). */
const targetArb = fc.oneof(
  { weight: 8, arbitrary: portArb.map((port) => ({ type: IOREQ_TYPE_PIO, port })) },
  { weight: 4, arbitrary: cfgAddrArb.map((addr) => ({ type: IOREQ_TYPE_PCI_CONFIG, port: { kind: 'abs' as const, v: addr } })) },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.oneof(fc.constantFrom(IOREQ_TYPE_COPY, IOREQ_TYPE_INVALIDATE, IOREQ_TYPE_TIMEOFFSET), fc.integer({ min: 0, max: 255 })), portArb).map(([type, port]) => ({ type, port })),
  },
);

/** `data`: a buffer address (data_is_ptr) or an immediate value. */
const payloadArb = fc.oneof(ptrArb.map((data) => ({ dataIsPtr: true, data })), immArb.map((data) => ({ dataIsPtr: false, data })));

const stateArb = fc.oneof({ weight: 12, arbitrary: fc.constant(STATE_IOREQ_READY) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 15 }) });

const reqArb = fc.record({
  state: stateArb,
  target: targetArb,
  size: sizeArb,
  count: countArb,
  payload: payloadArb,
  /** bit 0: dir, bit 1: df. */
  flags: fc.integer({ min: 0, max: 3 }),
  /** vp_eport as Xen wrote it (null) or garbage. */
  eport: fc.oneof({ weight: 6, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) }),
});
type ReqSpec = typeof reqArb extends fc.Arbitrary<infer T> ? T : never;
type PortSpec = typeof portArb extends fc.Arbitrary<infer T> ? T : never;

/** A legitimate-looking config write that moves, disables or re-enables BAR4 (and INTx). */
const cfgMoveArb = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .oneof(
        { weight: 4, arbitrary: fc.integer({ min: 0x1000 >> 5, max: 0xffe0 >> 5 }).map((b) => (b << 5) | 1) },
        { weight: 1, arbitrary: fc.constantFrom(0x1, 0xffe1, 0xffc1, 0x10001, 0xffffffe1, 0xffffffff, 0) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
      )
      .map((v) => ({ reg: 0x20, size: 4 as const, value: v >>> 0 })),
  },
  {
    weight: 2,
    arbitrary: fc
      .oneof({ weight: 3, arbitrary: fc.constantFrom(0x0005, 0x0001, 0x0000, 0x0405, 0x0007, 0x0105) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) })
      .map((v) => ({ reg: 0x04, size: 2 as const, value: v })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 0, max: 63 }), fc.constantFrom<1 | 2 | 4>(1, 2, 4), fc.integer({ min: 0, max: 0xffffffff })).map(([r, size, value]) => ({ reg: (r * 4) & ~(size - 1), size, value })),
  },
);

/** One buffered slot: structured (type/dir/size code/addr/data) or raw words. */
const bufSlotArb = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({
        type: fc.oneof({ weight: 6, arbitrary: fc.constant(IOREQ_TYPE_PIO) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
        dir: fc.oneof({ weight: 6, arbitrary: fc.constant(IOREQ_WRITE) }, { weight: 1, arbitrary: fc.constant(IOREQ_READ) }),
        sizeCode: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 2 }) }, { weight: 1, arbitrary: fc.constant(3) }),
        port: portArb,
        data: fc.integer({ min: 0, max: 0xffffffff }),
        pad: fc.boolean(),
      })
      .map((s) => ({ kind: 'fields' as const, ...s })),
  },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff })).map(([w0, w1]) => ({ kind: 'raw' as const, w0, w1 })) },
);

const ringArb = fc.record({
  slots: fc.array(bufSlotArb, { minLength: 0, maxLength: 12 }),
  /** How the read pointer is left before writing: as the server left it, or anywhere. */
  read: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) }),
  /** Write pointer: read + number of slots written (honest), or a hostile distance. */
  write: fc.oneof(
    { weight: 5, arbitrary: fc.constant(null) },
    { weight: 2, arbitrary: fc.constantFrom(-1, 1, 2, BUF_IOREQ_SLOT_NUM, BUF_IOREQ_SLOT_NUM + 1, 0x80000000, 0xffffffff) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
  ),
  notify: fc.oneof({ weight: 6, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
});

const opArb = fc.oneof(
  {
    weight: 10,
    arbitrary: fc
      .record({
        reqs: fc.array(reqArb, { minLength: 1, maxLength: 3 }),
        first: fc.integer({ min: 0, max: SLOTS - 1 }),
        /** Also use slots of vCPUs that do not exist. */
        stray: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
        /** Extra notifications (duplicates, other vCPUs' ports) delivered with the batch. */
        extra: fc.array(fc.integer({ min: 0, max: SLOTS - 1 }), { maxLength: 2 }),
        /** Delivery order of the pending events (index into the pending list, modulo its length). */
        order: fc.oneof({ weight: 2, arbitrary: fc.constant([] as number[]) }, { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 7 }), { maxLength: 6 }) }),
      })
      .map((o) => ({ op: 'io' as const, ...o })),
  },
  { weight: 3, arbitrary: cfgMoveArb.map((c) => ({ op: 'cfg' as const, ...c })) },
  { weight: 2, arbitrary: ringArb.map((r) => ({ op: 'ring' as const, ...r })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 40 }).map((port) => ({ op: 'spurious' as const, port })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 4 }).map((frames) => ({ op: 'tick' as const, frames })) },
);

export const ioreqCaseArb = fc.record({
  vcpus: fc.integer({ min: 1, max: MAX_VCPUS }),
  bufioreq: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  mapCachePages: fc.constantFrom(1, 2, 4, 1024),
  /** BAR4 as programmed by the guest's BIOS before the fuzzing starts. */
  bar: fc.oneof({ weight: 3, arbitrary: fc.constant(0xc000) }, { weight: 1, arbitrary: fc.integer({ min: 0x20 >> 5, max: 0xffe0 >> 5 }).map((b) => b << 5) }),
  /** Run the controller (RS, interrupts enabled) over a schedule of active TDs at 0 that time out: DMA write-backs, IOC interrupts. */
  running: fc.boolean(),
  /** End with the server stopping (the domain's device model exits). */
  stop: fc.oneof({ weight: 7, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  ops: fc.array(opArb, { minLength: 1, maxLength: 20 }),
});
export type IoreqFuzzCase = typeof ioreqCaseArb extends fc.Arbitrary<infer T> ? T : never;

// ------------------------------------------------------------------ coverage

/** What the cases exercised (summed over all runs in this process): lets tests check the generators reach the interesting paths. */
export const ioreqCoverage = {
  cases: 0,
  /** READY requests in served slots, answered. */
  answered: 0,
  /** Requests placed in slots not served (bad state or no such vCPU), left alone. */
  ignored: 0,
  /** Immediate reads answered by a register of ours (not all-ones by rule). */
  claimedReads: 0,
  /** Rep ins requests that changed guest RAM inside their window. */
  repInsWrote: 0,
  /** BAR4 windows mapped at the hypervisor after a move. */
  barMoves: 0,
  /** Ring steps that were consumed after an event. */
  rings: 0,
  /** Frames the controller's DMA wrote. */
  dmaFrames: 0,
  /** Steps where INTx was asserted at the hypervisor. */
  intxHigh: 0,
};

// ------------------------------------------------------------------ the rig

/** A logger that fails the case on error-level records (the server logs internal errors there). */
class CheckingLogger implements Logger {
  errors: string[] = [];
  log(level: LogLevel, _component: string, msg: string, fields?: Record<string, unknown>): void {
    if (level === 'error') this.errors.push(`${msg} ${JSON.stringify(fields ?? {})}`);
  }
}

/** The served function, counting BAR4 accesses (bounded work per request). */
class CountingFunction extends UhciPciFunction {
  accesses = 0;
  override ioRead(offset: number, size: 1 | 2 | 4): number {
    this.accesses++;
    return super.ioRead(offset, size);
  }
  override ioWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    this.accesses++;
    super.ioWrite(offset, size, value);
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** One simulated domain with our ioreq server, an event queue the fuzzer drains, and a RAM shadow. */
export class IoreqRig {
  readonly hv: SimHypervisor;
  readonly clock = new ManualClock();
  readonly logger = new CheckingLogger();
  readonly server: IoreqServer;
  readonly s: SimServer;
  readonly vcpus: number;
  /** Event-channel deliveries waiting to run (the simulated hypervisor's asynchrony, made explicit). */
  private readonly queue: (() => void)[] = [];
  /** Answers (notifications of the vCPU's Xen port) per vCPU since the last reset. */
  readonly answers: number[];
  /** What guest RAM should hold: updated by the controller's DMA and by allowed rep-ins windows. */
  readonly shadow: Uint8Array;
  /** Frames the controller's DMA wrote since the last check (must be reported as modified). */
  readonly dmaPages = new Set<number>();
  private modifiedSeen = 0;
  private readonly modified = new Set<number>();
  fn!: CountingFunction;
  /** BAR4 window start last seen mapped (-1: none), for coverage. */
  lastBase = -1;

  constructor(opts: { vcpus: number; bufioreq: boolean; mapCachePages: number }) {
    this.vcpus = opts.vcpus;
    this.hv = new SimHypervisor({ domid: DOMID, vcpus: opts.vcpus, ramBytes: IOREQ_FUZZ_RAM });
    // Deliveries are queued for the fuzzer to run (deterministic, synchronous, countable).
    (this.hv as Mutable<SimHypervisor>).schedule = (f) => void this.queue.push(f);
    this.shadow = new Uint8Array(IOREQ_FUZZ_RAM);
    const ram = this.hv.ram.bytes;
    const shadow = this.shadow;
    const dmaPages = this.dmaPages;
    this.server = new IoreqServer({
      platform: this.hv.platform,
      domid: DOMID,
      clock: this.clock,
      logger: this.logger,
      livenessMs: 0,
      bufioreq: opts.bufioreq,
      mapCachePages: opts.mapCachePages,
      createFunction: (io) => {
        // The controller's own DMA goes through this wrapper: what it writes is legitimate.
        const inner = io.mem;
        const mem: GuestMemory = {
          read: (addr, buf) => inner.read(addr, buf),
          readU32: inner.readU32 ? (addr) => inner.readU32!(addr) : undefined,
          write: (addr, buf) => {
            try {
              inner.write(addr, buf);
            } finally {
              const lo = Math.max(0, addr);
              const hi = Math.min(IOREQ_FUZZ_RAM, addr + buf.length);
              if (hi > lo) {
                shadow.set(ram.subarray(lo, hi), lo);
                for (let pfn = Math.floor(lo / PAGE_SIZE); pfn * PAGE_SIZE < hi; pfn++) dmaPages.add(pfn);
              }
            }
          },
        };
        const o: UhciPciFunctionOptions = { ...io, mem };
        this.fn = new CountingFunction(o);
        return this.fn;
      },
    });
    // start() is async only on its error path; the set-up itself runs synchronously.
    let startError: unknown = null;
    this.server.start().catch((e: unknown) => (startError = e));
    if (!this.server.running) throw new InvariantViolation(`server did not start: ${String(startError)}`);
    this.s = this.hv.serverList[0]!;
    this.answers = new Array<number>(opts.vcpus).fill(0);
    for (let v = 0; v < opts.vcpus; v++) {
      this.hv.onXenPort(this.s.vcpuPorts[v]!, () => this.answers[v]!++);
    }
    this.drain('start');
  }

  /**
   * Back to the state of a fresh rig, as far as the invariants can tell: a PCI
   * reset of the function (RST#: config space and controller), zeroed guest
   * RAM, empty ioreq slots and ring, no mappings cached, no dirty frames, no
   * recorded calls. Rebuilding the domain per case cost more than the case.
   */
  reset(): void {
    this.drain('reset');
    this.fn.reset();
    this.drain('reset');
    const page = this.s.ioreqPage;
    page.fill(0);
    const dv = new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
    for (let v = 0; v < this.vcpus; v++) dv.setUint32(ioreqOffset(v) + 24, this.s.vcpuPorts[v]!, true);
    this.s.bufPage?.fill(0);
    this.hv.ram.bytes.fill(0);
    this.shadow.fill(0);
    this.server.mem.invalidate();
    this.server.mem.takeDirty();
    this.hv.calls.length = 0;
    this.modifiedSeen = 0;
    this.modified.clear();
    this.dmaPages.clear();
    this.answers.fill(0);
    this.logger.errors.length = 0;
    this.lastBase = -1;
  }

  /** Run queued deliveries until none are left; a ping-pong that does not settle is a violation. */
  drain(what: string, order: readonly number[] = []): number {
    let n = 0;
    while (this.queue.length) {
      if (++n > MAX_DELIVERIES) throw new InvariantViolation(`${what}: event deliveries do not settle (${n})`);
      // Events on different ports have no order: `order` picks which pending one runs next.
      const pick = n <= order.length ? order[n - 1]! % this.queue.length : 0;
      const f = this.queue.splice(pick, 1)[0]!;
      try {
        f();
      } catch (e) {
        throw new InvariantViolation(`${what}: exception escaped the server: ${(e as Error).stack ?? String(e)}`);
      }
    }
    if (this.logger.errors.length) throw new InvariantViolation(`${what}: server logged an internal error: ${this.logger.errors[0]}`);
    return n;
  }

  /** Frames reported with modified_memory so far. */
  modifiedPages(): Set<number> {
    const calls = this.hv.calls;
    for (; this.modifiedSeen < calls.length; this.modifiedSeen++) {
      const c = calls[this.modifiedSeen]!;
      if (c.op === 'modifiedMemory') for (let i = 0; i < c.nr; i++) this.modified.add(c.firstPfn + i);
    }
    return this.modified;
  }

  /** A legitimate synchronous request from vCPU `v` (the guest's own firmware or driver); it must get one answer. */
  request(v: number, req: Omit<Ioreq, 'vpEport' | 'state'>): bigint {
    const off = ioreqOffset(v);
    const page = this.s.ioreqPage;
    encodeIoreq(page, off, { ...req, vpEport: this.s.vcpuPorts[v]!, state: STATE_IOREQ_READY });
    const before = this.answers[v]!;
    this.hv.notifyFromXen(this.s.vcpuPorts[v]!);
    this.drain('request');
    const r = decodeIoreq(page, off);
    if (r.state !== STATE_IORESP_READY || this.answers[v] !== before + 1) {
      throw new InvariantViolation(`vCPU ${v}: no single answer (state ${r.state}, answers ${this.answers[v]! - before})`);
    }
    setIoreqState(page, off, STATE_IOREQ_NONE);
    return r.data;
  }

  configWrite(reg: number, size: 1 | 2 | 4, value: number): void {
    this.request(0, { type: IOREQ_TYPE_PCI_CONFIG, addr: encodePciConfigAddr({ segment: 0, ...BDF }, reg), data: BigInt(value >>> 0), count: 1, size, dataIsPtr: false, dir: IOREQ_WRITE, df: false });
  }
  configRead(v: number, reg: number, size: 1 | 2 | 4): number {
    return Number(this.request(v, { type: IOREQ_TYPE_PCI_CONFIG, addr: encodePciConfigAddr({ segment: 0, ...BDF }, reg), data: 0n, count: 1, size, dataIsPtr: false, dir: IOREQ_READ, df: false }));
  }
  pioWrite(port: number, size: 1 | 2 | 4, value: number): void {
    this.request(0, { type: IOREQ_TYPE_PIO, addr: BigInt(port), data: BigInt(value >>> 0), count: 1, size, dataIsPtr: false, dir: IOREQ_WRITE, df: false });
  }
}

// ------------------------------------------------------------ expectations

/** Guest RAM [lo, hi) a request may write: a rep ins the server honours (ioreq-server.ts handlePio). */
export function repInsWindow(r: Ioreq): [number, number] | null {
  if (r.type !== IOREQ_TYPE_PIO || r.dir !== IOREQ_READ || !r.dataIsPtr) return null;
  if (!isAccessSize(r.size) || r.addr > 0xffffn || r.count < 1 || r.count > MAX_REPS) return null;
  const base = Number(r.data);
  if (!Number.isSafeInteger(base)) return null;
  const lo = r.df ? base - (r.count - 1) * r.size : base;
  const hi = r.df ? base + r.size : base + r.count * r.size;
  return [Math.max(0, lo), Math.min(IOREQ_FUZZ_RAM, hi)];
}

/**
 * The defined answer to an immediate read (ioreq-server.ts handle): exact, or
 * bounded by the access size when a register of ours answers. `barMoves`:
 * another request of the same batch may move BAR4, so a port may or may not
 * be claimed.
 */
function expectedRead(r: Ioreq, base: number | null, barMoves: boolean): { exact: bigint } | { max: bigint } {
  const malformed = { exact: isAccessSize(r.size) ? ones(r.size) : ALL_ONES_64 };
  switch (r.type) {
    case IOREQ_TYPE_PIO: {
      if (!isAccessSize(r.size) || r.addr > 0xffffn || r.count !== 1) return malformed;
      const port = Number(r.addr);
      const claimed = base !== null && port >= base && port < base + 32;
      return claimed || barMoves ? { max: ones(r.size) } : { exact: ones(r.size) };
    }
    case IOREQ_TYPE_PCI_CONFIG: {
      const sbdf = r.addr >> 32n;
      const reg = Number(r.addr & 0xffffffffn);
      const ours = sbdf === encodePciConfigAddr({ segment: 0, ...BDF }, 0) >> 32n;
      if (!ours || !isAccessSize(r.size) || r.count !== 1 || reg + r.size > 256 || reg % r.size !== 0) return malformed;
      return { max: ones(r.size) };
    }
    case IOREQ_TYPE_INVALIDATE:
    case IOREQ_TYPE_TIMEOFFSET:
      return { exact: r.data };
    default:
      return malformed;
  }
}

function irqConsistent(rig: IoreqRig, what: string): void {
  const hc = rig.fn.controller;
  const cfg = rig.fn.config;
  // The pin is the function's INTx pin register (PIIX3: INTD), intx = pin - 1.
  const pin = rig.hv.intx.get(`${BDF.bus}:${BDF.device}.${cfg.interruptPin - 1}`) ?? false;
  const want = hc.irqAsserted && !cfg.intxDisabled;
  if (pin !== want || rig.server.intxLevel !== want || cfg.intxAsserted !== want) {
    throw new InvariantViolation(`${what}: INTx at Xen ${pin}, server ${rig.server.intxLevel}, config ${cfg.intxAsserted}; controller request ${hc.irqAsserted}, INTX_DISABLE ${cfg.intxDisabled}`);
  }
  if (pin) ioreqCoverage.intxHigh++;
  // Both ways: the request is exactly QEMU's uhci_update_irq level.
  if (hc.irqAsserted !== qemuIrqLevel(hc.status, hc.status2, hc.intr)) {
    throw new InvariantViolation(`${what}: IRQ request ${hc.irqAsserted} with USBSTS 0x${hc.status.toString(16)} status2 ${hc.status2} USBINTR 0x${hc.intr.toString(16)}`);
  }
}

function mappingConsistent(rig: IoreqRig, what: string): void {
  const base = rig.fn.ioBase;
  const want = base !== null && base + 31 <= 0xffff ? [{ start: base, end: base + 31 }] : [];
  const got = rig.s.ranges;
  const ok = got.length === want.length && got.every((r, i) => !r.isMmio && r.start === want[i]!.start && r.end === want[i]!.end);
  const sr = rig.server.mappedRange;
  const serverOk = want.length ? sr !== null && sr.start === want[0]!.start && sr.end === want[0]!.end : sr === null;
  if (!ok || !serverOk) throw new InvariantViolation(`${what}: BAR4 base ${base === null ? 'off' : '0x' + base.toString(16)} but Xen maps ${JSON.stringify(got)}, server ${JSON.stringify(sr)}`);
  if (want.length && want[0]!.start !== rig.lastBase) ioreqCoverage.barMoves++;
  rig.lastBase = want.length ? want[0]!.start : -1;
}

/** RAM equals the shadow outside `windows`; then the windows are taken into the shadow. Checks dirty reporting too. */
function ramConsistent(rig: IoreqRig, windows: [number, number][], what: string): void {
  const ram = rig.hv.ram.bytes;
  const shadow = rig.shadow;
  windows.sort((a, b) => a[0] - b[0]);
  const changed: number[] = [];
  const scan = (lo: number, hi: number, allowed: boolean) => {
    if (hi <= lo) return;
    if (Buffer.compare(ram.subarray(lo, hi), shadow.subarray(lo, hi)) === 0) return;
    for (let a = lo; a < hi; a++) {
      if (ram[a] === shadow[a]) continue;
      if (!allowed) throw new InvariantViolation(`${what}: guest RAM at 0x${a.toString(16)} changed (0x${shadow[a]!.toString(16)} → 0x${ram[a]!.toString(16)}) outside any rep-ins window ${JSON.stringify(windows)}`);
      changed.push(Math.floor(a / PAGE_SIZE));
      a = (Math.floor(a / PAGE_SIZE) + 1) * PAGE_SIZE - 1; // one per frame is enough
    }
    shadow.set(ram.subarray(lo, hi), lo);
  };
  let at = 0;
  for (const [lo, hi] of windows) {
    scan(at, Math.max(at, lo), false);
    scan(Math.max(at, lo), Math.max(at, hi), true);
    at = Math.max(at, hi);
  }
  scan(at, IOREQ_FUZZ_RAM, false);
  if (changed.length) ioreqCoverage.repInsWrote++;
  ioreqCoverage.dmaFrames += rig.dmaPages.size;
  if (changed.length || rig.dmaPages.size) {
    rig.server.flushDirty();
    const reported = rig.modifiedPages();
    for (const pfn of changed) if (!reported.has(pfn)) throw new InvariantViolation(`${what}: frame 0x${pfn.toString(16)} changed by a rep ins but not reported with modified_memory`);
    for (const pfn of rig.dmaPages) if (!reported.has(pfn)) throw new InvariantViolation(`${what}: frame 0x${pfn.toString(16)} written by the controller's DMA but not reported with modified_memory`);
    rig.dmaPages.clear();
  }
}

// ------------------------------------------------------------------ the run

function resolvePort(p: PortSpec, base: number | null): bigint {
  if (p.kind === 'abs') return p.v;
  return BigInt(Math.max(0, (base ?? 0xc000) + p.off));
}

function buildReq(spec: ReqSpec, base: number | null): Ioreq {
  return {
    type: spec.target.type,
    addr: resolvePort(spec.target.port, base),
    data: spec.payload.data,
    count: spec.count >>> 0,
    size: spec.size >>> 0,
    vpEport: 0,
    state: spec.state,
    dataIsPtr: spec.payload.dataIsPtr,
    dir: spec.flags & 1 ? IOREQ_READ : IOREQ_WRITE,
    df: (spec.flags & 2) !== 0,
  };
}

function runIo(rig: IoreqRig, op: Extract<IoreqFuzzCase['ops'][number], { op: 'io' }>, step: string): void {
  const page = rig.s.ioreqPage;
  const base = rig.fn.ioBase;
  const placed: { slot: number; req: Ioreq; bytes: Uint8Array }[] = [];
  const slots = op.stray ? SLOTS : rig.vcpus;
  op.reqs.slice(0, slots).forEach((spec, i) => {
    const slot = (op.first + i) % slots;
    const req = buildReq(spec, base);
    req.vpEport = spec.eport ?? (slot < rig.vcpus ? rig.s.vcpuPorts[slot]! : 0);
    encodeIoreq(page, ioreqOffset(slot), req);
    placed.push({ slot, req, bytes: page.slice(ioreqOffset(slot), ioreqOffset(slot) + IOREQ_SIZE) });
  });
  const barMoves = placed.some((p) => p.req.type === IOREQ_TYPE_PCI_CONFIG && p.req.dir === IOREQ_WRITE);
  const answersBefore = [...rig.answers];
  rig.fn.accesses = 0;
  // Buffered writes left in the ring by an earlier step are handled with this event too.
  const ring = rig.s.bufPage ? bufPointers(rig.s.bufPage) : null;
  const ringSlack = ring && ring.read !== ring.write ? BUF_IOREQ_SLOT_NUM : 0;
  // Xen notifies the port of each vCPU that issued a request; the extras are duplicates and strays.
  for (const p of placed) if (p.slot < rig.vcpus) rig.hv.notifyFromXen(rig.s.vcpuPorts[p.slot]!);
  for (const x of op.extra) if (x < rig.vcpus) rig.hv.notifyFromXen(rig.s.vcpuPorts[x]!);
  rig.drain(step, op.order);

  const maxAccesses = ringSlack + placed.reduce((n, p) => n + Math.min(MAX_REPS, Math.max(1, p.req.count)), 0);
  if (rig.fn.accesses > maxAccesses) throw new InvariantViolation(`${step}: ${rig.fn.accesses} BAR4 accesses for requests allowing ${maxAccesses}`);

  const windows: [number, number][] = [];
  const answered = new Set<number>();
  for (const p of placed) {
    const off = ioreqOffset(p.slot);
    const served = p.slot < rig.vcpus && p.req.state === STATE_IOREQ_READY;
    if (!served) {
      const now = page.subarray(off, off + IOREQ_SIZE);
      if (Buffer.compare(now, p.bytes) !== 0) throw new InvariantViolation(`${step}: slot ${p.slot} (state ${p.req.state}, ${p.slot < rig.vcpus ? 'served vCPU' : 'no such vCPU'}) was modified`);
      ioreqCoverage.ignored++;
      continue;
    }
    answered.add(p.slot);
    ioreqCoverage.answered++;
    const got = decodeIoreq(page, off);
    if (got.state !== STATE_IORESP_READY) throw new InvariantViolation(`${step}: vCPU ${p.slot} left in state ${got.state} after type ${p.req.type} size ${p.req.size} count ${p.req.count}`);
    if (got.addr !== p.req.addr || got.count !== p.req.count || got.size !== p.req.size || got.type !== p.req.type || got.dir !== p.req.dir || got.dataIsPtr !== p.req.dataIsPtr || got.df !== p.req.df) {
      throw new InvariantViolation(`${step}: vCPU ${p.slot}: the server changed request fields other than data/state`);
    }
    if (p.req.dir === IOREQ_READ && !p.req.dataIsPtr) {
      const want = expectedRead(p.req, base, barMoves);
      const ok = 'exact' in want ? got.data === want.exact : got.data <= want.max;
      if ('max' in want) ioreqCoverage.claimedReads++;
      if (!ok) throw new InvariantViolation(`${step}: vCPU ${p.slot}: read type ${p.req.type} addr 0x${p.req.addr.toString(16)} size ${p.req.size} count ${p.req.count} answered 0x${got.data.toString(16)}, want ${'exact' in want ? '0x' + want.exact.toString(16) : '<= 0x' + want.max.toString(16)}`);
    } else if (got.data !== p.req.data) {
      throw new InvariantViolation(`${step}: vCPU ${p.slot}: ${p.req.dataIsPtr ? 'pointer' : 'write'} request's data changed 0x${p.req.data.toString(16)} → 0x${got.data.toString(16)}`);
    }
    const w = repInsWindow(p.req);
    if (w && w[1] > w[0]) windows.push(w);
  }
  for (let v = 0; v < rig.vcpus; v++) {
    const n = rig.answers[v]! - answersBefore[v]!;
    const want = answered.has(v) ? 1 : 0;
    if (n !== want) throw new InvariantViolation(`${step}: vCPU ${v} got ${n} answers, want ${want}`);
  }
  ramConsistent(rig, windows, step);
  // The vCPUs take their answers and every slot goes back to NONE with Xen's vp_eport.
  const dv = new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
  for (const p of placed) {
    const off = ioreqOffset(p.slot);
    page.fill(0, off, off + IOREQ_SIZE);
    if (p.slot < rig.vcpus) dv.setUint32(off + 24, rig.s.vcpuPorts[p.slot]!, true);
  }
}

function runRing(rig: IoreqRig, op: Extract<IoreqFuzzCase['ops'][number], { op: 'ring' }>, step: string): void {
  const page = rig.s.bufPage;
  if (!page || rig.s.bufPort === null) return;
  const u32 = new Uint32Array(page.buffer, page.byteOffset, 2);
  if (op.read !== null) u32[0] = op.read >>> 0;
  const read = u32[0]!;
  const dv = new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
  const base = rig.fn.ioBase;
  op.slots.forEach((s, i) => {
    const o = bufSlotOffset(read + i);
    if (s.kind === 'raw') {
      dv.setUint32(o, s.w0 >>> 0, true);
      dv.setUint32(o + 4, s.w1 >>> 0, true);
    } else {
      const addr = Number(resolvePort(s.port, base) & 0xfffffn);
      dv.setUint32(o, ((s.type & 0xff) | (s.pad ? 1 << 8 : 0) | ((s.dir & 1) << 9) | (s.sizeCode << 10) | (addr << 12)) >>> 0, true);
      dv.setUint32(o + 4, s.data >>> 0, true);
    }
  });
  u32[1] = (op.write === null ? read + op.slots.length : op.write === -1 ? read - 1 : op.write) >>> 0;
  rig.fn.accesses = 0;
  if (!op.notify) return; // handled with the next event on any port
  rig.hv.notifyFromXen(rig.s.bufPort);
  rig.drain(step);
  const { read: r, write: w } = bufPointers(page);
  if (r !== w) throw new InvariantViolation(`${step}: buffered ring not consumed (read ${r}, write ${w})`);
  ioreqCoverage.rings++;
  if (rig.fn.accesses > BUF_IOREQ_SLOT_NUM) throw new InvariantViolation(`${step}: ${rig.fn.accesses} BAR4 accesses from one ring`);
  ramConsistent(rig, [], step);
}

/** Rigs kept between cases, one per shape, reset before each use. */
const pool = new Map<string, IoreqRig>();

/**
 * Run one case; throws InvariantViolation on any broken invariant. By default
 * on a pooled rig (reset first); a failure there is re-run on a fresh rig and
 * the message says whether it reproduces, and the pooled rig is dropped.
 */
export async function runIoreqCase(c: IoreqFuzzCase, opts: { fresh?: boolean } = {}): Promise<void> {
  const shape = { vcpus: c.vcpus, bufioreq: c.bufioreq, mapCachePages: c.mapCachePages };
  if (opts.fresh) return runOn(new IoreqRig(shape), c);
  const key = `${c.vcpus}/${c.bufioreq}/${c.mapCachePages}`;
  let rig = pool.get(key);
  try {
    if (rig) rig.reset();
    else pool.set(key, (rig = new IoreqRig(shape)));
    // A stopped server cannot be reused.
    if (c.stop) pool.delete(key);
    await runOn(rig, c);
  } catch (e) {
    pool.delete(key);
    let fresh = 'also fails on a fresh rig';
    try {
      await runOn(new IoreqRig(shape), c);
      fresh = 'PASSES on a fresh rig: the reused rig kept state (incomplete reset?)';
    } catch {
      // reproduces
    }
    if (e instanceof Error) e.message = `${e.message} [${fresh}]`;
    throw e;
  }
}

async function runOn(rig: IoreqRig, c: IoreqFuzzCase): Promise<void> {
  ioreqCoverage.cases++;
  // The guest's firmware: BAR4, then I/O + bus mastering on.
  rig.configWrite(0x20, 4, c.bar | 1);
  rig.configWrite(0x04, 2, 0x0005);
  mappingConsistent(rig, 'setup');
  if (c.running && rig.fn.ioBase !== null) {
    // The guest's own stores: frame list at 0 → four TDs at 0x1000 (active, IOC, C_ERR 1, IN to
    // address 1 where nobody answers: each times out and is written back), buffers at 0x2000.
    const ram = rig.hv.ram;
    for (let i = 0; i < 1024; i++) ram.writeU32(i * 4, 0x1000 + (i & 3) * 32);
    for (let t = 0; t < 4; t++) {
      const td = 0x1000 + t * 32;
      ram.writeU32(td, 1); // link: terminate
      ram.writeU32(td + 4, (1 << 23) | (1 << 24) | (1 << 27)); // Active, IOC, C_ERR = 1
      ram.writeU32(td + 8, (7 << 21) | (1 << 8) | 0x69); // MaxLen 8, address 1, IN
      ram.writeU32(td + 12, 0x2000 + t * 8);
    }
    rig.shadow.set(ram.bytes.subarray(0, 0x1080));
    const b = rig.fn.ioBase;
    rig.pioWrite(b + 0x08, 4, 0); // frame list at 0: whatever the fuzzer's rep ins leave there
    rig.pioWrite(b + 0x04, 2, 0xf);
    rig.pioWrite(b + 0x00, 2, 0x00c1);
  }
  c.ops.forEach((op, i) => {
    const step = `op ${i} (${op.op})`;
    switch (op.op) {
      case 'io':
        runIo(rig, op, step);
        break;
      case 'cfg':
        rig.configWrite(op.reg, op.size, op.value);
        ramConsistent(rig, [], step);
        break;
      case 'ring':
        runRing(rig, op, step);
        break;
      case 'spurious': {
        // A stray event on some Xen-side port (vCPU, ring, or nobody's): no answer, no change.
        const before = [...rig.answers];
        rig.hv.notifyFromXen(op.port);
        rig.drain(step);
        // The ring is drained on any event; a vCPU whose slot is not READY is not answered.
        rig.answers.forEach((n, v) => {
          if (n !== before[v]) throw new InvariantViolation(`${step}: stray event on port ${op.port} answered vCPU ${v}`);
        });
        ramConsistent(rig, [], step);
        break;
      }
      case 'tick':
        rig.clock.advance(op.frames * FRAME_NS);
        rig.drain(step);
        ramConsistent(rig, [], step);
        break;
    }
    if (!rig.server.running) throw new InvariantViolation(`${step}: the server stopped`);
    mappingConsistent(rig, step);
    irqConsistent(rig, step);
  });
  // Still serving: every vCPU reads the IDs, and the ring is empty after an event.
  for (let v = 0; v < rig.vcpus; v++) {
    const id = rig.configRead(v, 0, 4) >>> 0;
    if (id !== PIIX3_ID) throw new InvariantViolation(`end: vCPU ${v} reads ID 0x${id.toString(16)}`);
  }
  if (rig.s.bufPage) {
    const { read, write } = bufPointers(rig.s.bufPage);
    if (read !== write) throw new InvariantViolation(`end: buffered ring not consumed (read ${read}, write ${write})`);
  }
  ramConsistent(rig, [], 'end');
  if (c.stop) await stopChecks(rig);
}

/** The device model stops: the server is destroyed, every mapping released, and nothing runs any more. */
async function stopChecks(rig: IoreqRig): Promise<void> {
  await rig.server.stop();
  rig.drain('stop');
  if (rig.server.running) throw new InvariantViolation('stop: still running');
  if ((await rig.server.stopped) !== 'stop') throw new InvariantViolation('stop: wrong stop reason');
  if (rig.hv.serverList.length) throw new InvariantViolation('stop: ioreq server not destroyed');
  if (rig.hv.mappings.live !== 0) throw new InvariantViolation(`stop: ${rig.hv.mappings.live} guest mappings left`);
  // Time passes and a stray event arrives: the stopped model neither runs frames nor answers.
  rig.clock.advance(10 * FRAME_NS);
  for (const p of rig.s.vcpuPorts) rig.hv.notifyFromXen(p);
  rig.drain('after stop');
  ramConsistent(rig, [], 'after stop');
  rig.dmaPages.clear();
}

/**
 * Run `runs` cases. Asynchronous on purpose: the server queues its dirty-page
 * flush as a microtask, which keeps the case's domain alive until it runs, so
 * each case yields once before the next.
 */
export async function fuzzIoreq(runs: number, seed?: number): Promise<{ runs: number; failures: number; error?: string }> {
  const result = await fc.check(fc.asyncProperty(ioreqCaseArb, (c) => runIoreqCase(c)), { numRuns: runs, seed, endOnFailure: true, includeErrorInReport: true });
  return { runs: result.numRuns, failures: result.failed ? 1 : 0, error: result.failed ? fc.defaultReportMessage(result) : undefined };
}

/** The per-step checks, for tests that show they bite. */
export const ioreqChecks = { ramConsistent, mappingConsistent, irqConsistent };
