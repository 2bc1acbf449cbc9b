/**
 * QEMU 7.2 usb-mouse: relative pointer, 5 buttons, wheel. Report (4 bytes):
 * buttons, dX, dY, wheel, each delta clamped to ±127 per report (the rest
 * stays queued for the next report).
 */
import { HidPointerDevice } from './pointer-device.js';
import type { HidDeviceOptions } from './hid-device.js';

export class UsbMouse extends HidPointerDevice {
  constructor(opts: HidDeviceOptions) {
    super('mouse', opts);
  }

  /** Relative motion in device units (positive = right / down). */
  move(dx: number, dy: number): boolean {
    return this.input({ dx: Math.trunc(dx), dy: Math.trunc(dy) });
  }
}
