/**
 * Deliberate deviations of the model from QEMU 7.2, each justified by the
 * specification. A difference the oracle finds is forgiven only when an entry
 * here matches it; everything else fails `npm run test:oracle`.
 *
 * Keep entries narrow (match the raw register bits or TD fields), cite the
 * spec section, and say what QEMU does instead. Each entry names the model
 * source that documents the same choice.
 */
import type { Difference } from './compare.js';
import { TD_CTRL } from '../../src/uhci/descriptors.js';
import { USBSTS } from '../../src/uhci/registers.js';

export interface Deviation {
  id: string;
  /** Spec section (Intel UHCI Design Guide rev 1.1, USB 2.0, PCI 3.0) that the model follows. */
  spec: string;
  /** What QEMU does and why the model differs. */
  reason: string;
  /** Does this difference show the deviation itself? */
  matches(d: Difference): boolean;
  /**
   * Status bits (USBSTS) that may differ as a knock-on effect in the same
   * observation, together with the IRQ level and the preceding schedule-end
   * outcome, when `matches` found the deviation there. 0 = no knock-on.
   */
  knockOnStatus: number;
}

/** PORTSC line-status bits (5:4) in every byte lane of an access. */
const LINE_STATUS_LANES = 0x30303030;

export const DEVIATIONS: readonly Deviation[] = [
  {
    id: 'portsc-line-status',
    spec: 'UHCI Design Guide rev 1.1 §2.1.7 (PORTSC bits 5:4 Line Status: D-/D+ of the port)',
    reason:
      'QEMU 7.2 never sets the line-status bits (hcd-uhci.c keeps them 0). The model reports the idle J state ' +
      '(D+ high for a full-speed device) on a connected, non-resetting port (src/uhci/root-port.ts lineStatus).',
    matches(d) {
      const r = d.raw;
      if (!r || r.kind !== 'word' || r.what !== 'io') return false;
      // The access must overlap PORTSC1/PORTSC2 (0x10..0x13), and only line-status bits may differ.
      if (r.offset + r.size <= 0x10 || r.offset >= 0x14) return false;
      return ((r.expected ^ r.got) & ~LINE_STATUS_LANES) === 0;
    },
    knockOnStatus: 0,
  },
  {
    id: 'cerr-zero-retries',
    spec: 'UHCI Design Guide rev 1.1 §3.2.2 (C_ERR: 0 = no error limit; the TD stays active and is retried)',
    reason:
      'QEMU 7.2 retires a TD on its first CRC/timeout and clears C_ERR whatever its value. The model counts ' +
      'C_ERR down and never retires a TD whose C_ERR is 0 (src/uhci/schedule.ts error()). Only the TD itself is ' +
      'matched; knock-on effects (USBERRINT, IRQ, later TDs in the queue) are still reported.',
    matches(d) {
      const r = d.raw;
      if (!r || r.kind !== 'td') return false;
      const e = r.expected;
      const g = r.got;
      if (e.link !== g.link || e.token !== g.token || e.buffer !== g.buffer) return false;
      const qemuRetired = (e.ctrl & TD_CTRL.bit.ACTIVE) === 0 && (e.ctrl & TD_CTRL.bit.CRCTO) !== 0 && (e.ctrl & TD_CTRL.bit.CERR) === 0;
      const modelRetrying = (g.ctrl & TD_CTRL.bit.ACTIVE) !== 0 && (g.ctrl & TD_CTRL.bit.CERR) === 0;
      return qemuRetired && modelRetrying;
    },
    // QEMU posts USBERRINT (and USBINT for IOC) when it retires the TD; the model never retires it.
    knockOnStatus: USBSTS.bit.USBINT | USBSTS.bit.USBERRINT,
  },
  {
    id: 'low-speed-td-to-full-speed-device',
    spec: 'UHCI Design Guide rev 1.1 §3.2.2 (TD LS bit: the transaction is sent at low speed, with a PRE preamble)',
    reason:
      'QEMU 7.2 ignores the TD LS bit and delivers the packet to the full-speed tablet. The model sends nothing ' +
      'a full-speed device can see, so the TD ends in CRC/timeout (src/uhci/schedule.ts, speedMismatch). Only ' +
      'TDs with LS set whose model outcome is CRC/timeout are matched.',
    matches(d) {
      const r = d.raw;
      if (!r || r.kind !== 'td') return false;
      const e = r.expected;
      const g = r.got;
      if (e.link !== g.link || e.token !== g.token || e.buffer !== g.buffer) return false;
      const ls = (e.ctrl & TD_CTRL.bit.LS) !== 0 && (g.ctrl & TD_CTRL.bit.LS) !== 0;
      const qemuAnswered = (e.ctrl & TD_CTRL.bit.CRCTO) === 0;
      const modelTimedOut = (g.ctrl & TD_CTRL.bit.CRCTO) !== 0;
      return ls && qemuAnswered && modelTimedOut;
    },
    // QEMU: device answer (maybe no error, or a NAK that never completes); model: timeout → USBERRINT, IOC.
    knockOnStatus: USBSTS.bit.USBINT | USBSTS.bit.USBERRINT,
  },
];

/**
 * Sort one program's differences into forgiven (with the deviation id) and
 * unexplained ones. Knock-on differences are forgiven only in the same
 * observation step as a matched TD (or the schedule run just before it).
 */
export function classify(diffs: Difference[], steps: { op: string }[]): { forgiven: (Difference & { id: string })[]; unexplained: Difference[] } {
  const forgiven: (Difference & { id: string })[] = [];
  const unexplained: Difference[] = [];
  const knockOn = new Map<number, { id: string; status: number }>();
  const rest: Difference[] = [];
  for (const d of diffs) {
    const dev = DEVIATIONS.find((x) => x.matches(d));
    if (!dev) {
      rest.push(d);
      continue;
    }
    forgiven.push({ ...d, id: dev.id });
    if (dev.knockOnStatus) {
      const k = knockOn.get(d.step);
      knockOn.set(d.step, { id: k ? k.id : dev.id, status: (k?.status ?? 0) | dev.knockOnStatus });
    }
  }
  for (const d of rest) {
    const k = knockOn.get(d.step) ?? knockOnForRun(d.step, steps, knockOn);
    const r = d.raw;
    let explained = false;
    if (k) {
      if (d.label === 'IRQ') explained = true;
      else if (d.label === 'schedule end') explained = true;
      else if (d.label === 'USBSTS' && r?.kind === 'word') explained = ((r.expected ^ r.got) & ~k.status) === 0;
    }
    if (explained) forgiven.push({ ...d, id: `${k!.id} (knock-on)` });
    else unexplained.push(d);
  }
  return { forgiven, unexplained };
}

/** A schedule run's outcome belongs to the observation that follows it. */
function knockOnForRun(step: number, steps: { op: string }[], knockOn: Map<number, { id: string; status: number }>): { id: string; status: number } | undefined {
  if (steps[step]?.op !== 'runUntilQuiet') return undefined;
  for (let i = step + 1; i < steps.length; i++) {
    if (steps[i]!.op === 'observe') return knockOn.get(i);
    if (steps[i]!.op === 'runUntilQuiet') return undefined;
  }
  return undefined;
}
