import { UhciPciFunction } from '../../../src/device/uhci-pci-function.js';
import { InProcessBus } from '../../../src/guest/model-bus.js';
import { UhciGuestDriver } from '../../../src/guest/uhci-driver.js';
import { ManualClock } from '../../../src/platform/clock.js';
import { LatchedIrq } from '../../../src/platform/irq.js';
import { FlatMemory } from '../../../src/platform/memory.js';
import { encodeConfigDescriptor } from '../../../src/usb/descriptors.js';
import { CONFIG_SOURCESINK, GadgetZero, gadgetZeroDescriptors } from '../../../src/usb/gadget-zero.js';
import { HostUsbDevice } from '../../../src/usb/host/host-device.js';
import { HostDeviceNotFoundError, HostPassthrough } from '../../../src/usb/host/passthrough.js';
import { HostSelectorError, formatHostSelector, matchesSelector, parseHostSelector } from '../../../src/usb/host/selector.js';
import { PID_IN, PID_SETUP, UsbPacket } from '../../../src/usb/packet.js';
import { EmulatedLibusbDevice, HOST_ADDRESS } from './emulated-libusb.js';
import { FakeLibusbDevice, FakeLibusbHost, makeInfo, settle } from './fake-libusb.js';

function gadgetBackedDevice(): { gz: GadgetZero; raw: EmulatedLibusbDevice } {
  const gz = new GadgetZero({ pattern: 1 });
  const raw = new EmulatedLibusbDevice(gz, gadgetZeroDescriptors(), new Map([[1, 'uhci-dm'], [2, 'Gadget Zero'], [3, '0123456789.0123456789.0123456789']]));
  return { gz, raw };
}

describe('host passthrough end to end (guest driver → UHCI → HostUsbDevice → libusb → device)', () => {
  test('a passed-through Gadget Zero enumerates; SET_ADDRESS stays local, SET_CONFIGURATION reaches the device', async () => {
    const { gz, raw } = gadgetBackedDevice();
    const host = new HostUsbDevice(raw);
    const clock = new ManualClock();
    const mem = new FlatMemory(16 << 20);
    const fn = new UhciPciFunction({ mem, irq: new LatchedIrq(), clock });
    fn.attach(1, host);
    const driver = new UhciGuestDriver(new InProcessBus(fn, mem, clock, 5));
    await driver.probe();
    await driver.start();
    const d = await driver.enumerate(1);
    expect(d.vendorId).toBe(0x0525);
    expect(d.productId).toBe(0xa4a0);
    expect(d.product).toBe('Gadget Zero');
    expect([...d.configDescriptor]).toEqual([...encodeConfigDescriptor(gadgetZeroDescriptors().configs[0]!)]);
    // The guest's address is ours; the device keeps its host address.
    expect(host.address).toBe(d.address);
    expect(d.address).not.toBe(HOST_ADDRESS);
    expect(gz.address).toBe(HOST_ADDRESS);
    expect(raw.calls.filter((c) => c.startsWith('control 0005'))).toEqual([]);
    expect(raw.calls).toContain(`setConfiguration ${CONFIG_SOURCESINK}`);
    expect(raw.calls).toContain('claim 0');
    expect(gz.configurationValue).toBe(CONFIG_SOURCESINK);
    expect(host.configurationValue).toBe(CONFIG_SOURCESINK);

  });

  test('bulk IN through libusb from the passed-through source: the mod63 pattern', async () => {
    const { raw } = gadgetBackedDevice();
    const host = new HostUsbDevice(raw);
    const done: UsbPacket[] = [];
    host.attach({ complete: (x) => done.push(x), wakeup: () => {} });
    host.reset();
    host.handlePacket(new UsbPacket(PID_SETUP, 0, 0, Uint8Array.of(0, 9, CONFIG_SOURCESINK, 0, 0, 0, 0, 0)));
    const st = new UsbPacket(PID_IN, 0, 0, new Uint8Array(0));
    host.handlePacket(st);
    expect(st.status).toBe('async');
    await settle();
    expect(done).toEqual([st]);
    expect(st.status).toBe('ack');
    const bulk = new UsbPacket(PID_IN, 0, 1, new Uint8Array(64));
    host.handlePacket(bulk);
    expect(bulk.status).toBe('async');
    await settle();
    expect(done).toEqual([st, bulk]);
    expect(bulk.status).toBe('ack');
    expect([...bulk.data]).toEqual(Array.from({ length: 64 }, (_, i) => i % 63));
    // A TD smaller than the device's packet: libusb reports overflow → babble.
    const small = new UsbPacket(PID_IN, 0, 1, new Uint8Array(16));
    host.handlePacket(small);
    await settle();
    expect(small.status).toBe('babble');
  });
});

describe('host device selectors', () => {
  test('parse vid:pid, bus.addr, bus-port', () => {
    expect(parseHostSelector('0525:a4a0')).toEqual({ kind: 'ids', vendorId: 0x525, productId: 0xa4a0 });
    expect(parseHostSelector('host:1.5')).toEqual({ kind: 'address', busNumber: 1, deviceAddress: 5 });
    expect(parseHostSelector('3-1.4')).toEqual({ kind: 'port', busNumber: 3, portNumbers: [1, 4] });
    expect(formatHostSelector(parseHostSelector('3-1.4'))).toBe('3-1.4');
    expect(formatHostSelector(parseHostSelector('525:A4A0'))).toBe('0525:a4a0');
    expect(() => parseHostSelector('1.0')).toThrow(HostSelectorError);
    expect(() => parseHostSelector('usb')).toThrow(/expected vid:pid/);
  });

  test('match', () => {
    const info = makeInfo({ busNumber: 2, deviceAddress: 9, portNumbers: [1, 3] });
    expect(matchesSelector(parseHostSelector('1234:5678'), info)).toBe(true);
    expect(matchesSelector(parseHostSelector('1234:5679'), info)).toBe(false);
    expect(matchesSelector(parseHostSelector('2.9'), info)).toBe(true);
    expect(matchesSelector(parseHostSelector('2-1.3'), info)).toBe(true);
    expect(matchesSelector(parseHostSelector('2-1'), info)).toBe(false);
  });
});

describe('HostPassthrough', () => {
  function setupPassthrough(reattach: boolean) {
    const host = new FakeLibusbHost();
    const events: string[] = [];
    const fn = new UhciPciFunction({ mem: new FlatMemory(1 << 20), irq: new LatchedIrq(), clock: new ManualClock() });
    const pt = new HostPassthrough(host, parseHostSelector('1234:5678'), {
      reattach,
      onAttach: (dev) => {
        events.push(`attach ${dev.info.deviceAddress}`);
        fn.attach(0, dev);
      },
      onDetach: (dev, reason) => {
        events.push(`detach ${dev.info.deviceAddress}: ${reason}`);
        fn.detach(0);
      },
    });
    return { host, events, pt, fn };
  }

  test('missing device without reattach is an error', () => {
    const { pt } = setupPassthrough(false);
    expect(() => pt.start()).toThrow(HostDeviceNotFoundError);
  });

  test('host unplug detaches the port; reattach plugs a returning device in again', async () => {
    const { host, events, pt, fn } = setupPassthrough(true);
    expect(pt.start()).toBeNull();
    const first = new FakeLibusbDevice(makeInfo({ deviceAddress: 7 }));
    host.plug(first);
    expect(events).toEqual(['attach 7']);
    expect(fn.controller.ports[0]!.device).toBe(pt.device);
    host.unplug(first);
    await settle();
    expect(events[1]).toMatch(/^detach 7: unplugged/);
    expect(fn.controller.ports[0]!.device).toBeNull();
    expect(pt.device).toBeNull();
    // Another device with other ids does not match.
    host.plug(new FakeLibusbDevice(makeInfo({ deviceAddress: 8, productId: 1 })));
    expect(events).toHaveLength(2);
    const again = new FakeLibusbDevice(makeInfo({ deviceAddress: 9 }));
    host.plug(again);
    expect(events[2]).toBe('attach 9');
    await pt.stop();
    expect(events[3]).toBe('detach 9: stopped');
    expect(host.listenerCount).toBe(0);
    expect(again.calls).toContain('close');
  });

  test('NO_DEVICE in flight: the packet completes with nodev and the port is detached', async () => {
    const { host, events, pt, fn } = setupPassthrough(false);
    const raw = new FakeLibusbDevice(makeInfo());
    host.plug(raw);
    const dev = pt.start()!;
    expect(dev).toBeInstanceOf(HostUsbDevice);
    expect(fn.controller.ports[0]!.device).toBe(dev);
    const p = new UsbPacket(0x2d, 0, 0, Uint8Array.of(0x80, 6, 0, 1, 0, 0, 18, 0));
    dev.handlePacket(p);
    expect(p.status).toBe('async');
    raw.pending[0]!.complete('no_device');
    expect(p.status).toBe('nodev');
    await settle();
    expect(events).toEqual(['attach 7', 'detach 7: NO_DEVICE on a control transfer']);
    expect(fn.controller.ports[0]!.device).toBeNull();
  });
});
