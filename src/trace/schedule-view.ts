/**
 * A decoded view of one frame's schedule (frame list entry → QHs → TDs,
 * UHCI DG §3) from whatever memory a trace knows, for divergence reports.
 */
import {
  decodeQh,
  decodeTd,
  formatLink,
  formatQh,
  formatTd,
  LINK,
} from '../uhci/descriptors.js';
import { frameListIndex } from '../uhci/registers.js';

export interface ByteSource {
  bytes(addr: number, n: number): Uint8Array;
}

function le32(b: Uint8Array): number {
  return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
}

export function describeTd(mem: ByteSource, addr: number): string {
  return formatTd(addr, decodeTd(mem.bytes(addr, 16)));
}

export function describeQh(mem: ByteSource, addr: number): string {
  return formatQh(addr, decodeQh(mem.bytes(addr, 8)));
}

/** Lines describing frame `frnum`'s schedule, at most `limit` QHs/TDs. */
export function describeFrame(mem: ByteSource, flBase: number, frnum: number, limit = 16): string[] {
  const index = frameListIndex(frnum);
  const entry = (flBase & 0xfffff000) + index * 4;
  let link = le32(mem.bytes(entry, 4));
  const out = [`frame list[${index}] @0x${entry.toString(16)} -> ${formatLink(link)}`];
  const seen = new Set<number>();
  let shown = 0;
  while (!(link & LINK.bit.T)) {
    if (shown >= limit) {
      out.push('  ...');
      break;
    }
    const addr = (link & LINK.bit.PTR) >>> 0;
    if (seen.has(addr)) {
      out.push(`  (back to ${formatLink(link)}: loop)`);
      break;
    }
    seen.add(addr);
    if (link & LINK.bit.Q) {
      const qh = decodeQh(mem.bytes(addr, 8));
      out.push('  ' + formatQh(addr, qh));
      shown++;
      let el = qh.element;
      while (!(el & LINK.bit.T) && !(el & LINK.bit.Q) && shown < limit) {
        const ta = (el & LINK.bit.PTR) >>> 0;
        if (seen.has(ta)) break;
        seen.add(ta);
        const td = decodeTd(mem.bytes(ta, 16));
        out.push('    ' + formatTd(ta, td));
        shown++;
        el = td.link;
      }
      link = qh.head;
    } else {
      const td = decodeTd(mem.bytes(addr, 16));
      out.push('  ' + formatTd(addr, td));
      shown++;
      link = td.link;
    }
  }
  return out;
}
