/**
 * The UHCI schedule engine: one frame's walk of frame list → QH → TD
 * (UHCI Design Guide §3.4 "Data structure processing"; QEMU's
 * uhci_process_frame), handing each TD to TdExecution (uhci_handle_td).
 * The engine is the controller's one entry point to the schedule; its
 * parts, one concept each:
 *  - td-execution.ts: one TD's transaction and write-back;
 *  - td-status.ts: TD state transitions as pure functions;
 *  - async-queue.ts: packets in flight and their life cycle;
 *  - frame-replay.ts: quiescent frames remembered and replayed;
 *  - frame-memory.ts, qh-seen-set.ts, packet-scratch.ts: the walk's
 *    memory access, loop detector and reusable buffers (no per-frame
 *    allocation).
 *
 * Work per frame is bounded three ways, because Linux builds a schedule
 * that loops on purpose (full-speed bandwidth reclamation, FSBR):
 *  - wire time: every transaction costs its bit times (WireTimer) and a
 *    transaction that cannot finish before EOF is left for the next frame;
 *  - idle loops: when the walk comes back to a QH and no TD completed since
 *    the last visit, nothing more can happen this frame (QEMU's rule);
 *  - a hard cap on link fetches per frame (MAX_LINKS_PER_FRAME), which also
 *    models the memory bandwidth a real controller spends fetching.
 */
import { GuestMemoryFault } from '../platform/memory.js';
import type { UsbDevice, UsbPacket } from '../usb/packet.js';
import { AsyncQueue } from './async-queue.js';
import { FrameMemory } from './frame-memory.js';
import { QuiescenceMemo } from './frame-replay.js';
import { QhSeenSet } from './qh-seen-set.js';
import type { FrameStats, ScheduleHost } from './schedule-host.js';
import { TdExecution } from './td-execution.js';
import { LINK } from './descriptors.js';
import { frameListIndex } from './registers.js';

/** Hard cap on frame-list/QH/TD fetches in one frame (QEMU uses 256 link follows). */
export const MAX_LINKS_PER_FRAME = 1024;

export class ScheduleEngine {
  readonly stats: FrameStats = { links: 0, transactions: 0, bits: 0, completed: 0, effects: 0 };
  /** Packets in flight. */
  readonly inflight: AsyncQueue;
  /** Replay quiescent frames at all (needs plain RAM, see processFrame). */
  replayEnabled = true;
  /** Frames answered from the memo instead of a walk (statistics). */
  framesReplayed = 0;
  /** Guest-memory words all a walk can read: the frame-list entry + 4 per link. */
  private readonly memo = new QuiescenceMemo(1 + 4 * MAX_LINKS_PER_FRAME);
  private readonly mem: FrameMemory;
  private readonly qhSeen = new QhSeenSet();
  private readonly td: TdExecution;

  constructor(private readonly host: ScheduleHost) {
    this.inflight = new AsyncQueue((msg) => host.log('debug', msg));
    this.mem = new FrameMemory(this.memo, this.stats);
    this.td = new TdExecution(host, this.mem, this.memo, this.inflight, this.stats);
  }

  /** Interrupt causes to report at the end of the current frame (PENDING_IOC | PENDING_SPD). */
  get pendingInt(): number {
    return this.td.pendingInt;
  }
  set pendingInt(v: number) {
    this.td.pendingInt = v;
  }

  /**
   * Process one frame. Returns false if the walk stopped on a DMA fault or a
   * process error (the controller has been halted by `host.fatal`).
   */
  processFrame(flBase: number, frnum: number): boolean {
    const host = this.host;
    const stats = this.stats;
    const mem = this.mem;
    const memo = this.memo;
    const qhSeen = this.qhSeen;
    this.startFrameStats();
    this.td.beginFrame(host.timer.frameBits(host.sofmod));
    mem.begin(host.mem);
    qhSeen.reset();
    // Only plain RAM (readU32: reads have no side effects and nobody
    // records them) can be checked instead of walked.
    memo.beginWalk(this.replayEnabled && mem.fast !== null);
    let completedSinceLoop = 0;
    try {
      let link = mem.read32(flBase + (frameListIndex(frnum) << 2));
      let qhAddr = 0; // current QH (0: none)
      let qhHead = 0;
      while ((link & LINK.bit.T) === 0) {
        if (++stats.links > MAX_LINKS_PER_FRAME) {
          memo.stopRecording();
          host.log('debug', 'frame link budget exhausted');
          break;
        }
        if (link & LINK.bit.Q) {
          const addr = link & LINK.bit.PTR;
          if (qhSeen.visit(addr)) {
            // Back at a QH we already visited this frame: a schedule loop (e.g.
            // Linux FSBR). Keep going only while transactions complete.
            if (completedSinceLoop === 0) break;
            completedSinceLoop = 0;
            qhSeen.reset();
            qhSeen.visit(addr);
          }
          const head = mem.read32(addr);
          const element = mem.read32(addr + 4);
          if (element & LINK.bit.T) {
            qhAddr = 0;
            link = head;
          } else {
            qhAddr = addr;
            qhHead = head;
            link = element;
          }
          continue;
        }
        // A TD.
        const tdAddr = link & LINK.bit.PTR;
        mem.fetchTd(tdAddr);
        const tdLink = mem.tdLink;
        const result = this.td.run(tdAddr, mem.tdCtrl, mem.tdToken, mem.tdBuffer);
        if (result === 'stop-frame') break;
        if (result === 'complete') {
          completedSinceLoop++;
          stats.completed++;
          if (qhAddr !== 0) {
            // Advance the QH element pointer to the next TD (UHCI DG §3.4.2).
            mem.write32(qhAddr + 4, tdLink);
            if ((tdLink & LINK.bit.VF) === 0 || (tdLink & LINK.bit.T) !== 0) {
              // Breadth first (or the queue's end): on to the next QH.
              qhAddr = 0;
              link = qhHead;
            } else {
              // Depth first: the next TD of this queue.
              link = tdLink;
            }
          } else {
            link = tdLink;
          }
          if (host.singleStep) {
            host.stopAfterTransaction();
            break;
          }
          continue;
        }
        // next-qh / async: leave this queue for now.
        if (qhAddr !== 0) {
          qhAddr = 0;
          link = qhHead;
        } else {
          link = tdLink;
        }
      }
    } catch (e) {
      memo.stopRecording();
      memo.forget();
      if (e instanceof GuestMemoryFault) {
        host.fatal('hse', e.message);
        return false;
      }
      throw e;
    }
    this.inflight.expireUnseen();
    if (stats.effects !== 0 || this.td.pendingInt !== 0 || this.inflight.size !== 0) {
      // Something happened: what earlier walks read may have changed.
      memo.forget();
    } else if (memo.recording) {
      memo.remember(mem.mem);
    }
    memo.stopRecording();
    return true;
  }

  /** A frame starts (walked or replayed): zero its counters, count it. */
  private startFrameStats(): void {
    const stats = this.stats;
    stats.links = 0;
    stats.transactions = 0;
    stats.bits = 0;
    stats.completed = 0;
    stats.effects = 0;
    this.inflight.nextFrame();
  }

  /**
   * Account frame `frnum` without a walk, if a walk from its frame-list
   * entry is remembered as quiescent and nothing it depends on changed
   * (frame-replay.ts). The frame's outcome is then known to be empty (no
   * write, no status, no interrupt). Returns false when the frame must be
   * walked.
   */
  replayQuiescentFrame(flBase: number, frnum: number): boolean {
    if (!this.memo.covers(this.host.mem, flBase, frnum)) return false;
    this.startFrameStats();
    this.framesReplayed++;
    return true;
  }

  /** Drop every remembered walk (a register, device or memory change the memo cannot see). */
  forgetQuiescence(): void {
    this.memo.forget();
  }

  /** A new batch of frames starts: remembered walks are checked against memory again before a replay. */
  newBatch(): void {
    this.memo.newBatch();
  }

  /** A device finished an async packet. */
  asyncComplete(packet: UsbPacket): void {
    this.inflight.complete(packet);
  }

  /** Cancel everything (controller stop/reset). */
  cancelAll(): void {
    this.inflight.cancelAll();
    this.td.pendingInt = 0;
  }

  /** Cancel the packets of one device (unplug). */
  cancelDevice(dev: UsbDevice): void {
    this.inflight.cancelDevice(dev);
  }
}
