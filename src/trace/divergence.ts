/**
 * Telling a replay's divergence: the first point where the model did not do
 * what the trace recorded, in words — the trace's output item and the
 * model's action, where in the event it happened, and the context a person
 * needs to see why (the TD and QH involved, the controller's registers and
 * the frame's schedule, decoded from guest memory as the trace knows it).
 */
import { HarnessAbort } from '../platform/harness-abort.js';
import type { UhciPciFunction } from '../device/uhci-pci-function.js';
import { decodeTd, formatTd } from '../uhci/descriptors.js';
import { PID_IN, type UsbPacket } from '../usb/packet.js';
import { OUTPUT_KINDS, hex32, isInputKind, toHex } from './format.js';
import { describeFrame, describeQh } from './schedule-view.js';
import type { ShadowMemory } from './shadow-memory.js';

/** What the model under replay takes when the event has no more outputs. */
export const END_OF_EVENT = Symbol('end of event');

/** The first point where the model did not do what the trace recorded. */
export interface Divergence {
  /** 1-based index of the event line. */
  event: number;
  /** Event kind (format.ts INPUT_KINDS), e.g. 'ir' or 't'. */
  kind: string;
  /** Clock time of the event, ns. */
  tNs: number;
  /** FRNUM of the replayed controller when it diverged. */
  frnum: number;
  /** Frames the replayed controller had processed. */
  frames: number;
  /** Position inside the event (which output, or the result). */
  where: string;
  expected: string;
  got: string;
  /** Decoded TD/QH involved, controller registers and the frame's schedule. */
  context: string[];
}

/** Thrown inside the model's call stack at a mismatch; turned into a Divergence. */
export class ReplayDivergence extends HarnessAbort {
  constructor(
    readonly expected: string,
    readonly got: string,
    /** Guest address involved, with the bytes the trace and the model have there. */
    readonly mem?: { addr: number; expected?: Uint8Array; got?: Uint8Array },
  ) {
    super(`replay diverged: expected ${expected}, got ${got}`);
    this.name = 'ReplayDivergence';
  }
}

const PID_NAMES: Record<number, string> = { 0x69: 'IN', 0xe1: 'OUT', 0x2d: 'SETUP' };

/** One output item in words (the trace's side of a divergence). */
export function describeItem(it: unknown): string {
  if (it === END_OF_EVENT) return 'nothing more (the event ends here)';
  if (typeof it === 'number') return `read 4 bytes at ${hex32(it)}`;
  if (!Array.isArray(it)) return JSON.stringify(it);
  const [k, a, b] = it as unknown[];
  if (typeof k === 'number') return typeof a === 'number' ? `read ${a} bytes at ${hex32(k)}` : `read ${String(a).length / 2} bytes at ${hex32(k)} (= ${String(a)})`;
  switch (k) {
    case OUTPUT_KINDS.write:
      return `write ${hex32(a as number)} = ${String(b)}`;
    case OUTPUT_KINDS.readFault:
      return `read ${String(b)} bytes at ${hex32(a as number)} (faulted)`;
    case OUTPUT_KINDS.writeFault:
      return `write ${hex32(a as number)} = ${String(b)} (faulted)`;
    case OUTPUT_KINDS.irq:
      return `IRQ ${a ? 'asserted' : 'deasserted'}`;
    case OUTPUT_KINDS.setTimer:
      return `arm timer #${String(a)} for now+${String(b)} ns`;
    case OUTPUT_KINDS.clearTimer:
      return `clear timer #${String(a)}`;
    case OUTPUT_KINDS.ioWindow:
      return `I/O window ${a === null ? 'off' : `at ${hex32(a as number)}`}`;
    case OUTPUT_KINDS.packet: {
      const r = it as unknown[];
      const pid = PID_NAMES[r[2] as number] ?? `PID 0x${Number(r[2]).toString(16)}`;
      const data = typeof r[6] === 'number' ? `max ${r[6]} bytes` : `data ${String(r[6]) || '(none)'}`;
      return `packet to port ${Number(a) + 1}: ${pid} dev ${String(r[3])} ep ${String(r[4])}${r[5] ? ' iso' : ''} ${data} (device answered ${String(r[7])}${r[9] ? ' ' + String(r[9]) : ''})`;
    }
    case OUTPUT_KINDS.cancel:
      return `cancel async packet #${String(b)} on port ${Number(a) + 1}`;
    case OUTPUT_KINDS.deviceReset:
      return `USB reset of the device on port ${Number(a) + 1}`;
    default:
      if (isInputKind(k)) return `input event '${String(k)}'`;
      return JSON.stringify(it);
  }
}

export function describePacket(port: number, p: UsbPacket): string {
  const pid = PID_NAMES[p.pid] ?? `PID 0x${p.pid.toString(16)}`;
  const data = p.pid === PID_IN ? `max ${p.data.length} bytes` : `data ${toHex(p.data) || '(none)'}`;
  return `packet to port ${port + 1}: ${pid} dev ${p.devaddr} ep ${p.endpoint}${p.iso ? ' iso' : ''} ${data}`;
}

/** Guest memory as the replay saw it: the shadow and the last TD and QH the model fetched (-1: none). */
export interface FetchedElements {
  readonly shadow: ShadowMemory;
  readonly lastTd: number;
  readonly lastQh: number;
}

/** The decoded TD/QH involved, the controller and the frame's schedule at a divergence. */
export function divergenceContext(e: ReplayDivergence, mem: FetchedElements, fn: UhciPciFunction | null): string[] {
  const context: string[] = [];
  const shadow = mem.shadow;
  const m = e.mem;
  const td = mem.lastTd;
  if (m && td >= 0 && m.addr >= td && m.addr < td + 16) {
    const view = (bytes: Uint8Array | undefined) => {
      const b = shadow.bytes(td, 16);
      if (bytes) for (let i = 0; i < bytes.length && m.addr - td + i < 16; i++) b[m.addr - td + i] = bytes[i]!;
      return formatTd(td, decodeTd(b));
    };
    context.push(`TD involved, as the trace has it: ${view(m.expected)}`);
    if (m.got) context.push(`TD involved, as the model made it: ${view(m.got)}`);
  } else if (td >= 0) {
    context.push(`last TD fetched: ${formatTd(td, decodeTd(shadow.bytes(td, 16)))}`);
  }
  if (mem.lastQh >= 0) context.push(`last QH fetched: ${describeQh(shadow, mem.lastQh)}`);
  if (fn) {
    context.push(`controller: ${fn.controller.describe()}`);
    context.push(`schedule of frame ${fn.controller.frnum} (guest memory as the trace knows it, before this output):`);
    for (const l of describeFrame(shadow, fn.controller.flBase, fn.controller.frnum)) context.push('  ' + l);
  }
  return context;
}

/** How a call's return value is introduced in a report. */
export const CALL_NAMES: Record<string, string> = {
  cr: 'config read ',
  ir: 'I/O read ',
  pr: 'port read ',
  pw: 'port write ',
  D: 'detach ',
  S: 'snapshot ',
  L: 'restore ',
};

const KIND_NAMES: Record<string, string> = {
  N: 'create function',
  cr: 'config read',
  cw: 'config write',
  ir: 'I/O read',
  iw: 'I/O write',
  pr: 'port read',
  pw: 'port write',
  A: 'attach',
  D: 'detach',
  X: 'PCI reset',
  S: 'snapshot',
  L: 'restore',
  t: 'timer',
  C: 'async completion',
  W: 'remote wakeup',
  K: 'device activity',
  o: 'model output outside an input',
};

/** A divergence as people read it (several lines). */
export function formatDivergence(d: Divergence, totalEvents?: number): string {
  const ms = (d.tNs / 1e6).toFixed(6);
  const lines = [
    `replay diverged at event ${d.event}${totalEvents ? ` of ${totalEvents}` : ''} (${KIND_NAMES[d.kind] ?? d.kind}, t=${ms} ms, FRNUM=0x${d.frnum.toString(16)}, ${d.frames} frames run), ${d.where}`,
    `  trace expected: ${d.expected}`,
    `  model did:      ${d.got}`,
    ...d.context.map((l) => '  ' + l),
  ];
  return lines.join('\n');
}
