/**
 * QEMU 7.2 usb-tablet: absolute pointer, 3 buttons, wheel. Report (6 bytes):
 * buttons, X (16 bit LE, 0..0x7fff), Y (16 bit LE, 0..0x7fff), wheel (±127).
 */
import { HidPointerDevice } from './pointer-device.js';
import type { HidDeviceOptions } from './hid-device.js';

/** Largest absolute coordinate (QEMU INPUT_EVENT_ABS_MAX). */
export const TABLET_MAX = 0x7fff;

export class UsbTablet extends HidPointerDevice {
  constructor(opts: HidDeviceOptions) {
    super('tablet', opts);
  }

  /** Move to an absolute position; coordinates are clamped to 0..0x7fff. */
  moveTo(x: number, y: number): boolean {
    const c = (v: number) => Math.max(0, Math.min(TABLET_MAX, Math.round(v)));
    return this.input({ absX: c(x), absY: c(y) });
  }
}
