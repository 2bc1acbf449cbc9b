/**
 * Isochronous endpoints of a passed-through device. UHCI retires an
 * isochronous TD after one attempt (UHCI DG §3.2.2, IOS), so these packets
 * never answer `async`: IN hands over the last completed transfer or an
 * empty packet, keeping one transfer in flight; OUT is sent without
 * waiting, up to `maxOutInFlight` in flight, extra packets are dropped
 * (counted in stats.isoDropped). The `usb` 2.x backend cannot do
 * isochronous transfers (LIBUSB_ERROR_NOT_SUPPORTED); such packets then
 * answer `ioerror`.
 */
import type { UsbPacket } from '../packet.js';
import { LIBUSB_ERROR_NOT_SUPPORTED } from './libusb.js';
import type { HostContext } from './host-context.js';
import { endpointName, type EndpointQueue, type EndpointQueues } from './endpoint-queues.js';
import { deliver } from './packet-transfers.js';

export class IsochronousTransfers {
  constructor(
    private readonly ctx: HostContext,
    private readonly endpoints: EndpointQueues,
    private readonly stats: { isoDropped: number },
  ) {}

  in(p: UsbPacket, q: EndpointQueue): void {
    if (q.buffered) {
      const r = q.buffered;
      q.buffered = null;
      const { status, length } = deliver(p, r);
      // Isochronous data has no handshake: a failed transfer is a damaged packet.
      p.status = status === 'ack' || status === 'babble' ? status : 'ioerror';
      p.actualLength = length;
    } else {
      p.actualLength = 0; // nothing this frame: an empty packet
    }
    if (q.pending.length === 0 && !this.submit(q, Math.max(q.maxPacketSize, p.data.length)) && q.unsupported) {
      p.status = 'ioerror';
      p.actualLength = 0;
    }
  }

  out(p: UsbPacket, q: EndpointQueue): void {
    if (q.unsupported) {
      p.status = 'ioerror';
      return;
    }
    if (q.pending.length >= this.ctx.opts.maxOutInFlight) {
      this.stats.isoDropped++;
      p.actualLength = p.data.length;
      return;
    }
    if (!this.submit(q, Uint8Array.from(p.data))) {
      p.status = 'ioerror';
      return;
    }
    p.actualLength = p.data.length;
  }

  private submit(q: EndpointQueue, lengthOrData: number | Uint8Array): boolean {
    if (q.unsupported) return false;
    const { tracker, dev, opts } = this.ctx;
    const { errno } = tracker.submit('iso', null, q, endpointName(q), (cb) => dev.transfer(q.address, 'isochronous', lengthOrData, opts.dataTimeoutMs, cb), (r) => {
      if (q.address & 0x80 && r.status !== 'cancelled' && this.ctx.usable && this.endpoints.current(q)) q.buffered = r;
    });
    if (errno === LIBUSB_ERROR_NOT_SUPPORTED) {
      q.unsupported = true;
      this.ctx.warn('iso-unsupported', `${this.ctx.hostName}: isochronous ${endpointName(q)} not supported by the libusb backend`);
    }
    return errno === 0;
  }
}
