/**
 * Hostile-guest fuzzing of the controller: random register sequences,
 * random schedules (loops, pointers past RAM, invalid PIDs, edge MaxLen
 * values), random device answers (NAK, stall, babble, timeouts, async
 * completions at random times, a device with stable NAKs whose answer
 * changes), hot plug in the middle of transfers. Guest memory offers
 * readU32 in most cases (the production fast path for TD fetches, and what
 * frame replay needs) and plain reads in the others.
 * Checked after every step and every frame (checking-memory.ts,
 * frame-invariants.ts):
 *  - nothing escapes the controller and nothing is contained as an
 *    internal fault (an internal fault would be a Host System Error that
 *    hides the bug);
 *  - TDs are fetched 16-byte aligned inside RAM; per-frame work (links,
 *    reads, transactions) is bounded; wire time fits the SOFMOD budget;
 *  - the controller writes guest memory only where a real controller may,
 *    retires each fetched TD at most once, and asks for the IOC and SPD
 *    interrupts its retires require;
 *  - the IRQ level is QEMU's uhci_update_irq level, both ways;
 *  - replayed frames have no effect, and a case whose frames were replayed
 *    ends exactly as the same case run with frame replay off (every write,
 *    and the registers and IRQ level after every step).
 * QEMU's USB CVE classes are covered by the generators: endless TD/QH
 * chains, DMA to unmapped memory, oversized SETUP wLength.
 */
import fc from 'fast-check';
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import type { Logger } from '../../src/platform/logger.js';
import type { GuestMemory } from '../../src/platform/memory.js';
import { UhciController, FRAME_NS } from '../../src/uhci/controller.js';
import { LINK, TD_CTRL } from '../../src/uhci/descriptors.js';
import { PID_IN, PID_OUT, PID_SETUP, type UsbStatus } from '../../src/usb/packet.js';
import { createDevice } from '../../src/usb/devices.js';
import { FakeDevice } from '../support/fake-device.js';
import { CheckingMemory, InvariantViolation } from './checking-memory.js';
import { checkFrames, checkIrq } from './frame-invariants.js';
import { StableNakDevice } from './stable-nak-device.js';

const FRAME_LIST = 0x1000;

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
// Small MaxLen and answer lengths make "one byte short" (and so the SPD rule's edge) common.
const maxLenArb = fc.oneof(
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 8 }) },
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
/**
 * A TD a driver would write: active, C_ERR 3, the LS bit of the device at its
 * address (1: full speed on port 0, 2: low speed on port 1), a valid PID and
 * a small MaxLen with its buffer in RAM; IOC, SPD and the link random. These
 * reach the transaction and retire paths that random words mostly miss.
 */
const wellFormedTdArb = (link: fc.Arbitrary<number>) =>
  fc.record({
    slot,
    link,
    dev: fc.constantFrom(1, 2),
    ioc: fc.boolean(),
    spd: fc.boolean(),
    pid: fc.constantFrom(PID_IN, PID_IN, PID_OUT),
    ep: fc.integer({ min: 1, max: 2 }),
    toggle: fc.integer({ min: 0, max: 1 }),
    maxLen: fc.integer({ min: 1, max: 8 }),
    buffer: fc.integer({ min: 0x8000, max: 0x3f000 }),
  })
  .map((t) => ({
    kind: 'td' as const,
    slot: t.slot,
    link: t.link,
    ctrl: (TD_CTRL.bit.ACTIVE | (3 << TD_CTRL.lsb.CERR) | (t.dev === 2 ? TD_CTRL.bit.LS : 0) | (t.ioc ? TD_CTRL.bit.IOC : 0) | (t.spd ? TD_CTRL.bit.SPD : 0)) >>> 0,
    pid: t.pid,
    dev: t.dev,
    ep: t.ep,
    toggle: t.toggle,
    maxLen: t.maxLen,
    buffer: t.buffer,
  }));
const qhArb = fc.record({ kind: fc.constant('qh' as const), slot, head: linkArb, element: linkArb });

/** A SETUP payload, including oversized wLength (QEMU CVE-2020-14364 class). */
const setupPayloadArb = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }));

const responseArb: fc.Arbitrary<{ status: UsbStatus; data?: number[] }> = fc.oneof(
  fc.constant({ status: 'nak' as UsbStatus }),
  fc.constant({ status: 'stall' as UsbStatus }),
  fc.constant({ status: 'ioerror' as UsbStatus }),
  fc.constant({ status: 'async' as UsbStatus }),
  fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 80 }).map((data) => ({ status: 'ack' as UsbStatus, data })),
  fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 8 }).map((data) => ({ status: 'ack' as UsbStatus, data })),
);

const ioArb = fc.tuple(fc.constant('io' as const), fc.integer({ min: 0, max: 0x1f }), fc.constantFrom(1, 2, 4) as fc.Arbitrary<1 | 2 | 4>, fc.integer({ min: 0, max: 0xffffffff }));
/** What a driver's interrupt handler does: clear USBSTS bits, change USBINTR. */
const tameIoArb = fc.tuple(fc.constant('io' as const), fc.constantFrom(0x02, 0x04), fc.constant(2 as 1 | 2 | 4), fc.integer({ min: 0, max: 0x3f }));
const opArb = (io: typeof ioArb, tame: boolean) => fc.oneof(
  { weight: 3, arbitrary: io },
  // Mostly short runs: a looping schedule costs the full link budget every frame, and
  // what happens over many frames (in-flight TDs unseen for 32 frames) needs only some long ones.
  { weight: 2, arbitrary: fc.tuple(fc.constant('run' as const), fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 4 }) }, { weight: 1, arbitrary: fc.integer({ min: 5, max: 40 }) })) },
  { weight: 1, arbitrary: fc.tuple(fc.constant('async-complete' as const), fc.integer({ min: 0, max: 1 }), responseArb) },
  { weight: 1, arbitrary: fc.tuple(fc.constant('plug' as const), fc.integer({ min: 0, max: 1 }), fc.boolean()) },
  // Tame: what a driver does to queue work without I/O, (re)activate a TD (seen by replay's memory check only).
  {
    weight: 1,
    arbitrary: tame
      ? fc.tuple(fc.constant('guest-write' as const), slot, fc.constant(1), fc.tuple(fc.boolean(), fc.boolean()).map(([ioc, spd]) => (TD_CTRL.bit.ACTIVE | (3 << TD_CTRL.lsb.CERR) | (ioc ? TD_CTRL.bit.IOC : 0) | (spd ? TD_CTRL.bit.SPD : 0)) >>> 0))
      : fc.tuple(fc.constant('guest-write' as const), slot, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffffffff })),
  },
  // Restart, with the frame list anywhere (tame: where it is).
  { weight: 1, arbitrary: fc.tuple(fc.constant('start' as const), tame ? fc.constant(FRAME_LIST >>> 12) : fc.integer({ min: 0, max: 0xff })) },
  { weight: 1, arbitrary: fc.tuple(fc.constant('offer' as const), fc.integer({ min: 0, max: 2 })) },
);

/** Links a driver writes: to a schedule slot, or Terminate. */
const slotLinkArb = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(slot, fc.boolean(), fc.boolean()).map(([s, q, vf]) => (slotAddr(s) | (q ? LINK.bit.Q : 0) | (vf ? LINK.bit.VF : 0)) >>> 0) },
  { weight: 1, arbitrary: fc.constant(LINK.bit.T) },
);
const tameQhArb = fc.record({ kind: fc.constant('qh' as const), slot, head: slotLinkArb, element: slotLinkArb });

/**
 * Half the cases are hostile (random words anywhere, random register
 * writes: most end soon in a process or system error); the other half are
 * tame (well-formed TDs and QHs linked among themselves, only the register
 * writes of an interrupt handler), so that TDs are really run and retired.
 */
const caseFields = (tame: boolean) => ({
  tame: fc.constant(tame),
  objects: tame
    ? fc.array(fc.oneof({ weight: 2, arbitrary: wellFormedTdArb(slotLinkArb) }, { weight: 1, arbitrary: tameQhArb }), { minLength: 1, maxLength: 40 })
    : fc.array(fc.oneof({ weight: 2, arbitrary: tdArb }, { weight: 1, arbitrary: wellFormedTdArb(linkArb) }, { weight: 1, arbitrary: qhArb }), { minLength: 1, maxLength: 40 }),
  frameLinks: fc.array(tame ? slotLinkArb : linkArb, { minLength: 1, maxLength: 8 }),
  setups: fc.array(setupPayloadArb, { maxLength: 4 }),
  responses: fc.array(fc.array(responseArb, { maxLength: 12 }), { minLength: 2, maxLength: 2 }),
  /** What sits on port 0 (port 1 always has a low-speed fake). */
  device0: fc.constantFrom('fake' as const, 'tablet' as const, 'stable' as const),
  /** Guest memory offers readU32 (production RAM) or not. */
  fast: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  ops: fc.array(opArb(tame ? tameIoArb : ioArb, tame), { minLength: 1, maxLength: 30 }),
});
/**
 * A tame case's links point at objects, with the Q bit of the object's kind
 * (the last object laid out in a slot is the one there): a link to an empty
 * slot goes to one of the objects instead.
 */
function linkObjects<C extends { objects: SlotObject[]; frameLinks: number[] }>(c: C): C {
  const kinds = new Map<number, 'td' | 'qh'>();
  for (const o of c.objects) kinds.set(slotAddr(o.slot), o.kind);
  const fix = (link: number) => {
    if (link & LINK.bit.T) return link;
    let addr = link & LINK.bit.PTR;
    if (!kinds.has(addr)) addr = slotAddr(c.objects[((addr - slotAddr(0)) >>> 5) % c.objects.length]!.slot);
    const kind = kinds.get(addr)!;
    return (addr | (link & LINK.bit.VF) | (kind === 'qh' ? LINK.bit.Q : 0)) >>> 0;
  };
  return {
    ...c,
    objects: c.objects.map((o) => (o.kind === 'qh' ? { ...o, head: fix(o.head), element: fix(o.element) } : { ...o, link: fix(o.link) })),
    frameLinks: c.frameLinks.map(fix),
  };
}
type SlotObject = { kind: 'qh'; slot: number; head: number; element: number } | { kind: 'td'; slot: number; link: number };

export const caseArb = fc.oneof(fc.record(caseFields(false)), fc.record(caseFields(true)).map(linkObjects));
export type FuzzCase = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;


// ------------------------------------------------------------------ the run

/** What one run of a case did. */
export interface CaseOutcome {
  walks: number;
  replayed: number;
  /** Every write and the state after every step (CheckingMemory.digest). */
  digest: number;
}

/** Run one case (frame replay on or off); throws InvariantViolation on any broken invariant. */
export function runCase(c: FuzzCase, replay = true): CaseOutcome {
  const mem = new CheckingMemory(true, c.fast);
  // Without the fast path the controller sees read/write only.
  const guest: GuestMemory = c.fast ? mem : { read: (a, b) => mem.read(a, b), write: (a, b) => mem.write(a, b) };
  const irq = new LatchedIrq();
  const clock = new ManualClock();
  let internalFault: string | null = null;
  const logger: Logger = {
    log(level, _component, msg, fields) {
      if (level === 'error') internalFault ??= `${msg} (${String(fields?.['error'])})`;
    },
  };
  const hc = new UhciController({ mem: guest, irq, clock, idleCoalesce: 1, replayQuiescent: replay, logger });
  const counters = checkFrames(hc, mem);
  const fakes = [new FakeDevice(), new FakeDevice('low')];
  fakes.forEach((f, i) => {
    f.script = [...c.responses[i]!];
    f.fallback = { status: 'nak' };
  });
  const stable = new StableNakDevice();
  const dev0 = c.device0 === 'tablet' ? createDevice('usb-tablet', { clock }) : c.device0 === 'stable' ? stable : fakes[0]!;
  const devices = [dev0, fakes[1]!];

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

  /** After every step: nothing broke, and the state joins the digest. */
  const check = (where: string) => {
    if (mem.violation) throw new InvariantViolation(`${mem.violation} (swallowed, seen ${where})`);
    if (internalFault) mem.fail(`internal fault ${where}: ${internalFault}`);
    checkIrq(hc, irq.level, mem, where);
    mem.note(hc.cmd, hc.status, hc.status2, hc.intr, hc.frnum, irq.level ? 1 : 0);
  };
  const runFrames = (n: number) => {
    for (let i = 0; i < n; i++) {
      clock.advance(FRAME_NS);
      check('after a frame');
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
  stable.address = 1;
  hc.ioWrite(0x08, 4, FRAME_LIST);
  hc.ioWrite(0x04, 2, 0xf);
  hc.ioWrite(0x00, 2, 0x00c1);

  for (const op of c.ops) {
    switch (op[0]) {
      case 'io': {
        const [, off, size, value] = op;
        // FLBASEADD is kept inside RAM most of the time: pointing it anywhere is covered by 'start'.
        hc.ioWrite(off, size, off === 0x08 || off === 0x0a ? FRAME_LIST : value);
        mem.note(hc.ioRead(off, size));
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
      case 'offer':
        stable.offer(op[1]);
        break;
    }
    check(`after ${op[0]}`);
  }
  runFrames(5);
  return { walks: counters.walks, replayed: counters.replayed, digest: mem.digest };
}

/** Totals over a fuzz run (shrinking runs included). */
export interface FuzzResult {
  runs: number;
  failures: number;
  error?: string;
  /** Cases in which some frame was replayed (each also run with replay off and compared). */
  casesReplayed: number;
  framesReplayed: number;
  framesWalked: number;
}

/** One case: run it; if frames were replayed, run it again without replay and compare. */
function runAndCompare(c: FuzzCase, totals: FuzzResult): void {
  const a = runCase(c, true);
  totals.framesWalked += a.walks;
  totals.framesReplayed += a.replayed;
  if (a.replayed === 0) return;
  totals.casesReplayed++;
  const b = runCase(c, false);
  if (b.replayed !== 0) throw new InvariantViolation(`${b.replayed} frames replayed with replay off`);
  if (a.digest !== b.digest) throw new InvariantViolation(`frame replay changed the outcome (${a.replayed} frames replayed): digest ${a.digest} vs ${b.digest} without replay`);
}

export function fuzz(runs: number, seed?: number): FuzzResult {
  const totals: FuzzResult = { runs: 0, failures: 0, casesReplayed: 0, framesReplayed: 0, framesWalked: 0 };
  const result = fc.check(
    fc.property(caseArb, (c) => runAndCompare(c, totals)),
    { numRuns: runs, seed, endOnFailure: true, includeErrorInReport: true },
  );
  totals.runs = result.numRuns;
  totals.failures = result.failed ? 1 : 0;
  if (result.failed) totals.error = fc.defaultReportMessage(result);
  return totals;
}
