/**
 * The speed a host device runs at on our UHCI port. Low and full speed
 * devices pass through. A high- or super-speed device runs on a UHCI port
 * only at full speed; it is accepted (as full speed) when QEMU's
 * compatibility rule allows it — no isochronous endpoint and no interrupt
 * endpoint above 64 bytes in any setting (host-libusb.c
 * usb_host_speed_compat) — and refused with HostDeviceSpeedError otherwise,
 * or always with fullSpeedCompat: false.
 */
import { UserFacingError } from '../../platform/user-facing-error.js';
import type { UsbSpeed } from '../packet.js';
import { endpointTransferType, type HostDeviceInfo } from './libusb.js';

export class HostDeviceSpeedError extends UserFacingError {}

export interface HostSpeedOptions {
  /** Accept a high/super-speed device at full speed when QEMU's rule allows it (default true). */
  fullSpeedCompat?: boolean;
  /** Speed to use when the host cannot tell (default 'full'). */
  unknownSpeed?: UsbSpeed;
}

export const hex4 = (n: number): string => n.toString(16).padStart(4, '0');

/** QEMU usb_host_speed_compat: can this high/super-speed device work at full speed? */
export function fullSpeedCompatible(info: Pick<HostDeviceInfo, 'configs'>): boolean {
  for (const c of info.configs) {
    for (const i of c.interfaces) {
      for (const e of i.endpoints) {
        const t = endpointTransferType(e.attributes);
        if (t === 'isochronous') return false;
        if (t === 'interrupt' && e.maxPacketSize > 64) return false;
      }
    }
  }
  return true;
}

/** Decide the speed the guest sees, or explain why the device cannot be used. */
export function guestSpeedFor(info: HostDeviceInfo, opts: HostSpeedOptions = {}): UsbSpeed {
  const name = `${hex4(info.vendorId)}:${hex4(info.productId)} (bus ${info.busNumber} addr ${info.deviceAddress})`;
  switch (info.speed) {
    case 'low':
    case 'full':
      return info.speed;
    case 'unknown':
      return opts.unknownSpeed ?? 'full';
    case 'high':
    case 'super': {
      if (opts.fullSpeedCompat === false) {
        throw new HostDeviceSpeedError(
          `host device ${name} runs at ${info.speed} speed; a UHCI port carries only low/full speed (full-speed fallback disabled)`,
        );
      }
      if (!fullSpeedCompatible(info)) {
        throw new HostDeviceSpeedError(
          `host device ${name} runs at ${info.speed} speed and cannot be used at full speed on a UHCI (USB 1.1) port: it has isochronous endpoints or interrupt endpoints larger than 64 bytes; plug it into a USB 1.1 hub on the host or give the guest an EHCI/xHCI controller`,
        );
      }
      return 'full';
    }
  }
}
