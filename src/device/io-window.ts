/**
 * The one decode of a bus access against an I/O window, used by every
 * transport (Xen ioreq server, QEMU proxy) and by replay.
 *
 * Rule: an access belongs to the function when its first byte is inside the
 * window; the function gets it whole, at its offset, and cuts it at the end
 * of the window itself (PciFunction.ioRead: bytes past the end read all
 * ones, writes to them are dropped). For an access straddling the window's
 * end this is what QEMU's memory core does (softmmu/physmem.c flatview_read
 * / flatview_write cut an access at the end of each region it touches: the
 * bytes inside reach the device, the rest land in unassigned I/O, which
 * reads all ones). The oracle's model side (test/oracle/model-target.ts)
 * splits straddling accesses that way and matches QEMU 7.2 with 0
 * differences; test/device/io-window.test.ts checks that the controller's
 * own cut gives the same values. An access whose
 * first byte is below the window is not ours: its answer would need the
 * bytes below, which another device owns.
 *
 * Neither live transport hands us a straddling access: Xen forwards port
 * I/O to an ioreq server only when the whole access lies in one of its
 * ranges (rangeset_contains_range in its ioreq server selection), and QEMU
 * clips an access to the proxy's BAR region before forwarding it. The rule
 * matters for replay, simulations and hostile requests.
 */
import type { AccessSize, IoWindow } from './pci-function.js';

/** Offset of bus address `addr` in `w` when the access is the function's, else null. */
export function windowOffset(w: IoWindow | null, addr: number): number | null {
  if (!w || addr < w.base || addr >= w.base + w.size) return null;
  return addr - w.base;
}

/** Read `size` bytes at bus address `addr`; undefined when the access is not the function's. */
export function windowRead(w: IoWindow | null, addr: number, size: AccessSize, read: (offset: number, size: AccessSize) => number): number | undefined {
  const off = windowOffset(w, addr);
  return off === null ? undefined : read(off, size);
}

/** Write `size` bytes at bus address `addr`; false when the access is not the function's. */
export function windowWrite(w: IoWindow | null, addr: number, size: AccessSize, value: number, write: (offset: number, size: AccessSize, value: number) => void): boolean {
  const off = windowOffset(w, addr);
  if (off === null) return false;
  write(off, size, value);
  return true;
}
