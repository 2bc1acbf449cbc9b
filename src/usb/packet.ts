/**
 * The USB packet as it travels between a root port and a device: one
 * transaction's token plus its data stage, and the result the device gives.
 * Modelled on QEMU's USBPacket life cycle (hw/usb/core.c): the controller
 * builds a packet from a TD, the device completes it at once or answers
 * `async` and completes it later through its port.
 */

/** Token PIDs as they appear in a UHCI TD (USB 2.0 Table 8-1). */
export const PID_OUT = 0xe1;
export const PID_IN = 0x69;
export const PID_SETUP = 0x2d;
export type TokenPid = typeof PID_OUT | typeof PID_IN | typeof PID_SETUP;

export type UsbSpeed = 'low' | 'full';

/**
 * How a transaction ended.
 * - ack: data moved (`actualLength` bytes); for IN, the device's data is in `data`.
 * - nak: the device is not ready (no data moved).
 * - stall: the endpoint is halted or the request is not supported.
 * - babble: the device sent more than the buffer holds.
 * - ioerror: CRC/timeout on the wire (the device did not answer properly).
 * - nodev: no device answered at that address (timeout on the wire).
 * - async: the device will complete the packet later (UsbPortHooks.complete).
 */
export type UsbStatus = 'ack' | 'nak' | 'stall' | 'babble' | 'ioerror' | 'nodev' | 'async';

export class UsbPacket {
  /** Filled by the device on completion. */
  status: UsbStatus = 'ack';
  /** Bytes actually moved (IN: bytes the device wrote into `data`). */
  actualLength = 0;
  /** Opaque owner id (the controller uses its queue token here). */
  id = 0;
  constructor(
    public pid: TokenPid,
    public devaddr: number,
    public endpoint: number,
    /**
     * OUT/SETUP: exactly the bytes to send. IN: a buffer of the maximum
     * length the host accepts; the device writes at most data.length bytes
     * and reports babble if it has more.
     */
    public data: Uint8Array,
    /** Isochronous endpoint: no handshake, no retry. */
    public iso = false,
  ) {}
}

/** What a device may call on the port it is attached to. */
export interface UsbPortHooks {
  /** An `async` packet finished; its status/actualLength/data are final. */
  complete(packet: UsbPacket): void;
  /** Remote wakeup request (resume signalling) from a suspended device. */
  wakeup(): void;
  /**
   * Optional: the device has something new for the host (input arrived, an
   * endpoint became ready). Lets an idle controller resume polling at once.
   */
  activity?(): void;
}

/** A USB device attached to a root port (emulated or host passthrough). */
export interface UsbDevice {
  readonly speed: UsbSpeed;
  /** Short product name for logs and `info usb`. */
  readonly productName: string;
  readonly vendorId: number;
  readonly productId: number;
  /** Current USB address (0 after reset). */
  readonly address: number;
  /** Called when the device is plugged into a port. */
  attach(hooks: UsbPortHooks): void;
  /** Called when the device is unplugged; it must forget pending packets. */
  detach(): void;
  /** USB bus reset (port reset): back to the Default state, address 0. */
  reset(): void;
  /** Handle one transaction; sets packet.status (and actualLength). */
  handlePacket(packet: UsbPacket): void;
  /** The host gave up on an `async` packet (TD unlinked/deactivated). */
  cancelPacket(packet: UsbPacket): void;
  /** Save state as plain JSON-able data; restore it. */
  saveState(): unknown;
  loadState(state: unknown): void;
}
