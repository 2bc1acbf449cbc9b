/**
 * What the schedule engine needs from the wire-time model: the cost of a
 * transaction in full-speed bit times, the frame length, and whether a
 * transaction may still start before EOF. The real model lives in
 * timing.ts; this interface keeps the engine independent of it.
 */
export interface WireTimer {
  /** Bit times available in one frame after SOF, for the given SOFMOD value. */
  frameBits(sofmod: number): number;
  /**
   * Full-speed bit times a transaction occupies on the wire.
   * `outcome`: 'data' (data packet + handshake), 'nak' / 'stall' (token [+ data for OUT] + handshake),
   * 'timeout' (token [+ data] + turnaround timeout).
   * `data`/`length`: the bytes of the data packet (OUT/SETUP: sent; IN: received).
   */
  transactionBits(
    pid: number,
    lowSpeed: boolean,
    iso: boolean,
    devaddr: number,
    endpoint: number,
    toggle: number,
    data: Uint8Array,
    length: number,
    outcome: 'data' | 'nak' | 'stall' | 'timeout',
  ): number;
  /** May a transaction costing `costBits` start at `elapsedBits` into a frame of `frameBits`? */
  canStart(elapsedBits: number, costBits: number, frameBits: number, maxp64: boolean): boolean;
}
