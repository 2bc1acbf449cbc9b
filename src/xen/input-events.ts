/**
 * `input-send-event` on the control socket: input for the emulated HID
 * devices, in the shape of QMP's command of that name (QEMU qapi/ui.json,
 * InputEvent): `{"events": [{"type": "abs", "data": {"axis": "x", "value":
 * 16384}}, {"type": "btn", "data": {"down": true, "button": "left"}},
 * {"type": "rel", "data": {"axis": "y", "value": -5}}, {"type": "key",
 * "data": {"down": true, "key": {"type": "qcode", "data": "h"}}}],
 * "device": "tablet" | 1}`. As in QEMU, one call is one batch: pointer
 * events of the call are merged into one report (abs values 0..0x7fff, as
 * QEMU's INPUT_EVENT_ABS_MAX), each key event is its own report. Without
 * `device`, pointer events go to the first tablet (abs) or mouse (rel) and
 * key events to the first keyboard, like QEMU's "active handler" routing.
 */
import { UserFacingError } from '../platform/user-facing-error.js';
import type { HidUsbDevice } from '../usb/hid/hid-device.js';
import type { PointerInput } from '../usb/hid/hid-core.js';
import { HidPointerDevice, BUTTON_EXTRA, BUTTON_LEFT, BUTTON_MIDDLE, BUTTON_RIGHT, BUTTON_SIDE } from '../usb/hid/pointer-device.js';
import { UsbTablet } from '../usb/hid/tablet.js';
import { UsbMouse } from '../usb/hid/mouse.js';
import { UsbKeyboard } from '../usb/hid/keyboard.js';
import { usagesForText } from '../usb/hid/keymap.js';

export class InputEventError extends UserFacingError {}

/** QMP InputButton names → our report bits (hid.c bmap order). */
const BUTTONS: Record<string, number> = { left: BUTTON_LEFT, right: BUTTON_RIGHT, middle: BUTTON_MIDDLE, side: BUTTON_SIDE, extra: BUTTON_EXTRA };

/** QEMU QKeyCode names that are not a single character → HID usage (HID Usage Tables 1.12, §10). */
const NAMED_KEYS: Record<string, number> = { ret: 0x28, esc: 0x29, backspace: 0x2a, tab: 0x2b, spc: 0x2c, shift: 0xe1, ctrl: 0xe0, alt: 0xe2, shift_r: 0xe5, ctrl_r: 0xe4 };

function keyUsage(qcode: string): number {
  const named = NAMED_KEYS[qcode];
  if (named !== undefined) return named;
  if ([...qcode].length === 1) {
    const [u] = usagesForText(qcode);
    if (u && !u.shift) return u.usage;
  }
  throw new InputEventError(`unsupported key '${qcode}' (single unshifted characters and ${Object.keys(NAMED_KEYS).join(', ')})`);
}

const obj = (v: unknown, what: string): Record<string, unknown> => {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new InputEventError(`${what} must be an object`);
  return v as Record<string, unknown>;
};

/**
 * Apply one `input-send-event` batch. `pick(kind)` returns the target device
 * for a kind of event ('abs' | 'rel' | 'key'), or throws. Returns how many
 * reports were queued on the devices.
 */
export function sendInputEvents(events: unknown, pick: (kind: 'abs' | 'rel' | 'key') => HidUsbDevice): number {
  if (!Array.isArray(events) || events.length === 0) throw new InputEventError("'events' must be a non-empty array");
  const pointer = new Map<HidPointerDevice, PointerInput>();
  const keys: { dev: UsbKeyboard; usage: number; down: boolean }[] = [];
  let lastPointer: HidPointerDevice | null = null;
  const pointerFor = (kind: 'abs' | 'rel'): HidPointerDevice => {
    const d = pick(kind);
    if (!(d instanceof HidPointerDevice)) throw new InputEventError(`${d.productName} takes no pointer input`);
    if (kind === 'abs' && !(d instanceof UsbTablet)) throw new InputEventError(`${d.productName} takes no absolute input`);
    if (kind === 'rel' && !(d instanceof UsbMouse)) throw new InputEventError(`${d.productName} takes no relative input`);
    lastPointer = d;
    if (!pointer.has(d)) pointer.set(d, {});
    return d;
  };
  for (const raw of events) {
    const e = obj(raw, 'an event');
    const data = obj(e.data, `'data' of a ${String(e.type)} event`);
    switch (e.type) {
      case 'abs':
      case 'rel': {
        const axis = data.axis;
        const value = data.value;
        if ((axis !== 'x' && axis !== 'y') || typeof value !== 'number' || !Number.isInteger(value)) throw new InputEventError(`${e.type} event needs axis x|y and an integer value`);
        const d = pointerFor(e.type);
        const p = pointer.get(d)!;
        if (e.type === 'abs') p[axis === 'x' ? 'absX' : 'absY'] = Math.max(0, Math.min(0x7fff, value));
        else p[axis === 'x' ? 'dx' : 'dy'] = (p[axis === 'x' ? 'dx' : 'dy'] ?? 0) + value;
        break;
      }
      case 'btn': {
        const bit = typeof data.button === 'string' ? BUTTONS[data.button] : undefined;
        if (bit === undefined || typeof data.down !== 'boolean') throw new InputEventError(`btn event needs down (boolean) and button (${Object.keys(BUTTONS).join('|')})`);
        let d: HidPointerDevice | null = lastPointer;
        if (!d) {
          const t = pick('abs');
          d = t instanceof HidPointerDevice ? t : null;
          if (!d) throw new InputEventError(`${t.productName} has no buttons`);
        }
        if (!pointer.has(d)) pointer.set(d, {});
        const p = pointer.get(d)!;
        const cur = p.buttons ?? d.buttonState;
        p.buttons = data.down ? cur | bit : cur & ~bit;
        break;
      }
      case 'key': {
        const k = obj(data.key, "'key' of a key event");
        if (k.type !== 'qcode' || typeof k.data !== 'string' || typeof data.down !== 'boolean') throw new InputEventError('key event needs down (boolean) and key {type: "qcode", data: NAME}');
        const d = pick('key');
        if (!(d instanceof UsbKeyboard)) throw new InputEventError(`${d.productName} takes no key input`);
        keys.push({ dev: d, usage: keyUsage(k.data), down: data.down });
        break;
      }
      default:
        throw new InputEventError(`unknown event type '${String(e.type)}' (abs, rel, btn, key)`);
    }
  }
  let queued = 0;
  for (const [d, p] of pointer) if (d.input(p)) queued++;
  for (const k of keys) if (k.down ? k.dev.keyDown(k.usage) : k.dev.keyUp(k.usage)) queued++;
  return queued;
}
