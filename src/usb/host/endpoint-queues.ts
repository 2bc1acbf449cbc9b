/**
 * The data endpoints of the configuration and alternate settings the guest
 * selected (QEMU usb_host_ep_update), each with its queue: the transfers in
 * flight on it and what it holds between packets (an IN result nobody
 * waited for, read-ahead data, write-behind bytes). Endpoint 0 is not here
 * (host-control.ts).
 */
import type { UsbPacket, UsbStatus } from '../packet.js';
import { endpointTransferType, type HostConfigInfo, type TransferResult, type TransferType } from './libusb.js';
import type { Pending, PendingQueue, TransferTracker } from './transfer-tracker.js';

/** A read-ahead transfer's result, served as the device's packets (bulk-stream.ts). */
export interface InStream {
  data: Uint8Array;
  offset: number;
  /** The device ended the transfer with a zero-length packet not yet served. */
  zlp: boolean;
  /** 'ack', or the transfer's error, served after the data. */
  end: UsbStatus;
}

export interface EndpointQueue extends PendingQueue {
  readonly address: number;
  readonly type: Exclude<TransferType, 'control'>;
  readonly maxPacketSize: number;
  readonly interfaceNumber: number;
  readonly pending: Pending[];
  /** IN: a finished transfer nobody was waiting for. */
  buffered: TransferResult | null;
  /** Isochronous transfers refused by the backend. */
  unsupported: boolean;
  /** Bulk IN read-ahead: finished transfers being served packet by packet, oldest first. */
  streams: InStream[];
  /** Bulk OUT write-behind: acknowledged bytes not yet submitted. */
  outChunks: Uint8Array[];
  outChunkBytes: number;
  /** Bulk OUT write-behind: submitted bytes not yet confirmed. */
  outInFlightBytes: number;
  /** Bulk OUT write-behind: a failed transfer, answered to the next OUT packet. */
  outError: UsbStatus | null;
  outFlushQueued: boolean;
  /** Bulk IN read-ahead: an error was served; read ahead again only after a flush (CLEAR_HALT). */
  inHalted: boolean;
}

/** "endpoint 0x81", for messages. */
export const endpointName = (q: PendingQueue): string => `endpoint 0x${q.address.toString(16)}`;

/** Forget what a queue holds between packets (not its transfers). */
function clearQueue(q: EndpointQueue): void {
  q.buffered = null;
  q.streams = [];
  q.outChunks = [];
  q.outChunkBytes = 0;
  q.outInFlightBytes = 0;
  q.outError = null;
  q.inHalted = false;
}

/**
 * A transfer is already in flight on this endpoint: the packet NAKs while
 * another packet waits for it, or else (a read-ahead, or an orphan whose
 * packet was cancelled) takes it over and goes async. False: nothing runs.
 */
export function joinRunning(p: UsbPacket, q: EndpointQueue): boolean {
  const running = q.pending[0];
  if (!running) return false;
  if (running.packet) {
    p.status = 'nak';
  } else {
    running.packet = p;
    p.status = 'async';
  }
  return true;
}

export class EndpointQueues {
  private readonly table = new Map<number, EndpointQueue>();

  constructor(private readonly tracker: TransferTracker) {}

  get(address: number): EndpointQueue | undefined {
    return this.table.get(address);
  }

  /** `q` is still the queue of its endpoint (no configuration or interface change since). */
  current(q: EndpointQueue): boolean {
    return this.table.get(q.address) === q;
  }

  /** No configuration: no data endpoints. */
  clear(): void {
    this.table.clear();
  }

  /** Rebuild the table for configuration `cfg` with these alternate settings (interface → alternate). */
  rebuild(cfg: HostConfigInfo | undefined, altSettings: ReadonlyMap<number, number>): void {
    this.table.clear();
    if (!cfg) return;
    for (const [n, alt] of altSettings) {
      const intf = cfg.interfaces.find((i) => i.number === n && i.alternate === alt);
      if (!intf) continue;
      for (const e of intf.endpoints) {
        const type = endpointTransferType(e.attributes);
        if (type === 'control' || (e.address & 0x0f) === 0 || this.table.has(e.address)) continue;
        this.table.set(e.address, {
          address: e.address,
          type,
          maxPacketSize: e.maxPacketSize & 0x7ff,
          interfaceNumber: n,
          pending: [],
          buffered: null,
          unsupported: false,
          streams: [],
          outChunks: [],
          outChunkBytes: 0,
          outInFlightBytes: 0,
          outError: null,
          outFlushQueued: false,
          inHalted: false,
        });
      }
    }
  }

  /** Forget what every queue holds (after their transfers were dropped). */
  clearAll(): void {
    for (const q of this.table.values()) clearQueue(q);
  }

  /** Configuration/interface change: data transfers are cancelled, waiting packets get ioerror. */
  dropData(): void {
    this.tracker.drop('ioerror', (pend) => pend.queue !== null);
    this.clearAll();
  }

  /** CLEAR_FEATURE(ENDPOINT_HALT): forget what the endpoint had in flight or buffered. */
  flush(address: number): void {
    const q = this.table.get(address);
    if (!q) return;
    this.tracker.drop('ioerror', (pend) => pend.queue === q);
    clearQueue(q);
  }

  /**
   * SET_FEATURE(ENDPOINT_HALT) from the guest on an IN endpoint: what was
   * read ahead must not be served after the halt, so it is dropped, and a
   * prefetch nobody waits for is cancelled (its data, if it still arrives,
   * is discarded).
   */
  dropReadAhead(address: number): void {
    const q = this.table.get(address);
    if (!q || !(address & 0x80)) return;
    q.streams = [];
    this.tracker.drop(null, (pend) => pend.queue === q && !pend.packet);
  }
}
