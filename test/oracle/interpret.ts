/**
 * Runs an oracle program on a target and records what it observes. The
 * observations of QEMU and of the model are then compared one by one
 * (compare.ts); only values that do not depend on real-time frame timing are
 * recorded (see the Step comments in program.ts).
 */
import { decodeTd, TD_CTRL } from '../../src/uhci/descriptors.js';
import { configAddress, PCI_CONFIG_ADDRESS, PCI_CONFIG_DATA } from '../support/pci-cf8.js';
import {
  IO_BASE,
  type Program,
  type Region,
  type Step,
} from './program.js';
import type { IoSize, Target } from './target.js';
import { UHCI_SLOT } from './qemu-target.js';
import { USBSTS, REG } from '../../src/uhci/registers.js';

export type ObservedValue =
  | { kind: 'word'; value: number; size: IoSize; what: 'io' | 'cfg'; offset: number }
  | { kind: 'flag'; value: string }
  | { kind: 'mem'; addr: number; bytes: Uint8Array };

export interface Observation {
  /** Index of the step that made it. */
  step: number;
  label: string;
  v: ObservedValue;
}

/** Frames without any change in the observed memory that count as "quiet". */
export const QUIET_FRAMES = 8;
/** Real-time bound for a wait in which FRNUM does not move (halted or starved). */
const STALL_LIMIT_MS = 3000;

const UHCI_BDF = { bus: 0, device: UHCI_SLOT, fn: 0 };

export async function cfgRead(t: Target, offset: number, size: IoSize): Promise<number> {
  await t.portOut(PCI_CONFIG_ADDRESS, 4, configAddress(UHCI_BDF, offset));
  return t.portIn(PCI_CONFIG_DATA + (offset & 3), size);
}
export async function cfgWrite(t: Target, offset: number, size: IoSize, value: number): Promise<void> {
  await t.portOut(PCI_CONFIG_ADDRESS, 4, configAddress(UHCI_BDF, offset));
  await t.portOut(PCI_CONFIG_DATA + (offset & 3), size, value);
}

async function snapshot(t: Target, regions: Region[]): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const r of regions) out.push(await t.readMem(r.addr, r.len));
  return out;
}

function sameSnap(a: Uint8Array[], b: Uint8Array[]): boolean {
  return a.length === b.length && a.every((x, i) => Buffer.compare(x, b[i]!) === 0);
}

function tdActive(p: Program, snap: Uint8Array[], td: number): boolean {
  const i = p.regions.findIndex((r) => td >= r.addr && td + 16 <= r.addr + r.len);
  if (i < 0) return false;
  const r = p.regions[i]!;
  const off = td - r.addr;
  return (decodeTd(snap[i]!.subarray(off, off + 16)).ctrl & TD_CTRL.bit.ACTIVE) !== 0;
}

/**
 * Wait for the schedule to finish: all `tds` inactive (then two more frames
 * so end-of-frame interrupts are posted), or no memory change for
 * QUIET_FRAMES frames, or the controller halted, or `maxFrames` frames.
 * Frames are counted from FRNUM, so a starved QEMU does not time out early.
 */
async function runUntilQuiet(t: Target, p: Program, tds: number[], maxFrames: number): Promise<string> {
  let prev = await snapshot(t, p.regions);
  let prevFr = await t.portIn(IO_BASE + REG.FRNUM, 2);
  let frames = 0;
  let quietFrames = 0;
  let doneFrames = -1;
  let stalledMs = 0;
  for (;;) {
    await t.settle(t.pollMs);
    const sts = await t.portIn(IO_BASE + REG.USBSTS, 2);
    if (sts & USBSTS.bit.HCHALTED) return 'halted';
    const fr = await t.portIn(IO_BASE + REG.FRNUM, 2);
    const d = (fr - prevFr) & 0x7ff;
    prevFr = fr;
    if (d === 0) {
      stalledMs += t.pollMs;
      if (stalledMs > STALL_LIMIT_MS) return 'stalled';
      continue;
    }
    stalledMs = 0;
    frames += d;
    const cur = await snapshot(t, p.regions);
    if (sameSnap(prev, cur)) quietFrames += d;
    else quietFrames = 0;
    prev = cur;
    if (doneFrames < 0 && tds.length > 0 && tds.every((td) => !tdActive(p, cur, td))) doneFrames = frames;
    if (doneFrames >= 0 && frames - doneFrames >= 2) return 'all-inactive';
    if (quietFrames >= QUIET_FRAMES) return 'quiet';
    if (frames >= maxFrames) return 'max-frames';
  }
}

const REGS: { label: string; offset: number; size: IoSize }[] = [
  { label: 'USBCMD', offset: REG.USBCMD, size: 2 },
  { label: 'USBSTS', offset: REG.USBSTS, size: 2 },
  { label: 'USBINTR', offset: REG.USBINTR, size: 2 },
  { label: 'FRNUM', offset: REG.FRNUM, size: 2 },
  { label: 'FLBASEADD', offset: REG.FLBASEADD, size: 4 },
  { label: 'SOFMOD', offset: REG.SOFMOD, size: 1 },
  { label: 'PORTSC1', offset: REG.PORTSC1, size: 2 },
  { label: 'PORTSC2', offset: REG.PORTSC2, size: 2 },
];

/** Run `p` on `t`; every observation in program order. */
export async function runProgram(t: Target, p: Program): Promise<Observation[]> {
  const obs: Observation[] = [];
  const saved = new Map<number, number>();
  for (let i = 0; i < p.steps.length; i++) {
    const s: Step = p.steps[i]!;
    switch (s.op) {
      case 'cfgRead': {
        const value = await cfgRead(t, s.offset, s.size);
        obs.push({ step: i, label: `cfg[0x${s.offset.toString(16)}]/${s.size}`, v: { kind: 'word', value, size: s.size, what: 'cfg', offset: s.offset } });
        break;
      }
      case 'cfgWrite':
        await cfgWrite(t, s.offset, s.size, s.value);
        break;
      case 'cfgSave':
        saved.set(s.offset, await cfgRead(t, s.offset, 4));
        break;
      case 'cfgRestore': {
        const v = saved.get(s.offset);
        if (v !== undefined) await cfgWrite(t, s.offset, 4, v);
        break;
      }
      case 'ioRead': {
        const raw = await t.portIn(IO_BASE + s.offset, s.size);
        const mask = s.mask ?? 0xffffffff;
        obs.push({
          step: i,
          label: `io[0x${s.offset.toString(16)}]/${s.size}${s.mask !== undefined ? ` &0x${mask.toString(16)}` : ''}`,
          v: { kind: 'word', value: (raw & mask) >>> 0, size: s.size, what: 'io', offset: s.offset },
        });
        break;
      }
      case 'ioWrite':
        await t.portOut(IO_BASE + s.offset, s.size, s.value);
        break;
      case 'memWrite':
        await t.writeMem(s.addr, s.bytes);
        break;
      case 'memFill':
        await t.fillMem(s.addr, s.len, s.byte);
        break;
      case 'wait':
        await t.settle(s.ms);
        break;
      case 'runUntilQuiet': {
        const how = await runUntilQuiet(t, p, s.tds, s.maxFrames);
        // 'quiet' and 'max-frames' both mean "still active TDs, nothing left to
        // happen that timing decides"; report them as one outcome.
        obs.push({ step: i, label: 'schedule end', v: { kind: 'flag', value: how === 'max-frames' ? 'quiet' : how } });
        break;
      }
      case 'frnumMoves': {
        const a = await t.portIn(IO_BASE + REG.FRNUM, 2);
        let moved = false;
        for (let waited = 0; waited < 200 && !moved; waited += 5) {
          await t.settle(5);
          moved = (await t.portIn(IO_BASE + REG.FRNUM, 2)) !== a;
          // A halted controller: one 5 ms look is enough to call it frozen.
          if (!moved && ((await t.portIn(IO_BASE + REG.USBSTS, 2)) & USBSTS.bit.HCHALTED)) break;
        }
        obs.push({ step: i, label: 'FRNUM moves', v: { kind: 'flag', value: moved ? 'moves' : 'frozen' } });
        break;
      }
      case 'observe': {
        for (const r of REGS) {
          if (r.label === 'FRNUM' && !s.frnum) continue;
          const value = await t.portIn(IO_BASE + r.offset, r.size);
          obs.push({ step: i, label: r.label, v: { kind: 'word', value, size: r.size, what: 'io', offset: r.offset } });
        }
        obs.push({ step: i, label: 'IRQ', v: { kind: 'flag', value: (await t.irqLevel()) ? 'high' : 'low' } });
        const snap = await snapshot(t, p.regions);
        p.regions.forEach((r, k) => obs.push({ step: i, label: `mem@0x${r.addr.toString(16)}`, v: { kind: 'mem', addr: r.addr, bytes: snap[k]! } }));
        break;
      }
    }
  }
  return obs;
}
