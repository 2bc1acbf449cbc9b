/**
 * What the lab guest reported on its serial console, parsed from the
 * `@@LAB:` lines its /init prints (see guest-init.ts), plus the decoding
 * of Linux `struct input_event` records (x86-64: struct timeval of two
 * 64-bit fields, u16 type, u16 code, s32 value = 24 bytes;
 * include/uapi/linux/input.h).
 */

export interface LabEndpoint {
  address: number;
  type: string;
  maxPacketSize: number;
  interval: string;
}

export interface LabInterface {
  name: string;
  number: number;
  interfaceClass: number;
  subClass: number;
  protocol: number;
  driver: string | null;
  endpoints: LabEndpoint[];
}

export interface LabUsbDevice {
  /** sysfs name: "usb1" for the root hub, "1-1" for port 1, ... */
  path: string;
  busnum: number;
  devnum: number;
  vendorId: number;
  productId: number;
  bcdDevice: string;
  bcdUSB: string;
  manufacturer: string | null;
  product: string | null;
  serial: string | null;
  /** Mbit/s as sysfs reports it ("12", "1.5"). */
  speed: string;
  deviceClass: number;
  maxPacketSize0: number;
  interfaces: LabInterface[];
}

export interface InputEvent {
  type: number;
  code: number;
  value: number;
}

export interface LabInputDevice {
  event: string;
  name: string;
  phys: string;
  bustype: number;
  vendor: number;
  product: number;
  events: InputEvent[];
}

export interface GuestReport {
  booted: boolean;
  /** Guest uptime (s) when the devices were settled, and what it counted then. */
  settled: { uptime: number; boundInterfaces: number; eventDevices: number } | null;
  insmodFailures: string[];
  devices: LabUsbDevice[];
  /** PCI functions the guest found (slot 0000:00:01.2, ids and class as sysfs prints them: 0x8086, 0x7020, 0x0c0300). */
  pci: { slot: string; vendor: number; device: number; class: number }[];
  inputs: LabInputDevice[];
  kernelLog: string[];
  scriptOutput: string[] | null;
  scriptExitCode: number | null;
  /** The guest reached the end of its script. */
  done: boolean;
}

export const EV_SYN = 0;
export const EV_KEY = 1;
export const EV_REL = 2;
export const EV_ABS = 3;
export const EV_MSC = 4;

/** Decode struct input_event records from hex; a trailing partial record is dropped. */
export function decodeInputEvents(hex: string): InputEvent[] {
  const bytes = new Uint8Array(Math.floor(hex.length / 2));
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  const dv = new DataView(bytes.buffer);
  const out: InputEvent[] = [];
  for (let off = 0; off + 24 <= bytes.length; off += 24) {
    out.push({ type: dv.getUint16(off + 16, true), code: dv.getUint16(off + 18, true), value: dv.getInt32(off + 20, true) });
  }
  return out;
}

const MARK = '@@LAB:';

/** Collects the report from console lines as they arrive. */
export class GuestReportParser {
  private readonly usb = new Map<string, Map<string, string>>();
  private readonly ifs = new Map<string, Map<string, string>>();
  private readonly eps = new Map<string, string[]>();
  private readonly inputs = new Map<string, Map<string, string>>();
  private readonly events = new Map<string, string>();
  private inScript = false;
  readonly report: GuestReport = {
    booted: false,
    settled: null,
    insmodFailures: [],
    devices: [],
    pci: [],
    inputs: [],
    kernelLog: [],
    scriptOutput: null,
    scriptExitCode: null,
    done: false,
  };

  /** Feed one console line (without the newline). Returns the marker keyword, if any. */
  line(raw: string): string | null {
    const line = raw.replace(/\r$/, '');
    const at = line.indexOf(MARK);
    if (this.inScript && !line.startsWith(MARK + 'script-end')) {
      this.report.scriptOutput!.push(line);
      return null;
    }
    if (at < 0) return null;
    const body = line.slice(at + MARK.length);
    const sp = body.indexOf(' ');
    const kw = sp < 0 ? body : body.slice(0, sp);
    const rest = sp < 0 ? '' : body.slice(sp + 1);
    const [a = '', b = ''] = rest.split(' ', 2);
    const tail = rest.split(' ').slice(2).join(' ');
    const put = (m: Map<string, Map<string, string>>, k: string, attr: string, v: string) => {
      if (!m.has(k)) m.set(k, new Map());
      m.get(k)!.set(attr, v);
    };
    switch (kw) {
      case 'boot':
        this.report.booted = true;
        break;
      case 'insmod-failed':
        this.report.insmodFailures.push(rest);
        break;
      case 'settled': {
        const [u, bound, ev] = rest.split(' ');
        this.report.settled = { uptime: Number(u), boundInterfaces: Number(bound), eventDevices: Number(ev) };
        break;
      }
      case 'pci': {
        const [slot, vendor, device, cls] = rest.split(' ');
        if (slot && vendor && device && cls) this.report.pci.push({ slot, vendor: Number(vendor), device: Number(device), class: Number(cls) });
        break;
      }
      case 'usb':
        put(this.usb, a, b, tail);
        break;
      case 'if':
        if (b === 'endpoint') {
          if (!this.eps.has(a)) this.eps.set(a, []);
          this.eps.get(a)!.push(tail);
        } else put(this.ifs, a, b, tail);
        break;
      case 'input':
        put(this.inputs, a, b, tail);
        break;
      case 'events':
        this.events.set(a, b);
        break;
      case 'klog':
        this.report.kernelLog.push(rest);
        break;
      case 'script-begin':
        this.inScript = true;
        this.report.scriptOutput = [];
        break;
      case 'script-end':
        this.inScript = false;
        this.report.scriptExitCode = Number(rest);
        break;
      case 'done':
        this.report.done = true;
        this.finish();
        break;
      default:
        break;
    }
    return kw;
  }

  /** Assemble devices and inputs from the attributes seen so far. */
  finish(): GuestReport {
    const hex = (s: string | undefined) => (s === undefined ? 0 : parseInt(s, 16));
    this.report.devices = [...this.usb.entries()].map(([path, a]) => ({
      path,
      busnum: Number(a.get('busnum') ?? 0),
      devnum: Number(a.get('devnum') ?? 0),
      vendorId: hex(a.get('idVendor')),
      productId: hex(a.get('idProduct')),
      bcdDevice: a.get('bcdDevice') ?? '',
      bcdUSB: (a.get('version') ?? '').trim(),
      manufacturer: a.get('manufacturer') ?? null,
      product: a.get('product') ?? null,
      serial: a.get('serial') ?? null,
      speed: a.get('speed') ?? '',
      deviceClass: hex(a.get('bDeviceClass')),
      maxPacketSize0: Number(a.get('bMaxPacketSize0') ?? 0),
      interfaces: [...this.ifs.entries()]
        .filter(([n]) => n.startsWith(path + ':'))
        .map(([name, f]) => ({
          name,
          number: hex(f.get('bInterfaceNumber')),
          interfaceClass: hex(f.get('bInterfaceClass')),
          subClass: hex(f.get('bInterfaceSubClass')),
          protocol: hex(f.get('bInterfaceProtocol')),
          driver: f.get('driver') ?? null,
          endpoints: (this.eps.get(name) ?? []).map((e) => {
            const [addr = '0', type = '', mps = '0', interval = ''] = e.split(' ');
            return { address: hex(addr), type, maxPacketSize: hex(mps), interval };
          }),
        })),
    }));
    this.report.inputs = [...this.inputs.entries()].map(([event, a]) => ({
      event,
      name: a.get('name') ?? '',
      phys: a.get('phys') ?? '',
      bustype: hex(a.get('bustype')),
      vendor: hex(a.get('vendor')),
      product: hex(a.get('product')),
      events: decodeInputEvents(this.events.get(event) ?? ''),
    }));
    return this.report;
  }
}

/** One lsusb-style line per device. */
export function formatLsusb(d: LabUsbDevice): string {
  const h4 = (n: number) => n.toString(16).padStart(4, '0');
  const name = [d.manufacturer, d.product].filter(Boolean).join(' ');
  return `Bus ${String(d.busnum).padStart(3, '0')} Device ${String(d.devnum).padStart(3, '0')}: ID ${h4(d.vendorId)}:${h4(d.productId)} ${name}`;
}
