/** A GuestBus over a QEMU qtest session: port I/O and guest RAM through qtest, waiting in real time. */
import type { QtestClient } from '../test/support/qtest.js';
import type { GuestBus } from '../src/guest/uhci-driver.js';

export function qtestBus(q: QtestClient): GuestBus {
  return {
    outb: (p, v) => q.outb(p, v),
    outw: (p, v) => q.outw(p, v),
    outl: (p, v) => q.outl(p, v),
    inb: (p) => q.inb(p),
    inw: (p) => q.inw(p),
    inl: (p) => q.inl(p),
    readMem: (a, n) => q.readMem(a, n),
    writeMem: (a, b) => q.writeMem(a, b),
    wait: (ms) => new Promise((r) => setTimeout(r, ms)),
  };
}
