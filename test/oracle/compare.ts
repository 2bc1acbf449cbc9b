/**
 * Compares the observations of QEMU (expected) and the model (got) for one
 * program and renders each difference in decoded form: register fields,
 * TD/QH fields, buffer bytes.
 */
import { decodeQh, decodeTd, formatQh, formatTd, TD_CTRL, type Qh, type Td } from '../../src/uhci/descriptors.js';
import { PORTSC, USBCMD, USBINTR, USBSTS } from '../../src/uhci/registers.js';
import type { Observation, ObservedValue } from './interpret.js';
import type { Program, Step } from './program.js';

export interface Difference {
  program: string;
  step: number;
  /** The step, in words. */
  action: string;
  label: string;
  expected: string;
  got: string;
  /** Decoded detail lines. */
  detail: string[];
  /** The raw values, for allow-list matching. */
  raw?: RawDifference;
}

/** A register/config word, or one schedule structure / buffer that differs. */
export type RawDifference =
  | { kind: 'word'; what: 'io' | 'cfg'; offset: number; size: number; expected: number; got: number }
  | { kind: 'td'; addr: number; expected: Td; got: Td }
  | { kind: 'qh'; addr: number; expected: Qh; got: Qh }
  | { kind: 'bytes'; addr: number; expected: Uint8Array; got: Uint8Array }
  | { kind: 'flag'; expected: string; got: string };

const hex = (v: number, digits = 0): string => '0x' + (v >>> 0).toString(16).padStart(digits, '0');

export function describeStep(s: Step | undefined): string {
  if (!s) return '(end)';
  switch (s.op) {
    case 'cfgRead':
      return `cfg read${s.size * 8} 0x${s.offset.toString(16)}`;
    case 'cfgWrite':
      return `cfg write${s.size * 8} 0x${s.offset.toString(16)} ← ${hex(s.value)}`;
    case 'ioRead':
      return `in${'?bw?l'[s.size]} BAR+0x${s.offset.toString(16)}`;
    case 'ioWrite':
      return `out${'?bw?l'[s.size]} BAR+0x${s.offset.toString(16)} ← ${hex(s.value)}`;
    case 'runUntilQuiet':
      return `run schedule until quiet (TDs ${s.tds.map((t) => hex(t)).join(' ')}, ≤${s.maxFrames} frames)`;
    case 'observe':
      return 'observe registers, IRQ and schedule memory (controller stopped)';
    case 'frnumMoves':
      return 'check FRNUM moves';
    default:
      return s.op;
  }
}

/** Decode a register value read at BAR offset `offset` when it is one whole register. */
function decodeIo(offset: number, size: number, v: number): string {
  if (offset === 0 && size === 2) return USBCMD.format(v);
  if (offset === 2 && size === 2) return USBSTS.format(v);
  if (offset === 4 && size === 2) return USBINTR.format(v);
  if ((offset === 0x10 || offset === 0x12) && size === 2) return PORTSC.format(v);
  return '';
}

function formatValue(v: ObservedValue): string {
  if (v.kind === 'flag') return v.value;
  if (v.kind === 'word') {
    const d = v.what === 'io' ? decodeIo(v.offset, v.size, v.value) : '';
    return hex(v.value, v.size * 2) + (d ? ` ${d}` : '');
  }
  return `${v.bytes.length} bytes at ${hex(v.addr)}`;
}

/** One difference per TD, QH, buffer or stray byte that differs in a memory observation. */
function memDiffs(p: Program, base: Omit<Difference, 'label' | 'expected' | 'got' | 'detail'>, addr: number, exp: Uint8Array, got: Uint8Array): Difference[] {
  const out: Difference[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < Math.min(exp.length, got.length); i++) {
    if (exp[i] === got[i]) continue;
    const a = addr + i;
    const td = p.tds.find((t) => a >= t && a < t + 16);
    const qh = p.qhs.find((q) => a >= q && a < q + 8);
    const buf = p.buffers.find((b) => a >= b.addr && a < b.addr + b.len);
    if (td !== undefined) {
      if (seen.has(`td${td}`)) continue;
      seen.add(`td${td}`);
      const o = td - addr;
      const e = decodeTd(exp.subarray(o, o + 16));
      const g = decodeTd(got.subarray(o, o + 16));
      out.push({
        ...base,
        label: `TD@${hex(td)}`,
        expected: `ctrl ${hex(e.ctrl, 8)} ${TD_CTRL.format(e.ctrl)}`,
        got: `ctrl ${hex(g.ctrl, 8)} ${TD_CTRL.format(g.ctrl)}`,
        detail: [`  qemu : ${formatTd(td, e)}`, `  model: ${formatTd(td, g)}`],
        raw: { kind: 'td', addr: td, expected: e, got: g },
      });
    } else if (qh !== undefined) {
      if (seen.has(`qh${qh}`)) continue;
      seen.add(`qh${qh}`);
      const o = qh - addr;
      const e = decodeQh(exp.subarray(o, o + 8));
      const g = decodeQh(got.subarray(o, o + 8));
      out.push({
        ...base,
        label: `QH@${hex(qh)}`,
        expected: formatQh(qh, e),
        got: formatQh(qh, g),
        detail: [],
        raw: { kind: 'qh', addr: qh, expected: e, got: g },
      });
    } else if (buf !== undefined) {
      if (seen.has(`buf${buf.addr}`)) continue;
      seen.add(`buf${buf.addr}`);
      const o = buf.addr - addr;
      const e = exp.slice(o, o + buf.len);
      const g = got.slice(o, o + buf.len);
      out.push({
        ...base,
        label: `buffer@${hex(buf.addr)}`,
        expected: Buffer.from(e).toString('hex'),
        got: Buffer.from(g).toString('hex'),
        detail: [],
        raw: { kind: 'bytes', addr: buf.addr, expected: e, got: g },
      });
    } else {
      out.push({
        ...base,
        label: `byte@${hex(a)}`,
        expected: hex(exp[i]!, 2),
        got: hex(got[i]!, 2),
        detail: [],
        raw: { kind: 'bytes', addr: a, expected: exp.slice(i, i + 1), got: got.slice(i, i + 1) },
      });
    }
  }
  return out;
}

function sameValue(a: ObservedValue, b: ObservedValue): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'word' && b.kind === 'word') return a.value === b.value;
  if (a.kind === 'flag' && b.kind === 'flag') return a.value === b.value;
  if (a.kind === 'mem' && b.kind === 'mem') return a.addr === b.addr && Buffer.compare(a.bytes, b.bytes) === 0;
  return false;
}

export function compareObservations(p: Program, expected: Observation[], got: Observation[]): Difference[] {
  const diffs: Difference[] = [];
  const n = Math.min(expected.length, got.length);
  for (let i = 0; i < n; i++) {
    const e = expected[i]!;
    const g = got[i]!;
    if (e.step !== g.step || e.label !== g.label) {
      diffs.push({
        program: p.name,
        step: e.step,
        action: describeStep(p.steps[e.step]),
        label: 'observation order',
        expected: `step ${e.step} ${e.label}`,
        got: `step ${g.step} ${g.label}`,
        detail: [],
      });
      return diffs;
    }
    if (sameValue(e.v, g.v)) continue;
    const base = { program: p.name, step: e.step, action: describeStep(p.steps[e.step]) };
    if (e.v.kind === 'mem' && g.v.kind === 'mem') {
      diffs.push(...memDiffs(p, base, e.v.addr, e.v.bytes, g.v.bytes));
      continue;
    }
    let raw: RawDifference | undefined;
    if (e.v.kind === 'word' && g.v.kind === 'word') {
      raw = { kind: 'word', what: e.v.what, offset: e.v.offset, size: e.v.size, expected: e.v.value, got: g.v.value };
    } else if (e.v.kind === 'flag' && g.v.kind === 'flag') {
      raw = { kind: 'flag', expected: e.v.value, got: g.v.value };
    }
    diffs.push({ ...base, label: e.label, expected: formatValue(e.v), got: formatValue(g.v), detail: [], raw });
  }
  if (expected.length !== got.length) {
    diffs.push({
      program: p.name,
      step: n < expected.length ? expected[n]!.step : got[n]!.step,
      action: 'observation count',
      label: 'observations',
      expected: String(expected.length),
      got: String(got.length),
      detail: [],
    });
  }
  return diffs;
}

export function formatDifference(d: Difference): string {
  const head = `DIFF ${d.program} step ${d.step} (${d.action}) ${d.label}: expected(qemu) ${d.expected} | got(model) ${d.got}`;
  return [head, ...d.detail].join('\n');
}

/** One observation, decoded (for --dump). */
export function formatObservation(p: Program, o: Observation): string {
  const head = `step ${o.step} (${describeStep(p.steps[o.step])}) ${o.label}: ${formatValue(o.v)}`;
  if (o.v.kind !== 'mem') return head;
  const lines = [head];
  const { addr, bytes } = o.v;
  for (const t of p.tds) if (t >= addr && t + 16 <= addr + bytes.length) lines.push(`  ${formatTd(t, decodeTd(bytes.subarray(t - addr, t - addr + 16)))}`);
  for (const q of p.qhs) if (q >= addr && q + 8 <= addr + bytes.length) lines.push(`  ${formatQh(q, decodeQh(bytes.subarray(q - addr, q - addr + 8)))}`);
  for (const b of p.buffers) if (b.addr >= addr && b.addr + b.len <= addr + bytes.length) lines.push(`  buf@0x${b.addr.toString(16)}: ${Buffer.from(bytes.subarray(b.addr - addr, b.addr - addr + b.len)).toString('hex')}`);
  return lines.join('\n');
}
