/**
 * HID device state as plain data and the pure functions that evolve it: the
 * event queues, report generation and LED output of QEMU 7.2's HID core
 * (hw/input/hid.c). The semantics follow that file so the guest sees the same
 * sequence of reports:
 *
 * - One 16-slot ring (QUEUE_LENGTH, include/hw/input/hid.h) per device:
 *   pointer events for mouse/tablet, PC scancodes (set 1) for the keyboard.
 * - Pointer input accumulates in the slot after the last queued one; a
 *   "sync" publishes it. If the buttons did not change since the previous
 *   still-unread event, the motion is merged into it instead (relative
 *   deltas add up, absolute positions are replaced, wheel adds up). With 15
 *   events queued a sync publishes nothing (the slot keeps accumulating).
 * - Reading a pointer report takes the oldest event; relative motion beyond
 *   ±127 and wheel beyond ±127 stay in the event for the next report. With
 *   nothing queued the last event is reported again (zero relative motion).
 * - A keyboard key event queues 1 to 3 scancodes, or none if they do not all
 *   fit. Every report consumes exactly one scancode (a 0xE0/0xE1 prefix gives
 *   a report with unchanged contents).
 * - Report formats: mouse [buttons, dx, dy, wheel]; tablet [buttons, x lo,
 *   x hi, y lo, y hi, wheel]; keyboard [modifiers, 0, key × 6] (0x01 × 6 =
 *   ErrorRollOver with more than 6 keys down). The wheel byte is the negated
 *   internal count (QEMU counts "wheel up" as -1 and inverts on output).
 */
import type { HidKind } from './qemu-hid-descriptors.js';

export const QUEUE_LENGTH = 16;
const QUEUE_MASK = QUEUE_LENGTH - 1;

/** HID usage "ErrorRollOver" (HID Usage Tables §10, keyboard page 0x01). */
export const USAGE_ERROR_ROLLOVER = 0x01;

export interface PointerSlot {
  xdx: number;
  ydy: number;
  dz: number;
  buttons: number;
}

export interface HidCoreState {
  kind: HidKind;
  head: number;
  n: number;
  /** Pointer ring (mouse/tablet); zeros for the keyboard. */
  ptr: PointerSlot[];
  /** Scancode ring (keyboard). */
  keycodes: number[];
  /** Bits 0-7: HID modifier bits; bit 8: E0 prefix seen; bit 9: E1 prefix seen. */
  modifiers: number;
  leds: number;
  /** Keys currently down, in press order (up to 16 tracked, 6 reported). */
  keys: number[];
  /** 0 = boot protocol, 1 = report protocol (HID 1.11 §7.2.6). */
  protocol: number;
  /** Idle rate in 4 ms units, 0 = report only on change (HID 1.11 §7.2.4). */
  idle: number;
  idlePending: boolean;
}

function emptySlot(): PointerSlot {
  return { xdx: 0, ydy: 0, dz: 0, buttons: 0 };
}

export function createHidState(kind: HidKind): HidCoreState {
  const s: HidCoreState = {
    kind,
    head: 0,
    n: 0,
    ptr: [],
    keycodes: [],
    modifiers: 0,
    leds: 0,
    keys: [],
    protocol: 1,
    idle: 0,
    idlePending: false,
  };
  hidReset(s);
  return s;
}

/** hid.c hid_reset: queues emptied, report protocol, idle 0. LEDs are kept. */
export function hidReset(s: HidCoreState): void {
  s.ptr = Array.from({ length: QUEUE_LENGTH }, emptySlot);
  s.keycodes = new Array<number>(QUEUE_LENGTH).fill(0);
  s.keys = [];
  s.modifiers = 0;
  s.head = 0;
  s.n = 0;
  s.protocol = 1;
  s.idle = 0;
  s.idlePending = false;
}

export function hidHasEvents(s: HidCoreState): boolean {
  return s.n > 0 || s.idlePending;
}

/* ------------------------------ pointer ------------------------------ */

/** Host-side pointer input, applied to the accumulating slot. */
export interface PointerInput {
  /** Absolute position 0..0x7fff (tablet). */
  absX?: number;
  absY?: number;
  /** Relative motion (mouse). */
  dx?: number;
  dy?: number;
  /** Button bits: 0x01 left, 0x02 right, 0x04 middle, 0x08 side, 0x10 extra. */
  buttons?: number;
  /** Wheel clicks, positive = away from the user ("up"). */
  wheel?: number;
}

function curSlot(s: HidCoreState, offset = 0): PointerSlot {
  return s.ptr[(s.head + s.n + offset) & QUEUE_MASK]!;
}

/** hid.c hid_pointer_event, for one batch of axis/button changes. */
export function pointerInput(s: HidCoreState, ev: PointerInput): void {
  const e = curSlot(s);
  if (ev.dx !== undefined) e.xdx += ev.dx;
  if (ev.dy !== undefined) e.ydy += ev.dy;
  if (ev.absX !== undefined) e.xdx = ev.absX;
  if (ev.absY !== undefined) e.ydy = ev.absY;
  if (ev.buttons !== undefined) e.buttons = ev.buttons & 0x1f;
  if (ev.wheel !== undefined) e.dz -= ev.wheel;
}

/**
 * hid.c hid_pointer_sync: publish (or merge) the accumulated event.
 * Returns true when a new event became visible to the guest.
 */
export function pointerSync(s: HidCoreState): boolean {
  if (s.n === QUEUE_LENGTH - 1) return false; // full: keep accumulating
  const prev = curSlot(s, -1);
  const curr = curSlot(s);
  const next = curSlot(s, 1);
  const relative = s.kind === 'mouse';
  if (s.n > 0 && curr.buttons === prev.buttons) {
    if (relative) {
      prev.xdx += curr.xdx;
      prev.ydy += curr.ydy;
      curr.xdx = 0;
      curr.ydy = 0;
    } else {
      prev.xdx = curr.xdx;
      prev.ydy = curr.ydy;
    }
    prev.dz += curr.dz;
    curr.dz = 0;
    return false;
  }
  next.xdx = relative ? 0 : curr.xdx;
  next.ydy = relative ? 0 : curr.ydy;
  next.dz = 0;
  next.buttons = curr.buttons;
  s.n++;
  return true;
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/** hid.c hid_pointer_poll: build one report of at most `len` bytes. */
export function pointerPoll(s: HidCoreState, len: number): Uint8Array {
  s.idlePending = false;
  const e = s.ptr[(s.n ? s.head : s.head - 1) & QUEUE_MASK]!;
  let dx: number;
  let dy: number;
  if (s.kind === 'mouse') {
    dx = clamp(e.xdx, -127, 127);
    dy = clamp(e.ydy, -127, 127);
    e.xdx -= dx;
    e.ydy -= dy;
  } else {
    dx = e.xdx;
    dy = e.ydy;
  }
  let dz = clamp(e.dz, -127, 127);
  e.dz -= dz;
  if (s.n && !e.dz && (s.kind === 'tablet' || (!e.xdx && !e.ydy))) {
    s.head = (s.head + 1) & QUEUE_MASK;
    s.n--;
  }
  dz = -dz;
  const full =
    s.kind === 'mouse'
      ? [e.buttons, dx, dy, dz]
      : [e.buttons, dx & 0xff, (dx >> 8) & 0xff, dy & 0xff, (dy >> 8) & 0xff, dz];
  return Uint8Array.from(full.slice(0, Math.max(0, len)).map((v) => v & 0xff));
}

/* ------------------------------ keyboard ----------------------------- */

/**
 * hid.c hid_keyboard_event: queue the scancodes of one key event, all or
 * nothing. Returns whether they were queued.
 */
export function keyboardQueue(s: HidCoreState, scancodes: readonly number[]): boolean {
  if (s.n + scancodes.length > QUEUE_LENGTH) return false;
  for (const code of scancodes) {
    s.keycodes[(s.head + s.n) & QUEUE_MASK] = code & 0xff;
    s.n++;
  }
  return true;
}

/** Free scancode slots. */
export function keyboardRoom(s: HidCoreState): number {
  return QUEUE_LENGTH - s.n;
}

/** hid.c hid_keyboard_process_keycode: apply the oldest queued scancode. */
function processKeycode(s: HidCoreState, usageOf: (index: number) => number): void {
  if (s.n === 0) return;
  const keycode = s.keycodes[s.head & QUEUE_MASK]!;
  s.head = (s.head + 1) & QUEUE_MASK;
  s.n--;
  const key = keycode & 0x7f;
  const index = key | ((s.modifiers & (1 << 8)) >> 1);
  const hidCode = usageOf(index);
  s.modifiers &= ~(1 << 8);
  const release = (keycode & 0x80) !== 0;

  if (hidCode === 0x00) return;
  if (hidCode === 0xe0 && s.modifiers & (1 << 9)) {
    // Second byte of E1 1D xx (Pause): switch from "E1 seen" to "E0 seen"
    // so the next scancode indexes the extended half of the table.
    s.modifiers ^= (1 << 8) | (1 << 9);
    return;
  }
  if (hidCode >= 0xe0 && hidCode <= 0xe7) {
    if (release) s.modifiers &= ~(1 << (hidCode & 0x0f));
    else s.modifiers |= 1 << (hidCode & 0x0f);
    return;
  }
  if (hidCode === 0xe8 || hidCode === 0xe9) {
    // E0 / E1 prefix marker (bits 8 / 9), set regardless of bit 7.
    s.modifiers |= 1 << (hidCode & 0x0f);
    return;
  }
  const at = s.keys.lastIndexOf(hidCode);
  if (release) {
    if (at >= 0) {
      // QEMU moves the last key into the freed slot.
      const last = s.keys.pop()!;
      if (at < s.keys.length) s.keys[at] = last;
    }
  } else if (at < 0 && s.keys.length < 16) {
    s.keys.push(hidCode);
  }
}

/** hid.c hid_keyboard_poll: one report (consumes one scancode). */
export function keyboardPoll(s: HidCoreState, len: number, usageOf: (index: number) => number): Uint8Array {
  s.idlePending = false;
  if (len < 2) return new Uint8Array(0);
  processKeycode(s, usageOf);
  const out = new Uint8Array(Math.min(8, len));
  out[0] = s.modifiers & 0xff;
  out[1] = 0;
  for (let k = 2; k < out.length; k++) {
    out[k] = s.keys.length > 6 ? USAGE_ERROR_ROLLOVER : s.keys[k - 2] ?? 0;
  }
  return out;
}

/**
 * hid.c hid_keyboard_write: an output report (SET_REPORT) sets the LEDs
 * from its first byte: 0x01 Num Lock, 0x02 Caps Lock, 0x04 Scroll Lock,
 * 0x08 Compose, 0x10 Kana.
 */
export function keyboardWrite(s: HidCoreState, data: Uint8Array): void {
  if (data.length > 0) s.leds = data[0]!;
}

/* ------------------------------ validation --------------------------- */

export class HidStateError extends Error {
  override name = 'HidStateError';
}

export function checkHidState(x: unknown, kind: HidKind): HidCoreState {
  const s = x as HidCoreState;
  const int = (v: unknown, lo: number, hi: number) => typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
  if (
    !s || s.kind !== kind || !int(s.head, 0, QUEUE_MASK) || !int(s.n, 0, QUEUE_LENGTH) ||
    !Array.isArray(s.ptr) || s.ptr.length !== QUEUE_LENGTH || !Array.isArray(s.keycodes) ||
    s.keycodes.length !== QUEUE_LENGTH || !Array.isArray(s.keys) || s.keys.length > 16 ||
    !int(s.idle, 0, 255) || !int(s.leds, 0, 255) || !int(s.modifiers, 0, 0x3ff)
  ) {
    throw new HidStateError('corrupt HID state');
  }
  return {
    ...s,
    ptr: s.ptr.map((e) => ({ xdx: e.xdx, ydy: e.ydy, dz: e.dz, buttons: e.buttons })),
    keycodes: [...s.keycodes],
    keys: [...s.keys],
  };
}

export function cloneHidState(s: HidCoreState): HidCoreState {
  return checkHidState(JSON.parse(JSON.stringify(s)) as unknown, s.kind);
}
