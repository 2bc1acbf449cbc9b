/**
 * Invariants the fuzzer checks per frame and per step, around a controller
 * whose guest memory is a CheckingMemory:
 *  - every walk: at most MAX_LINKS_PER_FRAME (+1 for the fetch that hits the
 *    cap) links and a bounded number of schedule reads; wire time
 *    (FrameStats.bits) within the frame's budget from SOFMOD (UHCI DG §2.1.6
 *    SOFMOD; timing.ts frameBitTimes); the IOC / SPD interrupts asked for by
 *    the TDs it retired are pending at its end, and it asks for none
 *    without a cause (a TD with IOC set; a short IN TD with SPD set) (UHCI
 *    DG §3.2.2);
 *  - every replayed frame: no write, no interrupt, no transaction, and only
 *    the memo's check reads;
 *  - the IRQ line equals QEMU 7.2's uhci_update_irq (hw/usb/hcd-uhci.c)
 *    computed from USBSTS, the hidden status2 and USBINTR: asserted when it
 *    says so and deasserted when it does not.
 * The walk and the replay are observed by wrapping the engine's two entry
 * points on this instance (test code only; the engine is unchanged).
 */
import type { UhciController } from '../../src/uhci/controller.js';
import { MEMO_SHARED_WORDS } from '../../src/uhci/frame-replay.js';
import { MAX_LINKS_PER_FRAME } from '../../src/uhci/schedule.js';
import { PENDING_IOC, PENDING_SPD } from '../../src/uhci/schedule-host.js';
import { uhciWireTimer } from '../../src/uhci/timing.js';
import type { CheckingMemory } from './checking-memory.js';

/** USBSTS bits (UHCI DG §2.1.2) and USBINTR bits (§2.1.3). */
const STS_USBERRINT = 1 << 1;
const STS_RD = 1 << 2;
const STS_HSE = 1 << 3;
const STS_HCPE = 1 << 4;
const INTR_TOCRC = 1 << 0;
const INTR_RESUME = 1 << 1;
const INTR_IOC = 1 << 2;
const INTR_SP = 1 << 3;

/** Schedule reads one walk may make: the frame-list entry, 4 per link, and the memo's check of its words. */
const MAX_WALK_READS = 1 + 4 * MAX_LINKS_PER_FRAME + MEMO_SHARED_WORDS;
/** Reads a replay may make: the frame-list entry and the memo's check. */
const MAX_REPLAY_READS = 1 + MEMO_SHARED_WORDS;
/** Transactions one frame may run (12,000 bit times hold fewer than 1,500 of the shortest). */
const MAX_TRANSACTIONS = 1500;

/**
 * QEMU 7.2 uhci_update_irq: status2 bit 0 (IOC) with USBINTR IOC, status2
 * bit 1 (short packet) with USBINTR SP, USBERR with timeout/CRC, Resume
 * Detect with resume, and HSE or HCPE whatever USBINTR says.
 */
export function qemuIrqLevel(status: number, status2: number, intr: number): boolean {
  return (
    (status2 & 1 && intr & INTR_IOC) !== 0 ||
    (status2 & 2 && intr & INTR_SP) !== 0 ||
    (status & STS_USBERRINT && intr & INTR_TOCRC) !== 0 ||
    (status & STS_RD && intr & INTR_RESUME) !== 0 ||
    (status & (STS_HSE | STS_HCPE)) !== 0
  );
}

/** The IRQ line must be exactly QEMU's level, both ways. */
export function checkIrq(hc: UhciController, level: boolean, mem: CheckingMemory, where: string): void {
  const want = qemuIrqLevel(hc.status, hc.status2, hc.intr);
  if (level !== want) {
    mem.fail(`IRQ ${level ? 'asserted' : 'deasserted'}, QEMU's level is ${want} (USBSTS 0x${hc.status.toString(16)} status2 ${hc.status2} USBINTR 0x${hc.intr.toString(16)}) ${where}`);
  }
}

export interface FrameCounters {
  walks: number;
  replayed: number;
}

/** Check every walk and every replay of `hc` from now on. */
export function checkFrames(hc: UhciController, mem: CheckingMemory): FrameCounters {
  const engine = hc.engine;
  const counters: FrameCounters = { walks: 0, replayed: 0 };
  mem.pendingInt = () => engine.pendingInt;
  const walk = engine.processFrame.bind(engine);
  engine.processFrame = (flBase: number, frnum: number): boolean => {
    mem.beginWalk();
    const sofmod = hc.sofmod & 0x7f;
    const budget = uhciWireTimer.frameBits(sofmod);
    const pendingBefore = engine.pendingInt;
    const ok = walk(flBase, frnum);
    counters.walks++;
    const st = engine.stats;
    if (st.links > MAX_LINKS_PER_FRAME + 1) mem.fail(`frame ${frnum} fetched ${st.links} links`);
    if (mem.reads > MAX_WALK_READS) mem.fail(`frame ${frnum} made ${mem.reads} schedule reads`);
    if (st.transactions > MAX_TRANSACTIONS) mem.fail(`frame ${frnum} ran ${st.transactions} transactions`);
    if (st.bits > budget) mem.fail(`frame ${frnum} used ${st.bits} bit times, budget ${budget} (SOFMOD ${sofmod})`);
    if (mem.expectIoc && !(engine.pendingInt & PENDING_IOC)) mem.fail(`frame ${frnum} retired a TD with IOC but no IOC interrupt is pending`);
    if (mem.expectSpd && !(engine.pendingInt & PENDING_SPD)) mem.fail(`frame ${frnum} retired a short IN TD with SPD but no short-packet interrupt is pending`);
    // And the other way: an interrupt the walk asked for has a cause in the walk.
    const asked = engine.pendingInt & ~pendingBefore;
    if (asked & PENDING_IOC && !mem.iocJustified) mem.fail(`frame ${frnum} asked for IOC without fetching a TD with IOC set`);
    if (asked & PENDING_SPD && !mem.spdJustified) mem.fail(`frame ${frnum} asked for the short-packet interrupt without retiring a short IN TD with SPD set`);
    return ok;
  };
  const replay = engine.replayQuiescentFrame.bind(engine);
  engine.replayQuiescentFrame = (flBase: number, frnum: number): boolean => {
    mem.beginWalk();
    const writes = mem.writes;
    const replayed = replay(flBase, frnum);
    if (mem.reads > MAX_REPLAY_READS) mem.fail(`replay check of frame ${frnum} made ${mem.reads} reads`);
    if (replayed) {
      counters.replayed++;
      const st = engine.stats;
      if (mem.writes !== writes || engine.pendingInt !== 0 || st.transactions !== 0 || st.bits !== 0 || st.effects !== 0) {
        mem.fail(`replayed frame ${frnum} had effects`);
      }
    }
    return replayed;
  };
  return counters;
}
