/**
 * A LibusbDevice whose "real device" is an emulated one (e.g. GadgetZero):
 * libusb calls become packets on that device, and results come back
 * asynchronously (microtasks), as libusb's would. Lets tests run host
 * passthrough end to end, guest driver → UHCI → HostUsbDevice → "libusb" →
 * device, without USB hardware.
 */
import { PID_IN, PID_OUT, PID_SETUP, UsbPacket, type UsbDevice } from '../../../src/usb/packet.js';
import type { DeviceDescriptor } from '../../../src/usb/descriptors.js';
import {
  LIBUSB_ERROR_PIPE,
  LibusbError,
  type HostDeviceInfo,
  type LibusbDevice,
  type TransferCallback,
  type TransferHandle,
  type TransferStatus,
  type TransferType,
} from '../../../src/usb/host/libusb.js';

/** The address the emulated device has "on the host bus". */
export const HOST_ADDRESS = 5;

export class EmulatedLibusbDevice implements LibusbDevice {
  readonly info: HostDeviceInfo;
  readonly calls: string[] = [];

  constructor(
    readonly target: UsbDevice,
    desc: DeviceDescriptor,
    readonly strings: Map<number, string>,
  ) {
    this.info = {
      busNumber: 3,
      deviceAddress: HOST_ADDRESS,
      portNumbers: [1],
      speed: target.speed,
      vendorId: desc.idVendor,
      productId: desc.idProduct,
      bcdUSB: desc.bcdUSB,
      bcdDevice: desc.bcdDevice,
      deviceClass: desc.deviceClass,
      maxPacketSize0: desc.maxPacketSize0,
      iManufacturer: desc.iManufacturer,
      iProduct: desc.iProduct,
      iSerialNumber: desc.iSerialNumber,
      numConfigurations: desc.configs.length,
      configs: desc.configs.map((c) => ({
        value: c.value,
        attributes: c.attributes,
        interfaces: c.interfaces.map((i) => ({
          number: i.number,
          alternate: i.alternate,
          interfaceClass: i.interfaceClass,
          subClass: i.subClass,
          protocol: i.protocol,
          endpoints: i.endpoints.map((e) => ({ ...e })),
        })),
      })),
    };
    // The host enumerated it: reset and address it.
    target.attach({ complete: () => {}, wakeup: () => {} });
    target.reset();
    this.controlSync(Uint8Array.of(0, 5, HOST_ADDRESS, 0, 0, 0, 0, 0), new Uint8Array(0));
  }

  /** Run one control transfer on the target with packets. */
  private controlSync(setup: Uint8Array, out: Uint8Array): { status: TransferStatus; data: Uint8Array } {
    const addr = this.target.address;
    const s = new UsbPacket(PID_SETUP, addr, 0, Uint8Array.from(setup));
    this.target.handlePacket(s);
    if (s.status !== 'ack') return { status: 'stall', data: new Uint8Array(0) };
    const isIn = (setup[0]! & 0x80) !== 0;
    const wLength = setup[6]! | (setup[7]! << 8);
    const mps = this.info.maxPacketSize0;
    const got: number[] = [];
    if (isIn) {
      while (got.length < wLength) {
        const p = new UsbPacket(PID_IN, addr, 0, new Uint8Array(Math.min(mps, wLength - got.length)));
        this.target.handlePacket(p);
        if (p.status !== 'ack') return { status: 'stall', data: new Uint8Array(0) };
        got.push(...p.data.subarray(0, p.actualLength));
        if (p.actualLength < mps) break;
      }
      const st = new UsbPacket(PID_OUT, addr, 0, new Uint8Array(0));
      this.target.handlePacket(st);
      return { status: st.status === 'ack' ? 'completed' : 'stall', data: Uint8Array.from(got) };
    }
    for (let o = 0; o < wLength; o += mps) {
      const p = new UsbPacket(PID_OUT, addr, 0, out.slice(o, Math.min(wLength, o + mps)));
      this.target.handlePacket(p);
      if (p.status !== 'ack') return { status: 'stall', data: new Uint8Array(0) };
    }
    const st = new UsbPacket(PID_IN, addr, 0, new Uint8Array(0));
    this.target.handlePacket(st);
    return { status: st.status === 'ack' ? 'completed' : 'stall', data: new Uint8Array(0) };
  }

  private async standard(name: string, setup: number[]): Promise<void> {
    this.calls.push(name);
    const r = this.controlSync(Uint8Array.from(setup), new Uint8Array(0));
    if (r.status !== 'completed') throw new LibusbError(LIBUSB_ERROR_PIPE, name);
  }

  open(): void {
    this.calls.push('open');
  }
  close(): void {
    this.calls.push('close');
  }
  kernelDriverActive(): boolean {
    return false;
  }
  detachKernelDriver(): void {}
  attachKernelDriver(): void {}
  claimInterface(iface: number): void {
    this.calls.push(`claim ${iface}`);
  }
  async releaseInterface(iface: number): Promise<void> {
    this.calls.push(`release ${iface}`);
  }
  activeConfiguration(): number {
    return 0;
  }
  setConfiguration(value: number): Promise<void> {
    return this.standard(`setConfiguration ${value}`, [0, 9, value, 0, 0, 0, 0, 0]);
  }
  setInterface(iface: number, alternate: number): Promise<void> {
    return this.standard(`setInterface ${iface} ${alternate}`, [1, 11, alternate, 0, iface, 0, 0, 0]);
  }
  clearHalt(ep: number): Promise<void> {
    return this.standard(`clearHalt ${ep}`, [2, 1, 0, 0, ep, 0, 0, 0]);
  }
  async reset(): Promise<void> {
    this.calls.push('reset');
    this.target.reset();
    this.controlSync(Uint8Array.of(0, 5, HOST_ADDRESS, 0, 0, 0, 0, 0), new Uint8Array(0));
  }
  async getString(index: number): Promise<string | undefined> {
    return this.strings.get(index);
  }

  controlTransfer(setup: Uint8Array, data: Uint8Array, _timeoutMs: number, cb: TransferCallback): TransferHandle {
    this.calls.push(`control ${Buffer.from(setup).toString('hex')}`);
    let cancelled = false;
    queueMicrotask(() => {
      if (cancelled) return cb({ status: 'cancelled', data: new Uint8Array(0), actualLength: 0 });
      const r = this.controlSync(setup, data);
      cb({ status: r.status, data: r.data, actualLength: r.data.length || (r.status === 'completed' ? data.length : 0) });
    });
    return { cancel: () => void (cancelled = true) };
  }

  transfer(endpointAddress: number, _type: Exclude<TransferType, 'control'>, lengthOrData: number | Uint8Array, _timeoutMs: number, cb: TransferCallback): TransferHandle {
    let cancelled = false;
    const isIn = typeof lengthOrData === 'number';
    const attempt = (): void => {
      if (cancelled) return cb({ status: 'cancelled', data: new Uint8Array(0), actualLength: 0 });
      const p = isIn
        ? new UsbPacket(PID_IN, this.target.address, endpointAddress & 0xf, new Uint8Array(lengthOrData))
        : new UsbPacket(PID_OUT, this.target.address, endpointAddress & 0xf, Uint8Array.from(lengthOrData));
      this.target.handlePacket(p);
      if (p.status === 'nak') {
        setImmediate(attempt); // the host controller retries later
        return;
      }
      const status: TransferStatus = p.status === 'ack' ? 'completed' : p.status === 'stall' ? 'stall' : p.status === 'babble' ? 'overflow' : 'error';
      cb({ status, data: isIn ? p.data.slice(0, p.actualLength) : new Uint8Array(0), actualLength: p.actualLength });
    };
    queueMicrotask(attempt);
    return { cancel: () => void (cancelled = true) };
  }
}
