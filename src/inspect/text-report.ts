/**
 * The inspector's text output: a per-frame timeline (idle stretches
 * collapsed), decoded register/config accesses and device events, the
 * anomaly report, optionally with ANSI colour.
 */
import { TD_CTRL, formatLink, pidName, tokenDevAddr, tokenEndpoint, tokenMaxLen, tokenPid, tokenToggle, ctrlActualLength } from '../uhci/descriptors.js';
import { FRNUM, PORTSC, REG, USBCMD, USBINTR, USBSTS, frameListIndex } from '../uhci/registers.js';
import { PID_SETUP } from '../usb/packet.js';
import type { Anomaly } from './anomalies.js';
import type { DeviceSummary, Inspection, TimelineEntry } from './inspector.js';
import type { BoundaryEvent, FrameRecord, TdVisit, WalkStep } from './decoded-trace.js';
import type { Urb } from './transfers.js';
import { decodeSetup, formatSetup, requestName } from './usb-requests.js';

export interface Style {
  frame(s: string): string;
  event(s: string): string;
  ok(s: string): string;
  bad(s: string): string;
  dim(s: string): string;
  alert(s: string): string;
}

const id = (s: string) => s;
export const PLAIN: Style = { frame: id, event: id, ok: id, bad: id, dim: id, alert: id };
const ansi = (code: string) => (s: string) => `\x1b[${code}m${s}\x1b[0m`;
export const ANSI: Style = { frame: ansi('1;36'), event: ansi('33'), ok: ansi('32'), bad: ansi('31'), dim: ansi('2'), alert: ansi('1;31') };

const hex = (n: number, w = 0) => '0x' + (n >>> 0).toString(16).padStart(w, '0');
export const ms = (ns: number) => (ns / 1e6).toFixed(3) + ' ms';

/** Bytes as "12 01 10 01 ..." (at most `max`, then "…"). */
export function hexBytes(b: Uint8Array, max = 32): string {
  const parts: string[] = [];
  for (let i = 0; i < Math.min(b.length, max); i++) parts.push(b[i]!.toString(16).padStart(2, '0'));
  return parts.join(' ') + (b.length > max ? ` … (${b.length} bytes)` : '');
}

const REG_NAMES: Record<number, string> = { ...Object.fromEntries(Object.entries(REG).map(([name, offset]) => [offset, name])), [REG.FLBASEADD + 2]: 'FLBASEADD+2' };
/** Registers printed field by field from their declarations (registers.ts). */
const REG_LAYOUTS: Record<number, { format(word: number): string }> = {
  [REG.USBCMD]: USBCMD,
  [REG.USBSTS]: USBSTS,
  [REG.USBINTR]: USBINTR,
  [REG.PORTSC1]: PORTSC,
  [REG.PORTSC2]: PORTSC,
};

/** Name and decoded value of a register access (UHCI DG §2.1). */
export function describeRegister(offset: number, size: number, value: number): string {
  const name = REG_NAMES[offset] ?? `reg ${hex(offset, 2)}`;
  const v = hex(value, size * 2);
  const layout = REG_LAYOUTS[offset];
  if (layout) return `${name} = ${v} ${layout.format(value & 0xffff)}`;
  if (offset === REG.FRNUM) return `${name} = ${v} (frame ${FRNUM.get(value, 'FN')}, list index ${frameListIndex(value)})`;
  return `${name} = ${v}`;
}

const CONFIG_NAMES: Record<number, string> = { 0: 'vendor/device ID', 2: 'device ID', 4: 'command', 6: 'status', 8: 'revision/class', 0x0c: 'cache line/latency/header', 0x20: 'BAR4', 0x2c: 'subsystem ID', 0x3c: 'interrupt line/pin', 0x60: 'SBRN', 0xc0: 'LEGSUP' };

export function describeEvent(e: BoundaryEvent): string {
  switch (e.kind) {
    case 'io':
      return `${e.write ? 'write' : 'read '} ${describeRegister(e.offset, e.size, e.value)}`;
    case 'config':
      return `config ${e.write ? 'write' : 'read'} ${hex(e.offset, 2)}${CONFIG_NAMES[e.offset] ? ` (${CONFIG_NAMES[e.offset]})` : ''} = ${hex(e.value, e.size * 2)}`;
    case 'attach':
      return `attach port ${e.port + 1}: ${e.identity.name} (${e.identity.speed} speed, ${hex(e.identity.vendorId, 4).slice(2)}:${hex(e.identity.productId, 4).slice(2)})`;
    case 'detach':
      return `detach port ${e.port + 1}${e.hadDevice ? '' : ' (nothing attached)'}`;
    case 'pci-reset':
      return 'PCI reset of the function';
    case 'save':
      return 'snapshot (save state)';
    case 'load':
      return 'restore (load state)';
    case 'complete':
      return `port ${e.port + 1}: device completed async packet #${e.asyncId}: ${e.status}, ${e.actualLength} bytes${e.data ? ' ' + e.data : ''}`;
    case 'wakeup':
      return `port ${e.port + 1}: remote wakeup`;
    case 'activity':
      return `port ${e.port + 1}: device has new input`;
    case 'device-reset':
      return `port ${e.port + 1}: USB reset of the device (address now ${e.address})`;
    case 'cancel':
      return `port ${e.port + 1}: async packet #${e.asyncId} cancelled`;
    case 'irq':
      return `IRQ ${e.level ? 'asserted ↑' : 'deasserted ↓'}`;
    case 'io-window':
      return e.base === null ? 'I/O window disabled' : `I/O window at ${hex(e.base, 4)}`;
    case 'orphan':
      return 'the model acted outside any input';
  }
}

/** One line for a TD visit: token, result, status, data. */
export function describeVisit(v: TdVisit): string {
  const t = v.td;
  const pid = tokenPid(t.token);
  const after = v.ctrlAfter ?? t.ctrl;
  const parts = [
    `TD@${hex(v.addr)} ${pidName(pid)} dev ${tokenDevAddr(t.token)} ep ${tokenEndpoint(t.token)} D${tokenToggle(t.token)} maxlen ${tokenMaxLen(t.token)}`,
    `→ ${v.result}`,
  ];
  if (v.ctrlAfter !== null && !(v.ctrlAfter & TD_CTRL.bit.ACTIVE)) parts.push(`actlen ${ctrlActualLength(v.ctrlAfter)}`);
  parts.push(TD_CTRL.format(after).replace('TD.ctrl', 'ctrl'));
  parts.push(`link ${formatLink(t.link)}`);
  if (v.elementAdvance !== null) parts.push(`(QH element → ${formatLink(v.elementAdvance)})`);
  if (v.changed) parts.push('[new from guest]');
  return parts.join('  ');
}

function visitData(v: TdVisit): string[] {
  const out: string[] = [];
  const pid = tokenPid(v.td.token);
  if (pid === PID_SETUP && v.out && v.out.length >= 8) {
    const s = decodeSetup(v.out)!;
    out.push(formatSetup(s));
  } else if (v.out && v.out.length && v.result !== 'nak') out.push(`out: ${hexBytes(v.out)}`);
  if (v.in && v.in.length) out.push(`in:  ${hexBytes(v.in)}`);
  return out;
}

function resultStyle(st: Style, v: TdVisit): (s: string) => string {
  switch (v.result) {
    case 'ok':
    case 'short':
      return st.ok;
    case 'nak':
    case 'inactive':
    case 'not-run':
    case 'in-flight':
      return st.dim;
    case 'async':
      return id;
    default:
      return st.bad;
  }
}

export function describeUrb(u: Urb): string {
  const dev = `dev ${u.devaddr}${u.port !== null ? ` (port ${u.port + 1})` : ''}`;
  const ep = `ep ${hex(u.endpoint, 2)}`;
  const what = u.setup ? requestName(u.setup) : u.endpoint & 0x80 ? 'IN' : 'OUT';
  const st = u.status === 0 ? 'ok' : `status ${u.status}`;
  return `transfer: ${u.type} ${dev} ${ep} ${what}: ${st}, ${u.data.length} bytes${u.data.length ? ': ' + hexBytes(u.data, 24) : ''} (frames ${u.submitFrame}..${u.completeFrame})`;
}

/** The walk of one frame, one line per step (empty skeleton QHs grouped). */
export function describeWalk(f: FrameRecord, st: Style = PLAIN): string[] {
  const out: string[] = [];
  let empties: string[] = [];
  const flushEmpties = () => {
    if (empties.length) out.push(st.dim(`  ${empties.join(' → ')} (no TDs)`));
    empties = [];
  };
  for (const s of f.steps as WalkStep[]) {
    switch (s.kind) {
      case 'fl':
        out.push(`  frame list[${s.index}] @${hex(s.addr)} → ${formatLink(s.link)}${s.changed ? '  [new from guest]' : ''}`);
        break;
      case 'qh':
        if (s.element & 1 && !s.changed) {
          empties.push(`QH@${hex(s.addr)}`);
          break;
        }
        flushEmpties();
        out.push(`  QH@${hex(s.addr)} head ${formatLink(s.head)} element ${formatLink(s.element)}${s.changed ? '  [new from guest]' : ''}`);
        break;
      case 'td': {
        flushEmpties();
        const v = s.visit;
        out.push('    ' + resultStyle(st, v)(describeVisit(v)));
        for (const l of visitData(v)) out.push('        ' + l);
        break;
      }
      case 'fault':
        flushEmpties();
        out.push(st.bad(`  FAULT: ${s.write ? 'write' : 'read'} of ${s.length} bytes at ${hex(s.addr)} (${s.what}) — no guest RAM`));
        break;
      case 'mem':
        flushEmpties();
        out.push(st.dim(`  memory ${s.write ? 'write' : 'read'} ${hex(s.addr)} (${s.length} bytes): ${s.hex.slice(0, 64)}`));
        break;
      case 'cancel':
        flushEmpties();
        out.push(`  port ${s.port + 1}: async packet #${s.asyncId} cancelled`);
        break;
    }
  }
  flushEmpties();
  return out;
}

export function describeAnomaly(a: Anomaly): string {
  const where = `frame ${a.frame} (FRNUM ${hex(a.frnum, 3)}, t=${ms(a.tNs)})`;
  const more = a.count > 1 ? ` [${a.count} times, last in frame ${a.lastFrame}]` : '';
  return `${a.kind} at ${where}${a.address !== null ? ` @${hex(a.address)}` : ''}: ${a.message}${more}`;
}

export function describeDevice(d: DeviceSummary): string {
  const id = d.vendorId !== null ? ` ${hex(d.vendorId, 4).slice(2)}:${hex(d.productId ?? 0, 4).slice(2)}` : '';
  const eps = d.endpoints.map((e) => `ep ${hex(e.address, 2)} ${['control', 'isochronous', 'bulk', 'interrupt'][e.type]} ${e.maxPacket} bytes${e.type === 3 ? ` every ${e.interval} ms` : ''}`);
  return `port ${d.port + 1}: address ${d.address}${id}, ep0 max packet ${d.ep0MaxPacket ?? '?'}${eps.length ? '; ' + eps.join('; ') : ''}`;
}

function entryLines(e: TimelineEntry, st: Style): string[] {
  switch (e.kind) {
    case 'idle':
      return [
        st.dim(
          `  … ${e.frames} idle frame${e.frames === 1 ? '' : 's'} (${e.fromFrame}..${e.toFrame}, ${ms(e.fromNs)} – ${ms(e.toNs)})${e.quiet ? `, ${e.quiet} routine read${e.quiet === 1 ? '' : 's'}` : ''} …`,
        ),
      ];
    case 'event':
      return [st.event(`t=${ms(e.event.tNs)}  ${describeEvent(e.event)}${e.repeat > 1 ? `  ×${e.repeat}` : ''}`)];
    case 'frame': {
      const f = e.frame;
      const lines = [st.frame(`frame ${f.serial} FRNUM ${hex(f.frnum, 3)} t=${ms(f.tNs)}`)];
      lines.push(...describeWalk(f, st));
      const causes = [f.ioc && 'IOC', f.spd && 'short packet', f.error && 'error'].filter(Boolean);
      if (f.irq === 1) lines.push(`  IRQ asserted ↑ at end of frame (${causes.join(', ')})`);
      else if (causes.length) lines.push(st.dim(`  end of frame: ${causes.join(', ')}`));
      for (const u of e.transfers) lines.push('  ' + (u.status === 0 ? st.ok : st.bad)(describeUrb(u)));
      for (const a of e.anomalies) lines.push(st.alert(`  !! ${a.kind}: ${a.message}`));
      return lines;
    }
  }
}

/** The whole text report. */
export function formatInspection(r: Inspection, st: Style = PLAIN, name = 'trace'): string {
  const h = r.header;
  const out: string[] = [];
  out.push(`${name}: recorded ${h.created} by ${h.model} (${h.options.variant}${h.notes ? `, "${h.notes}"` : ''})`);
  const range =
    r.range.from > r.range.to
      ? `frame ${r.range.from} is past the end of the trace`
      : `showing frames ${r.range.from}..${r.range.to}: ${r.stats.busyFrames} with activity, ${r.stats.idleFrames} idle, ${r.stats.transfers} transfers`;
  out.push(`${r.events} events, ${r.frames} frames, ${ms(r.summary.endNs)}; ${range}`);
  if (r.stats.dropped) out.push(st.alert(`note: ${r.stats.dropped} remembered TD/QH/page entries dropped at the inspector's memory cap; checks about the oldest addresses may be incomplete`));
  for (const d of r.devices) out.push('device ' + describeDevice(d));
  out.push('');
  for (const e of r.timeline) out.push(...entryLines(e, st));
  out.push('');
  if (!r.anomalies.length) out.push(st.ok('anomalies: none'));
  else {
    out.push(st.alert(`anomalies: ${r.anomalies.length}`));
    for (const a of r.anomalies) {
      out.push(st.alert('  ' + describeAnomaly(a)));
      for (const d of a.details) out.push('      ' + d);
    }
  }
  return out.join('\n') + '\n';
}
