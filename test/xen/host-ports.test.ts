/**
 * Host passthrough on the Xen transport's ports (`-usbdevice host:vvvv:pppp`,
 * `usb_add host:...`), with a fake libusb host: the device is plugged into
 * the controller's port, unplugged when the host device goes away, and (with
 * reattach) plugged in again when it comes back.
 */
import { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { MemoryLogger } from '../../src/platform/logger.js';
import { FlatMemory } from '../../src/platform/memory.js';
import { UsbPorts } from '../../src/xen/usb-ports.js';
import { FakeLibusbDevice, FakeLibusbHost, makeInfo, settle } from '../usb/host/fake-libusb.js';

function setup(reattach: boolean) {
  const clock = new ManualClock();
  const fn = new UhciPciFunction({ mem: new FlatMemory(1 << 20), irq: new LatchedIrq(), clock });
  const host = new FakeLibusbHost();
  const ports = new UsbPorts(fn, clock, '0000:00:05.0', host, reattach);
  return { fn, host, ports };
}

test('a host device given by ids goes on a port, leaves it on unplug, comes back with reattach', async () => {
  const { fn, host, ports } = setup(true);
  const raw = new FakeLibusbDevice(makeInfo({ vendorId: 0x0525, productId: 0xa4a0, deviceAddress: 7 }));
  host.plug(raw);
  expect(ports.add('usb-host,vendorid=0x0525,productid=0xa4a0')).toBe(1);
  expect(ports.add('tablet')).toBe(2);
  expect(ports.list().map((d) => [d.port, d.kind, d.vendorId])).toEqual([
    [1, 'host', 0x0525],
    [2, 'tablet', 0x0627],
  ]);
  expect(fn.ioRead(0x10, 2) & 1).toBe(1); // CCS on port 1
  host.unplug(raw);
  await settle();
  expect(fn.controller.ports[0]!.device).toBeNull();
  expect(fn.ioRead(0x10, 2) & 3).toBe(2); // disconnected, CSC set
  host.plug(new FakeLibusbDevice(makeInfo({ vendorId: 0x0525, productId: 0xa4a0, deviceAddress: 8 })));
  await settle();
  expect(fn.controller.ports[0]!.device?.vendorId).toBe(0x0525);
  expect(ports.remove('host:0525:a4a0')).toBe(1);
  expect(fn.controller.ports[0]!.device).toBeNull();
  expect(host.listenerCount).toBe(0);
});

test('a missing host device is a clear error and leaves the port free', () => {
  const { ports, fn } = setup(false);
  expect(() => ports.add('host:1234:5678')).toThrow(/cannot pass through host:1234:5678/);
  expect(fn.controller.ports[0]!.device).toBeNull();
  expect(ports.add('keyboard')).toBe(1);
});

test('without libusb, host devices are refused with a hint', () => {
  const clock = new ManualClock();
  const fn = new UhciPciFunction({ mem: new FlatMemory(1 << 20), irq: new LatchedIrq(), clock });
  const ports = new UsbPorts(fn, clock, '0000:00:05.0', null);
  expect(() => ports.add('host:1.2')).toThrow(/needs libusb.*--host-usb/);
});

test("host devices log through the daemon's logger (not the stderr-errors default)", async () => {
  const clock = new ManualClock();
  const fn = new UhciPciFunction({ mem: new FlatMemory(1 << 20), irq: new LatchedIrq(), clock });
  const host = new FakeLibusbHost();
  const logger = new MemoryLogger();
  const ports = new UsbPorts(fn, clock, '0000:00:05.0', host, false, logger);
  const raw = new FakeLibusbDevice(makeInfo({ vendorId: 0x0525, productId: 0xa4a0 }));
  host.plug(raw);
  expect(ports.add('host:0525:a4a0')).toBe(1);
  host.unplug(raw);
  await settle();
  expect(logger.records).toEqual([expect.objectContaining({ level: 'warn', component: 'usb-host', msg: expect.stringMatching(/0525:a4a0.*: .*(unplugged|gone|detach)/) })]);
  ports.releaseAll();
});
