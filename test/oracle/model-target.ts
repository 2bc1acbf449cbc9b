/**
 * The model side of the oracle: our UHCI function behind the same PC glue a
 * guest sees on QEMU's `pc` machine — PCI configuration mechanism #1 at
 * 0xCF8/0xCFC for BDF 00:05.0, the I/O BAR routed to the function, all-ones
 * for unclaimed ports, 128 MiB of flat RAM, a latched INTx line and a
 * manual clock advanced by `settle`.
 */
import { ManualClock, type Clock } from '../../src/platform/clock.js';
import { LatchedIrq, type IrqLine } from '../../src/platform/irq.js';
import { FlatMemory, type GuestMemory } from '../../src/platform/memory.js';
import type { UsbDevice } from '../../src/usb/packet.js';
import { PCI_CONFIG_ADDRESS, PCI_CONFIG_DATA } from '../support/pci-cf8.js';
import type { IoSize, Target } from './target.js';
import { UHCI_SLOT } from './qemu-target.js';

/** The part of the UHCI PCI function the oracle needs (src/device/uhci-pci-function.ts). */
export interface UhciFunctionLike {
  configRead(offset: number, size: IoSize): number;
  configWrite(offset: number, size: IoSize, value: number): void;
  /** Offset inside BAR4's 32 bytes. */
  ioRead(offset: number, size: IoSize): number;
  ioWrite(offset: number, size: IoSize, value: number): void;
  /** Base of BAR4 when I/O decoding is on, else null. */
  readonly ioBase: number | null;
  attach(port: 0 | 1, dev: UsbDevice): void;
}

export interface ModelParts {
  mem: GuestMemory;
  irq: IrqLine;
  clock: Clock;
}

export interface ModelFactory {
  createFunction(parts: ModelParts): UhciFunctionLike;
  createTablet(parts: ModelParts): UsbDevice;
}

export const GUEST_RAM_BYTES = 128 * 1024 * 1024;
const IO_BAR_BYTES = 32;
const ALL_ONES = [0, 0xff, 0xffff, 0, 0xffffffff] as const;

export class ModelTarget implements Target {
  readonly name = 'model';
  readonly pollMs = 1;
  readonly mem = new FlatMemory(GUEST_RAM_BYTES);
  readonly irq = new LatchedIrq();
  readonly clock = new ManualClock();
  readonly fn: UhciFunctionLike;
  /** Last dword written to 0xCF8. */
  private cf8 = 0;

  constructor(factory: ModelFactory) {
    const parts: ModelParts = { mem: this.mem, irq: this.irq, clock: this.clock };
    this.fn = factory.createFunction(parts);
    // QEMU's `usb-tablet,port=1` is the first root port (index 0).
    this.fn.attach(0, factory.createTablet(parts));
  }

  async portIn(port: number, size: IoSize): Promise<number> {
    return this.in(port, size);
  }
  async portOut(port: number, size: IoSize, value: number): Promise<void> {
    this.out(port, size, value);
  }
  async readMem(addr: number, len: number): Promise<Uint8Array> {
    const buf = new Uint8Array(len);
    this.mem.read(addr, buf);
    return buf;
  }
  async writeMem(addr: number, bytes: Uint8Array): Promise<void> {
    this.mem.write(addr, bytes);
  }
  async fillMem(addr: number, len: number, byte: number): Promise<void> {
    this.mem.bytes.fill(byte & 0xff, addr, addr + len);
  }
  async irqLevel(): Promise<boolean> {
    return this.irq.level;
  }
  async settle(ms: number): Promise<void> {
    this.clock.advance(Math.round(ms * 1e6));
  }
  async close(): Promise<void> {
    /* nothing to release */
  }

  /** The function's config space if 0xCF8 selects bus 0, device 5, function 0. */
  private configSelected(): boolean {
    const a = this.cf8;
    return (a & 0x80000000) !== 0 && ((a >>> 16) & 0xff) === 0 && ((a >>> 11) & 0x1f) === UHCI_SLOT && ((a >>> 8) & 7) === 0;
  }

  private in(port: number, size: IoSize): number {
    if (port === PCI_CONFIG_ADDRESS && size === 4) return this.cf8 >>> 0;
    if (port >= PCI_CONFIG_DATA && port + size <= PCI_CONFIG_DATA + 4) {
      if (!this.configSelected()) return ALL_ONES[size];
      return this.fn.configRead((this.cf8 & 0xfc) + (port - PCI_CONFIG_DATA), size) >>> 0;
    }
    const base = this.fn.ioBase;
    if (base === null) return ALL_ONES[size];
    if (port >= base && port + size <= base + IO_BAR_BYTES) return this.fn.ioRead(port - base, size) >>> 0;
    if (port + size <= base || port >= base + IO_BAR_BYTES) return ALL_ONES[size];
    // Straddles the BAR edge: split into naturally aligned pieces, as the
    // x86 I/O bus does, and let each piece land where it belongs.
    let value = 0;
    for (const piece of splitAligned(port, size)) {
      const v = this.in(piece.port, piece.size);
      value |= v << (8 * (piece.port - port));
    }
    return value >>> 0;
  }

  private out(port: number, size: IoSize, value: number): void {
    if (port === PCI_CONFIG_ADDRESS && size === 4) {
      this.cf8 = value >>> 0;
      return;
    }
    if (port >= PCI_CONFIG_DATA && port + size <= PCI_CONFIG_DATA + 4) {
      if (this.configSelected()) this.fn.configWrite((this.cf8 & 0xfc) + (port - PCI_CONFIG_DATA), size, value >>> 0);
      return;
    }
    const base = this.fn.ioBase;
    if (base === null) return;
    if (port >= base && port + size <= base + IO_BAR_BYTES) {
      this.fn.ioWrite(port - base, size, value >>> 0);
      return;
    }
    if (port + size <= base || port >= base + IO_BAR_BYTES) return;
    for (const piece of splitAligned(port, size)) {
      const mask = ALL_ONES[piece.size];
      this.out(piece.port, piece.size, (value >>> (8 * (piece.port - port))) & mask);
    }
  }
}

/** Split [port, port+size) into naturally aligned pieces of 1, 2 or 4 bytes. */
export function splitAligned(port: number, size: number): { port: number; size: IoSize }[] {
  const out: { port: number; size: IoSize }[] = [];
  let p = port;
  let left = size;
  while (left > 0) {
    let s: IoSize = 1;
    if (left >= 4 && p % 4 === 0) s = 4;
    else if (left >= 2 && p % 2 === 0) s = 2;
    out.push({ port: p, size: s });
    p += s;
    left -= s;
  }
  return out;
}
