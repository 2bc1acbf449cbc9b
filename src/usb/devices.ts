/**
 * Emulated device factory. Accepts the qemu-dm / xl `usbdevice=` names
 * ('tablet', 'mouse', 'keyboard') and QEMU's -device names ('usb-tablet',
 * 'usb-mouse', 'usb-kbd'; QEMU registers the first set as legacy aliases of
 * the second, dev-hid.c usb_legacy_register).
 */
import { UsbTablet } from './hid/tablet.js';
import { UsbMouse } from './hid/mouse.js';
import { UsbKeyboard, type KeyboardOptions } from './hid/keyboard.js';
import type { HidUsbDevice } from './hid/hid-device.js';
import { GadgetZero } from './gadget-zero.js';
import type { UsbDevice } from './packet.js';

export type EmulatedDeviceSpec = 'tablet' | 'mouse' | 'keyboard' | 'usb-tablet' | 'usb-mouse' | 'usb-kbd' | 'gadget-zero';

export const DEVICE_SPECS: readonly EmulatedDeviceSpec[] = [
  'tablet', 'mouse', 'keyboard', 'usb-tablet', 'usb-mouse', 'usb-kbd', 'gadget-zero',
];

export type CreateDeviceOptions = KeyboardOptions;

export class UnknownDeviceError extends Error {
  override name = 'UnknownDeviceError';
}

export function isEmulatedDeviceSpec(s: string): s is EmulatedDeviceSpec {
  return (DEVICE_SPECS as readonly string[]).includes(s);
}

export function createDevice(spec: 'tablet' | 'usb-tablet', opts: CreateDeviceOptions): UsbTablet;
export function createDevice(spec: 'mouse' | 'usb-mouse', opts: CreateDeviceOptions): UsbMouse;
export function createDevice(spec: 'keyboard' | 'usb-kbd', opts: CreateDeviceOptions): UsbKeyboard;
export function createDevice(spec: string, opts: CreateDeviceOptions): HidUsbDevice;
export function createDevice(spec: string, opts: CreateDeviceOptions): HidUsbDevice {
  switch (spec) {
    case 'tablet':
    case 'usb-tablet':
      return new UsbTablet(opts);
    case 'mouse':
    case 'usb-mouse':
      return new UsbMouse(opts);
    case 'keyboard':
    case 'usb-kbd':
      return new UsbKeyboard(opts);
    default:
      throw new UnknownDeviceError(`unknown emulated USB device '${spec}' (expected one of ${DEVICE_SPECS.join(', ')})`);
  }
}

/** Any emulated device by name: the HID devices above plus 'gadget-zero'. */
export function createUsbDevice(spec: string, opts: CreateDeviceOptions): UsbDevice {
  // Linux gadget zero (0525:a4a0): the device Linux's usbtest driver binds to.
  if (spec === 'gadget-zero') return new GadgetZero({ serial: opts.serial });
  return createDevice(spec, opts);
}
