/**
 * The controller's saved state, declared once in the manner of QEMU's
 * `vmstate_uhci` (hcd-uhci.c): which controller fields are saved, in which
 * order, and what a loaded value may hold — the stored bits of the
 * register's declared layout (registers.ts), so a snapshot cannot bring
 * back bits no guest write or hardware event could have set.
 */
import { FLBASEADD, FRNUM, PORTSC, SOFMOD, USBCMD, USBINTR, USBSTS } from './registers.js';
import { PENDING_IOC, PENDING_SPD } from './schedule-host.js';

/** Hidden status (status2) and the engine's pending end-of-frame causes hold these bits. */
const PENDING_MASK = PENDING_IOC | PENDING_SPD;

/** Saved register fields in order, with the bits a loaded value keeps. */
export const SAVED_REGISTERS = [
  ['cmd', USBCMD.storedMask],
  ['status', USBSTS.storedMask],
  ['status2', PENDING_MASK],
  ['intr', USBINTR.storedMask],
  ['frnum', FRNUM.storedMask],
  ['flBase', FLBASEADD.storedMask],
  ['sofmod', SOFMOD.storedMask],
] as const;

export type SavedRegister = (typeof SAVED_REGISTERS)[number][0];

/** Plain, JSON-able snapshot of the controller (UhciController.saveState). */
export type UhciControllerState = { version: 1 } & { [K in SavedRegister]: number } & {
  /** PORTSC of each root port (stored bits). */
  ports: number[];
  pendingInt: number;
  /** ns until the current frame ends (running only). */
  frameRemainingNs: number | null;
};

/** Register values of `s` as a restore may use them: each masked to what its layout stores. */
export function loadedRegisters(s: UhciControllerState): { [K in SavedRegister]: number } {
  if (!s || s.version !== 1) throw new StateError('unsupported UHCI controller state version');
  const out = {} as { [K in SavedRegister]: number };
  for (const [name, mask] of SAVED_REGISTERS) out[name] = (s[name] & mask) >>> 0;
  return out;
}

/** PORTSC value of a restored port. */
export function loadedPort(v: number): number {
  return v & PORTSC.storedMask;
}

export function loadedPendingInt(v: number): number {
  return v & PENDING_MASK;
}

export class StateError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'StateError';
  }
}
