/**
 * Save/restore of the whole PCI function (config space, controller, devices)
 * in the middle of a control transfer: software debug mode (UHCI DG §2.1.1
 * SWDBG) stops the controller after the SETUP stage; the snapshot and guest
 * RAM move to a fresh instance, which finishes the data and status stages.
 */
import { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { InProcessBus } from '../../src/guest/model-bus.js';
import { UhciGuestDriver } from '../../src/guest/uhci-driver.js';
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';
import { createDevice } from '../../src/usb/devices.js';
import { PID_IN, PID_OUT, PID_SETUP } from '../../src/usb/packet.js';
import { ScheduleBuilder } from '../support/schedule-builder.js';
import { LINK, TD_CTRL } from '../../src/uhci/descriptors.js';

function machine(mem = new FlatMemory(4 << 20)) {
  const clock = new ManualClock();
  const irq = new LatchedIrq();
  const fn = new UhciPciFunction({ mem, irq, clock });
  const tablet = createDevice('usb-tablet', { clock, hcdPath: '0000:00:05.0', portPath: '1' });
  fn.attach(0, tablet);
  return { fn, mem, clock, irq, tablet, bus: new InProcessBus(fn, mem, clock, 5) };
}

test('a control transfer interrupted by a snapshot completes after restore', async () => {
  const a = machine();
  const driver = new UhciGuestDriver(a.bus, { frameList: 0x100000, heap: 0x110000 });
  await driver.probe();
  await driver.start();
  const dev = await driver.enumerate(0);
  expect(dev.product).toBe('QEMU USB Tablet');
  const io = driver.ioBase;

  // GET_DESCRIPTOR(device, 18) as SETUP + 3 IN packets of 8 + status OUT, in one QH.
  await a.bus.outw(io, 0x0000);
  const sb = new ScheduleBuilder(a.mem, 0x200000, 0x201000);
  const setup = sb.buffer([0x80, 6, 0, 1, 0, 0, 18, 0]);
  const data = sb.buffer(18);
  const status = sb.td({ pid: PID_OUT, dev: dev.address, toggle: 1, maxLen: 0 });
  let link = ScheduleBuilder.vf(status);
  for (let i = 2; i >= 0; i--) {
    const n = Math.min(8, 18 - i * 8);
    link = ScheduleBuilder.vf(sb.td({ pid: PID_IN, dev: dev.address, toggle: (i + 1) & 1, maxLen: n, buffer: data + i * 8, link }));
  }
  const setupTd = sb.td({ pid: PID_SETUP, dev: dev.address, maxLen: 8, buffer: setup, link });
  const qh = sb.qh(LINK.bit.T, setupTd);
  sb.setFrame(ScheduleBuilder.q(qh));
  await a.bus.outl(io + 8, sb.flBase);
  await a.bus.outw(io, 0x00e1); // RS + SWDBG: one transaction, then halt
  await a.bus.wait(2);
  expect(a.mem.readU32(setupTd + 4) & TD_CTRL.bit.ACTIVE).toBe(0);
  expect(a.mem.readU32(qh + 4) & ~0xf).not.toBe(setupTd); // element advanced to the first IN
  expect((await a.bus.inw(io + 2)) & 0x20).toBe(0x20);

  // Snapshot: JSON round trip of the function state plus a copy of guest RAM.
  const snap = JSON.parse(JSON.stringify(a.fn.saveState()));
  const b = machine(new FlatMemory(Uint8Array.from(a.mem.bytes)));
  b.fn.loadState(snap);
  expect(b.fn.configRead(0x20, 4)).toBe(a.fn.configRead(0x20, 4));
  expect(b.fn.ioRead(0x10, 2)).toBe(a.fn.ioRead(0x10, 2));

  // Resume without debug mode: the data stage continues where it stopped.
  await b.bus.outw(io, 0x00c1);
  await b.bus.wait(3);
  expect(b.mem.readU32(qh + 4)).toBe(LINK.bit.T);
  const got = new Uint8Array(18);
  b.mem.read(data, got);
  expect([...got.subarray(0, 4)]).toEqual([0x12, 0x01, 0x00, 0x02]); // bLength, DEVICE, bcdUSB 2.00
  expect(got[8] | (got[9]! << 8)).toBe(0x0627);
});
