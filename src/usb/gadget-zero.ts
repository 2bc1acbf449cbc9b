/**
 * Gadget Zero: the Linux USB test device (drivers/usb/gadget/legacy/zero.c
 * with function/f_sourcesink.c and function/f_loopback.c) as an emulated
 * full-speed device, so that the host-side test driver `usbtest`
 * (drivers/usb/misc/usbtest.c) binds to it in a guest: its id table maps
 * 0525:a4a0 to gz_info ("Linux gadget zero": autoconf, ctrl_out).
 *
 * Facts carried over from the Linux sources:
 * - Ids 0525:a4a0 (NetChip, "Gadget Zero"; the ids older zero.c used and
 *   usbtest matches), device class 0xff (vendor specific), bcdUSB 0x0200,
 *   ep0 max packet 64. Two configurations: source/sink (value 3, string
 *   "source and sink data") and loopback (value 2, "loop input to output"),
 *   source/sink first unless `loopdefault`; both self-powered
 *   (bmAttributes 0xc0), bMaxPower 1 (2 mA, CONFIG_USB_GADGET_VBUS_DRAW).
 * - Source/sink interface: alt 0 = bulk OUT (sink) + bulk IN (source),
 *   64-byte packets at full speed; alt 1 adds isochronous OUT and IN with
 *   wMaxPacketSize min(isoc_maxpacket 1024, 1023) and bInterval
 *   isoc_interval 4 (f_sourcesink.c fs_source_sink_descs, module defaults).
 * - Data pattern (`pattern` parameter, default 0 in both f_sourcesink and
 *   usbtest): 0 = all zeros, 1 = "mod63": byte i of a request is
 *   (i % wMaxPacketSize) % 63, i.e. every packet starts again at 0;
 *   2 = no pattern (nothing written, nothing checked).
 * - The source answers every bulk IN with a full packet (its requests are
 *   4096 bytes, a multiple of the packet size), so a host buffer smaller
 *   than a packet sees babble, as on real hardware. The sink checks bulk OUT
 *   data against the pattern and halts its endpoint on a mismatch
 *   (check_read_data + usb_ep_set_halt); isochronous OUT is not checked.
 * - Loopback: OUT data is collected into requests of 4096 bytes
 *   (bulk_buflen) that end at a short packet; each finished request is sent
 *   back on bulk IN, followed by a zero-length packet when it ended short on
 *   a packet boundary (in_req->zero = actual < length). At most 32
 *   (qlen) finished requests wait; more OUT is NAKed until the host reads.
 * - Vendor requests (f_sourcesink.c sourcesink_setup, reached through
 *   zero.c ss_config_setup, so only in the source/sink configuration):
 *   0x5b with bmRequestType 0x40 stores the OUT data stage in the ep0
 *   buffer, 0x5c with 0xc0 reads wLength bytes of it back; wValue and wIndex
 *   must be 0 and wLength at most the 4096-byte ep0 buffer
 *   (USB_COMP_EP0_BUFSIZ), else the request stalls. usbtest's ctrl_out
 *   test (14) writes with 0x5b and reads back with 0x5c.
 * - SET_CONFIGURATION and SET_INTERFACE restart the functions (queued
 *   loopback data is dropped, halts cleared).
 * The standard requests follow the USB 2.0 rules (interface and endpoint
 * GET_STATUS, ENDPOINT_HALT) that usbtest's ch9 (9) and control-queue (10)
 * tests exercise. Not modelled: interrupt endpoints (int_* parameters) and
 * high/super speed descriptors.
 */
import { PID_IN, PID_OUT, PID_SETUP, type UsbPacket, type UsbSpeed } from './packet.js';
import {
  EmulatedUsbDevice,
  type ControlReply,
  type ControlRequest,
  type DeviceBaseState,
} from './device-base.js';
import {
  CFG_ATT_ONE,
  CFG_ATT_SELF_POWERED,
  EP_XFER_BULK,
  EP_XFER_ISOC,
  type ConfigDescriptor,
  type DeviceDescriptor,
  type EndpointDescriptor,
  type InterfaceDescriptor,
} from './descriptors.js';

export const GADGET_ZERO_VENDOR = 0x0525;
export const GADGET_ZERO_PRODUCT = 0xa4a0;
/** Configuration values (zero.c sourcesink_driver / loopback_driver). */
export const CONFIG_SOURCESINK = 3;
export const CONFIG_LOOPBACK = 2;
/** Full-speed bulk packet size. */
export const BULK_MAX_PACKET = 64;
/** min(isoc_maxpacket 1024, 1023) at full speed. */
export const ISO_MAX_PACKET = 1023;
/** Ep0 request buffer (USB_COMP_EP0_BUFSIZ). */
export const EP0_BUFFER_SIZE = 4096;
/** f_loopback bulk_buflen and qlen defaults. */
export const LOOPBACK_BUFLEN = 4096;
export const LOOPBACK_QLEN = 32;

export const VENDOR_CTRL_WRITE = 0x5b;
export const VENDOR_CTRL_READ = 0x5c;

const STR_MANUFACTURER = 1;
const STR_PRODUCT = 2;
const STR_SERIAL = 3;
const STR_SOURCESINK = 4;
const STR_LOOPBACK = 5;

export type GadgetZeroPattern = 0 | 1 | 2;

export interface GadgetZeroOptions {
  /** f_sourcesink `pattern` (default 0, zeros; usbtest's default too). */
  pattern?: GadgetZeroPattern;
  /** zero.c `loopdefault`: loopback is the first configuration (default false). */
  loopdefault?: boolean;
  /** Offer alternate setting 1 with isochronous endpoints (default true). */
  isoAltSetting?: boolean;
  /** Serial number string (zero.c default "0123456789.0123456789.0123456789"). */
  serial?: string;
}

export interface GadgetZeroState {
  base: DeviceBaseState;
  ep0: string;
  sinkHalted: boolean;
  loopQueue: { data: string; zero: boolean }[];
  loopCurrent: string;
  loopInOffset: number;
  resync: boolean;
}

/** Byte i of a packet or request in the given pattern. */
export function patternByte(pattern: GadgetZeroPattern, i: number, maxPacket: number): number {
  return pattern === 1 ? (i % maxPacket) % 63 : 0;
}

const bulk = (address: number): EndpointDescriptor => ({ address, attributes: EP_XFER_BULK, maxPacketSize: BULK_MAX_PACKET, interval: 0 });
const iso = (address: number): EndpointDescriptor => ({ address, attributes: EP_XFER_ISOC, maxPacketSize: ISO_MAX_PACKET, interval: 4 });

export function gadgetZeroDescriptors(opts: GadgetZeroOptions = {}): DeviceDescriptor {
  const vendorIf = (alternate: number, iInterface: number, endpoints: EndpointDescriptor[]): InterfaceDescriptor => ({
    number: 0,
    alternate,
    interfaceClass: 0xff,
    subClass: 0,
    protocol: 0,
    iInterface,
    classDescriptors: [],
    endpoints,
  });
  const ssInterfaces = [vendorIf(0, STR_SOURCESINK, [bulk(0x01), bulk(0x81)])];
  if (opts.isoAltSetting ?? true) ssInterfaces.push(vendorIf(1, STR_SOURCESINK, [bulk(0x01), bulk(0x81), iso(0x02), iso(0x82)]));
  const attributes = CFG_ATT_ONE | CFG_ATT_SELF_POWERED;
  const sourcesink: ConfigDescriptor = { value: CONFIG_SOURCESINK, iConfiguration: STR_SOURCESINK, attributes, maxPower: 1, interfaces: ssInterfaces };
  const loopback: ConfigDescriptor = {
    value: CONFIG_LOOPBACK,
    iConfiguration: STR_LOOPBACK,
    attributes,
    maxPower: 1,
    interfaces: [vendorIf(0, STR_LOOPBACK, [bulk(0x01), bulk(0x81)])],
  };
  return {
    bcdUSB: 0x0200,
    deviceClass: 0xff,
    subClass: 0,
    protocol: 0,
    maxPacketSize0: 64,
    idVendor: GADGET_ZERO_VENDOR,
    idProduct: GADGET_ZERO_PRODUCT,
    bcdDevice: 0x0601,
    iManufacturer: STR_MANUFACTURER,
    iProduct: STR_PRODUCT,
    iSerialNumber: STR_SERIAL,
    configs: opts.loopdefault ? [loopback, sourcesink] : [sourcesink, loopback],
  };
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));

export class GadgetZero extends EmulatedUsbDevice {
  readonly speed: UsbSpeed = 'full';
  readonly productName = 'Gadget Zero';
  readonly vendorId = GADGET_ZERO_VENDOR;
  readonly productId = GADGET_ZERO_PRODUCT;
  readonly pattern: GadgetZeroPattern;

  private ep0: Uint8Array = new Uint8Array(EP0_BUFFER_SIZE);
  private sinkHalted = false;
  /** Finished loopback requests waiting to go back IN. */
  private loopQueue: { data: Uint8Array; zero: boolean }[] = [];
  /** The loopback OUT request being filled. */
  private loopCurrent: number[] = [];
  /** Bytes of loopQueue[0] already sent. */
  private loopInOffset = 0;
  /** A SET_CONFIGURATION/SET_INTERFACE is in progress on ep0. */
  private resync = false;

  /** Bulk OUT packets the sink rejected (pattern mismatch). */
  sinkErrors = 0;

  constructor(opts: GadgetZeroOptions = {}) {
    const serial = opts.serial ?? '0123456789.0123456789.0123456789';
    super(
      {
        device: gadgetZeroDescriptors(opts),
        bcdUSB: 0x0200,
        strings: [undefined, 'uhci-dm', 'Gadget Zero', serial, 'source and sink data', 'loop input to output'],
        langIds: [0x0409],
        bosUsb2Ext: false,
        // A full-speed gadget without LPM: composite.c stalls GET_DESCRIPTOR(BOS)
        // (usbtest test 10 subcase 15 expects -EPIPE for bcdUSB < 0x0201).
        noBos: true,
      },
      'usb-2.0',
    );
    this.pattern = opts.pattern ?? 0;
  }

  /** Loopback requests waiting to be read back. */
  get loopbackQueued(): number {
    return this.loopQueue.length;
  }

  override handlePacket(p: UsbPacket): void {
    if (p.endpoint === 0 && p.pid === PID_SETUP && p.data.length === 8) {
      const type = p.data[0]!;
      const req = p.data[1]!;
      if ((type === 0x00 && req === 0x09) || (type === 0x01 && req === 0x0b)) this.resync = true;
    }
    super.handlePacket(p);
    if (this.resync && p.endpoint === 0 && p.pid === PID_IN && p.status === 'ack' && this.controlStage === 'idle') {
      // The request was carried out at this status stage: functions restart.
      this.resync = false;
      this.restartFunctions();
    }
  }

  private restartFunctions(): void {
    this.sinkHalted = false;
    this.loopQueue = [];
    this.loopCurrent = [];
    this.loopInOffset = 0;
  }

  protected onReset(): void {
    this.restartFunctions();
    this.resync = false;
  }

  protected override onEndpointHaltCleared(isIn: boolean, ep: number): void {
    if (!isIn && ep === 1) this.sinkHalted = false;
  }

  protected handleOtherControl(req: ControlRequest, data: Uint8Array): ControlReply {
    if (this.configurationValue !== CONFIG_SOURCESINK) return 'stall';
    if (req.request === VENDOR_CTRL_WRITE && req.requestType === 0x40) {
      if (req.value || req.index || req.length > EP0_BUFFER_SIZE) return 'stall';
      this.ep0.set(data.subarray(0, req.length));
      return 'ack';
    }
    if (req.request === VENDOR_CTRL_READ && req.requestType === 0xc0) {
      if (req.value || req.index || req.length > EP0_BUFFER_SIZE) return 'stall';
      return this.ep0.slice(0, req.length);
    }
    return 'stall';
  }

  protected handleData(p: UsbPacket): void {
    const cfg = this.configurationValue;
    const iface = this.currentInterfaces()[0];
    if (!iface) {
      p.status = 'stall';
      return;
    }
    if (p.endpoint === 2) {
      // Only present (and reached: the base checks the endpoint exists) in alt 1.
      this.isoData(p);
      return;
    }
    if (cfg === CONFIG_SOURCESINK) {
      if (p.pid === PID_IN) this.source(p);
      else this.sink(p);
      return;
    }
    if (p.pid === PID_IN) this.loopIn(p);
    else this.loopOut(p);
  }

  /** Bulk IN source: one full packet of the pattern. */
  private source(p: UsbPacket): void {
    if (p.data.length < BULK_MAX_PACKET) {
      p.status = 'babble';
      return;
    }
    for (let i = 0; i < BULK_MAX_PACKET; i++) p.data[i] = patternByte(this.pattern, i, BULK_MAX_PACKET);
    p.actualLength = BULK_MAX_PACKET;
  }

  /** Bulk OUT sink: accept and check against the pattern; a mismatch halts the endpoint. */
  private sink(p: UsbPacket): void {
    if (this.sinkHalted) {
      p.status = 'stall';
      return;
    }
    p.actualLength = p.data.length;
    if (this.pattern === 2) return;
    for (let i = 0; i < p.data.length; i++) {
      if (p.data[i] !== patternByte(this.pattern, i, BULK_MAX_PACKET)) {
        this.sinkErrors++;
        this.sinkHalted = true;
        return;
      }
    }
  }

  private isoData(p: UsbPacket): void {
    if (p.pid === PID_OUT) {
      p.actualLength = p.data.length;
      return;
    }
    const n = Math.min(ISO_MAX_PACKET, p.data.length);
    for (let i = 0; i < n; i++) p.data[i] = patternByte(this.pattern, i, ISO_MAX_PACKET);
    p.actualLength = n;
  }

  private loopOut(p: UsbPacket): void {
    if (this.loopQueue.length >= LOOPBACK_QLEN) {
      p.status = 'nak';
      return;
    }
    const room = LOOPBACK_BUFLEN - this.loopCurrent.length;
    if (p.data.length > room) {
      // More than the request has room for: the UDC reports overflow; the
      // host sees the packet accepted and the request ends full.
      p.status = 'babble';
      return;
    }
    for (const b of p.data) this.loopCurrent.push(b);
    p.actualLength = p.data.length;
    const short = p.data.length < BULK_MAX_PACKET;
    if (short || this.loopCurrent.length === LOOPBACK_BUFLEN) {
      const data = Uint8Array.from(this.loopCurrent);
      this.loopCurrent = [];
      // f_loopback: in_req->zero = (actual < length): a ZLP follows data ending on a packet boundary.
      this.loopQueue.push({ data, zero: data.length < LOOPBACK_BUFLEN });
      this.requestWakeup();
    }
  }

  private loopIn(p: UsbPacket): void {
    const head = this.loopQueue[0];
    if (!head) {
      p.status = 'nak';
      return;
    }
    const left = head.data.length - this.loopInOffset;
    const n = Math.min(BULK_MAX_PACKET, left);
    if (n > p.data.length) {
      p.status = 'babble';
      return;
    }
    p.data.set(head.data.subarray(this.loopInOffset, this.loopInOffset + n));
    p.actualLength = n;
    this.loopInOffset += n;
    const done = this.loopInOffset >= head.data.length;
    // A request is over after a short packet, or after its last full packet unless a ZLP must follow.
    if (done && (n < BULK_MAX_PACKET || !head.zero)) {
      this.loopQueue.shift();
      this.loopInOffset = 0;
    } else if (done && n === BULK_MAX_PACKET && head.zero) {
      // Next IN sends the zero-length packet: model it as an empty request.
      this.loopQueue[0] = { data: new Uint8Array(0), zero: false };
      this.loopInOffset = 0;
    }
  }

  saveState(): GadgetZeroState {
    return {
      base: this.saveBase(),
      ep0: hex(this.ep0),
      sinkHalted: this.sinkHalted,
      loopQueue: this.loopQueue.map((q) => ({ data: hex(q.data), zero: q.zero })),
      loopCurrent: hex(Uint8Array.from(this.loopCurrent)),
      loopInOffset: this.loopInOffset,
      resync: this.resync,
    };
  }

  loadState(state: unknown): void {
    const s = state as GadgetZeroState;
    if (!s || typeof s !== 'object' || typeof s.ep0 !== 'string') throw new TypeError('not a gadget zero state');
    const ep0 = unhex(s.ep0);
    if (ep0.length !== EP0_BUFFER_SIZE) throw new TypeError('corrupt gadget zero ep0 buffer');
    this.loadBase(s.base);
    this.ep0 = ep0;
    this.sinkHalted = !!s.sinkHalted;
    this.loopQueue = s.loopQueue.map((q) => ({ data: unhex(q.data), zero: !!q.zero }));
    this.loopCurrent = [...unhex(s.loopCurrent)];
    this.loopInOffset = s.loopInOffset | 0;
    this.resync = !!s.resync;
  }
}
