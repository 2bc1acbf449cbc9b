/**
 * What became of an active TD, read off its control/status word before the
 * transaction and the one the model wrote back (UHCI DG §3.2.2). Pure; the
 * decoder applies it.
 */
import { TD_CTRL, ctrlActualLength, tokenMaxLen, tokenPid } from '../uhci/descriptors.js';
import { PID_IN } from '../usb/packet.js';
import type { TdResult } from './decoded-trace.js';

export function writeBackResult(before: number, after: number, token: number): TdResult {
  const c = TD_CTRL.bit;
  if (after & c.ACTIVE) {
    // Still active: a CRC/timeout counted against C_ERR (the counter moved or CRC/TO just appeared) is a retry, else a NAK.
    if (after & c.CRCTO && !(before & c.CRCTO && (after & c.CERR) === (before & c.CERR))) return 'retry';
    return 'nak';
  }
  if (after & c.BABBLE) return 'babble';
  if (after & c.STALLED) return 'stall';
  if (after & c.CRCTO) return 'crc-timeout';
  if (after & c.DBE) return 'data-buffer-error';
  if (after & c.BITSTUFF) return 'bitstuff';
  return tokenPid(token) === PID_IN && ctrlActualLength(after) < tokenMaxLen(token) ? 'short' : 'ok';
}
