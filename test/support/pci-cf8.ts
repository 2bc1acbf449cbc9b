/**
 * PCI configuration mechanism #1 (ports 0xCF8 address / 0xCFC..0xCFF data) over
 * qtest, as a guest would use it on QEMU's `pc` machine.
 * Address register: bit 31 enable, bits 23..16 bus, 15..11 device, 10..8
 * function, 7..2 dword register (PCI Local Bus Spec 3.0 §3.2.2.3.2).
 */
import type { QtestClient } from './qtest.js';

export const PCI_CONFIG_ADDRESS = 0xcf8;
export const PCI_CONFIG_DATA = 0xcfc;

export interface PciAddress {
  bus: number;
  device: number;
  fn: number;
}

export function configAddress(a: PciAddress, offset: number): number {
  return (0x80000000 | (a.bus << 16) | (a.device << 11) | (a.fn << 8) | (offset & 0xfc)) >>> 0;
}

/** Config-space access to one PCI function through 0xCF8/0xCFC. */
export class PciConfigPort {
  constructor(
    private readonly qt: QtestClient,
    private readonly addr: PciAddress,
  ) {}

  /** Read `size` bytes at `offset` (data port 0xCFC + (offset & 3)). */
  async read(offset: number, size: 1 | 2 | 4): Promise<number> {
    await this.qt.outl(PCI_CONFIG_ADDRESS, configAddress(this.addr, offset));
    const port = PCI_CONFIG_DATA + (offset & 3);
    if (size === 1) return this.qt.inb(port);
    if (size === 2) return this.qt.inw(port);
    return this.qt.inl(port);
  }

  async write(offset: number, size: 1 | 2 | 4, value: number): Promise<void> {
    await this.qt.outl(PCI_CONFIG_ADDRESS, configAddress(this.addr, offset));
    const port = PCI_CONFIG_DATA + (offset & 3);
    if (size === 1) await this.qt.outb(port, value);
    else if (size === 2) await this.qt.outw(port, value);
    else await this.qt.outl(port, value);
  }

  /** All 256 bytes of the function's configuration space. */
  async dump(): Promise<Uint8Array> {
    const out = new Uint8Array(256);
    const view = new DataView(out.buffer);
    for (let off = 0; off < 256; off += 4) view.setUint32(off, await this.read(off, 4), true);
    return out;
  }
}
