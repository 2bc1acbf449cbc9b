/**
 * What a trace knows about guest memory: the bytes last read or written at
 * each address the model touched (zeros where it never looked). Recorder and
 * replayer keep identical copies, so a read that returns exactly the known
 * bytes is stored without them (the common case: an idle schedule re-reads
 * the same frame list entries, QHs and TDs every frame). Sparse, 4 KiB pages,
 * at most TRACE_LIMITS.shadowPages of them: one more is a TraceFormatError
 * (a reader refuses the file; the recorder stops recording).
 */
import { TRACE_LIMITS, TraceFormatError } from './format.js';

const PAGE_SHIFT = 12;
const PAGE_SIZE = 1 << PAGE_SHIFT;
const PAGE_MASK = PAGE_SIZE - 1;

export class ShadowMemory {
  private readonly pages = new Map<number, Uint8Array>();
  /** Last page looked up (fast path for runs of accesses in one page). */
  private lastNo = -1;
  private lastPage: Uint8Array | undefined;

  private page(no: number, create: boolean): Uint8Array | undefined {
    if (no === this.lastNo && this.lastPage) return this.lastPage;
    let p = this.pages.get(no);
    if (!p && create) {
      if (this.pages.size >= TRACE_LIMITS.shadowPages) {
        throw new TraceFormatError(`the trace touches more than ${TRACE_LIMITS.shadowPages} pages of guest memory`);
      }
      p = new Uint8Array(PAGE_SIZE);
      this.pages.set(no, p);
    }
    if (p) {
      this.lastNo = no;
      this.lastPage = p;
    }
    return p;
  }

  /** True when `bytes` equal the known contents at `addr`. */
  matches(addr: number, bytes: Uint8Array): boolean {
    const n = bytes.length;
    const off = addr & PAGE_MASK;
    if (off + n <= PAGE_SIZE) {
      const p = this.page(Math.floor(addr / PAGE_SIZE), false);
      if (!p) {
        for (let i = 0; i < n; i++) if (bytes[i] !== 0) return false;
        return true;
      }
      for (let i = 0; i < n; i++) if (p[off + i] !== bytes[i]) return false;
      return true;
    }
    for (let i = 0; i < n; i++) if (this.byteAt(addr + i) !== bytes[i]) return false;
    return true;
  }

  read(addr: number, out: Uint8Array): void {
    const n = out.length;
    const off = addr & PAGE_MASK;
    if (off + n <= PAGE_SIZE) {
      const p = this.page(Math.floor(addr / PAGE_SIZE), false);
      if (!p) out.fill(0);
      else if (n <= 16) for (let i = 0; i < n; i++) out[i] = p[off + i]!;
      else out.set(p.subarray(off, off + n));
      return;
    }
    for (let i = 0; i < n; i++) out[i] = this.byteAt(addr + i);
  }

  write(addr: number, bytes: Uint8Array): void {
    const n = bytes.length;
    const off = addr & PAGE_MASK;
    if (off + n <= PAGE_SIZE) {
      const p = this.page(Math.floor(addr / PAGE_SIZE), true)!;
      if (n <= 16) for (let i = 0; i < n; i++) p[off + i] = bytes[i]!;
      else p.set(bytes, off);
      return;
    }
    for (let i = 0; i < n; i++) {
      const a = addr + i;
      this.page(Math.floor(a / PAGE_SIZE), true)![a & PAGE_MASK] = bytes[i]!;
    }
  }

  private byteAt(addr: number): number {
    const p = this.page(Math.floor(addr / PAGE_SIZE), false);
    return p ? p[addr & PAGE_MASK]! : 0;
  }

  /** `n` bytes at `addr` (a copy). */
  bytes(addr: number, n: number): Uint8Array {
    const b = new Uint8Array(n);
    this.read(addr, b);
    return b;
  }

  /** Pages held (memory use is pages × 4 KiB). */
  get pageCount(): number {
    return this.pages.size;
  }
}
