/**
 * USB control requests and descriptors as the inspector shows them: setup
 * packet decoding with the standard request names (USB 2.0 §9.3, §9.4,
 * Table 9-4 request codes, Table 9-5 descriptor types; HID 1.11 §7.2 class
 * requests) and the few descriptor fields the inspector learns from
 * (bMaxPacketSize0, endpoint descriptors).
 */
import {
  REQ_CLEAR_FEATURE,
  REQ_GET_DESCRIPTOR,
  REQ_SET_ADDRESS,
  REQ_SET_CONFIGURATION,
  REQ_SET_DESCRIPTOR,
  REQ_SET_FEATURE,
  REQ_SET_INTERFACE,
  STANDARD_REQUEST_NAMES,
} from '../usb/requests.js';

export interface SetupPacket {
  bmRequestType: number;
  bRequest: number;
  wValue: number;
  wIndex: number;
  wLength: number;
}

export function decodeSetup(b: Uint8Array): SetupPacket | null {
  if (b.length < 8) return null;
  return {
    bmRequestType: b[0]!,
    bRequest: b[1]!,
    wValue: b[2]! | (b[3]! << 8),
    wIndex: b[4]! | (b[5]! << 8),
    wLength: b[6]! | (b[7]! << 8),
  };
}

/** HID 1.11 §7.2 class requests. */
const HID_REQUESTS: Record<number, string> = {
  1: 'GET_REPORT',
  2: 'GET_IDLE',
  3: 'GET_PROTOCOL',
  9: 'SET_REPORT',
  10: 'SET_IDLE',
  11: 'SET_PROTOCOL',
};

/** USB 2.0 Table 9-5 (and HID 1.11 §7.1 class descriptors). */
const DESCRIPTOR_TYPES: Record<number, string> = {
  1: 'DEVICE',
  2: 'CONFIGURATION',
  3: 'STRING',
  4: 'INTERFACE',
  5: 'ENDPOINT',
  6: 'DEVICE_QUALIFIER',
  7: 'OTHER_SPEED_CONFIGURATION',
  8: 'INTERFACE_POWER',
  0x0f: 'BOS',
  0x21: 'HID',
  0x22: 'REPORT',
  0x23: 'PHYSICAL',
};

/** USB 2.0 Table 9-6 feature selectors. */
const FEATURES: Record<number, string> = { 0: 'ENDPOINT_HALT', 1: 'DEVICE_REMOTE_WAKEUP', 2: 'TEST_MODE' };

export const DT_DEVICE = 1;
export const DT_CONFIG = 2;

const hex = (n: number, w: number) => '0x' + n.toString(16).padStart(w, '0');

/** Short name, e.g. `GET_DESCRIPTOR(DEVICE)`, `SET_ADDRESS(3)`, `HID SET_IDLE`, `vendor 0x01`. */
export function requestName(s: SetupPacket): string {
  const type = (s.bmRequestType >> 5) & 3;
  const recipient = s.bmRequestType & 0x1f;
  if (type === 0) {
    const name = STANDARD_REQUEST_NAMES[s.bRequest];
    if (!name) return `standard request ${hex(s.bRequest, 2)}`;
    switch (s.bRequest) {
      case REQ_GET_DESCRIPTOR:
      case REQ_SET_DESCRIPTOR: {
        const dt = s.wValue >> 8;
        const idx = s.wValue & 0xff;
        const dname = DESCRIPTOR_TYPES[dt] ?? `type ${hex(dt, 2)}`;
        return `${name}(${dname}${idx || dt === 3 ? ` ${idx}` : ''})`;
      }
      case REQ_SET_ADDRESS:
        return `${name}(${s.wValue})`;
      case REQ_SET_CONFIGURATION:
        return `${name}(${s.wValue})`;
      case REQ_SET_INTERFACE:
        return `${name}(if ${s.wIndex} alt ${s.wValue})`;
      case REQ_CLEAR_FEATURE:
      case REQ_SET_FEATURE: {
        const f = FEATURES[s.wValue] ?? `feature ${s.wValue}`;
        return `${name}(${f}${recipient === 2 ? ` ep ${hex(s.wIndex & 0xff, 2)}` : ''})`;
      }
      default:
        return name;
    }
  }
  if (type === 1) {
    // Class requests to an interface: HID is the class the emulated devices speak.
    const h = recipient === 1 ? HID_REQUESTS[s.bRequest] : undefined;
    return h ? `HID ${h}` : `class request ${hex(s.bRequest, 2)}`;
  }
  if (type === 2) return `vendor request ${hex(s.bRequest, 2)}`;
  return `reserved-type request ${hex(s.bRequest, 2)}`;
}

/** Full decoded setup line. */
export function formatSetup(s: SetupPacket): string {
  return (
    `${requestName(s)} bmRequestType=${hex(s.bmRequestType, 2)} bRequest=${s.bRequest} ` +
    `wValue=${hex(s.wValue, 4)} wIndex=${hex(s.wIndex, 4)} wLength=${s.wLength}`
  );
}

export interface EndpointInfo {
  /** bEndpointAddress (bit 7 = IN). */
  address: number;
  /** bmAttributes bits 1:0: 0 control, 1 isochronous, 2 bulk, 3 interrupt. */
  type: number;
  /** wMaxPacketSize bits 10:0. */
  maxPacket: number;
  interval: number;
  /** bInterfaceClass of the interface the endpoint belongs to. */
  interfaceClass: number;
}

/**
 * Endpoint descriptors of a (possibly partial) configuration descriptor
 * (USB 2.0 §9.6.3, §9.6.6), walking descriptors by bLength.
 */
export function parseConfigEndpoints(cd: Uint8Array): EndpointInfo[] {
  const out: EndpointInfo[] = [];
  let ifClass = 0;
  for (let o = 0; o + 1 < cd.length; ) {
    const len = cd[o]!;
    if (len < 2) break;
    const type = cd[o + 1]!;
    if (type === 4 && o + 5 < cd.length) ifClass = cd[o + 5]!;
    if (type === 5 && o + 6 < cd.length) {
      out.push({
        address: cd[o + 2]!,
        type: cd[o + 3]! & 3,
        maxPacket: (cd[o + 4]! | (cd[o + 5]! << 8)) & 0x7ff,
        interval: cd[o + 6]!,
        interfaceClass: ifClass,
      });
    }
    o += len;
  }
  return out;
}

/** Linux errno values usbmon reports as URB status (include/uapi/asm-generic/errno*.h). */
export const ERRNO = {
  EPIPE: 32,
  ENOSR: 63,
  EPROTO: 71,
  EOVERFLOW: 75,
  EILSEQ: 84,
  ECONNRESET: 104,
  EINPROGRESS: 115,
} as const;
