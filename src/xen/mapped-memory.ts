/**
 * Guest RAM for DMA through foreign mappings of the guest's frames, with a
 * page-granular mapping cache and a dirty-page bitmap.
 *
 * - Cache: one xenforeignmemory_map per 4 KiB frame on first touch, kept in a
 *   bounded LRU (mapping is a hypercall plus an mmap; the schedule engine
 *   touches the same few pages — frame list, QHs, TDs — every millisecond).
 *   `invalidate()` unmaps everything: Xen sends IOREQ_TYPE_INVALIDATE after
 *   the guest's physmap changed (e.g. ballooning), when a cached frame may
 *   no longer be the guest's.
 * - Dirty pages: every frame the model writes is set in a BitField and queued
 *   once; `takeDirty()` hands the frames to the server, which reports them with
 *   xendevicemodel_modified_memory so that live migration's log-dirty pass
 *   re-sends them (the hypervisor does not see writes through foreign
 *   mappings by itself).
 */
import BitField from 'bitfield';
import { GuestMemoryFault, type GuestMemory } from '../platform/memory.js';
import { PAGE_SIZE } from './ioreq.js';
import { PROT_READ, PROT_WRITE, XenCallError, type ForeignMapping, type ForeignMemoryHandle } from './platform.js';

export interface MappedMemoryOptions {
  /** Most frames kept mapped at once (default 1024 = 4 MiB of mappings). */
  maxPages?: number;
  /** Called when the first frame becomes dirty after a `takeDirty()` (schedule a flush). */
  onDirty?: () => void;
}

export interface MapCacheStats {
  hits: number;
  misses: number;
  evictions: number;
  invalidations: number;
  faults: number;
}

const PAGE_MASK = PAGE_SIZE - 1;

export class MappedGuestMemory implements GuestMemory {
  readonly maxPages: number;
  readonly stats: MapCacheStats = { hits: 0, misses: 0, evictions: 0, invalidations: 0, faults: 0 };
  /** pfn → mapping; Map iteration order is the LRU order (oldest first). */
  private readonly cache = new Map<number, ForeignMapping>();
  private lastPfn = -1;
  private lastBytes: Uint8Array | null = null;
  private readonly dirtyBits = new BitField(0, { grow: Infinity });
  private dirtyList: number[] = [];
  private readonly onDirty?: () => void;
  private closed = false;

  constructor(
    private readonly fmem: ForeignMemoryHandle,
    readonly domid: number,
    opts: MappedMemoryOptions = {},
  ) {
    this.maxPages = Math.max(1, opts.maxPages ?? 1024);
    this.onDirty = opts.onDirty;
  }

  /** Frames currently mapped. */
  get mappedPages(): number {
    return this.cache.size;
  }

  private page(pfn: number, addr: number, len: number, write: boolean): Uint8Array {
    if (pfn === this.lastPfn && this.lastBytes) {
      this.stats.hits++;
      return this.lastBytes;
    }
    let m = this.cache.get(pfn);
    if (m) {
      this.stats.hits++;
      // Move to the young end of the LRU.
      this.cache.delete(pfn);
      this.cache.set(pfn, m);
    } else {
      if (this.closed) throw new GuestMemoryFault(addr, len, write);
      this.stats.misses++;
      try {
        m = this.fmem.map(this.domid, PROT_READ | PROT_WRITE, [pfn]);
      } catch (e) {
        if (!(e instanceof XenCallError)) throw e;
        this.stats.faults++;
        throw new GuestMemoryFault(addr, len, write);
      }
      if (this.cache.size >= this.maxPages) {
        const [oldPfn, old] = this.cache.entries().next().value as [number, ForeignMapping];
        this.cache.delete(oldPfn);
        old.unmap();
        this.stats.evictions++;
      }
      this.cache.set(pfn, m);
    }
    this.lastPfn = pfn;
    this.lastBytes = m.bytes;
    return m.bytes;
  }

  private check(addr: number, len: number, write: boolean): void {
    if (!(addr >= 0 && Number.isSafeInteger(addr) && Number.isSafeInteger(addr + len))) throw new GuestMemoryFault(addr, len, write);
  }

  read(addr: number, buf: Uint8Array): void {
    this.check(addr, buf.length, false);
    let done = 0;
    while (done < buf.length) {
      const a = addr + done;
      const off = a & PAGE_MASK;
      const n = Math.min(buf.length - done, PAGE_SIZE - off);
      const bytes = this.page(Math.floor(a / PAGE_SIZE), addr, buf.length, false);
      if (n <= 16) for (let i = 0; i < n; i++) buf[done + i] = bytes[off + i]!;
      else buf.set(bytes.subarray(off, off + n), done);
      done += n;
    }
  }

  write(addr: number, buf: Uint8Array): void {
    this.check(addr, buf.length, true);
    let done = 0;
    while (done < buf.length) {
      const a = addr + done;
      const off = a & PAGE_MASK;
      const n = Math.min(buf.length - done, PAGE_SIZE - off);
      const pfn = Math.floor(a / PAGE_SIZE);
      const bytes = this.page(pfn, addr, buf.length, true);
      if (n <= 16) for (let i = 0; i < n; i++) bytes[off + i] = buf[done + i]!;
      else bytes.set(buf.subarray(done, done + n), off);
      this.markDirty(pfn);
      done += n;
    }
  }

  readU32(addr: number): number {
    const off = addr & PAGE_MASK;
    if (off > PAGE_SIZE - 4 || addr < 0) {
      const b = new Uint8Array(4);
      this.read(addr, b);
      return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
    }
    const p = this.page(Math.floor(addr / PAGE_SIZE), addr, 4, false);
    return (p[off]! | (p[off + 1]! << 8) | (p[off + 2]! << 16) | (p[off + 3]! << 24)) >>> 0;
  }

  private markDirty(pfn: number): void {
    if (this.dirtyBits.get(pfn)) return;
    this.dirtyBits.set(pfn, true);
    this.dirtyList.push(pfn);
    if (this.dirtyList.length === 1) this.onDirty?.();
  }

  /** Dirty frames since the last call, ascending; clears the bitmap. */
  takeDirty(): number[] {
    const list = this.dirtyList;
    this.dirtyList = [];
    for (const pfn of list) this.dirtyBits.set(pfn, false);
    return list.sort((a, b) => a - b);
  }

  /** Unmap every cached frame (IOREQ_TYPE_INVALIDATE). Dirty bookkeeping is kept. */
  invalidate(): void {
    for (const m of this.cache.values()) m.unmap();
    this.cache.clear();
    this.lastPfn = -1;
    this.lastBytes = null;
    this.stats.invalidations++;
  }

  /** Unmap everything; later accesses fault. */
  close(): void {
    this.invalidate();
    this.closed = true;
  }
}

/** Ascending frames → runs [first, count] of consecutive frames. */
export function pageRuns(sorted: readonly number[]): [number, number][] {
  const runs: [number, number][] = [];
  for (const pfn of sorted) {
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === pfn) last[1]++;
    else runs.push([pfn, 1]);
  }
  return runs;
}
