/**
 * Guest memory as one frame's walk sees it: sampled from the host when the
 * frame starts (bus mastering cannot change while a frame runs). Reads of
 * link pointers and descriptors use GuestMemory.readU32 when the memory
 * offers it (plain RAM) and are noted for frame replay while the walk is
 * being recorded; every write counts as an effect of the frame.
 */
import type { GuestMemory } from '../platform/memory.js';
import type { QuiescenceMemo } from './frame-replay.js';
import type { FrameStats } from './schedule-host.js';

export class FrameMemory {
  /** Guest memory for this frame. */
  mem: GuestMemory = { read() {}, write() {} };
  /** `mem` when it offers readU32, else null. */
  fast: GuestMemory | null = null;
  /** The TD fetched last (fetchTd): its four hardware words (UHCI DG §3.2). */
  tdLink = 0;
  tdCtrl = 0;
  tdToken = 0;
  tdBuffer = 0;
  private readonly word = new Uint8Array(16);
  private readonly word4 = new Uint8Array(4);

  constructor(
    private readonly memo: QuiescenceMemo,
    private readonly stats: FrameStats,
  ) {}

  /** A frame starts with `mem` as its guest memory. */
  begin(mem: GuestMemory): void {
    this.mem = mem;
    this.fast = mem.readU32 ? mem : null;
  }

  /** A link pointer or QH word. */
  read32(addr: number): number {
    const fast = this.fast;
    if (fast) {
      const v = fast.readU32!(addr >>> 0);
      if (this.memo.recording) this.memo.note(addr >>> 0, v);
      return v;
    }
    const w = this.word4;
    this.mem.read(addr >>> 0, w);
    return (w[0]! | (w[1]! << 8) | (w[2]! << 16) | (w[3]! << 24)) >>> 0;
  }

  /** Fetch the TD at `tdAddr` into tdLink/tdCtrl/tdToken/tdBuffer. */
  fetchTd(tdAddr: number): void {
    const fast = this.fast;
    if (fast) {
      this.tdLink = fast.readU32!(tdAddr);
      this.tdCtrl = fast.readU32!(tdAddr + 4);
      this.tdToken = fast.readU32!(tdAddr + 8);
      this.tdBuffer = fast.readU32!(tdAddr + 12);
      const memo = this.memo;
      if (memo.recording) {
        memo.note(tdAddr, this.tdLink);
        memo.note(tdAddr + 4, this.tdCtrl);
        memo.note(tdAddr + 8, this.tdToken);
        memo.note(tdAddr + 12, this.tdBuffer);
      }
    } else {
      const w = this.word;
      this.mem.read(tdAddr, w);
      this.tdLink = (w[0]! | (w[1]! << 8) | (w[2]! << 16) | (w[3]! << 24)) >>> 0;
      this.tdCtrl = (w[4]! | (w[5]! << 8) | (w[6]! << 16) | (w[7]! << 24)) >>> 0;
      this.tdToken = (w[8]! | (w[9]! << 8) | (w[10]! << 16) | (w[11]! << 24)) >>> 0;
      this.tdBuffer = (w[12]! | (w[13]! << 8) | (w[14]! << 16) | (w[15]! << 24)) >>> 0;
    }
  }

  /** Data bytes of an OUT/SETUP TD. */
  readBytes(addr: number, buf: Uint8Array): void {
    this.mem.read(addr, buf);
  }

  /** IN data to a TD's buffer. */
  writeBytes(addr: number, buf: Uint8Array): void {
    this.stats.effects++;
    this.mem.write(addr, buf);
  }

  /** A TD status or QH element write-back. */
  write32(addr: number, value: number): void {
    this.stats.effects++;
    const w = this.word4;
    w[0] = value & 0xff;
    w[1] = (value >>> 8) & 0xff;
    w[2] = (value >>> 16) & 0xff;
    w[3] = (value >>> 24) & 0xff;
    this.mem.write(addr >>> 0, w);
  }
}
