/**
 * TD state transitions as pure functions (UHCI Design Guide §3.2.2 control
 * and status, §3.2.3 token): what a TD's control/status word becomes once
 * its transaction has an outcome, how many bytes go back to the buffer,
 * which end-of-frame interrupt it asks for and where the walk goes next.
 * The caller applies the result (ScheduleEngine's TD execution); nothing
 * here touches memory or devices. Results go into a caller-owned
 * TdTransition so that no call allocates.
 */
import { PID_IN, PID_OUT, PID_SETUP, type UsbStatus } from '../usb/packet.js';
import {
  tokenEndpoint,
  tokenMaxLen,
  tokenPid,
  TD_CTRL,
} from './descriptors.js';
import { PENDING_IOC } from './schedule-host.js';

/** Largest buffer a TD can describe: MaxLen field 0x4FF → 1280 bytes (UHCI DG §3.2.3); larger values are invalid. */
export const MAX_TD_LENGTH = 0x500;

/**
 * Where the walk goes after a TD: `complete` advances the queue (or the
 * horizontal link), `next-qh` leaves the queue for this frame, `async`
 * leaves it with the packet in flight, `stop-frame` ends the frame.
 */
export type TdOutcome = 'stop-frame' | 'complete' | 'next-qh' | 'async';

/** An error outcome of a transaction: STALL handshake, babble, or CRC/timeout (no valid answer). */
export type TdError = 'stall' | 'babble' | 'timeout';

/** The result of a transition, in the order the caller applies it. */
export interface TdTransition {
  /** End-of-frame interrupt requested before the write-back (PENDING_IOC or 0). */
  interrupt: number;
  /** The TD was retired by an error: USBSTS USB Error Interrupt (UHCI DG §2.1.2). */
  errorRetired: boolean;
  /** IN bytes to copy from the packet to the TD's buffer (0: none). */
  dataLength: number;
  /** Write `ctrl` back to the TD. */
  writeCtrl: boolean;
  /** The new control/status word. */
  ctrl: number;
  /** Short packet with SPD set: PENDING_SPD after the write-back, the queue stops here. */
  shortPacket: boolean;
  next: TdOutcome;
}

export function newTdTransition(): TdTransition {
  return { interrupt: 0, errorRetired: false, dataLength: 0, writeCtrl: false, ctrl: 0, shortPacket: false, next: 'next-qh' };
}

/**
 * Why the HC refuses a token (a process error, UHCI DG §2.1.2 HCPE), or
 * null when it is valid: an unknown PID; SETUP to an endpoint other than 0
 * (QEMU 7.2.21+ treats it as a schedule error since the CVE-2024-8354 fix,
 * and our emulated devices have no other control endpoint); MaxLen
 * 0x500..0x7FE (UHCI DG §3.2.3: "the HC ... sets HC Process Error").
 */
export function tokenProblem(token: number): string | null {
  const pid = tokenPid(token);
  if (pid !== PID_IN && pid !== PID_OUT && pid !== PID_SETUP) return `invalid PID 0x${pid.toString(16)}`;
  if (pid === PID_SETUP && tokenEndpoint(token) !== 0) return `SETUP to endpoint ${tokenEndpoint(token)}`;
  const maxLen = tokenMaxLen(token);
  if (maxLen > MAX_TD_LENGTH) return `invalid MaxLen ${maxLen}`;
  return null;
}

/**
 * The transition for a transaction the device answered with `status`
 * (`actualLength`: bytes the device moved, IN only).
 */
export function tdAfterPacket(out: TdTransition, ctrl: number, token: number, status: UsbStatus, actualLength: number): TdTransition {
  const pid = tokenPid(token);
  const maxLen = tokenMaxLen(token);
  // Isochronous TDs are retired after one attempt whatever happens (UHCI DG §3.2.2 IOS).
  if (ctrl & TD_CTRL.bit.IOS) ctrl &= ~TD_CTRL.bit.ACTIVE;
  switch (status) {
    case 'ack': {
      const len = pid === PID_IN ? Math.min(actualLength, maxLen) : maxLen;
      ctrl = (ctrl & ~TD_CTRL.bit.ACTLEN) | ((len - 1) & TD_CTRL.bit.ACTLEN);
      // A NAK bit left by an earlier attempt is cleared on success (QEMU; Windows relies on it).
      ctrl &= ~(TD_CTRL.bit.ACTIVE | TD_CTRL.bit.NAK);
      out.interrupt = ctrl & TD_CTRL.bit.IOC ? PENDING_IOC : 0;
      out.errorRetired = false;
      out.dataLength = pid === PID_IN ? len : 0;
      out.writeCtrl = true;
      out.ctrl = ctrl >>> 0;
      // Short packet with SPD: the queue stops here, the QH element is not advanced (UHCI DG §3.2.2 SPD).
      out.shortPacket = pid === PID_IN && (ctrl & TD_CTRL.bit.SPD) !== 0 && len < maxLen;
      out.next = out.shortPacket ? 'next-qh' : 'complete';
      return out;
    }
    case 'nak':
      // NAK: the TD stays active; C_ERR is not decremented (UHCI DG §3.2.2).
      out.interrupt = 0;
      out.errorRetired = false;
      out.dataLength = 0;
      out.writeCtrl = !(ctrl & TD_CTRL.bit.NAK) || !(ctrl & TD_CTRL.bit.ACTIVE);
      out.ctrl = (ctrl | TD_CTRL.bit.NAK) >>> 0;
      out.shortPacket = false;
      out.next = 'next-qh';
      return out;
    case 'stall':
      return tdAfterError(out, ctrl, 'stall');
    case 'babble':
      return tdAfterError(out, ctrl, 'babble');
    default:
      // ioerror, nodev (and an async status left unresolved): no valid answer.
      return tdAfterError(out, ctrl, 'timeout');
  }
}

/**
 * Error completion. Stall and babble retire the TD at once (babble also
 * ends the frame). A CRC/timeout error decrements C_ERR and retries later;
 * the TD is retired when the counter goes from 1 to 0, and C_ERR = 0 means
 * "no limit" (UHCI DG §3.2.2). QEMU 7.2 retires on the first timeout
 * instead (deliberate deviation; the final TD state is the same for C_ERR
 * 1..3).
 */
export function tdAfterError(out: TdTransition, ctrl: number, kind: TdError): TdTransition {
  let retire = true;
  out.next = 'next-qh';
  if (kind === 'stall') {
    ctrl |= TD_CTRL.bit.STALLED;
  } else if (kind === 'babble') {
    ctrl |= TD_CTRL.bit.BABBLE | TD_CTRL.bit.STALLED;
    out.next = 'stop-frame';
  } else {
    ctrl |= TD_CTRL.bit.CRCTO;
    const cerr = (ctrl & TD_CTRL.bit.CERR) >>> TD_CTRL.lsb.CERR;
    if (cerr === 0) {
      retire = false;
    } else {
      ctrl = (ctrl & ~TD_CTRL.bit.CERR) | ((cerr - 1) << TD_CTRL.lsb.CERR);
      retire = cerr === 1;
    }
    if (ctrl & TD_CTRL.bit.IOS) retire = true;
  }
  if (retire) ctrl &= ~TD_CTRL.bit.ACTIVE;
  out.interrupt = retire && ctrl & TD_CTRL.bit.IOC ? PENDING_IOC : 0;
  out.errorRetired = retire;
  out.dataLength = 0;
  out.writeCtrl = true;
  out.ctrl = ctrl >>> 0;
  out.shortPacket = false;
  return out;
}
