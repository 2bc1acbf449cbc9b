/**
 * Quiescent frames are replayed, not walked. A walk that wrote nothing,
 * raised nothing, left nothing in flight and only met NAKs from devices
 * whose NAK is stable (`StableNak`) is a pure function of the guest-memory
 * words it read, the registers and the device states, and depends on the
 * frame number only through the frame-list entry it starts from. While none
 * of those changed, walking any frame whose entry is remembered would give
 * exactly the same (empty) result, so the engine checks the words (once per
 * batch of frames) and advances the frame.
 *
 * Only plain RAM (GuestMemory.readU32: reads have no side effects and are
 * not recorded) is checked this way; trace recording and replay walk every
 * frame. A guest queues work by writing memory without I/O, so a change is
 * seen at the next batch: within the controller's idle coalescing period.
 * The controller forgets everything on every register write, device
 * activity, attach, detach and reset. All tables are preallocated.
 */
import type { GuestMemory } from '../platform/memory.js';
import type { UsbDevice } from '../usb/packet.js';
import { frameListIndex } from './registers.js';

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

/** Distinct words (QH/TD fields) all remembered walks may share. */
export const MEMO_SHARED_WORDS = 4096;
const MEMO_TABLE_SIZE = 8192;
/** Distinct frame-list entries (start links) remembered at once (Linux uses 8: one per interrupt interval). */
const MEMO_LINKS = 64;

export class QuiescenceMemo {
  /** The current walk records its reads (false once it cannot be remembered). */
  recording = false;
  /** Words read by the current walk: addresses and values (index 0: the frame-list entry). */
  private readonly walkAddrs: Uint32Array;
  private readonly walkVals: Uint32Array;
  private walkCount = 0;
  /**
   * Frame-list entries whose walk is remembered as quiescent. A walk depends
   * on its frame number only through the entry it starts from, so every
   * slot holding one of these entries replays (Linux's skeleton has 8
   * distinct entries for 1024 slots).
   */
  private readonly links = new Uint32Array(MEMO_LINKS);
  private linkCount = 0;
  private epoch = 1;
  /** Shared words of all remembered walks: open-addressing set (valid where used === epoch). */
  private readonly keys = new Uint32Array(MEMO_TABLE_SIZE);
  private readonly vals = new Uint32Array(MEMO_TABLE_SIZE);
  private readonly used = new Uint32Array(MEMO_TABLE_SIZE);
  /** Table indices of the shared words, for validation. */
  private readonly list = new Uint16Array(MEMO_SHARED_WORDS);
  private count = 0;
  /** Memory the remembered walks used. */
  private mem: GuestMemory | null = null;
  /** The shared words were checked against guest memory in this batch. */
  private checked = false;

  /** `walkWords`: the most words one walk can read (a longer walk is not remembered). */
  constructor(private readonly walkWords: number) {
    this.walkAddrs = new Uint32Array(walkWords);
    this.walkVals = new Uint32Array(walkWords);
  }

  /** A walk starts; it records its reads when `record` (plain RAM, replay enabled). */
  beginWalk(record: boolean): void {
    this.recording = record;
    this.walkCount = 0;
  }

  /** The current walk cannot be remembered (it wrote, raised, or depends on more than the words it read). */
  stopRecording(): void {
    this.recording = false;
  }

  /** Record a word the current walk read. */
  note(addr: number, value: number): void {
    const n = this.walkCount;
    if (n >= this.walkWords) {
      this.recording = false;
      return;
    }
    this.walkAddrs[n] = addr;
    this.walkVals[n] = value;
    this.walkCount = n + 1;
  }

  /**
   * Remember the walk that just ended (in `mem`) as quiescent: its start
   * link (the frame-list entry) in `links`, the other words it read in the
   * shared set.
   */
  remember(mem: GuestMemory): void {
    if (this.walkCount === 0) return;
    const link = this.walkVals[0]!;
    const links = this.links;
    for (let j = 0; j < this.linkCount; j++) {
      if (links[j] === link) {
        // Already known: its words must still hold (else everything is forgotten).
        this.checkShared();
        return;
      }
    }
    if (this.linkCount !== 0 && mem !== this.mem) this.forget();
    if (this.linkCount >= MEMO_LINKS) return;
    // Words read in an earlier batch must still hold before new ones join them.
    if (this.linkCount !== 0 && !this.checkShared()) return;
    const keys = this.keys;
    const vals = this.vals;
    const used = this.used;
    const epoch = this.epoch;
    for (let w = 1; w < this.walkCount; w++) {
      const addr = this.walkAddrs[w]!;
      const val = this.walkVals[w]!;
      let i = (Math.imul(addr >>> 2, 0x9e3779b1) >>> 19) & (MEMO_TABLE_SIZE - 1);
      for (;;) {
        if (used[i] !== epoch) {
          if (this.count >= MEMO_SHARED_WORDS) return; // too big to check cheaply: not remembered
          used[i] = epoch;
          keys[i] = addr;
          vals[i] = val;
          this.list[this.count++] = i;
          break;
        }
        if (keys[i] === addr) {
          // Read twice with different values: the guest is writing; start over.
          if (vals[i] !== val) {
            this.forget();
            return;
          }
          break;
        }
        i = (i + 1) & (MEMO_TABLE_SIZE - 1);
      }
    }
    links[this.linkCount++] = link;
    this.mem = mem;
  }

  /** Drop every remembered walk. */
  forget(): void {
    if (this.linkCount === 0 && this.count === 0) return;
    this.linkCount = 0;
    this.count = 0;
    this.checked = false;
    if (++this.epoch === 0xffffffff) {
      this.epoch = 1;
      this.used.fill(0);
    }
  }

  /**
   * A new batch of frames starts (the guest may have written memory since
   * the last one): the shared words are checked again before the next replay.
   */
  newBatch(): void {
    this.checked = false;
  }

  /**
   * May frame `frnum` be replayed? Yes if a walk from its frame-list entry
   * (read from `mem`) is remembered as quiescent and every word that walk
   * read still holds the value it read (checked once per batch).
   */
  covers(mem: GuestMemory, flBase: number, frnum: number): boolean {
    const count = this.linkCount;
    if (count === 0) return false;
    if (mem !== this.mem) return false;
    let entry: number;
    try {
      entry = mem.readU32!((flBase + (frameListIndex(frnum) << 2)) >>> 0);
    } catch {
      return false;
    }
    const links = this.links;
    let j = 0;
    while (j < count && links[j] !== entry) j++;
    if (j === count) return false;
    return this.checkShared();
  }

  /** Check the shared words against guest memory once per batch; forget everything if one changed. */
  private checkShared(): boolean {
    if (this.checked) return true;
    const mem = this.mem;
    if (!mem) return false;
    const keys = this.keys;
    const vals = this.vals;
    const list = this.list;
    try {
      for (let j = 0; j < this.count; j++) {
        const i = list[j]!;
        if (mem.readU32!(keys[i]!) !== vals[i]) {
          this.forget();
          return false;
        }
      }
    } catch {
      this.forget();
      return false;
    }
    this.checked = true;
    return true;
  }
}
