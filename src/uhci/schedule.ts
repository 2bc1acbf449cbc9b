/**
 * The UHCI schedule engine: one frame's walk of frame list → QH → TD
 * (UHCI Design Guide §3.4 "Data structure processing"), executing each
 * active TD as a USB transaction against the device at its address.
 *
 * Work per frame is bounded three ways, because Linux builds a schedule
 * that loops on purpose (full-speed bandwidth reclamation, FSBR):
 *  - wire time: every transaction costs its bit times (WireTimer) and a
 *    transaction that cannot finish before EOF is left for the next frame;
 *  - idle loops: when the walk comes back to a QH and no TD completed since
 *    the last visit, nothing more can happen this frame (QEMU's rule);
 *  - a hard cap on link fetches per frame (MAX_LINKS_PER_FRAME), which also
 *    models the memory bandwidth a real controller spends fetching.
 *
 * Devices that answer `async` keep their TD in flight: the TD stays Active
 * in guest memory and is completed exactly once when the device finishes
 * and the walk reaches it again; a TD the guest unlinks or deactivates is
 * cancelled at the device (QEMU's UHCIQueue/UHCIAsync semantics).
 *
 * Quiescent frames are replayed, not walked (see `replayQuiescentFrame`):
 * a walk that wrote nothing, raised nothing, left nothing in flight and
 * only met NAKs from devices whose NAK is stable (`StableNak`) is a pure
 * function of the guest-memory words it read, the registers and the device
 * states, and depends on the frame number only through the frame-list
 * entry it starts from. While none of those changed, walking any frame whose
 * entry is remembered would give exactly the same (empty) result, so the
 * engine checks the words (once per batch of frames) and advances the frame.
 * Only plain RAM (GuestMemory.readU32: reads have no side effects and are not
 * recorded) is checked this way; trace recording and replay walk every frame.
 * A guest queues work by writing memory without I/O, so a change is seen at
 * the next batch: within the controller's idle coalescing period.
 */
import { GuestMemoryFault, type GuestMemory } from '../platform/memory.js';
import { PID_IN, PID_OUT, PID_SETUP, UsbPacket, type TokenPid, type UsbDevice, type UsbStatus } from '../usb/packet.js';
import {
  LINK_PTR_MASK,
  LINK_Q,
  LINK_T,
  LINK_VF,
  TDC_ACTIVE,
  TDC_ACTLEN_MASK,
  TDC_BABBLE,
  TDC_CERR_MASK,
  TDC_CERR_SHIFT,
  TDC_CRCTO,
  TDC_IOC,
  TDC_IOS,
  TDC_LS,
  TDC_NAK,
  TDC_SPD,
  TDC_STALLED,
  tokenMaxLen,
  tokenQueueKey,
} from './descriptors.js';
import type { WireTimer } from './wire-timer.js';

/** Hard cap on frame-list/QH/TD fetches in one frame (QEMU uses 256 link follows). */
export const MAX_LINKS_PER_FRAME = 1024;
/** QH loop detector size (QEMU: UHCI_MAX_QUEUES 128). */
const MAX_QH_SEEN = 128;
/** Hash table slots for the loop detector (power of two, at least 2 × MAX_QH_SEEN). */
const QH_TABLE_SIZE = 256;
/** Frames an in-flight TD may go unseen before it counts as unlinked and is cancelled. */
export const INFLIGHT_UNSEEN_FRAMES = 32;
/** Largest buffer a TD can describe: MaxLen field 0x4FF → 1280 bytes (UHCI DG §3.2.3); larger values are invalid. */
export const MAX_TD_LENGTH = 0x500;

/** Guest-memory words one walk may read and still be remembered: all a walk can read (entry + 4 per link). */
export const MEMO_WALK_WORDS = 1 + 4 * MAX_LINKS_PER_FRAME;
/** Distinct words (QH/TD fields) all remembered walks may share. */
export const MEMO_SHARED_WORDS = 4096;
const MEMO_TABLE_SIZE = 8192;
/** Distinct frame-list entries (start links) remembered at once (Linux uses 8: one per interrupt interval). */
export const MEMO_LINKS = 64;

/**
 * Optional device capability for frame replay: a device whose NAK is stable
 * answers NAK without side effects, and keeps answering NAK to the same
 * token until it calls UsbPortHooks.activity() (new input, an idle period
 * expired, an endpoint became ready) or a transaction or reset reaches it
 * that does not NAK. Devices that do not say so (host passthrough, trace
 * recording and replay proxies, test fakes) are walked every frame.
 */
export interface StableNak {
  readonly nakIsStable: true;
}

export function hasStableNak(dev: UsbDevice): boolean {
  return (dev as Partial<StableNak>).nakIsStable === true;
}

/** End-of-frame interrupt causes kept until the frame ends (QEMU's pending_int_mask). */
export const PENDING_IOC = 1;
export const PENDING_SPD = 2;

export type TdOutcome = 'stop-frame' | 'complete' | 'next-qh' | 'async';

/** Everything the engine needs from its controller. */
export interface ScheduleHost {
  readonly mem: GuestMemory;
  readonly timer: WireTimer;
  /** Device at USB address `addr` behind an enabled port, or null. */
  findDevice(addr: number): UsbDevice | null;
  /** Set USBSTS bits (and update the IRQ line). */
  raiseStatus(bits: number): void;
  /** HC Process Error or Host System Error: status set, RS cleared, controller halts. */
  fatal(kind: 'hcpe' | 'hse', why: string): void;
  /** Software debug mode: stop after this transaction. */
  readonly singleStep: boolean;
  stopAfterTransaction(): void;
  readonly maxp64: boolean;
  readonly sofmod: number;
  log(level: 'debug' | 'info' | 'warn', msg: string): void;
}

/** A TD whose packet the device has not finished (or finished but not yet written back). */
export interface InFlight {
  tdAddr: number;
  token: number;
  ctrl: number;
  buffer: number;
  device: UsbDevice;
  packet: UsbPacket;
  done: boolean;
  lastSeenFrame: number;
}

export interface FrameStats {
  links: number;
  transactions: number;
  bits: number;
  completed: number;
  /** Guest-memory writes and status changes made by the frame (0 = the frame changed nothing). */
  effects: number;
}

const USBSTS_USBERRINT = 1 << 1;

export class ScheduleEngine {
  /** In-flight async packets by TD address. */
  readonly inflight = new Map<number, InFlight>();
  /** Endpoints (token queue keys) with an in-flight packet: one at a time per endpoint. */
  private readonly busyEndpoints = new Map<number, InFlight>();
  /** Interrupt causes to report at the end of the current frame. */
  pendingInt = 0;
  /** Frame counter for in-flight bookkeeping (monotonic, not FRNUM). */
  private frameSerial = 0;
  readonly stats: FrameStats = { links: 0, transactions: 0, bits: 0, completed: 0, effects: 0 };

  // Per-frame scratch (no allocation per frame).
  /**
   * QHs visited since the last loop reset: an open-addressing hash set whose
   * slots are valid only when their epoch matches (clearing = epoch + 1).
   */
  private readonly qhSeenKeys = new Uint32Array(QH_TABLE_SIZE);
  private readonly qhSeenEpochs = new Uint32Array(QH_TABLE_SIZE);
  private qhEpoch = 1;
  private qhSeenCount = 0;
  private readonly word = new Uint8Array(16);
  private readonly word4 = new Uint8Array(4);
  private readonly outBuf = new Uint8Array(MAX_TD_LENGTH);
  private elapsed = 0;
  private frameBits = 12000;
  /** Guest memory for this frame (sampled from the host at frame start). */
  private mem: GuestMemory = { read() {}, write() {} };
  /** `mem` when it offers readU32, else null. */
  private fast: GuestMemory | null = null;
  private scratchBuf = new Uint8Array(MAX_TD_LENGTH);
  private scratchViews: (Uint8Array | undefined)[] = [];
  private scratchPacket = new UsbPacket(PID_IN, 0, 0, this.scratchBuf);

  // Quiescence memo (frame replay); all preallocated.
  /** Replay quiescent frames at all (needs plain RAM, see processFrame). */
  replayEnabled = true;
  /** Frames answered from the memo instead of a walk (statistics). */
  framesReplayed = 0;
  /** Words read by the current walk: addresses and values (index 0: the frame-list entry). */
  private readonly walkAddrs = new Uint32Array(MEMO_WALK_WORDS);
  private readonly walkVals = new Uint32Array(MEMO_WALK_WORDS);
  private walkCount = 0;
  /** The current walk records its reads (false once it cannot be remembered). */
  private walkMemo = false;
  /**
   * Frame-list entries whose walk is remembered as quiescent. A walk depends
   * on its frame number only through the entry it starts from, so every
   * slot holding one of these entries replays (Linux's skeleton has 8
   * distinct entries for 1024 slots).
   */
  private readonly memoLinks = new Uint32Array(MEMO_LINKS);
  private memoLinkCount = 0;
  private memoEpoch = 1;
  /** Shared words of all remembered walks: open-addressing set (valid where used === memoEpoch). */
  private readonly memoKeys = new Uint32Array(MEMO_TABLE_SIZE);
  private readonly memoVals = new Uint32Array(MEMO_TABLE_SIZE);
  private readonly memoUsed = new Uint32Array(MEMO_TABLE_SIZE);
  /** Table indices of the shared words, for validation. */
  private readonly memoList = new Uint16Array(MEMO_SHARED_WORDS);
  private memoCount = 0;
  /** Memory the remembered walks used. */
  private memoMem: GuestMemory | null = null;
  /** The shared words were checked against guest memory in this batch. */
  private memoChecked = false;

  private scratchView(len: number): Uint8Array {
    let v = this.scratchViews[len];
    if (!v) {
      v = this.scratchBuf.subarray(0, len);
      this.scratchViews[len] = v;
    }
    return v;
  }

  private newScratch(): void {
    this.scratchBuf = new Uint8Array(MAX_TD_LENGTH);
    this.scratchViews = [];
    this.scratchPacket = new UsbPacket(PID_IN, 0, 0, this.scratchBuf);
  }

  constructor(private readonly host: ScheduleHost) {}

  private read32(addr: number): number {
    const fast = this.fast;
    if (fast) {
      const v = fast.readU32!(addr >>> 0);
      if (this.walkMemo) this.note(addr >>> 0, v);
      return v;
    }
    const w = this.word4;
    this.mem.read(addr >>> 0, w);
    return (w[0]! | (w[1]! << 8) | (w[2]! << 16) | (w[3]! << 24)) >>> 0;
  }
  private write32(addr: number, value: number): void {
    this.stats.effects++;
    const w = this.word4;
    w[0] = value & 0xff;
    w[1] = (value >>> 8) & 0xff;
    w[2] = (value >>> 16) & 0xff;
    w[3] = (value >>> 24) & 0xff;
    this.mem.write(addr >>> 0, w);
  }

  /**
   * Process one frame. Returns false if the walk stopped on a DMA fault or a
   * process error (the controller has been halted by `host.fatal`).
   */
  processFrame(flBase: number, frnum: number): boolean {
    const host = this.host;
    const stats = this.stats;
    this.startFrameStats();
    this.frameBits = host.timer.frameBits(host.sofmod);
    this.mem = host.mem;
    this.fast = this.mem.readU32 ? this.mem : null;
    this.elapsed = 0;
    this.resetQhSeen();
    // Only plain RAM (readU32: reads have no side effects and nobody
    // records them) can be checked instead of walked.
    this.walkMemo = this.replayEnabled && this.fast !== null;
    this.walkCount = 0;
    let completedSinceLoop = 0;
    try {
      let link = this.read32(flBase + ((frnum & 0x3ff) << 2));
      let qhAddr = 0; // current QH (0: none)
      let qhHead = 0;
      while ((link & LINK_T) === 0) {
        if (++stats.links > MAX_LINKS_PER_FRAME) {
          this.walkMemo = false;
          host.log('debug', 'frame link budget exhausted');
          break;
        }
        if (link & LINK_Q) {
          const addr = link & LINK_PTR_MASK;
          if (this.seenQh(addr)) {
            // Back at a QH we already visited this frame: a schedule loop (e.g.
            // Linux FSBR). Keep going only while transactions complete.
            if (completedSinceLoop === 0) break;
            completedSinceLoop = 0;
            this.resetQhSeen();
            this.seenQh(addr);
          }
          const head = this.read32(addr);
          const element = this.read32(addr + 4);
          if (element & LINK_T) {
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
        const tdAddr = link & LINK_PTR_MASK;
        let tdLink: number, ctrl: number, token: number, buffer: number;
        const fast = this.fast;
        if (fast) {
          tdLink = fast.readU32!(tdAddr);
          ctrl = fast.readU32!(tdAddr + 4);
          token = fast.readU32!(tdAddr + 8);
          buffer = fast.readU32!(tdAddr + 12);
          if (this.walkMemo) {
            this.note(tdAddr, tdLink);
            this.note(tdAddr + 4, ctrl);
            this.note(tdAddr + 8, token);
            this.note(tdAddr + 12, buffer);
          }
        } else {
          const w = this.word;
          this.mem.read(tdAddr, w);
          tdLink = (w[0]! | (w[1]! << 8) | (w[2]! << 16) | (w[3]! << 24)) >>> 0;
          ctrl = (w[4]! | (w[5]! << 8) | (w[6]! << 16) | (w[7]! << 24)) >>> 0;
          token = (w[8]! | (w[9]! << 8) | (w[10]! << 16) | (w[11]! << 24)) >>> 0;
          buffer = (w[12]! | (w[13]! << 8) | (w[14]! << 16) | (w[15]! << 24)) >>> 0;
        }
        const result = this.handleTd(tdAddr, ctrl, token, buffer, qhAddr !== 0);
        if (result === 'stop-frame') break;
        if (result === 'complete') {
          completedSinceLoop++;
          stats.completed++;
          if (qhAddr !== 0) {
            // Advance the QH element pointer to the next TD (UHCI DG §3.4.2).
            this.write32(qhAddr + 4, tdLink);
            if ((tdLink & LINK_VF) === 0 || (tdLink & LINK_T) !== 0) {
              qhAddr = 0;
              link = qhHead;
            } else {
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
      this.walkMemo = false;
      this.forgetQuiescence();
      if (e instanceof GuestMemoryFault) {
        host.fatal('hse', e.message);
        return false;
      }
      throw e;
    }
    this.expireUnseen();
    if (stats.effects !== 0 || this.pendingInt !== 0 || this.inflight.size !== 0) {
      // Something happened: what earlier walks read may have changed.
      this.forgetQuiescence();
    } else if (this.walkMemo) {
      this.remember();
    }
    this.walkMemo = false;
    return true;
  }

  /** A frame starts (walked or replayed): zero its counters, count it. */
  private startFrameStats(): void {
    const stats = this.stats;
    stats.links = 0;
    stats.transactions = 0;
    stats.completed = 0;
    stats.effects = 0;
    this.frameSerial++;
  }

  /* ------------------------------------------------ quiescent frames */

  /** Record a word the current walk read. */
  private note(addr: number, value: number): void {
    const n = this.walkCount;
    if (n >= MEMO_WALK_WORDS) {
      this.walkMemo = false;
      return;
    }
    this.walkAddrs[n] = addr;
    this.walkVals[n] = value;
    this.walkCount = n + 1;
  }

  /**
   * Remember the walk that just ended as quiescent: its start link (the
   * frame-list entry) in memoLinks, the other words it read in the shared set.
   */
  private remember(): void {
    if (this.walkCount === 0) return;
    const link = this.walkVals[0]!;
    const links = this.memoLinks;
    for (let j = 0; j < this.memoLinkCount; j++) {
      if (links[j] === link) {
        // Already known: its words must still hold (else everything is forgotten).
        this.checkShared();
        return;
      }
    }
    if (this.memoLinkCount !== 0 && this.mem !== this.memoMem) this.forgetQuiescence();
    if (this.memoLinkCount >= MEMO_LINKS) return;
    // Words read in an earlier batch must still hold before new ones join them.
    if (this.memoLinkCount !== 0 && !this.checkShared()) return;
    const keys = this.memoKeys;
    const vals = this.memoVals;
    const used = this.memoUsed;
    const epoch = this.memoEpoch;
    for (let w = 1; w < this.walkCount; w++) {
      const addr = this.walkAddrs[w]!;
      const val = this.walkVals[w]!;
      let i = (Math.imul(addr >>> 2, 0x9e3779b1) >>> 19) & (MEMO_TABLE_SIZE - 1);
      for (;;) {
        if (used[i] !== epoch) {
          if (this.memoCount >= MEMO_SHARED_WORDS) return; // too big to check cheaply: not remembered
          used[i] = epoch;
          keys[i] = addr;
          vals[i] = val;
          this.memoList[this.memoCount++] = i;
          break;
        }
        if (keys[i] === addr) {
          // Read twice with different values: the guest is writing; start over.
          if (vals[i] !== val) {
            this.forgetQuiescence();
            return;
          }
          break;
        }
        i = (i + 1) & (MEMO_TABLE_SIZE - 1);
      }
    }
    links[this.memoLinkCount++] = link;
    this.memoMem = this.mem;
  }

  /** Drop every remembered walk. */
  forgetQuiescence(): void {
    if (this.memoLinkCount === 0 && this.memoCount === 0) return;
    this.memoLinkCount = 0;
    this.memoCount = 0;
    this.memoChecked = false;
    if (++this.memoEpoch === 0xffffffff) {
      this.memoEpoch = 1;
      this.memoUsed.fill(0);
    }
  }

  /**
   * A new batch of frames starts (the guest may have written memory since
   * the last one): the shared words are checked again before the next replay.
   */
  newBatch(): void {
    this.memoChecked = false;
  }

  /** Check the shared words against guest memory once per batch; forget everything if one changed. */
  private checkShared(): boolean {
    if (this.memoChecked) return true;
    const mem = this.memoMem;
    if (!mem) return false;
    const keys = this.memoKeys;
    const vals = this.memoVals;
    const list = this.memoList;
    try {
      for (let j = 0; j < this.memoCount; j++) {
        const i = list[j]!;
        if (mem.readU32!(keys[i]!) !== vals[i]) {
          this.forgetQuiescence();
          return false;
        }
      }
    } catch {
      this.forgetQuiescence();
      return false;
    }
    this.memoChecked = true;
    return true;
  }

  /**
   * Account frame `frnum` without a walk, if a walk from its frame-list
   * entry is remembered as quiescent and nothing it depends on changed:
   * every word that walk read still holds the value it read, and the
   * controller registers and device states are unchanged (the controller
   * calls forgetQuiescence() on every register write, device activity,
   * attach, detach and reset). The frame's outcome is then known to be
   * empty (no write, no status, no interrupt). Returns false when the
   * frame must be walked.
   */
  replayQuiescentFrame(flBase: number, frnum: number): boolean {
    const count = this.memoLinkCount;
    if (count === 0) return false;
    const mem = this.host.mem;
    if (mem !== this.memoMem) return false;
    let entry: number;
    try {
      entry = mem.readU32!((flBase + ((frnum & 0x3ff) << 2)) >>> 0);
    } catch {
      return false;
    }
    const links = this.memoLinks;
    let j = 0;
    while (j < count && links[j] !== entry) j++;
    if (j === count) return false;
    if (!this.checkShared()) return false;
    this.startFrameStats();
    this.framesReplayed++;
    return true;
  }

  private resetQhSeen(): void {
    this.qhSeenCount = 0;
    if (++this.qhEpoch === 0xffffffff) {
      this.qhSeenEpochs.fill(0);
      this.qhEpoch = 1;
    }
  }

  /** Record a QH visit; true if it was already visited (or the table is full, as QEMU's qhdb). */
  private seenQh(addr: number): boolean {
    const keys = this.qhSeenKeys;
    const epochs = this.qhSeenEpochs;
    const epoch = this.qhEpoch;
    let i = (Math.imul(addr >>> 4, 0x9e3779b1) >>> 24) & (QH_TABLE_SIZE - 1);
    for (;;) {
      if (epochs[i] !== epoch) break;
      if (keys[i] === addr) return true;
      i = (i + 1) & (QH_TABLE_SIZE - 1);
    }
    if (this.qhSeenCount >= MAX_QH_SEEN) return true;
    epochs[i] = epoch;
    keys[i] = addr;
    this.qhSeenCount++;
    return false;
  }


  /** Execute one TD. Writes its status back when it changed. */
  private handleTd(tdAddr: number, ctrl: number, token: number, buffer: number, inQh: boolean): TdOutcome {
    const host = this.host;
    const pending = this.inflight.get(tdAddr);
    if (pending) {
      if (pending.token !== token || pending.buffer !== buffer || (ctrl & TDC_ACTIVE) === 0) {
        // The guest rewrote or deactivated a TD we have in flight: cancel it.
        this.cancel(pending, 'guest changed a pending TD');
      } else {
        pending.lastSeenFrame = this.frameSerial;
        if (!pending.done) return 'async';
        this.forget(pending);
        return this.finish(tdAddr, ctrl, token, buffer, pending.packet, pending.packet.data);
      }
    }

    if ((ctrl & TDC_ACTIVE) === 0) {
      // UHCI DG §3.2.2 / QEMU: an inactive TD with IOC set still requests the interrupt.
      if (ctrl & TDC_IOC) this.pendingInt |= PENDING_IOC;
      return 'next-qh';
    }

    const pid = token & 0xff;
    if (pid !== PID_IN && pid !== PID_OUT && pid !== PID_SETUP) {
      // Invalid PID: HC Process Error (UHCI DG §2.1.2 HCPE), frame aborted.
      this.stats.effects++;
      host.fatal('hcpe', `invalid PID 0x${pid.toString(16)} in TD@0x${tdAddr.toString(16)}`);
      return 'stop-frame';
    }
    if (pid === PID_SETUP && ((token >>> 15) & 0xf) !== 0) {
      // SETUP to an endpoint other than 0: treated as a schedule error (HCPE,
      // frame aborted, TD untouched), as QEMU 7.2.21+ does since the
      // CVE-2024-8354 fix; our emulated devices have no other control endpoint.
      this.stats.effects++;
      host.fatal('hcpe', `SETUP to endpoint ${(token >>> 15) & 0xf} in TD@0x${tdAddr.toString(16)}`);
      return 'stop-frame';
    }
    const maxLen = tokenMaxLen(token);
    if (maxLen > MAX_TD_LENGTH) {
      // MaxLen 0x500..0x7FE is invalid (UHCI DG §3.2.3: "the HC ... sets HC Process Error").
      this.stats.effects++;
      host.fatal('hcpe', `invalid MaxLen ${maxLen} in TD@0x${tdAddr.toString(16)}`);
      return 'stop-frame';
    }

    const key = tokenQueueKey(token);
    if (this.busyEndpoints.has(key)) {
      // Another TD of this endpoint is in flight: keep order, try again later.
      return 'async';
    }

    const devaddr = (token >>> 8) & 0x7f;
    const endpoint = (token >>> 15) & 0xf;
    const toggle = (token >>> 19) & 1;
    const lowSpeed = (ctrl & TDC_LS) !== 0;
    const iso = (ctrl & TDC_IOS) !== 0;
    const dev = host.findDevice(devaddr);

    // Data phase bytes: OUT/SETUP read from guest memory; IN gets a fresh buffer.
    // Data phase bytes: OUT/SETUP read from guest memory; IN gets a zeroed
    // buffer. Views of one scratch buffer are reused (no allocation per frame).
    const data = this.scratchView(maxLen);
    if (pid === PID_IN) data.fill(0);
    else if (maxLen > 0) {
      // The outcome depends on the data bytes (wire time, device): not remembered.
      this.walkMemo = false;
      this.mem.read(buffer, data);
    }

    // A low-speed device does not see full-speed packets and vice versa: the
    // TD's LS bit must match the device (UHCI DG §3.2.2 LS); else no answer.
    const speedMismatch = dev !== null && (dev.speed === 'low') !== lowSpeed;
    if (!dev || speedMismatch) {
      const cost = host.timer.transactionBits(pid, lowSpeed, iso, devaddr, endpoint, toggle, data, maxLen, 'timeout');
      if (!host.timer.canStart(this.elapsed, cost, this.frameBits, host.maxp64)) return 'stop-frame';
      this.elapsed += cost;
      this.stats.transactions++;
      return this.error(tdAddr, ctrl, 'timeout');
    }

    // Estimate the wire time before starting: OUT/SETUP know their data; for IN
    // assume the full MaxLen arrives (a real HC reserves time for it too).
    const estimate = host.timer.transactionBits(pid, lowSpeed, iso, devaddr, endpoint, toggle, data, maxLen, 'data');
    if (!host.timer.canStart(this.elapsed, estimate, this.frameBits, host.maxp64)) return 'stop-frame';

    const packet = this.scratchPacket;
    packet.pid = pid as TokenPid;
    packet.devaddr = devaddr;
    packet.endpoint = endpoint;
    packet.data = data;
    packet.iso = iso;
    packet.status = 'ack' as UsbStatus;
    packet.actualLength = 0;
    dev!.handlePacket(packet);
    this.stats.transactions++;
    if (this.walkMemo && (packet.status !== 'nak' || !hasStableNak(dev!))) this.walkMemo = false;

    if (packet.status === 'async') {
      // The device keeps this packet and its buffer: give them up and start a new scratch.
      this.newScratch();
      const entry: InFlight = {
        tdAddr,
        token,
        ctrl,
        buffer,
        device: dev!,
        packet,
        done: false,
        lastSeenFrame: this.frameSerial,
      };
      this.inflight.set(tdAddr, entry);
      this.stats.effects++;
      this.busyEndpoints.set(key, entry);
      this.elapsed += estimate;
      return 'async';
    }

    const moved = pid === PID_IN ? Math.min(packet.actualLength, maxLen) : maxLen;
    const outcome = packet.status === 'ack' ? 'data' : packet.status === 'nak' ? 'nak' : packet.status === 'stall' ? 'stall' : 'timeout';
    this.elapsed += host.timer.transactionBits(pid, lowSpeed, iso, devaddr, endpoint, toggle, data, moved, outcome);
    void inQh;
    return this.finish(tdAddr, ctrl, token, buffer, packet, data);
  }

  /** Write back the result of a finished packet (UHCI DG §3.2.2 status bits). */
  private finish(
    tdAddr: number,
    ctrl: number,
    token: number,
    buffer: number,
    packet: UsbPacket,
    data: Uint8Array,
  ): TdOutcome {
    const pid = token & 0xff;
    const maxLen = tokenMaxLen(token);
    // Isochronous TDs are retired after one attempt whatever happens (UHCI DG §3.2.2 IOS).
    if (ctrl & TDC_IOS) ctrl &= ~TDC_ACTIVE;
    switch (packet.status) {
      case 'ack': {
        const len = pid === PID_IN ? Math.min(packet.actualLength, maxLen) : maxLen;
        ctrl = (ctrl & ~TDC_ACTLEN_MASK) | ((len - 1) & TDC_ACTLEN_MASK);
        // A NAK bit left by an earlier attempt is cleared on success (QEMU; Windows relies on it).
        ctrl &= ~(TDC_ACTIVE | TDC_NAK);
        if (ctrl & TDC_IOC) this.pendingInt |= PENDING_IOC;
        if (pid === PID_IN && len > 0) {
          this.stats.effects++;
          this.mem.write(buffer, data.subarray(0, len));
        }
        this.writeCtrl(tdAddr, ctrl);
        if (pid === PID_IN && ctrl & TDC_SPD && len < maxLen) {
          // Short packet with SPD: the queue stops here, the QH element is not advanced.
          this.pendingInt |= PENDING_SPD;
          return 'next-qh';
        }
        return 'complete';
      }
      case 'nak':
        // NAK: the TD stays active; C_ERR is not decremented (UHCI DG §3.2.2).
        if (!(ctrl & TDC_NAK) || !(ctrl & TDC_ACTIVE)) {
          ctrl |= TDC_NAK;
          this.writeCtrl(tdAddr, ctrl);
        }
        return 'next-qh';
      case 'stall':
        return this.error(tdAddr, ctrl, 'stall');
      case 'babble':
        return this.error(tdAddr, ctrl, 'babble');
      case 'ioerror':
      case 'nodev':
      case 'async':
      default:
        return this.error(tdAddr, ctrl, 'timeout');
    }
  }

  /**
   * Error completion. Stall and babble retire the TD at once. A CRC/timeout
   * error decrements C_ERR and retries later; the TD is retired when the
   * counter goes from 1 to 0, and C_ERR = 0 means "no limit" (UHCI DG
   * §3.2.2). QEMU 7.2 retires on the first timeout instead (deliberate
   * deviation; the final TD state is the same for C_ERR 1..3).
   */
  private error(tdAddr: number, ctrl: number, kind: 'stall' | 'babble' | 'timeout'): TdOutcome {
    let retire = true;
    let result: TdOutcome = 'next-qh';
    if (kind === 'stall') {
      ctrl |= TDC_STALLED;
    } else if (kind === 'babble') {
      ctrl |= TDC_BABBLE | TDC_STALLED;
      result = 'stop-frame';
    } else {
      ctrl |= TDC_CRCTO;
      const cerr = (ctrl & TDC_CERR_MASK) >>> TDC_CERR_SHIFT;
      if (cerr === 0) {
        retire = false;
      } else {
        ctrl = (ctrl & ~TDC_CERR_MASK) | ((cerr - 1) << TDC_CERR_SHIFT);
        retire = cerr === 1;
      }
      if (ctrl & TDC_IOS) retire = true;
    }
    if (retire) {
      this.stats.effects++;
      ctrl &= ~TDC_ACTIVE;
      if (ctrl & TDC_IOC) this.pendingInt |= PENDING_IOC;
      this.host.raiseStatus(USBSTS_USBERRINT);
    }
    this.writeCtrl(tdAddr, ctrl >>> 0);
    return result;
  }

  private writeCtrl(tdAddr: number, ctrl: number): void {
    this.write32(tdAddr + 4, ctrl >>> 0);
  }

  /** A device finished an async packet. */
  asyncComplete(packet: UsbPacket): void {
    for (const entry of this.inflight.values()) {
      if (entry.packet === packet) {
        entry.done = true;
        return;
      }
    }
  }

  private forget(entry: InFlight): void {
    this.inflight.delete(entry.tdAddr);
    const key = tokenQueueKey(entry.token);
    if (this.busyEndpoints.get(key) === entry) this.busyEndpoints.delete(key);
  }

  private cancel(entry: InFlight, why: string): void {
    this.forget(entry);
    if (!entry.done) entry.device.cancelPacket(entry.packet);
    this.host.log('debug', `cancel TD@0x${entry.tdAddr.toString(16)}: ${why}`);
  }

  /** Cancel in-flight TDs the walk has not seen for a while (guest unlinked them). */
  private expireUnseen(): void {
    if (this.inflight.size === 0) return;
    for (const entry of [...this.inflight.values()]) {
      if (this.frameSerial - entry.lastSeenFrame > INFLIGHT_UNSEEN_FRAMES) this.cancel(entry, 'TD unlinked');
    }
  }

  /** Cancel everything (controller stop/reset). */
  cancelAll(): void {
    for (const entry of [...this.inflight.values()]) this.cancel(entry, 'controller stopped');
    this.pendingInt = 0;
  }

  /** Cancel the packets of one device (unplug). */
  cancelDevice(dev: UsbDevice): void {
    for (const entry of [...this.inflight.values()]) if (entry.device === dev) this.cancel(entry, 'device detached');
  }
}
