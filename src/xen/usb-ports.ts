/**
 * The devices on the served controller's root ports, by the names qemu-dm /
 * xl use (`usbdevice=tablet`, `-device usb-tablet`), with hot add/remove and
 * save/restore of the whole function (UhciPciFunction.saveState plus which
 * device sits on which port, so that a restore can re-create them first).
 */
import type { UhciPciFunction, UhciPciFunctionState } from '../device/uhci-pci-function.js';
import type { Clock } from '../platform/clock.js';
import { createDevice } from '../usb/devices.js';
import type { UsbDevice } from '../usb/packet.js';

/** A device name a user may give but that is not implemented yet (host passthrough). */
export class DeviceNotSupportedError extends Error {
  readonly userFacing = true;
  constructor(msg: string) {
    super(msg);
    this.name = 'DeviceNotSupportedError';
  }
}

/** A bad device name / port / snapshot: user-facing. */
export class UsbPortError extends Error {
  readonly userFacing = true;
  constructor(msg: string) {
    super(msg);
    this.name = 'UsbPortError';
  }
}

/** Canonical emulated-device names (the xl `usbdevice=` spelling). */
const CANONICAL: Record<string, DeviceKind> = {
  tablet: 'tablet',
  'usb-tablet': 'tablet',
  mouse: 'mouse',
  'usb-mouse': 'mouse',
  keyboard: 'keyboard',
  'usb-kbd': 'keyboard',
};

export type DeviceKind = 'tablet' | 'mouse' | 'keyboard';

/**
 * Parse a `-usbdevice` value (tablet, mouse, keyboard, host:vvvv:pppp, host:bus.addr)
 * or a `-device` value (usb-tablet, usb-kbd, usb-mouse, usb-host,vendorid=..,productid=..;
 * QEMU-style `,key=value` properties after the driver name).
 */
export function parseDeviceSpec(text: string): DeviceKind {
  const t = text.trim();
  if (/^host:/i.test(t) || /^usb-host(,|$)/i.test(t)) {
    throw new DeviceNotSupportedError(`USB host passthrough ('${t}') is not supported yet by the Xen transport; use tablet, mouse or keyboard`);
  }
  const driver = t.split(',')[0]!;
  const kind = CANONICAL[driver];
  if (!kind) throw new UsbPortError(`unknown USB device '${t}' (expected tablet, mouse, keyboard, usb-tablet, usb-mouse, usb-kbd or host:vvvv:pppp)`);
  return kind;
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
}

export interface FunctionSnapshot {
  format: 'uhci-dm-xen-snapshot';
  version: 1;
  devices: { port: number; kind: DeviceKind }[];
  function: UhciPciFunctionState;
}

export class UsbPorts {
  private readonly kinds: (DeviceKind | null)[];

  constructor(
    readonly fn: UhciPciFunction,
    private readonly clock: Clock,
    /** PCI address for device serials/paths (e.g. "0000:00:05.0"). */
    private readonly hcdPath: string,
  ) {
    this.kinds = fn.controller.ports.map(() => null);
  }

  get portCount(): number {
    return this.kinds.length;
  }

  private make(kind: DeviceKind, port: number): UsbDevice {
    return createDevice(kind, { clock: this.clock, hcdPath: this.hcdPath, portPath: String(port + 1) });
  }

  /** Plug a device into `port` (1-based) or the first free port. Returns the 1-based port. */
  add(spec: string, port?: number): number {
    const kind = parseDeviceSpec(spec);
    let i: number;
    if (port !== undefined) {
      i = port - 1;
      if (!Number.isInteger(port) || i < 0 || i >= this.kinds.length) throw new UsbPortError(`no port ${port} (the controller has ${this.kinds.length})`);
      if (this.kinds[i]) throw new UsbPortError(`port ${port} is in use (${this.kinds[i]})`);
    } else {
      i = this.kinds.findIndex((k) => k === null);
      if (i < 0) throw new UsbPortError(`all ${this.kinds.length} ports are in use`);
    }
    this.fn.attach(i, this.make(kind, i));
    this.kinds[i] = kind;
    return i + 1;
  }

  /** Unplug by 1-based port, or by device name (the first port holding that kind). Returns the port. */
  remove(target: number | string): number {
    let i: number;
    if (typeof target === 'number') i = target - 1;
    else {
      const kind = parseDeviceSpec(target);
      i = this.kinds.findIndex((k) => k === kind);
      if (i < 0) throw new UsbPortError(`no ${kind} is attached`);
    }
    if (i < 0 || i >= this.kinds.length || !this.kinds[i]) throw new UsbPortError(`nothing attached to port ${typeof target === 'number' ? target : i + 1}`);
    this.fn.detach(i);
    this.kinds[i] = null;
    return i + 1;
  }

  list(): PortInfo[] {
    const out: PortInfo[] = [];
    this.kinds.forEach((kind, i) => {
      const d = this.fn.controller.ports[i]?.device;
      if (!kind || !d) return;
      out.push({ port: i + 1, kind, product: d.productName, vendorId: d.vendorId, productId: d.productId, address: d.address, speed: d.speed });
    });
    return out;
  }

  releaseAll(): void {
    this.kinds.forEach((k, i) => {
      if (k) this.fn.detach(i);
      this.kinds[i] = null;
    });
  }

  snapshot(): FunctionSnapshot {
    return {
      format: 'uhci-dm-xen-snapshot',
      version: 1,
      devices: this.kinds.flatMap((kind, i) => (kind ? [{ port: i + 1, kind }] : [])),
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
      if (!d || !Number.isInteger(d.port) || d.port < 1 || d.port > this.kinds.length || !['tablet', 'mouse', 'keyboard'].includes(d.kind)) {
        throw new UsbPortError('snapshot lists a bad device entry');
      }
    }
    this.releaseAll();
    for (const d of snap.devices) this.add(d.kind, d.port);
    try {
      this.fn.loadState(snap.function);
    } catch (e) {
      throw new UsbPortError(`snapshot does not load: ${(e as Error).message}`);
    }
  }
}
