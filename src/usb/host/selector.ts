/**
 * Which host device to pass through, in the three ways QEMU's usb-host
 * names one (vendorid/productid, hostbus/hostaddr, hostbus/hostport):
 *   "vid:pid"        hex ids, e.g. "0525:a4a0"
 *   "bus.addr"       decimal bus number and device address, e.g. "1.5"
 *   "bus-port[.port]" decimal bus and port path, as Linux sysfs names it,
 *                    e.g. "1-2" or "3-1.4"
 * A "host:" prefix (xl `usbdevice=host:...` style) is accepted and ignored.
 */
import { UserFacingError } from '../../platform/user-facing-error.js';
import type { HostDeviceInfo } from './libusb.js';

export type HostDeviceSelector =
  | { kind: 'ids'; vendorId: number; productId: number }
  | { kind: 'address'; busNumber: number; deviceAddress: number }
  | { kind: 'port'; busNumber: number; portNumbers: number[] };

export class HostSelectorError extends UserFacingError {}

export function parseHostSelector(text: string): HostDeviceSelector {
  const s = text.trim().replace(/^host:/, '');
  let m = /^([0-9a-fA-F]{1,4}):([0-9a-fA-F]{1,4})$/.exec(s);
  if (m) return { kind: 'ids', vendorId: parseInt(m[1]!, 16), productId: parseInt(m[2]!, 16) };
  m = /^(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (m) {
    const busNumber = Number(m[1]);
    const deviceAddress = Number(m[2]);
    if (deviceAddress < 1 || deviceAddress > 127) throw new HostSelectorError(`device address must be 1..127 in '${text}'`);
    return { kind: 'address', busNumber, deviceAddress };
  }
  m = /^(\d{1,3})-(\d{1,3}(?:\.\d{1,3}){0,6})$/.exec(s);
  if (m) return { kind: 'port', busNumber: Number(m[1]), portNumbers: m[2]!.split('.').map(Number) };
  throw new HostSelectorError(`cannot parse host device '${text}' (expected vid:pid like 0525:a4a0, bus.addr like 1.5, or bus-port like 1-2.3)`);
}

export function formatHostSelector(sel: HostDeviceSelector): string {
  switch (sel.kind) {
    case 'ids':
      return `${sel.vendorId.toString(16).padStart(4, '0')}:${sel.productId.toString(16).padStart(4, '0')}`;
    case 'address':
      return `${sel.busNumber}.${sel.deviceAddress}`;
    case 'port':
      return `${sel.busNumber}-${sel.portNumbers.join('.')}`;
  }
}

export function matchesSelector(sel: HostDeviceSelector, info: HostDeviceInfo): boolean {
  switch (sel.kind) {
    case 'ids':
      return info.vendorId === sel.vendorId && info.productId === sel.productId;
    case 'address':
      return info.busNumber === sel.busNumber && info.deviceAddress === sel.deviceAddress;
    case 'port':
      return (
        info.busNumber === sel.busNumber &&
        info.portNumbers.length === sel.portNumbers.length &&
        info.portNumbers.every((p, k) => p === sel.portNumbers[k])
      );
  }
}
