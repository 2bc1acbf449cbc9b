/**
 * The one submit-and-complete path of a passed-through host device: every
 * libusb transfer and every libusb request (SET_CONFIGURATION, ...) it
 * starts is a Pending record here from submit to completion, as QEMU's
 * host-libusb.c keeps a USBHostRequest from usb_host_req_alloc to its
 * completion callback or usb_host_req_abort. All completion bookkeeping is
 * done here and nowhere else:
 *  - in-flight accounting: a record is live from submit until its result
 *    arrives or it is dropped (port reset, detach, configuration change,
 *    unplug); the result of a dropped record changes nothing;
 *  - exactly once: the guest packet waiting on a record is completed at
 *    most once (`finish`), or given back by the controller (`cancelPacket`)
 *    and then never completed;
 *  - device gone: NO_DEVICE as a transfer result, a refused submit or a
 *    failed request tells the owner the host device went away
 *    (TransferOwner.gone; QEMU usb_host_nodev);
 *  - results become packet statuses through status-map.ts;
 *  - containment: an exception thrown while a result is handled does not
 *    leave the libusb callback — the waiting packet completes with
 *    `ioerror` and the owner fails the device (TransferOwner.failed: one
 *    error line, then handled as an unplug).
 */
import type { UsbPacket, UsbStatus } from '../packet.js';
import { LIBUSB_ERROR_OTHER, LibusbError, type TransferCallback, type TransferHandle, type TransferResult } from './libusb.js';
import { isNoDevice, packetStatusForSubmitError } from './status-map.js';

/**
 * control: a control transfer; request: a request carried out with libusb
 * calls; data: a bulk/interrupt transfer; iso: an isochronous transfer.
 */
export type PendingKind = 'control' | 'request' | 'data' | 'iso';

/** The records of one endpoint, oldest first (EndpointQueue). */
export interface PendingQueue {
  readonly address: number;
  readonly pending: Pending[];
}

export interface Pending {
  readonly kind: PendingKind;
  /** The guest packet waiting for this, or null once completed, cancelled or orphaned. */
  packet: UsbPacket | null;
  handle: TransferHandle | null;
  readonly queue: PendingQueue | null;
}

export interface TransferOwner {
  /** Hand a completed packet to the port (UsbPortHooks.complete), if attached. */
  complete(p: UsbPacket): void;
  /** The host device went away (NO_DEVICE). */
  gone(reason: string): void;
  /** Our own code failed handling a result: log one error line and fail the device. */
  failed(reason: string): void;
}

/** Counters the device reports (HostUsbDevice.stats). */
export interface CompletionStats {
  completed: number;
  cancelled: number;
}

export const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** The libusb_error of a refused call (LIBUSB_ERROR_OTHER when it threw something else). */
export const errnoOf = (e: unknown): number => (e instanceof LibusbError ? e.errno : LIBUSB_ERROR_OTHER);

export class TransferTracker {
  private readonly live = new Set<Pending>();

  constructor(
    private readonly owner: TransferOwner,
    private readonly stats: CompletionStats,
  ) {}

  /** libusb transfers or requests not yet finished (including orphaned IN transfers). */
  get size(): number {
    return this.live.size;
  }

  /** Packets answered `async` and not yet completed or cancelled. */
  get packetsWaiting(): number {
    let n = 0;
    for (const p of this.live) if (p.packet) n++;
    return n;
  }

  isLive(pend: Pending | null): boolean {
    return pend !== null && this.live.has(pend);
  }

  /**
   * Start a libusb transfer for `packet` (or for nobody: read-ahead,
   * write-behind, isochronous). `start` submits it with the callback it is
   * given; `onResult` handles the result of a live record. Returns the
   * record and 0, or null and the libusb error of a refused submit (the
   * packet then answers nodev, QEMU's answer to any refused submit).
   * `what` names the transfer in messages ("endpoint 0x81").
   */
  submit(
    kind: PendingKind,
    packet: UsbPacket | null,
    queue: PendingQueue | null,
    what: string,
    start: (cb: TransferCallback) => TransferHandle,
    onResult: (r: TransferResult, pend: Pending) => void,
  ): { pend: Pending | null; errno: number } {
    const pend = this.track(kind, packet, queue);
    try {
      pend.handle = start((r) => this.settle(pend, isNoDevice(r.status) ? `NO_DEVICE on ${what}` : null, what, () => onResult(r, pend)));
    } catch (e) {
      this.untrack(pend);
      pend.packet = null;
      const errno = errnoOf(e);
      if (packet) packet.status = packetStatusForSubmitError(errno);
      if (isNoDevice(errno)) this.owner.gone(`submit failed: ${messageOf(e)}`);
      return { pend: null, errno };
    }
    if (packet) packet.status = 'async';
    return { pend, errno: 0 };
  }

  /**
   * A request carried out with libusb calls rather than one transfer: the
   * packet answers `async` and completes with `ack` when `op` resolves, or
   * with what `onError` answers when it rejects (nodev instead, and the
   * device is gone, for NO_DEVICE). A request dropped meanwhile (reset)
   * completes nothing.
   */
  request(packet: UsbPacket, what: string, op: () => Promise<void>, onError: (e: unknown) => UsbStatus): Pending {
    const pend = this.track('request', packet, null);
    packet.status = 'async';
    new Promise<void>((resolve) => resolve(op())).then(
      () => this.settle(pend, null, what, () => this.finish(pend, 'ack')),
      (e: unknown) => {
        const noDevice = isNoDevice(errnoOf(e));
        this.settle(pend, noDevice ? messageOf(e) : null, what, () => {
          const answer = onError(e);
          this.finish(pend, noDevice ? 'nodev' : answer);
        });
      },
    );
    return pend;
  }

  /** Complete the packet waiting on `pend`, if any (exactly once). */
  finish(pend: Pending, status: UsbStatus, actualLength = 0): void {
    const p = pend.packet;
    if (!p) return;
    pend.packet = null;
    p.status = status;
    p.actualLength = status === 'ack' ? actualLength : 0;
    this.stats.completed++;
    this.owner.complete(p);
  }

  /**
   * The controller gives `p` back: it is never completed. An IN data
   * transfer keeps running (its data goes to the next IN packet on the
   * endpoint); anything else is cancelled at libusb.
   */
  cancelPacket(p: UsbPacket): void {
    for (const pend of this.live) {
      if (pend.packet !== p) continue;
      pend.packet = null;
      this.stats.cancelled++;
      if (pend.kind === 'data' && pend.queue && pend.queue.address & 0x80) return;
      pend.handle?.cancel();
      return;
    }
  }

  /**
   * Stop the live records `which` selects (all by default): cancel their
   * libusb transfers and complete their packets with `status`, or forget
   * the packets (null: the controller has them back already, or is going
   * away). Every record is dropped even if completing one throws; the first
   * exception is rethrown afterwards.
   */
  drop(status: UsbStatus | null, which?: (pend: Pending) => boolean): void {
    let failure: { e: unknown } | null = null;
    for (const pend of [...this.live]) {
      if (which && !which(pend)) continue;
      this.untrack(pend);
      try {
        if (status) this.finish(pend, status);
        else pend.packet = null;
      } catch (e) {
        failure ??= { e };
      }
      pend.handle?.cancel();
    }
    if (failure) throw failure.e;
  }

  private track(kind: PendingKind, packet: UsbPacket | null, queue: PendingQueue | null): Pending {
    const pend: Pending = { kind, packet, handle: null, queue };
    this.live.add(pend);
    queue?.pending.push(pend);
    return pend;
  }

  private untrack(pend: Pending): void {
    this.live.delete(pend);
    if (pend.queue) {
      const k = pend.queue.pending.indexOf(pend);
      if (k >= 0) pend.queue.pending.splice(k, 1);
    }
  }

  /** A result arrived: account for it, then handle it if the record is still live, containing any exception. */
  private settle(pend: Pending, goneReason: string | null, what: string, handle: () => void): void {
    const live = this.live.has(pend);
    this.untrack(pend);
    try {
      if (goneReason) this.owner.gone(goneReason);
      if (live) handle();
    } catch (e) {
      try {
        this.finish(pend, 'ioerror');
      } catch {
        // the port's complete hook threw as well: reported once, below
      }
      this.owner.failed(`error handling the result of ${what}: ${messageOf(e)}`);
    }
  }
}
