/**
 * Shared input side of the QEMU-compatible pointer devices: each call is one
 * batch of input followed by a sync (QEMU's qemu_input_event_sync), so it
 * becomes at most one queued event.
 */
import { pointerInput, pointerSync, type PointerInput } from './hid-core.js';
import { HidUsbDevice } from './hid-device.js';

/** Button bits in reports (hid.c bmap): left, right, middle, side, extra. */
export const BUTTON_LEFT = 0x01;
export const BUTTON_RIGHT = 0x02;
export const BUTTON_MIDDLE = 0x04;
export const BUTTON_SIDE = 0x08;
export const BUTTON_EXTRA = 0x10;

export abstract class HidPointerDevice extends HidUsbDevice {
  /** Apply one batch of input and publish it. Returns whether a new event was queued. */
  input(ev: PointerInput): boolean {
    pointerInput(this.hid, ev);
    const queued = pointerSync(this.hid);
    if (queued) this.changed();
    return queued;
  }

  /** Set the pressed buttons (bit mask, see BUTTON_*). */
  buttons(mask: number): boolean {
    return this.input({ buttons: mask });
  }

  /** Wheel clicks: positive = away from the user (reported as positive). */
  wheel(delta: number): boolean {
    return this.input({ wheel: delta });
  }

  /** Currently pressed buttons as the next event will carry them. */
  get buttonState(): number {
    return this.hid.ptr[(this.hid.head + this.hid.n) & 15]!.buttons;
  }
}
