/**
 * The engine's reusable packet and data buffer: one UsbPacket over one
 * MaxLen-sized buffer, with a cached view per length, so a synchronous
 * transaction allocates nothing. A device that keeps a packet (async) owns
 * it and its buffer from then on, and the scratch starts a new pair.
 */
import { PID_IN, UsbPacket } from '../usb/packet.js';
import { MAX_TD_LENGTH } from './td-status.js';

export class PacketScratch {
  private buf = new Uint8Array(MAX_TD_LENGTH);
  private views: (Uint8Array | undefined)[] = [];
  packet = new UsbPacket(PID_IN, 0, 0, this.buf);

  /** The first `len` bytes of the buffer (0 ≤ len ≤ MAX_TD_LENGTH). */
  view(len: number): Uint8Array {
    let v = this.views[len];
    if (!v) {
      v = this.buf.subarray(0, len);
      this.views[len] = v;
    }
    return v;
  }

  /** A device kept `packet` and its buffer: start a new pair. */
  renew(): void {
    this.buf = new Uint8Array(MAX_TD_LENGTH);
    this.views = [];
    this.packet = new UsbPacket(PID_IN, 0, 0, this.buf);
  }
}
