/**
 * The descriptors of QEMU 7.2's usb-tablet, usb-mouse and usb-kbd, written
 * down declaratively. Every value here is a fact taken from QEMU 7.2.0
 * hw/usb/dev-hid.c (descriptor tables, report descriptors, string table),
 * hw/usb/desc.c (bcdUSB raise, serial numbers, BOS) and hw/usb/desc-msos.c,
 * and checked against what a Linux 6.1 guest read from a real QEMU 7.2
 * (test/fixtures/qemu-7.2/raw-console.txt, scripts/capture-qemu-hid.sh).
 */
import {
  CFG_ATT_ONE,
  CFG_ATT_REMOTE_WAKEUP,
  CLASS_HID,
  EP_XFER_INT,
  encodeHidDescriptor,
  encodeReportDescriptor,
  hid,
  type ConfigDescriptor,
  type DeviceDescriptor,
  type HidItem,
} from '../descriptors.js';

export type HidKind = 'tablet' | 'mouse' | 'keyboard';

/** String indexes of dev-hid.c (one table shared by the three devices). */
export const STR_MANUFACTURER = 1;
export const STR_PRODUCT_MOUSE = 2;
export const STR_PRODUCT_TABLET = 3;
export const STR_PRODUCT_KEYBOARD = 4;
export const STR_SERIAL_COMPAT = 5;
export const STR_CONFIG_MOUSE = 6;
export const STR_CONFIG_TABLET = 7;
export const STR_CONFIG_KEYBOARD = 8;
export const STR_SERIAL_MOUSE = 9;
export const STR_SERIAL_TABLET = 10;
export const STR_SERIAL_KEYBOARD = 11;

/** Index 0 is the LANGID table, built separately. */
export const QEMU_HID_STRINGS: readonly (string | undefined)[] = [
  undefined,
  'QEMU',
  'QEMU USB Mouse',
  'QEMU USB Tablet',
  'QEMU USB Keyboard',
  '42',
  'HID Mouse',
  'HID Tablet',
  'HID Keyboard',
  '89126',
  '28754',
  '68284',
];

/** desc.c usb_desc_string: only US English (0x0409) is offered. */
export const LANGIDS: readonly number[] = [0x0409];

/** desc.c usb_desc_init: string 0xEE "MSFT100Q" when MS OS descriptors are on (vendor code 'Q'). */
export const MSOS_STRING_INDEX = 0xee;
export const MSOS_STRING = 'MSFT100Q';
export const MSOS_VENDOR_CODE = 0x51; // 'Q'

/** Red Hat's vendor id and the product id QEMU uses for all three. */
export const QEMU_HID_VENDOR = 0x0627;
export const QEMU_HID_PRODUCT = 0x0001;

const { usagePage, usage, collection, endCollection, usageMinimum, usageMaximum, logicalMinimum,
  logicalMaximum, physicalMinimum, physicalMaximum, reportCount, reportSize, input, output } = hid;

/** Input/Output flags (HID 1.11 §6.2.2.5). */
const DATA_VAR_ABS = 0x02;
const CONSTANT = 0x01;
const DATA_VAR_REL = 0x06;
const DATA_ARRAY = 0x00;

/** dev-hid.c qemu_mouse_hid_report_descriptor: 5 buttons, X/Y/wheel relative ±127. 52 bytes. */
export const MOUSE_REPORT_ITEMS: readonly HidItem[] = [
  usagePage(0x01), usage(0x02), collection(0x01),
  usage(0x01), collection(0x00),
  usagePage(0x09), usageMinimum(1), usageMaximum(5), logicalMinimum(0), logicalMaximum(1),
  reportCount(5), reportSize(1), input(DATA_VAR_ABS),
  reportCount(1), reportSize(3), input(CONSTANT),
  usagePage(0x01), usage(0x30), usage(0x31), usage(0x38), logicalMinimum(-0x7f), logicalMaximum(0x7f),
  reportSize(8), reportCount(3), input(DATA_VAR_REL),
  endCollection(), endCollection(),
];

/**
 * dev-hid.c qemu_tablet_hid_report_descriptor: 3 buttons, X/Y absolute
 * 0..0x7fff (16 bit each), wheel relative ±127. 74 bytes. The application
 * collection's usage is Mouse (0x02) in 7.2.
 */
export const TABLET_REPORT_ITEMS: readonly HidItem[] = [
  usagePage(0x01), usage(0x02), collection(0x01),
  usage(0x01), collection(0x00),
  usagePage(0x09), usageMinimum(1), usageMaximum(3), logicalMinimum(0), logicalMaximum(1),
  reportCount(3), reportSize(1), input(DATA_VAR_ABS),
  reportCount(1), reportSize(5), input(CONSTANT),
  usagePage(0x01), usage(0x30), usage(0x31), logicalMinimum(0), logicalMaximum(0x7fff),
  physicalMinimum(0), physicalMaximum(0x7fff), reportSize(16), reportCount(2), input(DATA_VAR_ABS),
  usagePage(0x01), usage(0x38), logicalMinimum(-0x7f), logicalMaximum(0x7f),
  physicalMinimum(0), physicalMaximum(0), reportSize(8), reportCount(1), input(DATA_VAR_REL),
  endCollection(), endCollection(),
];

/**
 * dev-hid.c qemu_keyboard_hid_report_descriptor: boot keyboard layout
 * (modifier byte, reserved byte, 5 LED bits + 3 padding out, 6 key array).
 * 63 bytes. QEMU encodes the key array's Logical Maximum 255 in ONE byte
 * (0x25 0xff, strictly -1 as a signed item); kept as is.
 */
export const KEYBOARD_REPORT_ITEMS: readonly HidItem[] = [
  usagePage(0x01), usage(0x06), collection(0x01),
  reportSize(1), reportCount(8), usagePage(0x07), usageMinimum(0xe0), usageMaximum(0xe7),
  logicalMinimum(0), logicalMaximum(1), input(DATA_VAR_ABS),
  reportCount(1), reportSize(8), input(CONSTANT),
  reportCount(5), reportSize(1), usagePage(0x08), usageMinimum(1), usageMaximum(5), output(DATA_VAR_ABS),
  reportCount(1), reportSize(3), output(CONSTANT),
  reportCount(6), reportSize(8), logicalMinimum(0), logicalMaximum(255, 1),
  usagePage(0x07), usageMinimum(0), usageMaximum(0xff), input(DATA_ARRAY),
  endCollection(),
];

export function reportDescriptor(kind: HidKind): Uint8Array {
  return encodeReportDescriptor(
    kind === 'mouse' ? MOUSE_REPORT_ITEMS : kind === 'tablet' ? TABLET_REPORT_ITEMS : KEYBOARD_REPORT_ITEMS,
  );
}

interface KindFacts {
  productString: number;
  configString: number;
  serialString: number;
  subClass: number;
  protocol: number;
  bcdHID: number;
  epMaxPacket: number;
  /** bInterval of the full-speed descriptor (frames) and the high-speed one (2^(n-1) microframes). */
  fullInterval: number;
  highInterval: number;
}

/** Per-device differences, dev-hid.c desc_iface_* / desc_device_* / desc_*. */
const FACTS: Record<HidKind, KindFacts> = {
  mouse: {
    productString: STR_PRODUCT_MOUSE, configString: STR_CONFIG_MOUSE, serialString: STR_SERIAL_MOUSE,
    subClass: 0x01, protocol: 0x02, bcdHID: 0x0001, epMaxPacket: 4, fullInterval: 0x0a, highInterval: 7,
  },
  tablet: {
    productString: STR_PRODUCT_TABLET, configString: STR_CONFIG_TABLET, serialString: STR_SERIAL_TABLET,
    subClass: 0x00, protocol: 0x00, bcdHID: 0x0001, epMaxPacket: 8, fullInterval: 0x0a, highInterval: 4,
  },
  keyboard: {
    productString: STR_PRODUCT_KEYBOARD, configString: STR_CONFIG_KEYBOARD, serialString: STR_SERIAL_KEYBOARD,
    subClass: 0x01, protocol: 0x01, bcdHID: 0x0111, epMaxPacket: 8, fullInterval: 0x0a, highInterval: 7,
  },
};

function config(kind: HidKind, interval: number): ConfigDescriptor {
  const f = FACTS[kind];
  return {
    value: 1,
    iConfiguration: f.configString,
    // Bus powered, remote-wakeup capable (bmAttributes 0xa0), 100 mA.
    attributes: CFG_ATT_ONE | CFG_ATT_REMOTE_WAKEUP,
    maxPower: 50,
    interfaces: [
      {
        number: 0,
        alternate: 0,
        interfaceClass: CLASS_HID,
        subClass: f.subClass,
        protocol: f.protocol,
        iInterface: 0,
        classDescriptors: [
          // QEMU writes bcdHID 0x0001 for mouse and tablet, 0x0111 for the keyboard.
          encodeHidDescriptor({ bcdHID: f.bcdHID, country: 0, reportLength: reportDescriptor(kind).length }),
        ],
        endpoints: [{ address: 0x81, attributes: EP_XFER_INT, maxPacketSize: f.epMaxPacket, interval }],
      },
    ],
  };
}

function device(kind: HidKind, high: boolean): DeviceDescriptor {
  const f = FACTS[kind];
  return {
    // Full-speed table says USB 1.0 (0x0100) with an 8-byte ep0; the
    // high-speed table 2.0 with 64. See effectiveBcdUsb for what is sent.
    bcdUSB: high ? 0x0200 : 0x0100,
    deviceClass: 0,
    subClass: 0,
    protocol: 0,
    maxPacketSize0: high ? 64 : 8,
    idVendor: QEMU_HID_VENDOR,
    idProduct: QEMU_HID_PRODUCT,
    bcdDevice: 0x0000,
    iManufacturer: STR_MANUFACTURER,
    iProduct: f.productString,
    iSerialNumber: f.serialString,
    configs: [config(kind, high ? f.highInterval : f.fullInterval)],
  };
}

export interface QemuHidDescriptorOptions {
  /**
   * QEMU's `usb_version` property: 2 (default) pairs the full-speed tables
   * with high-speed ones (answering DEVICE_QUALIFIER, OTHER_SPEED_CONFIG and
   * advertising a USB 2.0 extension in BOS); 1 offers full speed only.
   */
  usbVersion?: 1 | 2;
  /** QEMU's `msos-desc` property (default on): MS OS descriptors + bcdUSB raised to 2.0. */
  msosDesc?: boolean;
}

/** The full set of descriptors one device answers with. */
export interface UsbDescriptorSet {
  /** The descriptor tables for the speed the device runs at (full speed on UHCI). */
  device: DeviceDescriptor;
  /** The other speed's tables (high speed), if the device has them. */
  otherSpeed?: DeviceDescriptor;
  /** bcdUSB as sent in the device descriptor. */
  bcdUSB: number;
  /** Index → string (index 0 unused: LANGID table). */
  strings: (string | undefined)[];
  langIds: readonly number[];
  msos: boolean;
  /** Class descriptors reachable with GET_DESCRIPTOR to an interface: type → bytes. */
  reportDescriptor: Uint8Array;
}

export function qemuHidDescriptorSet(kind: HidKind, opts: QemuHidDescriptorOptions = {}): UsbDescriptorSet {
  const usbVersion = opts.usbVersion ?? 2;
  const msos = opts.msosDesc ?? true;
  const dev = device(kind, false);
  const strings = [...QEMU_HID_STRINGS];
  if (msos) strings[MSOS_STRING_INDEX] = MSOS_STRING;
  return {
    device: dev,
    otherSpeed: usbVersion === 2 ? device(kind, true) : undefined,
    // desc.c usb_desc_device: with MS OS descriptors in use a bcdUSB below
    // 2.0 is reported as 2.0 (the guest saw "version 2.00").
    bcdUSB: msos && dev.bcdUSB < 0x0200 ? 0x0200 : dev.bcdUSB,
    strings,
    langIds: LANGIDS,
    msos,
    reportDescriptor: reportDescriptor(kind),
  };
}

/** Index of the serial-number string of `kind` (replaced per instance, see qemuSerial). */
export function serialStringIndex(kind: HidKind): number {
  return FACTS[kind].serialString;
}

/**
 * desc.c usb_desc_create_serial: unless a `serial` property is given, the
 * serial string becomes "<table value>-<host controller path>-<port path>",
 * e.g. "28754-0000:00:02.0-1" for a tablet on port 1 of a UHCI at 00:02.0;
 * without a controller path "<table value>-<port path>".
 */
export function qemuSerial(kind: HidKind, where: { serial?: string; hcdPath?: string; portPath?: string }): string {
  if (where.serial !== undefined) return where.serial;
  const base = QEMU_HID_STRINGS[FACTS[kind].serialString]!;
  const port = where.portPath ?? '1';
  return where.hcdPath ? `${base}-${where.hcdPath}-${port}` : `${base}-${port}`;
}
