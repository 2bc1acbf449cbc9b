/**
 * How libusb results become packet results, as QEMU 7.2 hw/usb/host-libusb.c
 * maps them (status_map[] and the error paths of usb_host_handle_control /
 * usb_host_handle_data / usb_host_set_config / usb_host_set_interface).
 */
import type { UsbStatus } from '../packet.js';
import {
  LIBUSB_ERROR_NO_DEVICE,
  type TransferStatus,
} from './libusb.js';

/**
 * Transfer status → packet status (QEMU status_map[]):
 * completed → ack; error and timed_out → ioerror (QEMU has no NAK for a
 * host-side timeout; UHCI reports it as CRC/timeout); cancelled → ioerror
 * (only seen when something other than us cancelled a live transfer; a
 * packet we cancelled gets no completion at all); stall → stall;
 * no_device → nodev (and the device is treated as unplugged); overflow →
 * babble.
 */
export const TRANSFER_STATUS_MAP: Readonly<Record<TransferStatus, Exclude<UsbStatus, 'async' | 'nak'>>> = {
  completed: 'ack',
  error: 'ioerror',
  timed_out: 'ioerror',
  cancelled: 'ioerror',
  stall: 'stall',
  no_device: 'nodev',
  overflow: 'babble',
};

export function packetStatusForTransfer(s: TransferStatus): Exclude<UsbStatus, 'async' | 'nak'> {
  return TRANSFER_STATUS_MAP[s];
}

/**
 * A refused submit (libusb_submit_transfer failed): QEMU answers NODEV
 * whatever the error, and treats the device as gone only for NO_DEVICE.
 */
export function packetStatusForSubmitError(_errno: number): 'nodev' {
  return 'nodev';
}

/**
 * A failed SET_CONFIGURATION / SET_INTERFACE (libusb_set_configuration,
 * claim, libusb_set_interface_alt_setting): QEMU stalls the request.
 */
export function packetStatusForRequestError(_errno: number): 'stall' {
  return 'stall';
}

/** Errors after which the device is treated as unplugged. */
export function isNoDevice(errnoOrStatus: number | TransferStatus): boolean {
  return errnoOrStatus === LIBUSB_ERROR_NO_DEVICE || errnoOrStatus === 'no_device';
}
