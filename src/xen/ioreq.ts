/**
 * Byte-exact codecs for the structures Xen shares with an ioreq server
 * (xen/include/public/hvm/ioreq.h, Xen 4.17). Layouts checked on x86-64 with
 * GCC against the Debian libxen-dev 4.17 header (offsetof / bitfield probes):
 *
 *   struct ioreq (32 bytes, one per vCPU in the shared ioreq page)
 *     0  u64 addr        physical address, port, or SBDF<<32|reg for PCI_CONFIG
 *     8  u64 data        value, or guest-physical address of the data (data_is_ptr)
 *    16  u32 count       repetitions (rep ins/outs/movs)
 *    20  u32 size        bytes per repetition
 *    24  u32 vp_eport    event channel port of this vCPU
 *    28  u16 _pad0
 *    30  u8  state:4 (bits 0-3), data_is_ptr:1 (bit 4), dir:1 (bit 5), df:1 (bit 6), _pad1:1
 *    31  u8  type
 *
 *   struct buffered_iopage (one page): u32 read_pointer at 0, u32 write_pointer
 *   at 4, then IOREQ_BUFFER_SLOT_NUM (511) slots of struct buf_ioreq, 8 bytes each:
 *     dword 0: type (bits 0-7), pad:1 (bit 8), dir:1 (bit 9), size:2 (bits 10-11,
 *              0→1 1→2 2→4 3→8 bytes), addr:20 (bits 12-31)
 *     dword 1: data (low 32 bits). An 8-byte write uses two consecutive slots; the
 *              second slot's data is the high half.
 *   The pointers are free-running; slot index = pointer % 511.
 */

export const IOREQ_SIZE = 32;
export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;

/** ioreq.h IOREQ_READ / IOREQ_WRITE (the `dir` bit). */
export const IOREQ_WRITE = 0;
export const IOREQ_READ = 1;

/** ioreq.h STATE_* */
export const STATE_IOREQ_NONE = 0;
export const STATE_IOREQ_READY = 1;
export const STATE_IOREQ_INPROCESS = 2;
export const STATE_IORESP_READY = 3;

/** ioreq.h IOREQ_TYPE_* */
export const IOREQ_TYPE_PIO = 0;
export const IOREQ_TYPE_COPY = 1;
export const IOREQ_TYPE_PCI_CONFIG = 2;
export const IOREQ_TYPE_TIMEOFFSET = 7;
export const IOREQ_TYPE_INVALIDATE = 8;

export const BUF_IOREQ_SLOT_NUM = 511;
export const BUF_IOREQ_SLOT_SIZE = 8;
export const BUF_IOREQ_SLOTS_OFFSET = 8;

/** Offsets inside struct ioreq. */
export const IOREQ_OFF = {
  addr: 0,
  data: 8,
  count: 16,
  size: 20,
  vpEport: 24,
  pad0: 28,
  flags: 30,
  type: 31,
} as const;

const STATE_MASK = 0x0f;
const FLAG_DATA_IS_PTR = 0x10;
const FLAG_DIR = 0x20;
const FLAG_DF = 0x40;

/** A decoded struct ioreq. addr/data are 64-bit (PCI_CONFIG puts the SBDF in bits 32..63). */
export interface Ioreq {
  addr: bigint;
  data: bigint;
  count: number;
  size: number;
  vpEport: number;
  state: number;
  dataIsPtr: boolean;
  /** IOREQ_READ (1) or IOREQ_WRITE (0). */
  dir: 0 | 1;
  /** Direction flag: repetitions walk down through memory. */
  df: boolean;
  type: number;
}

export function ioreqOffset(vcpu: number): number {
  return vcpu * IOREQ_SIZE;
}

function dv(page: Uint8Array): DataView {
  return new DataView(page.buffer, page.byteOffset, page.byteLength);
}

export function decodeIoreq(page: Uint8Array, offset = 0): Ioreq {
  const v = dv(page);
  const flags = page[offset + IOREQ_OFF.flags]!;
  return {
    addr: v.getBigUint64(offset + IOREQ_OFF.addr, true),
    data: v.getBigUint64(offset + IOREQ_OFF.data, true),
    count: v.getUint32(offset + IOREQ_OFF.count, true),
    size: v.getUint32(offset + IOREQ_OFF.size, true),
    vpEport: v.getUint32(offset + IOREQ_OFF.vpEport, true),
    state: flags & STATE_MASK,
    dataIsPtr: (flags & FLAG_DATA_IS_PTR) !== 0,
    dir: flags & FLAG_DIR ? 1 : 0,
    df: (flags & FLAG_DF) !== 0,
    type: page[offset + IOREQ_OFF.type]!,
  };
}

/** The flags byte (offset 30) for the given fields; _pad1 stays 0. */
export function ioreqFlagsByte(r: Pick<Ioreq, 'state' | 'dataIsPtr' | 'dir' | 'df'>): number {
  return (r.state & STATE_MASK) | (r.dataIsPtr ? FLAG_DATA_IS_PTR : 0) | (r.dir ? FLAG_DIR : 0) | (r.df ? FLAG_DF : 0);
}

/** Write every field of `r` (pad bytes zero). The state byte is written last. */
export function encodeIoreq(page: Uint8Array, offset: number, r: Ioreq): void {
  const v = dv(page);
  v.setBigUint64(offset + IOREQ_OFF.addr, BigInt.asUintN(64, r.addr), true);
  v.setBigUint64(offset + IOREQ_OFF.data, BigInt.asUintN(64, r.data), true);
  v.setUint32(offset + IOREQ_OFF.count, r.count >>> 0, true);
  v.setUint32(offset + IOREQ_OFF.size, r.size >>> 0, true);
  v.setUint32(offset + IOREQ_OFF.vpEport, r.vpEport >>> 0, true);
  v.setUint16(offset + IOREQ_OFF.pad0, 0, true);
  page[offset + IOREQ_OFF.type] = r.type & 0xff;
  Atomics.store(page, offset + IOREQ_OFF.flags, ioreqFlagsByte(r));
}

/**
 * The state nibble of the ioreq at `offset`. Atomics on the byte: the page is
 * shared with another CPU (Xen or the simulated vCPU), and the state is the
 * hand-over point, so it is read and written with sequentially consistent
 * accesses (a full barrier on x86) around the plain data accesses.
 */
export function ioreqState(page: Uint8Array, offset: number): number {
  return Atomics.load(page, offset + IOREQ_OFF.flags) & STATE_MASK;
}

/** Replace the state nibble, keeping data_is_ptr/dir/df. */
export function setIoreqState(page: Uint8Array, offset: number, state: number): void {
  const i = offset + IOREQ_OFF.flags;
  const flags = Atomics.load(page, i);
  Atomics.store(page, i, (flags & ~STATE_MASK) | (state & STATE_MASK));
}

export function ioreqVpEport(page: Uint8Array, offset: number): number {
  return dv(page).getUint32(offset + IOREQ_OFF.vpEport, true);
}

export function setIoreqData(page: Uint8Array, offset: number, data: bigint): void {
  dv(page).setBigUint64(offset + IOREQ_OFF.data, BigInt.asUintN(64, data), true);
}

// ------------------------------------------------------------ PCI config addr

export interface PciSbdf {
  segment: number;
  bus: number;
  device: number;
  fn: number;
}

/** Split a PCI_CONFIG ioreq address: SBDF in bits 32..63 (seg 48..63, bus 40..47, dev 35..39, fn 32..34), register in 0..31. */
export function decodePciConfigAddr(addr: bigint): { sbdf: PciSbdf; reg: number } {
  const hi = Number((addr >> 32n) & 0xffffffffn);
  return {
    sbdf: { segment: hi >>> 16, bus: (hi >>> 8) & 0xff, device: (hi >>> 3) & 0x1f, fn: hi & 7 },
    reg: Number(addr & 0xffffffffn),
  };
}

export function encodePciConfigAddr(s: PciSbdf, reg: number): bigint {
  const hi = ((s.segment & 0xffff) << 16) | ((s.bus & 0xff) << 8) | ((s.device & 0x1f) << 3) | (s.fn & 7);
  return (BigInt(hi >>> 0) << 32n) | BigInt(reg >>> 0);
}

// ------------------------------------------------------------ buffered ring

export interface BufIoreq {
  type: number;
  dir: 0 | 1;
  /** Access size in bytes: 1, 2, 4 or 8. */
  size: 1 | 2 | 4 | 8;
  /** 20-bit address (port for PIO). */
  addr: number;
  /** Low 32 bits of the data (the high half of an 8-byte write is in the next slot). */
  data: number;
}

const SIZE_CODES = [1, 2, 4, 8] as const;

export function bufSlotOffset(pointer: number): number {
  return BUF_IOREQ_SLOTS_OFFSET + (pointer % BUF_IOREQ_SLOT_NUM) * BUF_IOREQ_SLOT_SIZE;
}

export function decodeBufIoreq(page: Uint8Array, offset: number): BufIoreq {
  const v = dv(page);
  const w = v.getUint32(offset, true);
  return {
    type: w & 0xff,
    dir: (w >>> 9) & 1 ? 1 : 0,
    size: SIZE_CODES[(w >>> 10) & 3]!,
    addr: w >>> 12,
    data: v.getUint32(offset + 4, true),
  };
}

export function encodeBufIoreq(page: Uint8Array, offset: number, b: BufIoreq): void {
  const code = SIZE_CODES.indexOf(b.size);
  if (code < 0) throw new RangeError(`buffered ioreq size ${b.size} is not 1, 2, 4 or 8`);
  const w = (b.type & 0xff) | ((b.dir & 1) << 9) | (code << 10) | ((b.addr & 0xfffff) << 12);
  const v = dv(page);
  v.setUint32(offset, w >>> 0, true);
  v.setUint32(offset + 4, b.data >>> 0, true);
}

/** The read/write pointers at the start of the buffered page (u32 each). */
export function bufPointers(page: Uint8Array): { read: number; write: number } {
  const u32 = new Uint32Array(page.buffer, page.byteOffset, 2);
  return { read: Atomics.load(u32, 0), write: Atomics.load(u32, 1) };
}

/**
 * Advance read_pointer by `n` with an atomic add: with
 * HVM_IOREQSRV_BUFIOREQ_ATOMIC Xen may rebase both pointers with a 64-bit
 * cmpxchg at any time, so a plain read-modify-write could lose its update.
 */
export function advanceBufReadPointer(page: Uint8Array, n: number): void {
  const u32 = new Uint32Array(page.buffer, page.byteOffset, 2);
  Atomics.add(u32, 0, n);
}

export function setBufWritePointer(page: Uint8Array, value: number): void {
  const u32 = new Uint32Array(page.buffer, page.byteOffset, 2);
  Atomics.store(u32, 1, value >>> 0);
}

/** A buffered request ready for the handler: size already combined for 8-byte writes. */
export interface BufferedWrite {
  type: number;
  dir: 0 | 1;
  size: 1 | 2 | 4 | 8;
  addr: number;
  data: bigint;
}

export type BufRingProblem =
  | { kind: 'overrun'; read: number; write: number }
  | { kind: 'incomplete-qword'; read: number; write: number };

/**
 * Consume everything between read_pointer and write_pointer, calling
 * `handle` for each request (an 8-byte request consumes two slots). A write
 * pointer more than a ring ahead, or a lone first half of an 8-byte request,
 * is malformed: the ring is resynchronised (read = write) and `problem` is
 * called, without handling the garbage. Returns the number of requests handled.
 */
export function drainBufRing(
  page: Uint8Array,
  handle: (req: BufferedWrite) => void,
  problem: (p: BufRingProblem) => void,
): number {
  let handled = 0;
  for (;;) {
    const { read, write } = bufPointers(page);
    if (read === write) return handled;
    const pending = (write - read) >>> 0;
    if (pending > BUF_IOREQ_SLOT_NUM) {
      advanceBufReadPointer(page, pending);
      problem({ kind: 'overrun', read, write });
      return handled;
    }
    const first = decodeBufIoreq(page, bufSlotOffset(read));
    let data = BigInt(first.data >>> 0);
    let used = 1;
    if (first.size === 8) {
      if (pending < 2) {
        advanceBufReadPointer(page, pending);
        problem({ kind: 'incomplete-qword', read, write });
        return handled;
      }
      const second = decodeBufIoreq(page, bufSlotOffset(read + 1));
      data |= BigInt(second.data >>> 0) << 32n;
      used = 2;
    }
    handle({ type: first.type, dir: first.dir, size: first.size, addr: first.addr, data });
    advanceBufReadPointer(page, used);
    handled++;
  }
}
