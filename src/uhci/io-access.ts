/**
 * How a guest access to the 32-byte UHCI I/O BAR becomes register
 * accesses, as QEMU 7.2's memory core carries it out for this device
 * (hcd-uhci.c declares 16-bit implementation size, no unaligned support):
 * the access is cut into naturally aligned pieces (the largest power of two
 * that fits the remaining length and the alignment of the address,
 * softmmu/physmem.c memory_access_size), and each piece becomes 16-bit
 * register accesses — a 1-byte piece is a 16-bit access at that same
 * address of which one byte is used, a 4-byte piece is two 16-bit
 * accesses. Bytes past the BAR float high (unassigned I/O reads all ones)
 * and writes there go nowhere. Used by the controller and by the trace
 * decoder's register mirror, so both split an access the same way.
 */
import { IO_BAR_SIZE } from './registers.js';

/**
 * Length of the next piece of an access at `offset` with `remaining` bytes
 * left: the largest power of two ≤ remaining (max 4) that the offset is
 * aligned to.
 */
export function pieceLength(offset: number, remaining: number): 1 | 2 | 4 {
  let len = remaining >= 4 ? 4 : remaining >= 2 ? 2 : 1;
  const align = offset & -offset;
  if (align !== 0 && align < len) len = align;
  return len as 1 | 2 | 4;
}

/** Read `size` bytes at `offset` (inside the BAR) through `readWord`, a 16-bit register read. */
export function splitRead(offset: number, size: 1 | 2 | 4, readWord: (offset: number) => number): number {
  let value = 0;
  let done = 0;
  while (done < size) {
    const off = offset + done;
    const len = pieceLength(off, size - done);
    let piece: number;
    if (off >= IO_BAR_SIZE) piece = len === 4 ? 0xffffffff : len === 2 ? 0xffff : 0xff;
    else if (len === 1) piece = readWord(off) & 0xff;
    else if (len === 2) piece = readWord(off) & 0xffff;
    else piece = (readWord(off) | (readWord(off + 2) << 16)) >>> 0;
    value = (value | (piece << (done * 8))) >>> 0;
    done += len;
  }
  return size === 4 ? value >>> 0 : value & (size === 2 ? 0xffff : 0xff);
}

/** Write `size` bytes of `value` at `offset` (inside the BAR) through `writeWord`, a 16-bit register write. */
export function splitWrite(offset: number, size: 1 | 2 | 4, value: number, writeWord: (offset: number, value: number) => void): void {
  let done = 0;
  while (done < size) {
    const off = offset + done;
    const len = pieceLength(off, size - done);
    if (off < IO_BAR_SIZE) {
      const piece = done === 0 && len === 4 ? value >>> 0 : (value >>> (done * 8)) & (len === 1 ? 0xff : len === 2 ? 0xffff : 0xffffffff);
      if (len === 4) {
        writeWord(off, piece & 0xffff);
        writeWord(off + 2, (piece >>> 16) & 0xffff);
      } else {
        writeWord(off, piece);
      }
    }
    done += len;
  }
}
