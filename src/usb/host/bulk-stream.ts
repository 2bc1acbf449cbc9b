/**
 * Bulk pipelining on a passed-through device (opt-in, off by default;
 * QEMU's UHCI gets the same effect from queue filling, which our schedule
 * engine does not do).
 *
 * Read-ahead (`bulkInReadAhead`) keeps a libusb transfer of that many bytes
 * in flight on each bulk IN endpoint and serves the guest's IN packets from
 * what it returned, one max-packet chunk per packet, synchronously. The
 * chunks are exactly the device's packets: a transfer that ends early ended
 * with a short packet (served as is) or, when its length is a multiple of
 * the max packet, with a zero-length packet (served as an empty packet); a
 * transfer that failed after some data serves the data first, then its
 * error (stall, ...) on the next packet; nothing more is read ahead until
 * the guest clears the halt. Data read ahead and not yet served is dropped
 * by CLEAR_FEATURE(HALT), SET_CONFIGURATION, SET_INTERFACE and resets, as a
 * device FIFO flush would.
 *
 * Write-behind (`bulkOutWriteBehind`) acknowledges bulk OUT packets at once
 * and sends them in coalesced libusb transfers (a short or empty packet ends
 * a transfer; full packets are sent after the frame walk when no
 * write-behind transfer is running or half the window (at most 4 KiB) has
 * gathered, else when the running one completes), with at most that many
 * bytes not yet confirmed by the device; beyond it the guest is NAKed. A
 * write-behind transfer that fails makes the next OUT packet on that
 * endpoint answer the failure (for a stall: the guest sees the halt one
 * packet later than the wire would show it).
 */
import type { UsbPacket } from '../packet.js';
import type { TransferResult } from './libusb.js';
import type { HostContext } from './host-context.js';
import { endpointName, joinRunning, type EndpointQueue, type EndpointQueues, type InStream } from './endpoint-queues.js';
import { packetStatusForSubmitError, packetStatusForTransfer } from './status-map.js';

function streamOf(r: TransferResult, requested: number, maxPacket: number): InStream {
  const status = packetStatusForTransfer(r.status);
  const n = r.data.length;
  // Ended early on a packet boundary without error: the device sent a zero-length packet.
  const zlp = status === 'ack' && n < requested && n % maxPacket === 0;
  return { data: r.data, offset: 0, zlp, end: status };
}

/** Serve the next device packet from the read-ahead streams into `p`. */
function serveStream(p: UsbPacket, q: EndpointQueue): void {
  const st = q.streams[0]!;
  const remain = st.data.length - st.offset;
  if (remain > 0) {
    const n = Math.min(q.maxPacketSize, remain);
    const chunk = st.data.subarray(st.offset, st.offset + n);
    st.offset += n;
    if (n > p.data.length) {
      p.status = 'babble';
      p.actualLength = 0;
    } else {
      p.data.set(chunk);
      p.status = 'ack';
      p.actualLength = n;
    }
  } else if (st.zlp) {
    st.zlp = false;
    p.status = 'ack';
    p.actualLength = 0;
  } else {
    p.status = st.end;
    p.actualLength = 0;
    q.streams.shift();
    q.inHalted = true;
    return;
  }
  if (st.offset >= st.data.length && !st.zlp && st.end === 'ack') q.streams.shift();
}

export class BulkStreams {
  constructor(
    private readonly ctx: HostContext,
    private readonly endpoints: EndpointQueues,
  ) {}

  /** Bytes read ahead and not yet served on a bulk IN endpoint. */
  readAheadBytes(address: number): number {
    const q = this.endpoints.get(address);
    if (!q) return 0;
    let n = 0;
    for (const st of q.streams) n += st.data.length - st.offset;
    return n;
  }

  /** Bulk OUT bytes acknowledged to the guest and not yet confirmed by the device. */
  writeBehindBytes(address: number): number {
    const q = this.endpoints.get(address);
    return q ? q.outChunkBytes + q.outInFlightBytes : 0;
  }

  /* Bulk IN read-ahead ------------------------------------------------- */

  in(p: UsbPacket, q: EndpointQueue): void {
    if (q.streams.length) {
      serveStream(p, q);
      this.prefetch(q);
      return;
    }
    if (joinRunning(p, q)) return;
    this.submitReadAhead(q, p);
  }

  /** Keep one read-ahead transfer in flight while little is buffered and the endpoint is not halted. */
  private prefetch(q: EndpointQueue): void {
    if (q.pending.length || q.inHalted || !this.ctx.usable) return;
    let buffered = 0;
    for (const st of q.streams) {
      if (st.end !== 'ack') return;
      buffered += st.data.length - st.offset;
    }
    if (buffered < this.ctx.opts.bulkInReadAhead) this.submitReadAhead(q, null);
  }

  /** A read-ahead transfer, for `p` (which then answers async, or nodev if refused) or for later packets. */
  private submitReadAhead(q: EndpointQueue, p: UsbPacket | null): void {
    const { tracker, dev, opts } = this.ctx;
    const mps = q.maxPacketSize || 64;
    const want = Math.max(mps, Math.floor(opts.bulkInReadAhead / mps) * mps, p ? Math.ceil(p.data.length / mps) * mps : 0);
    tracker.submit('data', p, q, endpointName(q), (cb) => dev.transfer(q.address, 'bulk', want, opts.dataTimeoutMs, cb), (r, pend) => {
      if (r.status === 'cancelled' || !this.ctx.usable || !this.endpoints.current(q)) {
        tracker.finish(pend, packetStatusForTransfer(r.status));
        return;
      }
      q.streams.push(streamOf(r, want, mps));
      const waiting = pend.packet;
      if (waiting) {
        serveStream(waiting, q);
        tracker.finish(pend, waiting.status, waiting.actualLength);
      } else {
        this.ctx.activity();
      }
      this.prefetch(q);
    });
  }

  /* Bulk OUT write-behind ---------------------------------------------- */

  out(p: UsbPacket, q: EndpointQueue): void {
    if (q.outError) {
      p.status = q.outError;
      q.outError = null;
      return;
    }
    const len = p.data.length;
    const window = this.ctx.opts.bulkOutWriteBehind;
    if (q.outChunkBytes + q.outInFlightBytes + len > window && q.outChunkBytes + q.outInFlightBytes > 0) {
      p.status = 'nak';
      return;
    }
    q.outChunks.push(Uint8Array.from(p.data));
    q.outChunkBytes += len;
    p.status = 'ack';
    p.actualLength = len;
    if (len < q.maxPacketSize) {
      this.flushOut(q); // a short or empty packet ends the device's transfer
    } else if (!q.outFlushQueued) {
      q.outFlushQueued = true;
      queueMicrotask(() => {
        q.outFlushQueued = false;
        // After the walk: send now if the device would otherwise idle, or enough has gathered;
        // else the running transfer's completion sends it (fewer, larger transfers).
        if (this.endpoints.current(q) && (q.outInFlightBytes === 0 || q.outChunkBytes >= this.outCoalesceBytes)) this.flushOut(q);
      });
    }
  }

  /** Write-behind transfers are sent early once this much has gathered (half the window, at most 4 KiB). */
  private get outCoalesceBytes(): number {
    return Math.min(4096, Math.max(1, this.ctx.opts.bulkOutWriteBehind >> 1));
  }

  /** Send the acknowledged OUT bytes as one libusb transfer. */
  private flushOut(q: EndpointQueue): void {
    if (!q.outChunks.length || !this.ctx.usable) return;
    const data = new Uint8Array(q.outChunkBytes);
    let o = 0;
    for (const c of q.outChunks) {
      data.set(c, o);
      o += c.length;
    }
    q.outChunks = [];
    q.outChunkBytes = 0;
    q.outInFlightBytes += data.length;
    const { tracker, dev, opts } = this.ctx;
    const { errno } = tracker.submit('data', null, q, endpointName(q), (cb) => dev.transfer(q.address, 'bulk', data, opts.dataTimeoutMs, cb), (r) => {
      if (!this.endpoints.current(q)) return;
      q.outInFlightBytes = Math.max(0, q.outInFlightBytes - data.length);
      const status = packetStatusForTransfer(r.status);
      if (status !== 'ack' && r.status !== 'cancelled') q.outError = status;
      else if (q.outInFlightBytes === 0) this.flushOut(q); // what gathered meanwhile
      this.ctx.activity();
    });
    if (errno) {
      q.outInFlightBytes = Math.max(0, q.outInFlightBytes - data.length);
      q.outError = packetStatusForSubmitError(errno);
    }
  }
}
