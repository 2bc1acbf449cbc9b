/**
 * Declarative USB descriptors and their wire encoding.
 *
 * Layouts: USB 2.0 spec §9.6 (device 9-8, qualifier 9-9, configuration 9-10,
 * other-speed 9-11, interface 9-12, endpoint 9-13, string 9-15/9-16), USB 3.2
 * §9.6.2 (BOS, USB 2.0 extension capability), HID 1.11 §6.2.1 (HID
 * descriptor) and §6.2.2 (report descriptor items), Microsoft OS 1.0
 * descriptors (extended compat ID, extended properties).
 *
 * Every multi-byte field is little endian (USB 2.0 §8.1).
 */

export const DT_DEVICE = 0x01;
export const DT_CONFIG = 0x02;
export const DT_STRING = 0x03;
export const DT_INTERFACE = 0x04;
export const DT_ENDPOINT = 0x05;
export const DT_DEVICE_QUALIFIER = 0x06;
export const DT_OTHER_SPEED_CONFIG = 0x07;
export const DT_DEBUG = 0x0a;
export const DT_BOS = 0x0f;
export const DT_DEVICE_CAPABILITY = 0x10;
export const DT_HID = 0x21;
export const DT_REPORT = 0x22;

/** Configuration bmAttributes bits (USB 2.0 Table 9-10). */
export const CFG_ATT_ONE = 0x80;
export const CFG_ATT_SELF_POWERED = 0x40;
export const CFG_ATT_REMOTE_WAKEUP = 0x20;

/** Endpoint bmAttributes transfer types (USB 2.0 Table 9-13). */
export const EP_XFER_CONTROL = 0;
export const EP_XFER_ISOC = 1;
export const EP_XFER_BULK = 2;
export const EP_XFER_INT = 3;

export const CLASS_HID = 0x03;

export interface EndpointDescriptor {
  /** bEndpointAddress: bit 7 = IN, bits 3..0 = number. */
  address: number;
  attributes: number;
  maxPacketSize: number;
  interval: number;
}

export interface InterfaceDescriptor {
  number: number;
  alternate: number;
  interfaceClass: number;
  subClass: number;
  protocol: number;
  iInterface: number;
  /** Class-specific descriptors placed between the interface and its endpoints (e.g. HID). */
  classDescriptors: Uint8Array[];
  endpoints: EndpointDescriptor[];
}

export interface ConfigDescriptor {
  value: number;
  iConfiguration: number;
  attributes: number;
  /** bMaxPower in 2 mA units (full/high speed). */
  maxPower: number;
  interfaces: InterfaceDescriptor[];
}

export interface DeviceDescriptor {
  bcdUSB: number;
  deviceClass: number;
  subClass: number;
  protocol: number;
  maxPacketSize0: number;
  idVendor: number;
  idProduct: number;
  bcdDevice: number;
  iManufacturer: number;
  iProduct: number;
  iSerialNumber: number;
  configs: ConfigDescriptor[];
}

function lo(v: number): number {
  return v & 0xff;
}
function hi(v: number): number {
  return (v >> 8) & 0xff;
}

/** Device descriptor, 18 bytes (USB 2.0 Table 9-8). */
export function encodeDeviceDescriptor(d: DeviceDescriptor): Uint8Array {
  return Uint8Array.from([
    18, DT_DEVICE, lo(d.bcdUSB), hi(d.bcdUSB), d.deviceClass, d.subClass, d.protocol,
    d.maxPacketSize0, lo(d.idVendor), hi(d.idVendor), lo(d.idProduct), hi(d.idProduct),
    lo(d.bcdDevice), hi(d.bcdDevice), d.iManufacturer, d.iProduct, d.iSerialNumber,
    d.configs.length,
  ]);
}

/** Device qualifier, 10 bytes (USB 2.0 Table 9-9): describes the *other* speed. */
export function encodeDeviceQualifier(other: DeviceDescriptor): Uint8Array {
  return Uint8Array.from([
    10, DT_DEVICE_QUALIFIER, lo(other.bcdUSB), hi(other.bcdUSB), other.deviceClass,
    other.subClass, other.protocol, other.maxPacketSize0, other.configs.length, 0,
  ]);
}

export function encodeEndpointDescriptor(e: EndpointDescriptor): Uint8Array {
  return Uint8Array.from([
    7, DT_ENDPOINT, e.address, e.attributes, lo(e.maxPacketSize), hi(e.maxPacketSize), e.interval,
  ]);
}

export function encodeInterfaceDescriptor(i: InterfaceDescriptor): Uint8Array {
  const parts: Uint8Array[] = [
    Uint8Array.from([
      9, DT_INTERFACE, i.number, i.alternate, i.endpoints.length, i.interfaceClass,
      i.subClass, i.protocol, i.iInterface,
    ]),
    ...i.classDescriptors,
    ...i.endpoints.map(encodeEndpointDescriptor),
  ];
  return concat(parts);
}

/**
 * Configuration descriptor with everything below it (wTotalLength bytes,
 * USB 2.0 §9.4.3). `type` may be DT_OTHER_SPEED_CONFIG (same layout, 9-11).
 */
export function encodeConfigDescriptor(c: ConfigDescriptor, type: number = DT_CONFIG): Uint8Array {
  const body = concat(c.interfaces.map(encodeInterfaceDescriptor));
  const total = 9 + body.length;
  const head = Uint8Array.from([
    // bNumInterfaces counts interfaces, not alternate settings (USB 2.0 Table 9-10).
    9, type, lo(total), hi(total), new Set(c.interfaces.map((i) => i.number)).size, c.value, c.iConfiguration,
    c.attributes, c.maxPower,
  ]);
  return concat([head, body]);
}

/** String descriptor zero: the supported LANGIDs (USB 2.0 Table 9-15). */
export function encodeLangIdTable(langIds: readonly number[]): Uint8Array {
  const out = new Uint8Array(2 + 2 * langIds.length);
  out[0] = out.length;
  out[1] = DT_STRING;
  langIds.forEach((id, k) => {
    out[2 + 2 * k] = lo(id);
    out[3 + 2 * k] = hi(id);
  });
  return out;
}

/** bLength is one byte: a string descriptor holds at most 126 UTF-16 code units. */
export const MAX_STRING_UNITS = 126;

export class DescriptorError extends Error {
  override name = 'DescriptorError';
}

/** Unicode string descriptor, UTF-16LE (USB 2.0 Table 9-16). */
export function encodeStringDescriptor(s: string): Uint8Array {
  if (s.length > MAX_STRING_UNITS) {
    throw new DescriptorError(`string descriptor too long (${s.length} > ${MAX_STRING_UNITS} units)`);
  }
  const out = new Uint8Array(2 + 2 * s.length);
  out[0] = out.length;
  out[1] = DT_STRING;
  for (let k = 0; k < s.length; k++) {
    const u = s.charCodeAt(k);
    out[2 + 2 * k] = lo(u);
    out[3 + 2 * k] = hi(u);
  }
  return out;
}

/** HID class descriptor, 9 bytes with one report descriptor (HID 1.11 §6.2.1). */
export function encodeHidDescriptor(h: { bcdHID: number; country: number; reportLength: number }): Uint8Array {
  return Uint8Array.from([
    9, DT_HID, lo(h.bcdHID), hi(h.bcdHID), h.country, 1, DT_REPORT, lo(h.reportLength), hi(h.reportLength),
  ]);
}

/**
 * BOS descriptor with one USB 2.0 extension capability (USB 3.2 Table 9-12
 * and 9-15); `lpm` sets bmAttributes bit 1 (Link Power Management).
 */
export function encodeBosUsb2Ext(lpm: boolean): Uint8Array {
  const cap = Uint8Array.from([7, DT_DEVICE_CAPABILITY, 0x02, lpm ? 0x02 : 0, 0, 0, 0]);
  const total = 5 + cap.length;
  return concat([Uint8Array.from([5, DT_BOS, lo(total), hi(total), 1]), cap]);
}

function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

function utf16z(s: string): number[] {
  const out: number[] = [];
  for (let k = 0; k < s.length; k++) out.push(lo(s.charCodeAt(k)), hi(s.charCodeAt(k)));
  out.push(0, 0);
  return out;
}

/**
 * Microsoft OS 1.0 "extended compat ID" descriptor (wIndex 4): 16-byte header
 * + one 24-byte function section for interface 0 with an empty compatible ID.
 */
export function encodeMsosCompatId(compatibleId = ''): Uint8Array {
  const func = new Uint8Array(24);
  func[0] = 0; // bFirstInterfaceNumber
  func[1] = 0x01; // reserved, must be 1
  for (let k = 0; k < Math.min(7, compatibleId.length); k++) func[2 + k] = compatibleId.charCodeAt(k);
  const total = 16 + func.length;
  const hdr = Uint8Array.from([...le32(total), 0x00, 0x01, 0x04, 0x00, 1, 0, 0, 0, 0, 0, 0, 0]);
  return concat([hdr, func]);
}

/**
 * Microsoft OS 1.0 "extended properties" descriptor (wIndex 5) holding one
 * REG_DWORD property. `sectionSlack` is extra zero bytes counted in the
 * section's dwSize: QEMU 7.2 (hw/usb/desc-msos.c) counts its 10-byte section
 * header a second time where the 4-byte data-length field belongs, so its
 * section claims 72 bytes for 66 bytes of content; pass 6 to match it.
 */
export function encodeMsosDwordProperty(name: string, value: number, sectionSlack = 0): Uint8Array {
  const nameBytes = utf16z(name);
  const content = [
    // dwSize patched below, dwPropertyDataType 4 = REG_DWORD_LITTLE_ENDIAN
    0, 0, 0, 0, ...le32(4), lo(nameBytes.length), hi(nameBytes.length), ...nameBytes,
    ...le32(4), ...le32(value),
  ];
  const section = new Uint8Array(content.length + sectionSlack);
  section.set(content);
  section.set(le32(section.length), 0);
  const total = 10 + section.length;
  const hdr = Uint8Array.from([...le32(total), 0x00, 0x01, 0x05, 0x00, 1, 0]);
  return concat([hdr, section]);
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/* ---------------- HID report descriptor items (HID 1.11 §6.2.2) ---------------- */

/** One short item: prefix byte (tag | type | size code) + 0, 1, 2 or 4 data bytes. */
export interface HidItem {
  readonly bytes: Uint8Array;
  /** Human readable form for dumps. */
  readonly text: string;
}

const SIZE_CODE: Record<number, number> = { 0: 0, 1: 1, 2: 2, 4: 3 };

function shortItem(prefix: number, name: string, value: number | undefined, size?: 0 | 1 | 2 | 4, signed = false): HidItem {
  let n: 0 | 1 | 2 | 4;
  if (value === undefined) n = 0;
  else if (size !== undefined) n = size;
  else if (signed) n = value >= -128 && value <= 127 ? 1 : value >= -32768 && value <= 32767 ? 2 : 4;
  else n = value <= 0xff ? 1 : value <= 0xffff ? 2 : 4;
  const bytes = new Uint8Array(1 + n);
  bytes[0] = prefix | SIZE_CODE[n]!;
  for (let k = 0; k < n; k++) bytes[1 + k] = ((value ?? 0) >> (8 * k)) & 0xff;
  return { bytes, text: value === undefined ? name : `${name}(${value})` };
}

/**
 * Item constructors. Values get the smallest size that holds them (signed for
 * logical/physical extents, unsigned otherwise) unless `size` is given.
 */
export const hid = {
  usagePage: (v: number, size?: 1 | 2) => shortItem(0x04, 'UsagePage', v, size),
  logicalMinimum: (v: number, size?: 1 | 2 | 4) => shortItem(0x14, 'LogicalMinimum', v, size, true),
  logicalMaximum: (v: number, size?: 1 | 2 | 4) => shortItem(0x24, 'LogicalMaximum', v, size, true),
  physicalMinimum: (v: number, size?: 1 | 2 | 4) => shortItem(0x34, 'PhysicalMinimum', v, size, true),
  physicalMaximum: (v: number, size?: 1 | 2 | 4) => shortItem(0x44, 'PhysicalMaximum', v, size, true),
  reportSize: (v: number) => shortItem(0x74, 'ReportSize', v),
  reportCount: (v: number) => shortItem(0x94, 'ReportCount', v),
  usage: (v: number) => shortItem(0x08, 'Usage', v),
  usageMinimum: (v: number) => shortItem(0x18, 'UsageMinimum', v),
  usageMaximum: (v: number) => shortItem(0x28, 'UsageMaximum', v),
  /** Main items: flags per HID 1.11 §6.2.2.5 (bit0 constant, bit1 variable, bit2 relative). */
  input: (flags: number) => shortItem(0x80, 'Input', flags),
  output: (flags: number) => shortItem(0x90, 'Output', flags),
  collection: (kind: number) => shortItem(0xa0, 'Collection', kind),
  endCollection: () => shortItem(0xc0, 'EndCollection', undefined),
};

export function encodeReportDescriptor(items: readonly HidItem[]): Uint8Array {
  return concat(items.map((i) => i.bytes));
}
