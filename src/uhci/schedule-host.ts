/**
 * The contract between the schedule engine and its controller: what the
 * engine needs (guest memory, wire-time model, device lookup, status and
 * fatal-error reporting, the USBCMD/SOFMOD bits that shape a frame) and
 * what it reports per frame.
 */
import type { GuestMemory } from '../platform/memory.js';
import type { UsbDevice } from '../usb/packet.js';
import type { WireTimer } from './wire-timer.js';

/** Everything the engine needs from its controller. */
export interface ScheduleHost {
  readonly mem: GuestMemory;
  readonly timer: WireTimer;
  /** Device at USB address `addr` behind an enabled port, or null. */
  findDevice(addr: number): UsbDevice | null;
  /** Set USBSTS bits (and update the IRQ line). */
  raiseStatus(bits: number): void;
  /** HC Process Error or Host System Error: status set, RS cleared, controller halts. */
  fatal(kind: 'hcpe' | 'hse', why: string): void;
  /** Software debug mode: stop after this transaction. */
  readonly singleStep: boolean;
  stopAfterTransaction(): void;
  readonly maxp64: boolean;
  readonly sofmod: number;
  log(level: 'debug' | 'info' | 'warn', msg: string): void;
}

/** End-of-frame interrupt causes kept until the frame ends (QEMU's pending_int_mask). */
export const PENDING_IOC = 1;
export const PENDING_SPD = 2;

/** What one frame did (zeroed when the frame starts, walked or replayed). */
export interface FrameStats {
  links: number;
  transactions: number;
  /** Wire time the frame's transactions used, in full-speed bit times after SOF. */
  bits: number;
  completed: number;
  /** Guest-memory writes and status changes made by the frame (0 = the frame changed nothing). */
  effects: number;
}
