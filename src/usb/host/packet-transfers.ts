/**
 * Interrupt endpoints, and bulk endpoints without pipelining, on a
 * passed-through device: one libusb transfer per guest packet, no timeout
 * (QEMU host-libusb.c BULK_TIMEOUT / INTR_TIMEOUT 0, usb_host_handle_data).
 *  - IN: at most one transfer per endpoint, sized to the packet; further
 *    packets NAK while it runs. If the guest gives up on the packet
 *    (cancelPacket) the transfer keeps running and what it returns is handed
 *    to the next IN packet on that endpoint, so no data the device already
 *    sent is lost (QEMU cancels instead).
 *  - OUT: up to `maxOutInFlight` transfers per endpoint, more are NAKed; a
 *    cancelled OUT transfer is cancelled at libusb.
 */
import type { UsbPacket, UsbStatus } from '../packet.js';
import type { TransferResult } from './libusb.js';
import type { HostContext } from './host-context.js';
import { endpointName, joinRunning, type EndpointQueue, type EndpointQueues } from './endpoint-queues.js';
import { packetStatusForTransfer } from './status-map.js';

/** Put a finished IN transfer's result into a packet. */
export function deliver(p: UsbPacket, r: TransferResult): { status: UsbStatus; length: number } {
  const status = packetStatusForTransfer(r.status);
  if (status !== 'ack') return { status, length: 0 };
  if (r.data.length > p.data.length) return { status: 'babble', length: 0 };
  p.data.set(r.data);
  return { status: 'ack', length: r.data.length };
}

export class PacketTransfers {
  constructor(
    private readonly ctx: HostContext,
    private readonly endpoints: EndpointQueues,
  ) {}

  in(p: UsbPacket, q: EndpointQueue): void {
    if (q.buffered) {
      const r = q.buffered;
      q.buffered = null;
      const { status, length } = deliver(p, r);
      p.status = status;
      p.actualLength = length;
      return;
    }
    if (joinRunning(p, q)) return;
    const { tracker, dev, opts } = this.ctx;
    tracker.submit('data', p, q, endpointName(q), (cb) => dev.transfer(q.address, q.type, p.data.length, opts.dataTimeoutMs, cb), (r, pend) => {
      const waiting = pend.packet;
      if (waiting) {
        const { status, length } = deliver(waiting, r);
        tracker.finish(pend, status, length);
      } else if (r.status !== 'cancelled' && this.ctx.usable && this.endpoints.current(q)) {
        q.buffered = r;
        this.ctx.activity();
      }
    });
  }

  out(p: UsbPacket, q: EndpointQueue): void {
    if (q.pending.length >= this.ctx.opts.maxOutInFlight) {
      p.status = 'nak';
      return;
    }
    const len = p.data.length;
    const data = Uint8Array.from(p.data);
    const { tracker, dev, opts } = this.ctx;
    tracker.submit('data', p, q, endpointName(q), (cb) => dev.transfer(q.address, q.type, data, opts.dataTimeoutMs, cb), (r, pend) => {
      tracker.finish(pend, packetStatusForTransfer(r.status), Math.min(len, r.actualLength));
    });
  }
}
