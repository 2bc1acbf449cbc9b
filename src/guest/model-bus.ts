/**
 * A GuestBus wired straight to an in-process UHCI function: PCI config
 * mechanism #1 (ports 0xCF8/0xCFC) decodes bus 0 / the function's slot,
 * port I/O inside BAR4 reaches the controller, other ports float (all
 * ones), and `wait` advances a ManualClock. Used by the demo and tests.
 */
import { ManualClock } from '../platform/clock.js';
import { FlatMemory } from '../platform/memory.js';
import type { UhciPciFunction } from '../device/uhci-pci-function.js';
import type { GuestBus } from './uhci-driver.js';

export class InProcessBus implements GuestBus {
  private cf8 = 0;

  constructor(
    readonly fn: UhciPciFunction,
    readonly mem: FlatMemory,
    readonly clock: ManualClock | null,
    readonly slot = 5,
    /** How `wait` passes time when there is no ManualClock (real time: sleep). */
    private readonly sleeper: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  private configTarget(): number | null {
    const a = this.cf8;
    if (!(a & 0x80000000)) return null;
    const bus = (a >>> 16) & 0xff;
    const dev = (a >>> 11) & 0x1f;
    const fn = (a >>> 8) & 7;
    if (bus !== 0 || dev !== this.slot || fn !== 0) return null;
    return a & 0xfc;
  }

  private read(port: number, size: 1 | 2 | 4): number {
    const ones = size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    if (port === 0xcf8 && size === 4) return this.cf8;
    if (port >= 0xcfc && port < 0xd00) {
      const reg = this.configTarget();
      if (reg === null) return ones;
      return this.fn.configRead(reg + (port - 0xcfc), size);
    }
    const v = this.fn.portRead(port, size);
    return v === undefined ? ones : v >>> 0;
  }

  private write(port: number, size: 1 | 2 | 4, v: number): void {
    if (port === 0xcf8 && size === 4) {
      this.cf8 = v >>> 0;
      return;
    }
    if (port >= 0xcfc && port < 0xd00) {
      const reg = this.configTarget();
      if (reg !== null) this.fn.configWrite(reg + (port - 0xcfc), size, v);
      return;
    }
    this.fn.portWrite(port, size, v);
  }

  async outb(port: number, v: number): Promise<void> {
    this.write(port, 1, v);
  }
  async outw(port: number, v: number): Promise<void> {
    this.write(port, 2, v);
  }
  async outl(port: number, v: number): Promise<void> {
    this.write(port, 4, v);
  }
  async inb(port: number): Promise<number> {
    return this.read(port, 1);
  }
  async inw(port: number): Promise<number> {
    return this.read(port, 2);
  }
  async inl(port: number): Promise<number> {
    return this.read(port, 4);
  }
  async readMem(addr: number, len: number): Promise<Uint8Array> {
    const b = new Uint8Array(len);
    this.mem.read(addr, b);
    return b;
  }
  async writeMem(addr: number, bytes: Uint8Array): Promise<void> {
    this.mem.write(addr, bytes);
  }
  async wait(ms: number): Promise<void> {
    if (this.clock) this.clock.advance(ms * 1_000_000);
    else await this.sleeper(ms);
  }
}
