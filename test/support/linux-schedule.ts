/**
 * The schedule skeleton Linux's uhci-hcd keeps in guest memory (uhci-q.c):
 * interrupt skeleton QHs for intervals 128..1 chained toward the low-speed
 * control, full-speed control and bulk QHs and a terminating QH; frame-list
 * entry i points at the interrupt QH of the largest interval whose period
 * divides i. The benchmarks use it to give QEMU and our model the same
 * work (an idle tablet polled by one interrupt IN TD in the 8 ms queue),
 * and the quiescent-replay tests to drive the model as Linux does.
 */
import { makeToken, LINK, TD_CTRL } from '../../src/uhci/descriptors.js';
import { PID_IN } from '../../src/usb/packet.js';
import type { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { InProcessBus } from '../../src/guest/model-bus.js';
import { UhciGuestDriver, type EnumeratedDevice, type GuestBus } from '../../src/guest/uhci-driver.js';
import type { Clock, ManualClock } from '../../src/platform/clock.js';
import type { FlatMemory } from '../../src/platform/memory.js';
import { createDevice } from '../../src/usb/devices.js';

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
  for (let k = 7; k >= 1; k--) await mem.writeMem(intQh[k]!, u32s([intQh[k - 1]! | LINK.bit.Q, LINK.bit.T]));
  await mem.writeMem(intQh[0]!, u32s([lsControlQh | LINK.bit.Q, LINK.bit.T]));
  await mem.writeMem(lsControlQh, u32s([controlQh | LINK.bit.Q, LINK.bit.T]));
  await mem.writeMem(controlQh, u32s([bulkQh | LINK.bit.Q, LINK.bit.T]));
  await mem.writeMem(bulkQh, u32s([termQh | LINK.bit.Q, LINK.bit.T]));
  await mem.writeMem(termQh, u32s([LINK.bit.T, LINK.bit.T]));
  // The tablet's interrupt TD sits in the 8 ms queue (bInterval 10 → 8 in Linux).
  await mem.writeMem(tabletTd, u32s([LINK.bit.T, (3 << TD_CTRL.lsb.CERR) | TD_CTRL.bit.ACTIVE | TD_CTRL.bit.SPD | 0x7ff, makeToken(PID_IN, devAddr, endpoint, 0, maxPacket), tabletBuf]));
  await mem.writeMem(intQh[3]! + 4, u32s([tabletTd]));
  const words: number[] = [];
  for (let i = 0; i < 1024; i++) {
    let k = 0;
    while (k < 7 && i % (2 << k) === 0) k++;
    words.push(intQh[k]! | LINK.bit.Q);
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

/**
 * Bring the controller into the state a Linux guest leaves it in once the
 * idle tablet and then the root hub have autosuspended (runtime PM with an
 * input reader open, as proven in test/lab/autosuspend.qemu.test.ts):
 * - usbhid's suspend kills the interrupt URB: the tablet's TD leaves the
 *   8 ms queue;
 * - usb_port_suspend: SET_FEATURE(DEVICE_REMOTE_WAKEUP) to the device (USB
 *   2.0 §9.4.9), then the root hub port's Suspend bit (PORTSC bit 12, UHCI
 *   DG §2.1.7; uhci-hcd writes it read-modify-write without the
 *   write-1-to-clear bits);
 * - uhci-hcd suspend_rh: USBINTR = Resume (bit 1) and USBCMD = EGSM | CF
 *   with RS cleared (global suspend, UHCI DG §2.1.1), so the controller halts.
 * The register values match what the lab's Linux 6.1 guest wrote (USBCMD
 * 0x0048, USBINTR 0x0002, PORTSC1 0x1095).
 */
export async function suspendLikeLinux(bus: GuestBus, driver: UhciGuestDriver, dev: EnumeratedDevice, sched: LinuxSchedule): Promise<void> {
  const io = driver.ioBase;
  await bus.writeMem(sched.intQh[3]! + 4, u32s([LINK.bit.T]));
  // The control transfer runs on the driver's own frame list for a moment.
  await bus.outl(io + 0x08, driver.layout.frameList);
  await driver.control(dev.address, dev.lowSpeed, dev.maxPacket0, { bmRequestType: 0x00, bRequest: 3, wValue: 1, wIndex: 0, wLength: 0 });
  await bus.outl(io + 0x08, sched.frameList);
  const portsc = io + 0x10 + dev.port * 2;
  const v = await bus.inw(portsc);
  await bus.outw(portsc, (v & ~0xe00a) | 0x1000);
  await bus.outw(io + 0x04, 0x0002);
  await bus.outw(io + 0x00, 0x0048);
  await bus.wait(2);
}
