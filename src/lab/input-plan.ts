/**
 * The input the lab injects once the guest is ready, expressed once and
 * applied either to our emulated devices or, in --reference mode, to
 * QEMU's own devices through QMP `input-send-event` (each call is one
 * batch followed by a sync, like one call on our devices).
 */
import type { HidUsbDevice } from '../usb/hid/hid-device.js';
import { UsbTablet } from '../usb/hid/tablet.js';
import { UsbMouse } from '../usb/hid/mouse.js';
import { UsbKeyboard } from '../usb/hid/keyboard.js';
import { BUTTON_LEFT } from '../usb/hid/pointer-device.js';
import { usagesForText } from '../usb/hid/keymap.js';
import type { QmpClient } from './qmp.js';

export type LabDeviceKind = 'tablet' | 'mouse' | 'keyboard';

export type InputAction =
  | { kind: 'abs'; x: number; y: number }
  | { kind: 'rel'; dx: number; dy: number }
  | { kind: 'button'; left: boolean }
  | { kind: 'key'; key: string; down: boolean };

/** Linux input codes the guest should report for the plan (include/uapi/linux/input-event-codes.h). */
export const KEY_H = 35;
export const KEY_I = 23;
export const KEY_O = 24;
export const KEY_K = 37;
export const BTN_LEFT = 0x110;
export const ABS_X = 0;
export const ABS_Y = 1;
export const REL_X = 0;
export const REL_Y = 1;

/** The default plan per device kind. */
export function defaultPlan(kind: LabDeviceKind): InputAction[] {
  switch (kind) {
    case 'tablet':
      return [{ kind: 'abs', x: 0x4000, y: 0x2000 }, { kind: 'button', left: true }, { kind: 'button', left: false }];
    case 'mouse':
      return [{ kind: 'rel', dx: 10, dy: -5 }, { kind: 'button', left: true }, { kind: 'button', left: false }];
    case 'keyboard':
      return [
        { kind: 'key', key: 'h', down: true },
        { kind: 'key', key: 'h', down: false },
        { kind: 'key', key: 'i', down: true },
        { kind: 'key', key: 'i', down: false },
      ];
  }
}

/**
 * A second plan, different in every value from defaultPlan, for input after
 * a save/restore of the guest: events seen by the guest can then be told
 * apart (before the save vs after the restore).
 */
export function afterRestorePlan(kind: LabDeviceKind): InputAction[] {
  switch (kind) {
    case 'tablet':
      return [{ kind: 'abs', x: 0x6000, y: 0x1000 }, { kind: 'button', left: true }, { kind: 'button', left: false }];
    case 'mouse':
      return [{ kind: 'rel', dx: -7, dy: 3 }, { kind: 'button', left: true }, { kind: 'button', left: false }];
    case 'keyboard':
      return [
        { kind: 'key', key: 'o', down: true },
        { kind: 'key', key: 'o', down: false },
        { kind: 'key', key: 'k', down: true },
        { kind: 'key', key: 'k', down: false },
      ];
  }
}

/** Apply one action to one of our emulated devices. */
export function applyToModel(dev: HidUsbDevice, a: InputAction): void {
  if (a.kind === 'abs' && dev instanceof UsbTablet) dev.moveTo(a.x, a.y);
  else if (a.kind === 'rel' && dev instanceof UsbMouse) dev.move(a.dx, a.dy);
  else if (a.kind === 'button' && (dev instanceof UsbTablet || dev instanceof UsbMouse)) dev.buttons(a.left ? BUTTON_LEFT : 0);
  else if (a.kind === 'key' && dev instanceof UsbKeyboard) {
    const [u] = usagesForText(a.key);
    if (!u) throw new RangeError(`no key for '${a.key}'`);
    if (a.down) dev.keyDown(u.usage);
    else dev.keyUp(u.usage);
  } else throw new RangeError(`input ${a.kind} does not apply to ${dev.productName}`);
}

/**
 * Apply one action to QEMU's input devices through QMP. Without a display
 * QEMU cannot bind input to a device id ("not bound to a QemuConsole"), so
 * `deviceId` null lets QEMU route the event to its active handler of that
 * kind (the USB HID devices activate themselves when created, after the
 * machine's PS/2 devices).
 */
export async function applyToQemu(qmp: QmpClient, deviceId: string | null, a: InputAction): Promise<void> {
  const events = qmpInputEvents(a);
  await qmp.execute('input-send-event', deviceId ? { device: deviceId, events } : { events });
}

/** One action as the `events` of QMP's input-send-event (also what uhci-dm's control socket takes). */
export function qmpInputEvents(a: InputAction): unknown[] {
  switch (a.kind) {
    case 'abs':
      return [
        { type: 'abs', data: { axis: 'x', value: a.x } },
        { type: 'abs', data: { axis: 'y', value: a.y } },
      ];
    case 'rel':
      return [
        { type: 'rel', data: { axis: 'x', value: a.dx } },
        { type: 'rel', data: { axis: 'y', value: a.dy } },
      ];
    case 'button':
      return [{ type: 'btn', data: { down: a.left, button: 'left' } }];
    case 'key':
      return [{ type: 'key', data: { down: a.down, key: { type: 'qcode', data: a.key } } }];
  }
}
