/**
 * A scripted libusb for tests: records every call, keeps submitted
 * transfers until the test completes them, and can be told to fail calls.
 * Completing a transfer twice throws, so tests notice double completion at
 * the libusb level too.
 */
import {
  LibusbError,
  type HostConfigInfo,
  type HostDeviceInfo,
  type LibusbDevice,
  type LibusbHost,
  type TransferCallback,
  type TransferHandle,
  type TransferResult,
  type TransferStatus,
  type TransferType,
} from '../../../src/usb/host/libusb.js';

export interface FakeTransfer {
  kind: 'control' | 'data';
  endpoint: number;
  type: TransferType;
  /** Control: the SETUP bytes. */
  setup: Uint8Array | null;
  /** OUT data. */
  out: Uint8Array;
  /** IN length requested. */
  length: number;
  timeoutMs: number;
  cancelRequested: boolean;
  done: boolean;
  complete(status: TransferStatus, inData?: Uint8Array | number[]): void;
  /** Hand the callback this result as is (a malformed one, to make the code handling it throw). */
  completeRaw(r: TransferResult): void;
}

export function makeInfo(over: Partial<HostDeviceInfo> = {}): HostDeviceInfo {
  const configs: HostConfigInfo[] = over.configs ?? [
    {
      value: 1,
      attributes: 0xa0,
      interfaces: [
        {
          number: 0,
          alternate: 0,
          interfaceClass: 0xff,
          subClass: 0,
          protocol: 0,
          endpoints: [
            { address: 0x81, attributes: 2, maxPacketSize: 64, interval: 0 },
            { address: 0x02, attributes: 2, maxPacketSize: 64, interval: 0 },
            { address: 0x83, attributes: 3, maxPacketSize: 8, interval: 10 },
          ],
        },
        {
          number: 0,
          alternate: 1,
          interfaceClass: 0xff,
          subClass: 0,
          protocol: 0,
          endpoints: [
            { address: 0x81, attributes: 2, maxPacketSize: 64, interval: 0 },
            { address: 0x84, attributes: 1, maxPacketSize: 32, interval: 1 },
            { address: 0x04, attributes: 1, maxPacketSize: 32, interval: 1 },
          ],
        },
      ],
    },
  ];
  return {
    busNumber: 1,
    deviceAddress: 7,
    portNumbers: [2],
    speed: 'full',
    vendorId: 0x1234,
    productId: 0x5678,
    bcdUSB: 0x0110,
    bcdDevice: 0x0100,
    deviceClass: 0,
    maxPacketSize0: 64,
    iManufacturer: 1,
    iProduct: 2,
    iSerialNumber: 0,
    numConfigurations: configs.length,
    configs,
    ...over,
  };
}

export class FakeLibusbDevice implements LibusbDevice {
  readonly calls: string[] = [];
  readonly transfers: FakeTransfer[] = [];
  /** method name → errno to throw/reject with on the next call. */
  readonly failNext = new Map<string, number>();
  kernelDrivers = new Set<number>();
  strings = new Map<number, string>([
    [1, 'Fake Inc.'],
    [2, 'Fake Device'],
  ]);
  isOpen = false;
  /** Isochronous transfers throw NOT_SUPPORTED like the node-usb backend when set. */
  isoUnsupported = false;

  constructor(readonly info: HostDeviceInfo = makeInfo()) {}

  private maybeFail(name: string): void {
    const errno = this.failNext.get(name);
    if (errno !== undefined) {
      this.failNext.delete(name);
      throw new LibusbError(errno, name);
    }
  }
  private async asyncOp(name: string, record: string): Promise<void> {
    this.calls.push(record);
    this.maybeFail(name);
  }

  open(): void {
    this.calls.push('open');
    this.maybeFail('open');
    this.isOpen = true;
  }
  close(): void {
    this.calls.push('close');
    this.isOpen = false;
  }
  kernelDriverActive(iface: number): boolean {
    return this.kernelDrivers.has(iface);
  }
  detachKernelDriver(iface: number): void {
    this.calls.push(`detachKernelDriver ${iface}`);
    this.kernelDrivers.delete(iface);
  }
  attachKernelDriver(iface: number): void {
    this.calls.push(`attachKernelDriver ${iface}`);
    this.kernelDrivers.add(iface);
  }
  claimInterface(iface: number): void {
    this.calls.push(`claim ${iface}`);
    this.maybeFail('claimInterface');
  }
  releaseInterface(iface: number): Promise<void> {
    return this.asyncOp('releaseInterface', `release ${iface}`);
  }
  activeConfiguration(): number {
    return 1;
  }
  setConfiguration(value: number): Promise<void> {
    return this.asyncOp('setConfiguration', `setConfiguration ${value}`);
  }
  setInterface(iface: number, alternate: number): Promise<void> {
    return this.asyncOp('setInterface', `setInterface ${iface} ${alternate}`);
  }
  clearHalt(endpointAddress: number): Promise<void> {
    return this.asyncOp('clearHalt', `clearHalt 0x${endpointAddress.toString(16)}`);
  }
  reset(): Promise<void> {
    return this.asyncOp('reset', 'reset');
  }
  async getString(index: number): Promise<string | undefined> {
    return this.strings.get(index);
  }

  private add(t: Omit<FakeTransfer, 'cancelRequested' | 'done' | 'complete' | 'completeRaw'>, cb: TransferCallback): TransferHandle {
    const ft: FakeTransfer = {
      ...t,
      cancelRequested: false,
      done: false,
      complete: (status, inData) => {
        if (ft.done) throw new Error('fake transfer completed twice');
        ft.done = true;
        const data = Uint8Array.from(inData ?? []);
        const r: TransferResult = {
          status,
          data: (t.setup ? (t.setup[0]! & 0x80) !== 0 : (t.endpoint & 0x80) !== 0) ? data : new Uint8Array(0),
          actualLength: inData === undefined ? (status === 'completed' ? t.out.length : 0) : data.length,
        };
        cb(r);
      },
      completeRaw: (r) => {
        if (ft.done) throw new Error('fake transfer completed twice');
        ft.done = true;
        cb(r);
      },
    };
    this.transfers.push(ft);
    return {
      cancel: () => {
        if (ft.done || ft.cancelRequested) return;
        ft.cancelRequested = true;
        // libusb reports the cancellation later, from its event loop.
        queueMicrotask(() => {
          if (!ft.done) ft.complete('cancelled');
        });
      },
    };
  }

  controlTransfer(setup: Uint8Array, data: Uint8Array, timeoutMs: number, cb: TransferCallback): TransferHandle {
    this.calls.push(`control ${Buffer.from(setup).toString('hex')}`);
    this.maybeFail('submit');
    const wLength = setup[6]! | (setup[7]! << 8);
    const isIn = (setup[0]! & 0x80) !== 0;
    return this.add(
      { kind: 'control', endpoint: 0, type: 'control', setup: Uint8Array.from(setup), out: isIn ? new Uint8Array(0) : Uint8Array.from(data), length: isIn ? wLength : 0, timeoutMs },
      cb,
    );
  }

  transfer(endpointAddress: number, type: Exclude<TransferType, 'control'>, lengthOrData: number | Uint8Array, timeoutMs: number, cb: TransferCallback): TransferHandle {
    this.calls.push(`transfer ${type} 0x${endpointAddress.toString(16)}`);
    if (type === 'isochronous' && this.isoUnsupported) throw new LibusbError(-12, 'iso');
    this.maybeFail('submit');
    const isIn = typeof lengthOrData === 'number';
    return this.add(
      { kind: 'data', endpoint: endpointAddress, type, setup: null, out: isIn ? new Uint8Array(0) : Uint8Array.from(lengthOrData), length: isIn ? lengthOrData : 0, timeoutMs },
      cb,
    );
  }

  /** Transfers not yet completed. */
  get pending(): FakeTransfer[] {
    return this.transfers.filter((t) => !t.done);
  }
}

export class FakeLibusbHost implements LibusbHost {
  devices: FakeLibusbDevice[] = [];
  private listeners: ((event: 'attach' | 'detach', dev: LibusbDevice) => void)[] = [];

  list(): LibusbDevice[] {
    return [...this.devices];
  }
  onHotplug(listener: (event: 'attach' | 'detach', dev: LibusbDevice) => void): () => void {
    this.listeners.push(listener);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }
  get listenerCount(): number {
    return this.listeners.length;
  }
  plug(dev: FakeLibusbDevice): void {
    this.devices.push(dev);
    for (const l of [...this.listeners]) l('attach', dev);
  }
  unplug(dev: FakeLibusbDevice): void {
    this.devices = this.devices.filter((d) => d !== dev);
    for (const l of [...this.listeners]) l('detach', dev);
  }
}

/** Let queued microtasks and promise callbacks run. */
export const settle = (): Promise<void> => new Promise((r) => setImmediate(r));
