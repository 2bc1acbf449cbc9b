/**
 * The small slice of libusb that host passthrough needs, as an interface.
 * One implementation runs over the `usb` npm package (2.x, libusb-based:
 * node-usb.ts); tests use a scripted fake. Everything the passthrough device
 * does to the real device goes through here.
 *
 * Numbers are libusb's (libusb.h, libusb 1.0.26): enum libusb_transfer_status
 * and enum libusb_error. The `usb` package reports a failed transfer as an
 * exception whose `errno` is the transfer status (node-usb src/transfer.cc
 * handleCompletion), and a failed synchronous call as one whose `errno` is
 * the (negative) libusb_error.
 */

/** enum libusb_transfer_status (libusb.h). */
export const LIBUSB_TRANSFER_COMPLETED = 0;
export const LIBUSB_TRANSFER_ERROR = 1;
export const LIBUSB_TRANSFER_TIMED_OUT = 2;
export const LIBUSB_TRANSFER_CANCELLED = 3;
export const LIBUSB_TRANSFER_STALL = 4;
export const LIBUSB_TRANSFER_NO_DEVICE = 5;
export const LIBUSB_TRANSFER_OVERFLOW = 6;

/** enum libusb_error (libusb.h). */
export const LIBUSB_ERROR_IO = -1;
export const LIBUSB_ERROR_INVALID_PARAM = -2;
export const LIBUSB_ERROR_ACCESS = -3;
export const LIBUSB_ERROR_NO_DEVICE = -4;
export const LIBUSB_ERROR_NOT_FOUND = -5;
export const LIBUSB_ERROR_BUSY = -6;
export const LIBUSB_ERROR_TIMEOUT = -7;
export const LIBUSB_ERROR_OVERFLOW = -8;
export const LIBUSB_ERROR_PIPE = -9;
export const LIBUSB_ERROR_INTERRUPTED = -10;
export const LIBUSB_ERROR_NO_MEM = -11;
export const LIBUSB_ERROR_NOT_SUPPORTED = -12;
export const LIBUSB_ERROR_OTHER = -99;

export type TransferStatus =
  | 'completed'
  | 'error'
  | 'timed_out'
  | 'cancelled'
  | 'stall'
  | 'no_device'
  | 'overflow';

const TRANSFER_STATUS_NAMES: readonly TransferStatus[] = [
  'completed', 'error', 'timed_out', 'cancelled', 'stall', 'no_device', 'overflow',
];

/** libusb_transfer_status number → name ('error' for unknown numbers). */
export function transferStatusName(n: number): TransferStatus {
  return TRANSFER_STATUS_NAMES[n] ?? 'error';
}

const ERROR_NAMES: Record<number, string> = {
  [LIBUSB_ERROR_IO]: 'LIBUSB_ERROR_IO',
  [LIBUSB_ERROR_INVALID_PARAM]: 'LIBUSB_ERROR_INVALID_PARAM',
  [LIBUSB_ERROR_ACCESS]: 'LIBUSB_ERROR_ACCESS',
  [LIBUSB_ERROR_NO_DEVICE]: 'LIBUSB_ERROR_NO_DEVICE',
  [LIBUSB_ERROR_NOT_FOUND]: 'LIBUSB_ERROR_NOT_FOUND',
  [LIBUSB_ERROR_BUSY]: 'LIBUSB_ERROR_BUSY',
  [LIBUSB_ERROR_TIMEOUT]: 'LIBUSB_ERROR_TIMEOUT',
  [LIBUSB_ERROR_OVERFLOW]: 'LIBUSB_ERROR_OVERFLOW',
  [LIBUSB_ERROR_PIPE]: 'LIBUSB_ERROR_PIPE',
  [LIBUSB_ERROR_INTERRUPTED]: 'LIBUSB_ERROR_INTERRUPTED',
  [LIBUSB_ERROR_NO_MEM]: 'LIBUSB_ERROR_NO_MEM',
  [LIBUSB_ERROR_NOT_SUPPORTED]: 'LIBUSB_ERROR_NOT_SUPPORTED',
  [LIBUSB_ERROR_OTHER]: 'LIBUSB_ERROR_OTHER',
};

/** A failed synchronous libusb call (or a failed submit). */
export class LibusbError extends Error {
  override name = 'LibusbError';
  constructor(
    /** libusb_error (negative). */
    readonly errno: number,
    what: string,
  ) {
    super(`${what}: ${ERROR_NAMES[errno] ?? `libusb error ${errno}`}`);
  }
}

/** Link speed as libusb reports it (enum libusb_speed). */
export type HostSpeed = 'low' | 'full' | 'high' | 'super' | 'unknown';

export type TransferType = 'control' | 'isochronous' | 'bulk' | 'interrupt';

/** Endpoint bmAttributes transfer type bits → name (USB 2.0 Table 9-13). */
export function endpointTransferType(attributes: number): TransferType {
  return (['control', 'isochronous', 'bulk', 'interrupt'] as const)[attributes & 3]!;
}

export interface HostEndpointInfo {
  /** bEndpointAddress (bit 7 = IN). */
  address: number;
  attributes: number;
  maxPacketSize: number;
  interval: number;
}

/** One alternate setting of one interface. */
export interface HostInterfaceInfo {
  number: number;
  alternate: number;
  interfaceClass: number;
  subClass: number;
  protocol: number;
  endpoints: HostEndpointInfo[];
}

export interface HostConfigInfo {
  /** bConfigurationValue. */
  value: number;
  attributes: number;
  /** Every alternate setting of every interface. */
  interfaces: HostInterfaceInfo[];
}

/** What can be known about a host device without opening it. */
export interface HostDeviceInfo {
  busNumber: number;
  deviceAddress: number;
  /** Port numbers from the root hub down (libusb_get_port_numbers). */
  portNumbers: number[];
  speed: HostSpeed;
  vendorId: number;
  productId: number;
  bcdUSB: number;
  bcdDevice: number;
  deviceClass: number;
  maxPacketSize0: number;
  iManufacturer: number;
  iProduct: number;
  iSerialNumber: number;
  numConfigurations: number;
  configs: HostConfigInfo[];
}

/** The result of an asynchronous transfer. */
export interface TransferResult {
  status: TransferStatus;
  /** IN: the bytes received (length = actual length). OUT: empty. */
  data: Uint8Array;
  /** Bytes moved in the data stage. */
  actualLength: number;
}

export interface TransferHandle {
  /** Ask libusb to cancel; the callback still runs once (status 'cancelled' unless it already finished). */
  cancel(): void;
}

export type TransferCallback = (r: TransferResult) => void;

/**
 * One host USB device. Synchronous methods throw LibusbError; the
 * asynchronous ones reject with it. Transfer submission throws LibusbError
 * synchronously when libusb refuses the submit; otherwise the callback runs
 * exactly once, later (never from inside the submit call).
 */
export interface LibusbDevice {
  readonly info: HostDeviceInfo;
  open(): void;
  close(): void;
  kernelDriverActive(iface: number): boolean;
  detachKernelDriver(iface: number): void;
  attachKernelDriver(iface: number): void;
  claimInterface(iface: number): void;
  releaseInterface(iface: number): Promise<void>;
  /** bConfigurationValue of the active configuration (0 = unconfigured). */
  activeConfiguration(): number;
  setConfiguration(value: number): Promise<void>;
  setInterface(iface: number, alternate: number): Promise<void>;
  clearHalt(endpointAddress: number): Promise<void>;
  /** libusb_reset_device. */
  reset(): Promise<void>;
  /** ASCII string descriptor, or undefined if the device has none / cannot be read. */
  getString(index: number): Promise<string | undefined>;
  /**
   * A control transfer: `setup` is the 8-byte SETUP packet; for OUT
   * requests `data` holds wLength bytes (ignored for IN).
   */
  controlTransfer(setup: Uint8Array, data: Uint8Array, timeoutMs: number, cb: TransferCallback): TransferHandle;
  /**
   * A bulk/interrupt/isochronous transfer on `endpointAddress` (bit 7 =
   * IN). IN: `lengthOrData` is the buffer length; OUT: the bytes to send.
   * Isochronous transfers carry one packet.
   */
  transfer(
    endpointAddress: number,
    type: Exclude<TransferType, 'control'>,
    lengthOrData: number | Uint8Array,
    timeoutMs: number,
    cb: TransferCallback,
  ): TransferHandle;
}

/** The host's USB subsystem: device list and hotplug events. */
export interface LibusbHost {
  list(): LibusbDevice[];
  /** Subscribe to hotplug; returns an unsubscribe function. */
  onHotplug(listener: (event: 'attach' | 'detach', dev: LibusbDevice) => void): () => void;
}

/** "bus-port.port..." as Linux sysfs and `lsusb -t` name a device's place. */
export function portPath(info: Pick<HostDeviceInfo, 'busNumber' | 'portNumbers'>): string {
  return info.portNumbers.length ? `${info.busNumber}-${info.portNumbers.join('.')}` : `usb${info.busNumber}`;
}
