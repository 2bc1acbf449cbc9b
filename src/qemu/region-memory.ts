/**
 * Guest memory made of RAM regions at guest-physical addresses, as QEMU's
 * SYNC_SYSMEM describes them (one region per file-backed RAM section:
 * below 640 KiB, above 1 MiB, ...). Accesses may span adjacent regions; an
 * access that touches a hole throws GuestMemoryFault. The transport swaps
 * the whole region set when QEMU sends a new memory map.
 */
import { GuestMemoryFault, type GuestMemory } from '../platform/memory.js';

export interface RamRegion {
  gpa: number;
  bytes: Uint8Array;
}

export class RegionMemory implements GuestMemory {
  private regions: RamRegion[] = [];
  private last = 0;

  /** Replace the memory map (regions may come in any order; overlaps are refused). */
  setRegions(regions: readonly RamRegion[]): void {
    const sorted = [...regions].sort((a, b) => a.gpa - b.gpa);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1]!;
      if (prev.gpa + prev.bytes.length > sorted[i]!.gpa) {
        throw new RangeError(`RAM regions overlap at 0x${sorted[i]!.gpa.toString(16)}`);
      }
    }
    this.regions = sorted;
    this.last = 0;
  }

  /** Current map as [gpa, size] pairs (diagnostics). */
  get map(): { gpa: number; size: number }[] {
    return this.regions.map((r) => ({ gpa: r.gpa, size: r.bytes.length }));
  }

  private find(addr: number): RamRegion | undefined {
    const c = this.regions[this.last];
    if (c && addr >= c.gpa && addr < c.gpa + c.bytes.length) return c;
    for (let i = 0; i < this.regions.length; i++) {
      const r = this.regions[i]!;
      if (addr >= r.gpa && addr < r.gpa + r.bytes.length) {
        this.last = i;
        return r;
      }
    }
    return undefined;
  }

  private access(addr: number, buf: Uint8Array, write: boolean): void {
    if (!Number.isInteger(addr) || addr < 0) throw new GuestMemoryFault(addr, buf.length, write);
    // Check the whole range first so that a faulting write changes nothing.
    let pos = 0;
    while (pos < buf.length) {
      const r = this.find(addr + pos);
      if (!r) throw new GuestMemoryFault(addr, buf.length, write);
      pos += Math.min(buf.length - pos, r.gpa + r.bytes.length - (addr + pos));
    }
    pos = 0;
    while (pos < buf.length) {
      const r = this.find(addr + pos)!;
      const off = addr + pos - r.gpa;
      const n = Math.min(buf.length - pos, r.bytes.length - off);
      if (write) r.bytes.set(buf.subarray(pos, pos + n), off);
      else buf.set(r.bytes.subarray(off, off + n), pos);
      pos += n;
    }
  }

  read(addr: number, buf: Uint8Array): void {
    this.access(addr, buf, false);
  }
  write(addr: number, buf: Uint8Array): void {
    this.access(addr, buf, true);
  }

  /**
   * Fast little-endian 32-bit read for the schedule walk (GuestMemory.readU32):
   * plain RAM, no side effects, so the engine may also replay quiescent frames.
   * A word that straddles two regions goes the general way.
   */
  readU32(addr: number): number {
    const r = this.find(addr);
    if (r && Number.isInteger(addr)) {
      const off = addr - r.gpa;
      if (off + 4 <= r.bytes.length) {
        const b = r.bytes;
        return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
      }
    }
    const w = this.word;
    this.access(addr, w, false);
    return (w[0]! | (w[1]! << 8) | (w[2]! << 16) | (w[3]! << 24)) >>> 0;
  }
  private readonly word = new Uint8Array(4);
}
