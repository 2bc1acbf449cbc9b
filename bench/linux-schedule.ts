/**
 * The schedule skeleton Linux's uhci-hcd keeps in guest memory (uhci-q.c):
 * interrupt skeleton QHs for intervals 128..1 chained toward the low-speed
 * control, full-speed control and bulk QHs and a terminating QH; frame-list
 * entry i points at the interrupt QH of the largest interval whose period
 * divides i. Used by the benchmarks to give QEMU and our model the same
 * work: an idle tablet polled by one interrupt IN TD in the 8 ms queue.
 */
import { LINK_Q, LINK_T, TDC_ACTIVE, TDC_CERR_SHIFT, TDC_SPD, makeToken } from '../src/uhci/descriptors.js';
import { PID_IN } from '../src/usb/packet.js';
import type { UhciPciFunction } from '../src/device/uhci-pci-function.js';
import { InProcessBus } from '../src/guest/model-bus.js';
import { UhciGuestDriver } from '../src/guest/uhci-driver.js';
import type { Clock, ManualClock } from '../src/platform/clock.js';
import type { FlatMemory } from '../src/platform/memory.js';
import { createDevice } from '../src/usb/devices.js';

export interface MemWriter {
  writeMem(addr: number, bytes: Uint8Array): Promise<void>;
}

export interface LinuxSchedule {
  frameList: number;
  intQh: number[]; // index k: interval 2^k
  controlQh: number;
  bulkQh: number;
  termQh: number;
  tabletTd: number;
}

function u32s(words: number[]): Uint8Array {
  const b = new Uint8Array(words.length * 4);
  const dv = new DataView(b.buffer);
  words.forEach((w, i) => dv.setUint32(i * 4, w >>> 0, true));
  return b;
}

/** Lay the skeleton out at `base` (4 KiB aligned, 8 KiB used) with an interrupt IN TD for (addr, ep). */
export async function installLinuxSchedule(mem: MemWriter, base: number, devAddr: number, endpoint: number, maxPacket: number): Promise<LinuxSchedule> {
  const frameList = base;
  const qhBase = base + 0x1000;
  const intQh = [...Array(8).keys()].map((k) => qhBase + k * 16); // int1..int128
  const lsControlQh = qhBase + 0x80;
  const controlQh = qhBase + 0x90;
  const bulkQh = qhBase + 0xa0;
  const termQh = qhBase + 0xb0;
  const tabletTd = qhBase + 0x100;
  const tabletBuf = qhBase + 0x140;
  // intN → int(N/2) … int1 → ls control → fs control → bulk → term (FSBR off: term ends).
  for (let k = 7; k >= 1; k--) await mem.writeMem(intQh[k]!, u32s([intQh[k - 1]! | LINK_Q, LINK_T]));
  await mem.writeMem(intQh[0]!, u32s([lsControlQh | LINK_Q, LINK_T]));
  await mem.writeMem(lsControlQh, u32s([controlQh | LINK_Q, LINK_T]));
  await mem.writeMem(controlQh, u32s([bulkQh | LINK_Q, LINK_T]));
  await mem.writeMem(bulkQh, u32s([termQh | LINK_Q, LINK_T]));
  await mem.writeMem(termQh, u32s([LINK_T, LINK_T]));
  // The tablet's interrupt TD sits in the 8 ms queue (bInterval 10 → 8 in Linux).
  await mem.writeMem(tabletTd, u32s([LINK_T, (3 << TDC_CERR_SHIFT) | TDC_ACTIVE | TDC_SPD | 0x7ff, makeToken(PID_IN, devAddr, endpoint, 0, maxPacket), tabletBuf]));
  await mem.writeMem(intQh[3]! + 4, u32s([tabletTd]));
  const words: number[] = [];
  for (let i = 0; i < 1024; i++) {
    let k = 0;
    while (k < 7 && i % (2 << k) === 0) k++;
    words.push(intQh[k]! | LINK_Q);
  }
  await mem.writeMem(frameList, u32s(words));
  return { frameList, intQh, controlQh, bulkQh, termQh, tabletTd };
}

/**
 * Plug an emulated tablet into port 1 of `fn`, let the built-in guest driver
 * find the function, start the controller and enumerate the tablet, then
 * install the Linux skeleton with the tablet's NAKing interrupt TD.
 * `manual`: the ManualClock the bus advances (null: real time, sleeping).
 */
export async function idleTabletGuest(fn: UhciPciFunction, mem: FlatMemory, clock: Clock, manual: ManualClock | null) {
  fn.attach(0, createDevice('usb-tablet', { clock, portPath: '1' }));
  const bus = new InProcessBus(fn, mem, manual, 5);
  const driver = new UhciGuestDriver(bus);
  await driver.probe();
  await driver.start();
  const dev = await driver.enumerate(0);
  const sched = await installLinuxSchedule(bus, 0x200000, dev.address, dev.interruptIn!.endpoint, dev.interruptIn!.maxPacket);
  await bus.outl(driver.ioBase + 0x08, sched.frameList);
  return { bus, driver, dev, sched };
}
