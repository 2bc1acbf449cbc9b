/**
 * From completed TDs to transfers: control transfers are assembled from
 * their SETUP, data and status stages (USB 2.0 §8.5.3), interrupt, bulk and
 * isochronous TDs are one transfer each (NAKs are not transfers). What the
 * devices said about themselves on the way (bMaxPacketSize0 in the device
 * descriptor, endpoint descriptors in the configuration) is kept in a
 * DeviceBook, per root port.
 */
import { tokenDevAddr, tokenEndpoint, tokenMaxLen, tokenPid, tokenToggle, TD_CTRL } from '../uhci/descriptors.js';
import { PID_IN, PID_SETUP } from '../usb/packet.js';
import { REQ_GET_DESCRIPTOR, REQ_SET_ADDRESS } from '../usb/requests.js';
import type { TdResult, TdVisit } from './decoded-trace.js';
import {
  DT_CONFIG,
  DT_DEVICE,
  ERRNO,
  decodeSetup,
  parseConfigEndpoints,
  type EndpointInfo,
  type SetupPacket,
} from './usb-requests.js';

/** A TD the controller retired (completed or failed). */
export interface Transaction {
  frame: number;
  tNs: number;
  /** When the walk first saw the TD active (its submission, as far as the trace can tell). */
  sinceNs: number;
  sinceFrame: number;
  port: number | null;
  devaddr: number;
  endpoint: number;
  pid: number;
  toggle: number;
  maxLen: number;
  /** OUT/SETUP data sent, or IN data received. */
  data: Uint8Array;
  result: TdResult;
  iso: boolean;
  lowSpeed: boolean;
  td: number;
}

export function transactionOf(v: TdVisit, frame: number, tNs: number): Transaction {
  const t = v.td;
  const pid = tokenPid(t.token);
  return {
    frame,
    tNs,
    sinceNs: v.activeSinceNs,
    sinceFrame: v.activeSinceFrame,
    port: v.port,
    devaddr: tokenDevAddr(t.token),
    endpoint: tokenEndpoint(t.token),
    pid,
    toggle: tokenToggle(t.token),
    maxLen: tokenMaxLen(t.token),
    data: (pid === PID_IN ? v.in : v.out) ?? new Uint8Array(0),
    result: v.result,
    iso: (t.ctrl & TD_CTRL.bit.IOS) !== 0,
    lowSpeed: (t.ctrl & TD_CTRL.bit.LS) !== 0,
    td: v.addr,
  };
}

export type TransferType = 'isochronous' | 'interrupt' | 'control' | 'bulk';

/** One transfer, as usbmon would show an URB. */
export interface Urb {
  id: number;
  type: TransferType;
  port: number | null;
  devaddr: number;
  /** Endpoint number with bit 7 set for IN. */
  endpoint: number;
  setup: SetupPacket | null;
  setupBytes: Uint8Array | null;
  submitNs: number;
  completeNs: number;
  submitFrame: number;
  completeFrame: number;
  /** 0, or a negative Linux errno as uhci-hcd reports it (see urbStatus). */
  status: number;
  /** Bytes asked for (wLength, or the TD's MaxLen). */
  requested: number;
  /** OUT data sent or IN data received. */
  data: Uint8Array;
  interval: number;
  /** First TD of the transfer. */
  td: number;
}

/**
 * URB status of a retired TD as Linux reports it (drivers/usb/host/uhci-q.c
 * uhci_map_status, which usbmon then shows): bitstuff -EPROTO; CRC/timeout
 * -EPROTO for OUT/SETUP and -EILSEQ for IN; babble -EOVERFLOW; data buffer
 * error -ENOSR; stall -EPIPE.
 */
export function urbStatus(r: TdResult, dirOut: boolean): number {
  switch (r) {
    case 'ok':
    case 'short':
      return 0;
    case 'bitstuff':
      return -ERRNO.EPROTO;
    case 'crc-timeout':
      return dirOut ? -ERRNO.EPROTO : -ERRNO.EILSEQ;
    case 'babble':
      return -ERRNO.EOVERFLOW;
    case 'data-buffer-error':
      return -ERRNO.ENOSR;
    case 'stall':
      return -ERRNO.EPIPE;
    default:
      return -ERRNO.EPROTO;
  }
}

export interface PortDevice {
  /** bMaxPacketSize0 once a device descriptor was seen since the last reset. */
  ep0MaxPacket: number | null;
  /** Endpoints of the configuration descriptor, by bEndpointAddress. */
  endpoints: Map<number, EndpointInfo>;
  vendorId: number | null;
  productId: number | null;
  address: number;
}

/** What the trace taught about the devices, per root port. */
export class DeviceBook {
  readonly ports = new Map<number, PortDevice>();
  private readonly byAddress = new Map<number, number>();

  device(port: number): PortDevice {
    let d = this.ports.get(port);
    if (!d) {
      d = { ep0MaxPacket: null, endpoints: new Map(), vendorId: null, productId: null, address: 0 };
      this.ports.set(port, d);
    }
    return d;
  }

  /** Port of the device at `devaddr`, as last seen. */
  portOf(devaddr: number): number | null {
    return this.byAddress.get(devaddr) ?? null;
  }

  seen(port: number, devaddr: number): void {
    this.byAddress.set(devaddr, port);
    this.device(port).address = devaddr;
  }

  /** wMaxPacketSize for (port, endpoint, direction), when known. */
  maxPacket(port: number, endpoint: number, dirIn: boolean): number | null {
    const d = this.ports.get(port);
    if (!d) return null;
    if (endpoint === 0) return d.ep0MaxPacket;
    const e = d.endpoints.get(endpoint | (dirIn ? 0x80 : 0));
    return e ? e.maxPacket : null;
  }

  endpointInfo(port: number | null, endpoint: number, dirIn: boolean): EndpointInfo | null {
    if (port === null) return null;
    return this.ports.get(port)?.endpoints.get(endpoint | (dirIn ? 0x80 : 0)) ?? null;
  }

  /** USB reset: the guest will guess ep0's max packet again (Linux hub_port_init), the address is 0. */
  reset(port: number): void {
    const d = this.device(port);
    d.ep0MaxPacket = null;
    d.address = 0;
  }

  /** Unplug / plug: forget everything about the port. */
  forget(port: number): void {
    this.ports.delete(port);
    for (const [a, p] of this.byAddress) if (p === port) this.byAddress.delete(a);
  }

  learn(port: number, setup: SetupPacket, data: Uint8Array): void {
    if (setup.bmRequestType !== 0x80 || setup.bRequest !== REQ_GET_DESCRIPTOR) return;
    const type = setup.wValue >> 8;
    const d = this.device(port);
    if (type === DT_DEVICE) {
      if (data.length >= 8 && data[1] === DT_DEVICE) d.ep0MaxPacket = data[7]!;
      if (data.length >= 12) {
        d.vendorId = data[8]! | (data[9]! << 8);
        d.productId = data[10]! | (data[11]! << 8);
      }
    } else if (type === DT_CONFIG && data.length >= 2 && data[1] === DT_CONFIG) {
      for (const e of parseConfigEndpoints(data)) {
        const old = d.endpoints.get(e.address);
        // Alternate settings may repeat an endpoint: keep the largest size.
        if (!old || e.maxPacket > old.maxPacket) d.endpoints.set(e.address, e);
      }
    }
  }
}

interface OpenControl {
  setup: SetupPacket;
  setupBytes: Uint8Array;
  dirIn: boolean;
  chunks: Uint8Array[];
  length: number;
  inStatus: boolean;
  submitNs: number;
  submitFrame: number;
  port: number | null;
  devaddr: number;
  td: number;
}

function concat(chunks: Uint8Array[], n: number): Uint8Array {
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** Turns transactions into URB-like transfers; feeds the DeviceBook. */
export class TransferAssembler {
  private nextId = 1;
  private readonly open = new Map<string, OpenControl>();

  constructor(
    readonly book: DeviceBook,
    private readonly emit: (u: Urb) => void,
  ) {}

  private key(port: number | null, devaddr: number): string {
    return `${port ?? '?'}:${devaddr}`;
  }

  transaction(t: Transaction): void {
    if (t.port !== null) this.book.seen(t.port, t.devaddr);
    const port = t.port ?? this.book.portOf(t.devaddr);
    if (t.endpoint === 0 && !t.iso) {
      this.control(t, port);
      return;
    }
    const dirIn = t.pid === PID_IN;
    const info = this.book.endpointInfo(port, t.endpoint, dirIn);
    const type: TransferType = t.iso ? 'isochronous' : info ? (info.type === 1 ? 'isochronous' : info.type === 2 ? 'bulk' : info.type === 3 ? 'interrupt' : 'control') : 'bulk';
    this.emit({
      id: this.nextId++,
      type,
      port,
      devaddr: t.devaddr,
      endpoint: t.endpoint | (dirIn ? 0x80 : 0),
      setup: null,
      setupBytes: null,
      submitNs: t.sinceNs,
      completeNs: t.tNs,
      submitFrame: t.sinceFrame,
      completeFrame: t.frame,
      status: urbStatus(t.result, t.pid !== PID_IN),
      requested: t.maxLen,
      data: t.data,
      interval: info ? info.interval : 0,
      td: t.td,
    });
  }

  private control(t: Transaction, port: number | null): void {
    const key = this.key(port, t.devaddr);
    const ok = t.result === 'ok' || t.result === 'short';
    if (t.pid === PID_SETUP) {
      const prev = this.open.get(key);
      if (prev) this.finish(key, prev, -ERRNO.ECONNRESET, t.frame, t.tNs);
      const setup = decodeSetup(t.data);
      if (!setup) return;
      const o: OpenControl = {
        setup,
        setupBytes: t.data.slice(0, 8),
        dirIn: (setup.bmRequestType & 0x80) !== 0,
        chunks: [],
        length: 0,
        inStatus: false,
        submitNs: t.sinceNs,
        submitFrame: t.sinceFrame,
        port,
        devaddr: t.devaddr,
        td: t.td,
      };
      this.open.set(key, o);
      if (!ok) this.finish(key, o, urbStatus(t.result, true), t.frame, t.tNs);
      return;
    }
    const o = this.open.get(key);
    if (!o) return; // a stray stage without its SETUP (the trace began mid-transfer)
    const dirIn = t.pid === PID_IN;
    const dataStage = o.setup.wLength > 0 && dirIn === o.dirIn;
    if (dataStage) {
      if (!ok) {
        this.finish(key, o, urbStatus(t.result, !dirIn), t.frame, t.tNs);
        return;
      }
      if (t.data.length) {
        o.chunks.push(t.data);
        o.length += t.data.length;
        if (port !== null && o.dirIn) this.book.learn(port, o.setup, concat(o.chunks, o.length));
      }
      return;
    }
    // Status stage (opposite direction, or IN after a request without data).
    this.finish(key, o, ok ? 0 : urbStatus(t.result, !dirIn), t.frame, t.tNs);
  }

  private finish(key: string, o: OpenControl, status: number, frame: number, tNs: number): void {
    this.open.delete(key);
    const data = concat(o.chunks, o.length);
    if (status === 0 && o.port !== null) {
      if (o.setup.bRequest === REQ_SET_ADDRESS && o.setup.bmRequestType === 0) this.book.seen(o.port, o.setup.wValue & 0x7f);
    }
    this.emit({
      id: this.nextId++,
      type: 'control',
      port: o.port,
      devaddr: o.devaddr,
      endpoint: o.dirIn ? 0x80 : 0,
      setup: o.setup,
      setupBytes: o.setupBytes,
      submitNs: o.submitNs,
      completeNs: tNs,
      submitFrame: o.submitFrame,
      completeFrame: frame,
      status,
      requested: o.setup.wLength,
      data,
      interval: 0,
      td: o.td,
    });
  }

  /** Transfers left open at the end (never completed). */
  pending(): number {
    return this.open.size;
  }
}
