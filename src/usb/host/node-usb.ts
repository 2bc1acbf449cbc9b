/**
 * LibusbHost / LibusbDevice over the `usb` npm package, 2.x line (node-usb:
 * libusb 1.0 bundled in prebuilt binaries). The 3.x line is a rewrite over
 * nusb that does not use libusb (see DESIGN.md §6).
 *
 * Facts about node-usb 2.18 used here (node_modules/usb/src, dist/usb):
 * - A finished transfer calls back with an exception whose `errno` is the
 *   libusb_transfer_status when the status is not COMPLETED, plus the buffer
 *   and the actual length (src/transfer.cc handleCompletion). For control
 *   transfers the buffer starts with the 8 SETUP bytes.
 * - Synchronous failures (open, claim, submit) throw an exception whose
 *   `errno` is the libusb_error.
 * - Transfers are allocated with no isochronous packet descriptors
 *   (libusb_alloc_transfer(0)), so isochronous transfers are not possible:
 *   they are refused here with LIBUSB_ERROR_NOT_SUPPORTED.
 * - There is no binding for libusb_get_device_speed; on Linux the speed is
 *   read from sysfs (/sys/bus/usb/devices/<bus>-<ports>/speed: "1.5", "12",
 *   "480", "5000", ...), elsewhere it is 'unknown'.
 */
import { UserFacingError } from '../../platform/user-facing-error.js';
import { readFileSync } from 'node:fs';
import type * as UsbModule from 'usb';
import {
  LIBUSB_ERROR_NOT_SUPPORTED,
  LIBUSB_ERROR_OTHER,
  LibusbError,
  portPath,
  transferStatusName,
  type HostConfigInfo,
  type HostDeviceInfo,
  type HostSpeed,
  type LibusbDevice,
  type LibusbHost,
  type TransferCallback,
  type TransferHandle,
  type TransferType,
} from './libusb.js';

type UsbNs = typeof UsbModule;
type NodeUsbDevice = UsbModule.Device;

/** libusb transfer type numbers (enum libusb_transfer_type). */
const TYPE_NUMBER: Record<TransferType, number> = { control: 0, isochronous: 1, bulk: 2, interrupt: 3 };

function errnoOf(e: unknown): number {
  const n = (e as { errno?: unknown } | null)?.errno;
  return typeof n === 'number' ? n : LIBUSB_ERROR_OTHER;
}

function wrap<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new LibusbError(errnoOf(e), what);
  }
}

function promisify(what: string, f: (cb: (err?: unknown) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    try {
      f((err) => (err ? reject(new LibusbError(errnoOf(err), what)) : resolve()));
    } catch (e) {
      reject(new LibusbError(errnoOf(e), what));
    }
  });
}

/** Speed from sysfs (Linux). */
export function sysfsSpeed(busNumber: number, portNumbers: readonly number[], root = '/sys/bus/usb/devices'): HostSpeed {
  const name = portPath({ busNumber, portNumbers: [...portNumbers] });
  try {
    const s = readFileSync(`${root}/${name}/speed`, 'utf8').trim();
    if (s === '1.5') return 'low';
    if (s === '12') return 'full';
    if (s === '480') return 'high';
    if (Number(s) >= 5000) return 'super';
  } catch {
    // not Linux, or no sysfs: fall through
  }
  return 'unknown';
}

function describe(d: NodeUsbDevice): HostDeviceInfo {
  const dd = d.deviceDescriptor;
  let configs: HostConfigInfo[] = [];
  try {
    configs = d.allConfigDescriptors.map((c) => ({
      value: c.bConfigurationValue,
      attributes: c.bmAttributes,
      interfaces: c.interfaces.flat().map((i) => ({
        number: i.bInterfaceNumber,
        alternate: i.bAlternateSetting,
        interfaceClass: i.bInterfaceClass,
        subClass: i.bInterfaceSubClass,
        protocol: i.bInterfaceProtocol,
        endpoints: i.endpoints.map((e) => ({
          address: e.bEndpointAddress,
          attributes: e.bmAttributes,
          maxPacketSize: e.wMaxPacketSize,
          interval: e.bInterval,
        })),
      })),
    }));
  } catch {
    configs = [];
  }
  const portNumbers = [...(d.portNumbers ?? [])];
  return {
    busNumber: d.busNumber,
    deviceAddress: d.deviceAddress,
    portNumbers,
    speed: sysfsSpeed(d.busNumber, portNumbers),
    vendorId: dd.idVendor,
    productId: dd.idProduct,
    bcdUSB: dd.bcdUSB,
    bcdDevice: dd.bcdDevice,
    deviceClass: dd.bDeviceClass,
    maxPacketSize0: dd.bMaxPacketSize0,
    iManufacturer: dd.iManufacturer,
    iProduct: dd.iProduct,
    iSerialNumber: dd.iSerialNumber,
    numConfigurations: dd.bNumConfigurations,
    configs,
  };
}

/**
 * The completion callback of one transfer (built outside the adapter so it
 * closes over nothing but these arguments): clears `slot` — the handle's
 * reference to the Transfer — then reports the result.
 */
function completion(
  slot: { t: unknown },
  dataOffset: number,
  isIn: boolean,
  cb: TransferCallback,
): (error: UsbModule.LibUSBException | undefined, b: Buffer, actual: number) => void {
  return (error, b, actual) => {
    slot.t = null;
    const status = error ? transferStatusName(errnoOf(error)) : 'completed';
    const n = Math.max(0, actual);
    cb({
      status,
      data: isIn ? Uint8Array.from(b.subarray(dataOffset, dataOffset + n)) : new Uint8Array(0),
      actualLength: n,
    });
  };
}

class NodeUsbDeviceAdapter implements LibusbDevice {
  readonly info: HostDeviceInfo;

  constructor(
    private readonly usb: UsbNs,
    readonly raw: NodeUsbDevice,
  ) {
    this.info = describe(raw);
  }

  open(): void {
    // open(false): do not select a configuration; the guest does that.
    wrap('libusb_open', () => this.raw.open(false));
  }
  close(): void {
    wrap('libusb_close', () => this.raw.close());
  }
  kernelDriverActive(iface: number): boolean {
    return wrap('libusb_kernel_driver_active', () => this.raw.__isKernelDriverActive(iface));
  }
  detachKernelDriver(iface: number): void {
    wrap('libusb_detach_kernel_driver', () => this.raw.__detachKernelDriver(iface));
  }
  attachKernelDriver(iface: number): void {
    wrap('libusb_attach_kernel_driver', () => this.raw.__attachKernelDriver(iface));
  }
  claimInterface(iface: number): void {
    wrap('libusb_claim_interface', () => this.raw.__claimInterface(iface));
  }
  releaseInterface(iface: number): Promise<void> {
    return promisify('libusb_release_interface', (cb) => this.raw.__releaseInterface(iface, cb));
  }
  activeConfiguration(): number {
    return this.raw.configDescriptor?.bConfigurationValue ?? 0;
  }
  setConfiguration(value: number): Promise<void> {
    return promisify('libusb_set_configuration', (cb) => this.raw.__setConfiguration(value, cb));
  }
  setInterface(iface: number, alternate: number): Promise<void> {
    return promisify('libusb_set_interface_alt_setting', (cb) => this.raw.__setInterface(iface, alternate, cb));
  }
  clearHalt(endpointAddress: number): Promise<void> {
    return promisify('libusb_clear_halt', (cb) => this.raw.__clearHalt(endpointAddress, cb));
  }
  reset(): Promise<void> {
    return promisify('libusb_reset_device', (cb) => this.raw.reset(cb));
  }
  getString(index: number): Promise<string | undefined> {
    if (!index) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      try {
        this.raw.getStringDescriptor(index, (err, value) => resolve(err ? undefined : value));
      } catch {
        resolve(undefined);
      }
    });
  }

  /**
   * One libusb transfer. The native Transfer holds its completion callback
   * through a strong reference that lives as long as the Transfer's JS
   * object (src/transfer.cc: v8callback, reset only in ~Transfer). So
   * nothing the callback can reach may keep that JS object alive once the
   * transfer is over, or neither is ever collected: the callback reaches
   * the caller's closure, which holds the returned handle, which held the
   * Transfer — a cycle through a GC root that leaked every transfer with its
   * buffers (measured in the passthrough lab: +2.3 bytes of ArrayBuffer per
   * byte of bulk OUT and the guest's free memory falling in step, which
   * stalled 100 MB runs in the 512 MB guest; flat after this change). The
   * handle therefore drops the Transfer when it completes.
   */
  private submit(endpoint: number, type: number, timeoutMs: number, buf: Buffer, dataOffset: number, isIn: boolean, cb: TransferCallback): TransferHandle {
    // No closure made here may capture the Transfer itself (closures share one context): only `slot`.
    const slot: { t: UsbModule.Transfer | null } = { t: null };
    slot.t = wrap('libusb_alloc_transfer', () => new this.usb.Transfer(this.raw, endpoint, type, timeoutMs, completion(slot, dataOffset, isIn, cb)));
    wrap('libusb_submit_transfer', () => slot.t!.submit(buf));
    return {
      cancel: () => {
        try {
          slot.t?.cancel();
        } catch {
          // already finished or device gone: the callback reports it
        }
      },
    };
  }

  controlTransfer(setup: Uint8Array, data: Uint8Array, timeoutMs: number, cb: TransferCallback): TransferHandle {
    const isIn = (setup[0]! & 0x80) !== 0;
    const wLength = setup[6]! | (setup[7]! << 8);
    const buf = Buffer.alloc(8 + wLength);
    buf.set(setup.subarray(0, 8));
    if (!isIn) buf.set(data.subarray(0, wLength), 8);
    return this.submit(0, TYPE_NUMBER.control, timeoutMs, buf, 8, isIn, cb);
  }

  transfer(
    endpointAddress: number,
    type: Exclude<TransferType, 'control'>,
    lengthOrData: number | Uint8Array,
    timeoutMs: number,
    cb: TransferCallback,
  ): TransferHandle {
    if (type === 'isochronous') throw new LibusbError(LIBUSB_ERROR_NOT_SUPPORTED, 'isochronous transfer (not available in node-usb 2.x)');
    const isIn = (endpointAddress & 0x80) !== 0;
    const buf = typeof lengthOrData === 'number' ? Buffer.alloc(lengthOrData) : Buffer.from(lengthOrData);
    return this.submit(endpointAddress, TYPE_NUMBER[type], timeoutMs, buf, 0, isIn, cb);
  }
}

/** Thrown when the `usb` package cannot be loaded (no binary for this platform). */
export class UsbBackendUnavailableError extends UserFacingError {}

class NodeUsbHost implements LibusbHost {
  private readonly adapters = new WeakMap<NodeUsbDevice, NodeUsbDeviceAdapter>();
  constructor(private readonly usb: UsbNs) {}

  private adapt(d: NodeUsbDevice): NodeUsbDeviceAdapter {
    let a = this.adapters.get(d);
    if (!a) {
      a = new NodeUsbDeviceAdapter(this.usb, d);
      this.adapters.set(d, a);
    }
    return a;
  }

  list(): LibusbDevice[] {
    return this.usb.getDeviceList().map((d) => this.adapt(d));
  }

  onHotplug(listener: (event: 'attach' | 'detach', dev: LibusbDevice) => void): () => void {
    const onAttach = (d: NodeUsbDevice) => listener('attach', this.adapt(d));
    const onDetach = (d: NodeUsbDevice) => listener('detach', this.adapt(d));
    this.usb.usb.on('attach', onAttach);
    this.usb.usb.on('detach', onDetach);
    return () => {
      this.usb.usb.off('attach', onAttach);
      this.usb.usb.off('detach', onDetach);
    };
  }
}

/** Load the `usb` package and wrap it. */
export async function openNodeUsbHost(): Promise<LibusbHost> {
  let mod: UsbNs;
  try {
    mod = (await import('usb')) as UsbNs;
  } catch (e) {
    throw new UsbBackendUnavailableError(`cannot load the 'usb' package (libusb): ${(e as Error).message}`);
  }
  return nodeUsbHostFrom(mod);
}

/** Wrap an already loaded `usb` 2.x module (tests pass a stand-in). */
export function nodeUsbHostFrom(mod: typeof UsbModule): LibusbHost {
  return new NodeUsbHost(mod);
}
