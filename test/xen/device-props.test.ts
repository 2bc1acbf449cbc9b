/**
 * QEMU device properties on the emulated HID devices of the Xen transport
 * (`-device usb-tablet,serial=42`, `usb_version=1`, `msos-desc=off`): parsed,
 * refused when unknown or malformed, applied to the device the guest reads,
 * and kept across save/restore.
 */
import { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';
import type { HidUsbDevice } from '../../src/usb/hid/hid-device.js';
import { UsbPorts, UsbPortError, parseDeviceSpec } from '../../src/xen/usb-ports.js';

function setup() {
  const clock = new ManualClock();
  const fn = new UhciPciFunction({ mem: new FlatMemory(1 << 20), irq: new LatchedIrq(), clock });
  return { fn, ports: new UsbPorts(fn, clock, '0000:00:05.0', null) };
}
const hidOn = (fn: UhciPciFunction, port: number) => fn.controller.ports[port - 1]!.device as HidUsbDevice;

test('properties parse for both spellings; unknown or bad ones are refused with the reason', () => {
  expect(parseDeviceSpec('usb-tablet,serial=42')).toEqual({ kind: 'tablet', serial: '42' });
  expect(parseDeviceSpec('keyboard,usb_version=1,msos-desc=off')).toEqual({ kind: 'keyboard', usbVersion: 1, msosDesc: false });
  expect(parseDeviceSpec('usb-mouse')).toEqual({ kind: 'mouse' });
  expect(() => parseDeviceSpec('usb-tablet,port=2')).toThrow(new UsbPortError("usb-tablet: unknown property 'port' (supported: serial, usb_version, msos-desc)"));
  expect(() => parseDeviceSpec('usb-tablet,usb_version=3')).toThrow(/usb_version must be 1 or 2/);
  expect(() => parseDeviceSpec('usb-kbd,msos-desc=maybe')).toThrow(/msos-desc must be on or off/);
  expect(() => parseDeviceSpec('usb-tablet,serial=')).toThrow(/serial must be 1 to 126 characters/);
  expect(() => parseDeviceSpec(`usb-tablet,serial=${'x'.repeat(127)}`)).toThrow(/serial must be 1 to 126 characters/);
});

test("serial=42 replaces the generated serial (QEMU-xen's tablet); without it the serial names the controller and port", () => {
  const { fn, ports } = setup();
  ports.add('usb-tablet,serial=42');
  ports.add('usb-kbd,usb_version=1');
  expect(hidOn(fn, 1).serialNumber).toBe('42');
  expect(hidOn(fn, 2).serialNumber).toMatch(/^\d+-0000:00:05\.0-2$/);
  // usb_version=1: full-speed tables only (no high-speed pair for DEVICE_QUALIFIER / OTHER_SPEED_CONFIG).
  expect(hidOn(fn, 2).descriptorSet.otherSpeed).toBeUndefined();
  expect(hidOn(fn, 1).descriptorSet.otherSpeed).toBeDefined();
  expect(ports.remove('tablet')).toBe(1); // usb_del matches the kind, whatever the properties
});

test('save/restore keeps the properties (older snapshots name only the kind)', () => {
  const a = setup();
  a.ports.add('usb-tablet,serial=42,msos-desc=off');
  const snap = a.ports.snapshot();
  expect(snap.devices).toEqual([{ port: 1, kind: 'tablet', spec: 'tablet,serial=42,msos-desc=off' }]);
  const b = setup();
  b.ports.restore(JSON.parse(JSON.stringify(snap)));
  expect(hidOn(b.fn, 1).serialNumber).toBe('42');
  expect(hidOn(b.fn, 1).descriptorSet.msos).toBe(false);
  const old = { ...snap, devices: [{ port: 1, kind: 'tablet', spec: 'tablet' }] };
  b.ports.restore(old);
  expect(hidOn(b.fn, 1).serialNumber).toMatch(/^\d+-0000:00:05\.0-1$/);
  // A spec that names another kind than its entry, or does not parse, is a bad snapshot (nothing changes).
  expect(() => b.ports.restore({ ...snap, devices: [{ port: 1, kind: 'tablet', spec: 'keyboard' }] })).toThrow(/bad device entry/);
  expect(() => b.ports.restore({ ...snap, devices: [{ port: 1, kind: 'tablet', spec: 'tablet,colour=red' }] })).toThrow(/bad device entry: tablet: unknown property 'colour'/);
  expect(hidOn(b.fn, 1).serialNumber).toMatch(/^\d+-0000:00:05\.0-1$/);
});
