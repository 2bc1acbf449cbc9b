/**
 * Placeholder wire timer used until the bit-accurate model is wired in:
 * counts bytes plus a fixed protocol overhead.
 */
import type { WireTimer } from './wire-timer.js';

export const defaultWireTimer: WireTimer = {
  frameBits: (sofmod) => 11936 + sofmod,
  transactionBits: (_pid, lowSpeed, _iso, _a, _e, _t, _data, length, outcome) => {
    const bytes = outcome === 'data' ? length + 13 : 10;
    return bytes * 8 * (lowSpeed ? 8 : 1);
  },
  canStart: (elapsed, cost, frameBits) => elapsed + cost <= frameBits,
};
