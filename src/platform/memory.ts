/**
 * Guest physical memory as the device model sees it (DMA). Every transport
 * (Xen foreign mappings, the QEMU proxy's shared RAM file, replay, tests)
 * implements this interface; the controller never touches guest RAM otherwise.
 */
export interface GuestMemory {
  /** Fill `buf` from guest-physical `addr`. Throws GuestMemoryFault when unmapped. */
  read(addr: number, buf: Uint8Array): void;
  /** Copy `buf` to guest-physical `addr`. Throws GuestMemoryFault when unmapped. */
  write(addr: number, buf: Uint8Array): void;
  /**
   * Optional fast path: the little-endian dword at `addr` (same faults as
   * read). The schedule engine uses it for link and descriptor fetches.
   */
  readU32?(addr: number): number;
}

/** A DMA access hit an address the guest has no RAM at. */
export class GuestMemoryFault extends Error {
  constructor(
    readonly addr: number,
    readonly length: number,
    readonly write: boolean,
  ) {
    super(`guest memory fault: ${write ? 'write' : 'read'} of ${length} bytes at 0x${addr.toString(16)}`);
    this.name = 'GuestMemoryFault';
  }
}

/** Plain RAM from guest-physical 0 up to `size` bytes (tests, oracle, replay). */
export class FlatMemory implements GuestMemory {
  readonly bytes: Uint8Array;
  constructor(size: number | Uint8Array) {
    this.bytes = typeof size === 'number' ? new Uint8Array(size) : size;
  }
  get size(): number {
    return this.bytes.length;
  }
  private check(addr: number, len: number, write: boolean): void {
    if (!(addr >= 0 && addr + len <= this.bytes.length) || addr !== Math.floor(addr)) {
      throw new GuestMemoryFault(addr, len, write);
    }
  }
  read(addr: number, buf: Uint8Array): void {
    const n = buf.length;
    this.check(addr, n, false);
    const b = this.bytes;
    if (n <= 32) {
      // Schedule fetches are 4 or 16 bytes: a loop avoids a subarray allocation.
      for (let i = 0; i < n; i++) buf[i] = b[addr + i]!;
    } else {
      buf.set(b.subarray(addr, addr + n));
    }
  }
  write(addr: number, buf: Uint8Array): void {
    const n = buf.length;
    this.check(addr, n, true);
    const b = this.bytes;
    if (n <= 32) {
      for (let i = 0; i < n; i++) b[addr + i] = buf[i]!;
    } else {
      b.set(buf, addr);
    }
  }
  readU32(addr: number): number {
    this.check(addr, 4, false);
    const b = this.bytes;
    return (b[addr]! | (b[addr + 1]! << 8) | (b[addr + 2]! << 16) | (b[addr + 3]! << 24)) >>> 0;
  }
  writeU32(addr: number, value: number): void {
    this.check(addr, 4, true);
    const b = this.bytes;
    b[addr] = value & 0xff;
    b[addr + 1] = (value >>> 8) & 0xff;
    b[addr + 2] = (value >>> 16) & 0xff;
    b[addr + 3] = (value >>> 24) & 0xff;
  }
}
