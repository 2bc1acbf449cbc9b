/**
 * The devices on the served controller's root ports, by the names qemu-dm /
 * xl use (`usbdevice=tablet`, `-device usb-tablet`), with hot add/remove and
 * save/restore of the whole function (UhciPciFunction.saveState plus which
 * device sits on which port, so that a restore can re-create them first).
 */
import { UserFacingError } from '../platform/user-facing-error.js';
import type { UhciPciFunction, UhciPciFunctionState } from '../device/uhci-pci-function.js';
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import { createDevice } from '../usb/devices.js';
import type { HidUsbDevice } from '../usb/hid/hid-device.js';
import type { LibusbHost } from '../usb/host/libusb.js';
import { HostPassthrough } from '../usb/host/passthrough.js';
import { formatHostSelector, parseHostSelector, type HostDeviceSelector } from '../usb/host/selector.js';

/** A device name a user may give but that is not implemented yet (host passthrough). */
export class DeviceNotSupportedError extends UserFacingError {}

/** A bad device name / port / snapshot: user-facing. */
export class UsbPortError extends UserFacingError {}

/** Canonical emulated-device names (the xl `usbdevice=` spelling). */
const CANONICAL: Record<string, DeviceKind> = {
  tablet: 'tablet',
  'usb-tablet': 'tablet',
  mouse: 'mouse',
  'usb-mouse': 'mouse',
  keyboard: 'keyboard',
  'usb-kbd': 'keyboard',
};

export type DeviceKind = 'tablet' | 'mouse' | 'keyboard' | 'host';

/**
 * QEMU device properties the emulated HID devices take (hw/usb/bus.c
 * usb_props `serial` and `msos-desc`, dev-hid.c `usb_version`), e.g.
 * `-device usb-tablet,serial=42` for the serial QEMU-xen's tablet reports
 * (so a guest that keys devices on their serial, as Windows does, sees the
 * same device as under qemu-dm).
 */
export interface EmulatedDeviceProps {
  serial?: string;
  usbVersion?: 1 | 2;
  msosDesc?: boolean;
}

/** What a user asked for: an emulated device, or a host device by selector. */
export type DeviceSpec =
  | ({ kind: 'tablet' | 'mouse' | 'keyboard' } & EmulatedDeviceProps)
  | { kind: 'host'; selector: HostDeviceSelector; text: string };

/** `key=value` properties after the driver name (QEMU -device syntax), keys lower-cased. */
function deviceProps(t: string): Map<string, string> {
  return new Map(
    t.split(',').slice(1).map((kv) => {
      const [k, v = ''] = kv.split('=');
      return [k!.trim().toLowerCase(), v.trim()] as const;
    }),
  );
}

function emulatedProps(driver: string, props: Map<string, string>): EmulatedDeviceProps {
  const out: EmulatedDeviceProps = {};
  for (const [k, v] of props) {
    switch (k) {
      case 'serial':
        // A USB string descriptor holds at most 126 UTF-16 units (bLength is one byte).
        if (!v || v.length > 126) throw new UsbPortError(`${driver}: serial must be 1 to 126 characters`);
        out.serial = v;
        break;
      case 'usb_version':
        if (v !== '1' && v !== '2') throw new UsbPortError(`${driver}: usb_version must be 1 or 2`);
        out.usbVersion = v === '1' ? 1 : 2;
        break;
      case 'msos-desc':
        if (!['on', 'off', 'true', 'false'].includes(v)) throw new UsbPortError(`${driver}: msos-desc must be on or off`);
        out.msosDesc = v === 'on' || v === 'true';
        break;
      default:
        throw new UsbPortError(`${driver}: unknown property '${k}' (supported: serial, usb_version, msos-desc)`);
    }
  }
  return out;
}

/** What `usb_del NAME` matches for an entry: its kind, or host:SELECTOR for a host device. */
function entryName(e: PortEntry): string {
  return e.kind === 'host' ? e.create : e.kind;
}

/** The spec text that re-creates an emulated device (canonical name plus its properties). */
function emulatedSpecText(s: { kind: string } & EmulatedDeviceProps): string {
  const props = [
    ...(s.serial !== undefined ? [`serial=${s.serial}`] : []),
    ...(s.usbVersion !== undefined ? [`usb_version=${s.usbVersion}`] : []),
    ...(s.msosDesc !== undefined ? [`msos-desc=${s.msosDesc ? 'on' : 'off'}`] : []),
  ];
  return [s.kind, ...props].join(',');
}

/**
 * Parse a `-usbdevice` value (tablet, mouse, keyboard, host:vvvv:pppp, host:bus.addr,
 * host:bus-port.path) or a `-device` value (usb-tablet, usb-kbd, usb-mouse,
 * usb-host,vendorid=0x..,productid=0x.. | hostbus=N,hostaddr=N | hostbus=N,hostport=P;
 * QEMU-style `,key=value` properties after the driver name).
 */
export function parseDeviceSpec(text: string): DeviceSpec {
  const t = text.trim();
  if (/^host:/i.test(t)) {
    try {
      return { kind: 'host', selector: parseHostSelector(t), text: t };
    } catch (e) {
      throw new UsbPortError(`bad host device '${t}': ${(e as Error).message}`);
    }
  }
  if (/^usb-host(,|$)/i.test(t)) {
    const props = deviceProps(t);
    const num = (k: string) => {
      const v = props.get(k)!;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new UsbPortError(`usb-host: ${k}=${v} is not a number`);
      return n;
    };
    let sel: string;
    if (props.has('vendorid') && props.has('productid')) sel = `${num('vendorid').toString(16)}:${num('productid').toString(16)}`;
    else if (props.has('hostbus') && props.has('hostaddr')) sel = `${num('hostbus')}.${num('hostaddr')}`;
    else if (props.has('hostbus') && props.has('hostport')) sel = `${num('hostbus')}-${props.get('hostport')}`;
    else throw new UsbPortError(`usb-host needs vendorid=..,productid=.. or hostbus=..,hostaddr=.. or hostbus=..,hostport=..`);
    return parseDeviceSpec(`host:${sel}`);
  }
  const driver = t.split(',')[0]!;
  const kind = CANONICAL[driver];
  if (!kind || kind === 'host') throw new UsbPortError(`unknown USB device '${t}' (expected tablet, mouse, keyboard, usb-tablet, usb-mouse, usb-kbd, host:vvvv:pppp or usb-host,...)`);
  return { kind, ...emulatedProps(driver, deviceProps(t)) };
}

export interface PortInfo {
  /** 1-based port number, as `info usb` prints it. */
  port: number;
  kind: DeviceKind;
  product: string;
  vendorId: number;
  productId: number;
  address: number;
  speed: string;
  /**
   * Emulated HID devices: the guest's driver has polled the interrupt IN
   * endpoint since the last port reset (HidUsbDevice.interruptPolled), i.e.
   * input sent now is read by it.
   */
  polled?: boolean;
}

export interface FunctionSnapshot {
  format: 'uhci-dm-xen-snapshot';
  version: 1;
  /** `spec` re-creates the device (emulated: name and properties; host devices are re-opened by selector, as QEMU re-plugs them). */
  devices: { port: number; kind: DeviceKind; spec?: string }[];
  function: UhciPciFunctionState;
}

interface PortEntry {
  kind: DeviceKind;
  /** The spec text that re-creates the device (snapshots): the kind with its properties, or host:SELECTOR. */
  create: string;
  passthrough: HostPassthrough | null;
  /** The emulated device as created (the port may hold a wrapper, e.g. the trace recorder's). */
  hid: HidUsbDevice | null;
}

export class UsbPorts {
  private readonly entries: (PortEntry | null)[];

  constructor(
    readonly fn: UhciPciFunction,
    private readonly clock: Clock,
    /** PCI address for device serials/paths (e.g. "0000:00:05.0"). */
    private readonly hcdPath: string,
    /** libusb, for host passthrough (null: host devices are refused). */
    private readonly host: LibusbHost | null = null,
    /** Re-open a host device that comes back after an unplug (--reattach). */
    private readonly reattach = false,
    /** The daemon's logger, for host devices' messages (without it, only their errors reach stderr). */
    private readonly logger: Logger | null = null,
  ) {
    this.entries = Array.from({ length: fn.portCount }, () => null);
  }

  get portCount(): number {
    return this.entries.length;
  }

  /** Plug a device into `port` (1-based) or the first free port. Returns the 1-based port. */
  add(spec: string, port?: number): number {
    const parsed = parseDeviceSpec(spec);
    if (parsed.kind === 'host' && !this.host) {
      throw new DeviceNotSupportedError(`USB host passthrough ('${spec}') needs libusb, which is not open (start uhci-dm xen with --host-usb, or give the host device on the command line)`);
    }
    let i: number;
    if (port !== undefined) {
      i = port - 1;
      if (!Number.isInteger(port) || i < 0 || i >= this.entries.length) throw new UsbPortError(`no port ${port} (the controller has ${this.entries.length})`);
      if (this.entries[i]) throw new UsbPortError(`port ${port} is in use (${entryName(this.entries[i]!)})`);
    } else {
      i = this.entries.findIndex((k) => k === null);
      if (i < 0) throw new UsbPortError(`all ${this.entries.length} ports are in use`);
    }
    if (parsed.kind === 'host') {
      const index = i;
      const host = this.host!;
      const logger = this.logger;
      const pt = new HostPassthrough(host, parsed.selector, {
        reattach: this.reattach,
        log: logger ? (level, msg) => logger.log(level, 'usb-host', msg) : undefined,
        onAttach: (dev) => {
          if (!this.fn.deviceAt(index)) this.fn.attach(index, dev);
        },
        onDetach: () => {
          if (this.fn.deviceAt(index)) this.fn.detach(index);
        },
      });
      const text = `host:${formatHostSelector(parsed.selector)}`;
      this.entries[i] = { kind: 'host', create: text, passthrough: pt, hid: null };
      try {
        pt.start();
      } catch (e) {
        this.entries[i] = null;
        throw new UsbPortError(`cannot pass through ${spec}: ${(e as Error).message}`);
      }
      return i + 1;
    }
    const dev = createDevice(parsed.kind, {
      clock: this.clock,
      hcdPath: this.hcdPath,
      portPath: String(i + 1),
      serial: parsed.serial,
      usbVersion: parsed.usbVersion,
      msosDesc: parsed.msosDesc,
    });
    this.fn.attach(i, dev);
    this.entries[i] = { kind: parsed.kind, create: emulatedSpecText(parsed), passthrough: null, hid: dev };
    return i + 1;
  }

  /** Unplug by 1-based port, or by device name (the first port holding that kind). Returns the port. */
  remove(target: number | string): number {
    let i: number;
    if (typeof target === 'number') i = target - 1;
    else {
      const parsed = parseDeviceSpec(target);
      const want = parsed.kind === 'host' ? `host:${formatHostSelector(parsed.selector)}` : parsed.kind;
      i = this.entries.findIndex((k) => k !== null && entryName(k) === want);
      if (i < 0) throw new UsbPortError(`no ${want} is attached`);
    }
    const entry = this.entries[i];
    if (i < 0 || i >= this.entries.length || !entry) throw new UsbPortError(`nothing attached to port ${typeof target === 'number' ? target : i + 1}`);
    this.entries[i] = null;
    if (entry.passthrough) void entry.passthrough.stop();
    if (this.fn.deviceAt(i)) this.fn.detach(i);
    return i + 1;
  }

  /** The emulated HID device on a 1-based port, or on the first port holding `kind` (for input-send-event). */
  emulated(target: number | 'tablet' | 'mouse' | 'keyboard'): HidUsbDevice {
    const i = typeof target === 'number' ? target - 1 : this.entries.findIndex((e) => e?.kind === target);
    const d = i >= 0 && i < this.entries.length ? (this.entries[i]?.hid ?? null) : null;
    if (!d) throw new UsbPortError(typeof target === 'number' ? `no emulated device on port ${target}` : `no ${target} is attached`);
    return d;
  }

  list(): PortInfo[] {
    const out: PortInfo[] = [];
    this.entries.forEach((e, i) => {
      const d = this.fn.deviceAt(i);
      if (!e || !d) return;
      out.push({
        port: i + 1,
        kind: e.kind,
        product: d.productName,
        vendorId: d.vendorId,
        productId: d.productId,
        address: d.address,
        speed: d.speed,
        ...(e.hid ? { polled: e.hid.interruptPolled } : {}),
      });
    });
    return out;
  }

  releaseAll(): void {
    this.entries.forEach((e, i) => {
      if (e) this.remove(i + 1);
    });
  }

  snapshot(): FunctionSnapshot {
    return {
      format: 'uhci-dm-xen-snapshot',
      version: 1,
      devices: this.entries.flatMap((e, i) => (e ? [{ port: i + 1, kind: e.kind, spec: e.create }] : [])),
      function: this.fn.saveState(),
    };
  }

  /** Replace the devices by the snapshot's, then load the function state (controller, config, devices). */
  restore(s: unknown): void {
    const snap = s as Partial<FunctionSnapshot> | null;
    if (!snap || snap.format !== 'uhci-dm-xen-snapshot' || snap.version !== 1 || !Array.isArray(snap.devices) || !snap.function) {
      throw new UsbPortError('not a uhci-dm xen snapshot (format/version)');
    }
    for (const d of snap.devices) {
      if (!d || !Number.isInteger(d.port) || d.port < 1 || d.port > this.entries.length || !['tablet', 'mouse', 'keyboard', 'host'].includes(d.kind) || (d.kind === 'host' && typeof d.spec !== 'string')) {
        throw new UsbPortError('snapshot lists a bad device entry');
      }
    }
    // An emulated entry's spec must name its kind (older snapshots: just the kind).
    const specs = snap.devices.map((d) => {
      if (d.kind === 'host') return d.spec!;
      if (typeof d.spec !== 'string') return d.kind;
      let parsed: DeviceSpec;
      try {
        parsed = parseDeviceSpec(d.spec);
      } catch (e) {
        throw new UsbPortError(`snapshot lists a bad device entry: ${(e as Error).message}`);
      }
      if (parsed.kind !== d.kind) throw new UsbPortError('snapshot lists a bad device entry');
      return d.spec;
    });
    this.releaseAll();
    snap.devices.forEach((d, k) => this.add(specs[k]!, d.port));
    try {
      this.fn.loadState(snap.function);
    } catch (e) {
      throw new UsbPortError(`snapshot does not load: ${(e as Error).message}`);
    }
  }
}
