/**
 * UHCI schedule data structures in guest memory (UHCI Design Guide §3):
 * frame list pointers, queue heads (QH, 8 bytes used of 16) and transfer
 * descriptors (TD, 16 bytes used of 32). Layouts are declared once; the
 * codecs are pure functions over 32-bit words.
 */
import { Layout } from '../bits/layout.js';
import { PID_IN, PID_OUT, PID_SETUP } from '../usb/packet.js';

/** Link pointer (frame list entry, QH head/element link, TD link) — UHCI DG §3.1, §3.2.1, §3.3.1. */
export const LINK = new Layout('LINK', 32, {
  T: { lsb: 0, access: 'RW', doc: 'Terminate: pointer not valid' },
  Q: { lsb: 1, access: 'RW', doc: 'Points to a QH (1) or a TD (0)' },
  VF: { lsb: 2, access: 'RW', doc: 'Depth first (TD link only)' },
  RSVD: { lsb: 3, access: 'RW', reserved: true, doc: 'Reserved' },
  PTR: { lsb: 4, width: 28, access: 'RW', doc: 'Address bits 31:4' },
});

/**
 * TD control and status word (UHCI DG §3.2.2). Descriptors live in guest
 * memory: every field is read/write, the access describes who writes it
 * (the HC writes ACTLEN, the status bits 23:17 and C_ERR back).
 */
export const TD_CTRL = new Layout('TD.ctrl', 32, {
  ACTLEN: { lsb: 0, width: 11, access: 'RW', doc: 'Actual length - 1 (0x7ff = none)' },
  RSVD11: { lsb: 11, width: 6, access: 'RW', reserved: true, doc: 'Reserved' },
  BITSTUFF: { lsb: 17, access: 'RW', doc: 'Bitstuff error' },
  CRCTO: { lsb: 18, access: 'RW', doc: 'CRC/timeout error' },
  NAK: { lsb: 19, access: 'RW', doc: 'NAK received' },
  BABBLE: { lsb: 20, access: 'RW', doc: 'Babble detected' },
  DBE: { lsb: 21, access: 'RW', doc: 'Data buffer error' },
  STALLED: { lsb: 22, access: 'RW', doc: 'Stalled' },
  ACTIVE: { lsb: 23, access: 'RW', doc: 'Active: the HC executes this TD' },
  IOC: { lsb: 24, access: 'RW', doc: 'Interrupt on complete' },
  IOS: { lsb: 25, access: 'RW', doc: 'Isochronous select' },
  LS: { lsb: 26, access: 'RW', doc: 'Low speed device' },
  CERR: { lsb: 27, width: 2, access: 'RW', doc: 'Error counter' },
  SPD: { lsb: 29, access: 'RW', doc: 'Short packet detect' },
  RSVD30: { lsb: 30, width: 2, access: 'RW', reserved: true, doc: 'Reserved' },
});

/** TD token word (UHCI DG §3.2.3). */
export const TD_TOKEN = new Layout('TD.token', 32, {
  PID: { lsb: 0, width: 8, access: 'RW', doc: 'Packet id: 0x69 IN, 0xE1 OUT, 0x2D SETUP' },
  DEVADDR: { lsb: 8, width: 7, access: 'RW', doc: 'Device address' },
  ENDPT: { lsb: 15, width: 4, access: 'RW', doc: 'Endpoint' },
  D: { lsb: 19, access: 'RW', doc: 'Data toggle' },
  RSVD: { lsb: 20, access: 'RW', reserved: true, doc: 'Reserved' },
  MAXLEN: { lsb: 21, width: 11, access: 'RW', doc: 'Maximum length - 1 (0x7ff = zero length)' },
});

export interface Td {
  link: number;
  ctrl: number;
  token: number;
  buffer: number;
}

export interface Qh {
  head: number;
  element: number;
}

/** Read a little-endian dword from a byte array. */
function le32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

/** Decode the 16 hardware-defined bytes of a TD. */
export function decodeTd(bytes: Uint8Array): Td {
  return { link: le32(bytes, 0), ctrl: le32(bytes, 4), token: le32(bytes, 8), buffer: le32(bytes, 12) };
}
export function encodeTd(td: Td, out: Uint8Array = new Uint8Array(16)): Uint8Array {
  put32(out, 0, td.link);
  put32(out, 4, td.ctrl);
  put32(out, 8, td.token);
  put32(out, 12, td.buffer);
  return out;
}
export function decodeQh(bytes: Uint8Array): Qh {
  return { head: le32(bytes, 0), element: le32(bytes, 4) };
}
export function encodeQh(qh: Qh, out: Uint8Array = new Uint8Array(8)): Uint8Array {
  put32(out, 0, qh.head);
  put32(out, 4, qh.element);
  return out;
}

// Field masks and shifts of the declarations, for the helpers the schedule walk calls per TD.
const TOKEN_BIT = TD_TOKEN.bit;
const TOKEN_LSB = TD_TOKEN.lsb;

/** Max length encoded in a token: (MaxLen + 1) & 0x7ff, so 0x7ff means 0 bytes (UHCI DG §3.2.3). */
export function tokenMaxLen(token: number): number {
  return (((token & TOKEN_BIT.MAXLEN) >>> TOKEN_LSB.MAXLEN) + 1) & 0x7ff;
}
export function tokenPid(token: number): number {
  return token & TOKEN_BIT.PID;
}
export function tokenDevAddr(token: number): number {
  return (token & TOKEN_BIT.DEVADDR) >>> TOKEN_LSB.DEVADDR;
}
export function tokenEndpoint(token: number): number {
  return (token & TOKEN_BIT.ENDPT) >>> TOKEN_LSB.ENDPT;
}
export function tokenToggle(token: number): number {
  return (token & TOKEN_BIT.D) >>> TOKEN_LSB.D;
}
/** Identifies an endpoint's queue: PID, address, endpoint (bits 18:0), as QEMU does. */
const TOKEN_QUEUE_KEY_MASK = TD_TOKEN.mask('PID', 'DEVADDR', 'ENDPT');
export function tokenQueueKey(token: number): number {
  return token & TOKEN_QUEUE_KEY_MASK;
}
/** Actual length as written back: (ActLen + 1) & 0x7ff. */
export function ctrlActualLength(ctrl: number): number {
  return ((ctrl & TD_CTRL.bit.ACTLEN) + 1) & 0x7ff;
}

/** Build a token word. `maxLen` is the byte count (0..1280); encoded as maxLen-1. */
export function makeToken(pid: number, devaddr: number, endpoint: number, toggle: number, maxLen: number): number {
  return TD_TOKEN.encode({ MAXLEN: (maxLen - 1) & 0x7ff, D: toggle, ENDPT: endpoint, DEVADDR: devaddr, PID: pid });
}

export function pidName(pid: number): string {
  switch (pid) {
    case PID_IN:
      return 'IN';
    case PID_OUT:
      return 'OUT';
    case PID_SETUP:
      return 'SETUP';
    default:
      return `PID?0x${pid.toString(16)}`;
  }
}

export function formatLink(link: number): string {
  if (link & LINK.bit.T) return 'T';
  const kind = link & LINK.bit.Q ? 'QH' : 'TD';
  return `${kind}@0x${(link & LINK.bit.PTR).toString(16)}${link & LINK.bit.VF ? ' Vf' : ''}`;
}

/** One-line decoded TD, for traces, divergence reports and the inspector. */
export function formatTd(addr: number, td: Td): string {
  const pid = tokenPid(td.token);
  return (
    `TD@0x${addr.toString(16)} ${pidName(pid)} dev=${tokenDevAddr(td.token)} ep=${tokenEndpoint(td.token)} ` +
    `D${tokenToggle(td.token)} maxlen=${tokenMaxLen(td.token)} buf=0x${td.buffer.toString(16)} ` +
    `${TD_CTRL.format(td.ctrl)} actlen=${ctrlActualLength(td.ctrl)} link=${formatLink(td.link)}`
  );
}

export function formatQh(addr: number, qh: Qh): string {
  return `QH@0x${addr.toString(16)} head=${formatLink(qh.head)} element=${formatLink(qh.element)}`;
}
