/**
 * QEMU 7.2 usb-kbd: boot-protocol keyboard. Report (8 bytes): modifier bits,
 * reserved 0, six key usages. The guest sets the LEDs with SET_REPORT
 * (QEMU's keyboard has no interrupt OUT endpoint).
 *
 * Input is by HID usage (keyboard page 0x07). Like QEMU, a key event is
 * queued as the PC scancodes of that key (1-3 bytes) in a 16-byte queue and
 * each report consumes one scancode. `type()` keeps key strokes that do not
 * fit in a host-side backlog and feeds them in as the guest reads reports.
 */
import { keyboardQueue, keyboardWrite } from './hid-core.js';
import { HidUsbDevice, type HidDeviceOptions } from './hid-device.js';
import { USAGE_LEFT_SHIFT, isSupportedUsage, scancodesForUsage, usagesForText, UnsupportedKeyError } from './keymap.js';

/** LED bits of the output report (HID Usage Tables, LED page 0x08, usages 1-5). */
export const LED_NUM_LOCK = 0x01;
export const LED_CAPS_LOCK = 0x02;
export const LED_SCROLL_LOCK = 0x04;
export const LED_COMPOSE = 0x08;
export const LED_KANA = 0x10;

export interface KeyboardOptions extends HidDeviceOptions {
  /** Called when the guest writes the LED output report. */
  onLeds?: (leds: number) => void;
}

export class UsbKeyboard extends HidUsbDevice {
  private backlog: number[][] = [];
  private readonly onLeds?: (leds: number) => void;

  constructor(opts: KeyboardOptions) {
    super('keyboard', opts);
    this.onLeds = opts.onLeds;
  }

  /** LED state last written by the guest (LED_* bits). */
  get leds(): number {
    return this.hid.leds;
  }

  /** Key strokes waiting in the host-side backlog of type(). */
  get pendingKeyEvents(): number {
    return this.backlog.length;
  }

  /** Press a key. Returns false if QEMU's queue had no room (event dropped, as QEMU does). */
  keyDown(usage: number): boolean {
    return this.key(usage, true);
  }

  /** Release a key. Returns false if the queue had no room (event dropped). */
  keyUp(usage: number): boolean {
    return this.key(usage, false);
  }

  private key(usage: number, down: boolean): boolean {
    if (!isSupportedUsage(usage)) throw new UnsupportedKeyError(`unsupported HID usage 0x${usage.toString(16)}`);
    const queued = keyboardQueue(this.hid, scancodesForUsage(usage, down));
    if (queued) this.changed();
    return queued;
  }

  /** Type text on a US layout (press/release per character, Shift as needed). */
  type(text: string): void {
    for (const { usage, shift } of usagesForText(text)) {
      if (shift) this.backlog.push(scancodesForUsage(USAGE_LEFT_SHIFT, true));
      this.backlog.push(scancodesForUsage(usage, true), scancodesForUsage(usage, false));
      if (shift) this.backlog.push(scancodesForUsage(USAGE_LEFT_SHIFT, false));
    }
    this.feed();
  }

  private feed(): void {
    let any = false;
    while (this.backlog.length > 0 && keyboardQueue(this.hid, this.backlog[0]!)) {
      this.backlog.shift();
      any = true;
    }
    if (any) this.changed();
  }

  protected override afterPoll(): void {
    if (this.backlog.length > 0) this.feed();
  }

  protected override setReport(data: Uint8Array): void {
    keyboardWrite(this.hid, data);
    if (data.length > 0) this.onLeds?.(this.hid.leds);
  }

  protected override onReset(): void {
    super.onReset();
    this.backlog = [];
  }

  protected override saveExtra(): unknown {
    return { backlog: this.backlog.map((x) => [...x]) };
  }

  protected override loadExtra(x: unknown): void {
    const b = (x as { backlog?: unknown } | undefined)?.backlog;
    this.backlog = Array.isArray(b) ? b.map((e) => (Array.isArray(e) ? e.map((v) => Number(v) & 0xff) : [])) : [];
  }
}
