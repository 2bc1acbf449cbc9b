/**
 * HID report generation, queueing, idle and protocol of the three devices,
 * following QEMU 7.2 hw/input/hid.c + hw/usb/dev-hid.c.
 */
import { ManualClock } from '../../src/platform/clock.js';
import { createDevice, DEVICE_SPECS, isEmulatedDeviceSpec, UnknownDeviceError } from '../../src/usb/devices.js';
import { UsbTablet, TABLET_MAX } from '../../src/usb/hid/tablet.js';
import { UsbMouse } from '../../src/usb/hid/mouse.js';
import { UsbKeyboard, LED_CAPS_LOCK, LED_NUM_LOCK } from '../../src/usb/hid/keyboard.js';
import { BUTTON_LEFT, BUTTON_RIGHT } from '../../src/usb/hid/pointer-device.js';
import { HID_USAGE_BY_SCANCODE, isSupportedUsage, scancodesForUsage, UnsupportedKeyError } from '../../src/usb/hid/keymap.js';
import type { HidUsbDevice } from '../../src/usb/hid/hid-device.js';
import { TestHost } from './host.js';

function setup<T extends HidUsbDevice>(make: (clock: ManualClock) => T) {
  const clock = new ManualClock();
  const dev = make(clock);
  const wakeups: number[] = [];
  dev.attach({ complete: () => {}, wakeup: () => wakeups.push(clock.nowNs()) });
  const host = new TestHost(dev);
  host.enumerate(1);
  /** Read interrupt reports until NAK. */
  const drain = (size = 8): string[] => {
    const out: string[] = [];
    for (let k = 0; k < 200; k++) {
      const p = host.in(1, size);
      if (p.status === 'nak') return out;
      expect(p.status).toBe('ack');
      out.push(Buffer.from(p.data.subarray(0, p.actualLength)).toString('hex'));
    }
    throw new Error('endless reports');
  };
  return { clock, dev, host, wakeups, drain };
}

describe('tablet', () => {
  const mk = () => setup((clock) => new UsbTablet({ clock }));

  test('absolute report: buttons, X, Y (LE 16 bit), wheel; NAK without change', () => {
    const { dev, drain } = mk();
    expect(drain()).toEqual([]);
    dev.moveTo(0x1234, 0x7fff);
    expect(drain()).toEqual(['003412ff7f00']);
    expect(drain()).toEqual([]);
  });

  test('coordinates are clamped to 0..0x7fff', () => {
    const { dev, drain } = mk();
    dev.moveTo(-10, 99999);
    expect(drain()).toEqual(['000000ff7f00']);
    expect(TABLET_MAX).toBe(0x7fff);
  });

  test('motion with unchanged buttons merges; button changes queue separately', () => {
    const { dev, drain } = mk();
    dev.moveTo(10, 10);
    dev.moveTo(20, 30); // merged into the unread event
    dev.buttons(BUTTON_LEFT);
    dev.buttons(0);
    dev.moveTo(40, 50); // merged into the release event
    expect(drain()).toEqual(['0014001e0000', '0114001e0000', '002800320000']);
  });

  test('wheel: positive = up, reported positive; accumulates; ±127 per report', () => {
    const { dev, drain } = mk();
    dev.wheel(1);
    expect(drain()).toEqual(['000000000001']);
    dev.wheel(-2);
    expect(drain()).toEqual(['0000000000fe']);
    dev.wheel(100);
    dev.wheel(100);
    expect(drain()).toEqual(['00000000007f', '000000000049']);
  });

  test('queue holds 15 published events; later input still reaches the guest', () => {
    const { dev, drain } = mk();
    let published = 0;
    for (let k = 0; k < 20; k++) if (dev.buttons(k % 2 ? 0 : BUTTON_RIGHT)) published++;
    expect(published).toBe(15);
    expect(dev.queuedEvents).toBe(15);
    const reports = drain();
    expect(reports.length).toBe(15);
    dev.moveTo(1, 1);
    // The 20th input (buttons 0) was kept in the accumulating slot.
    expect(drain()).toEqual(['000100010000']);
  });

  test('GET_REPORT returns the last state again when nothing is queued', () => {
    const { dev, host } = mk();
    dev.moveTo(3, 4);
    expect(Buffer.from(host.control(0xa1, 1, 0x0100, 0, 8)).toString('hex')).toBe('000300040000');
    expect(Buffer.from(host.control(0xa1, 1, 0x0100, 0, 8)).toString('hex')).toBe('000300040000');
    expect(host.in(1, 8).status).toBe('nak');
  });

  test('a short host buffer gets a cut report (no babble)', () => {
    const { dev, host } = mk();
    dev.moveTo(0x101, 0x202);
    const p = host.in(1, 3);
    expect([p.status, p.actualLength]).toEqual(['ack', 3]);
    expect(Buffer.from(p.data).toString('hex')).toBe('000101');
  });

  test('interruptPolled: set by the first IN token to the interrupt endpoint (NAK or data), cleared by a port reset (which also empties the queue) and by loading state', () => {
    const { dev, host } = mk();
    expect(dev.interruptPolled).toBe(false);
    expect(host.in(1, 8).status).toBe('nak');
    expect(dev.interruptPolled).toBe(true);
    const saved = dev.saveState();
    dev.moveTo(5, 5);
    host.enumerate(1); // port reset first: the queued move is gone (as in QEMU)
    expect(dev.interruptPolled).toBe(false);
    expect(host.in(1, 8).status).toBe('nak');
    dev.moveTo(6, 6);
    expect(host.in(1, 8).status).toBe('ack');
    expect(dev.interruptPolled).toBe(true);
    dev.loadState(saved);
    expect(dev.interruptPolled).toBe(false);
  });

  test('remote wakeup on input when the host enabled it', () => {
    const { dev, host, wakeups } = mk();
    host.control(0x00, 3, 1, 0, 0);
    dev.setSuspended(true);
    dev.moveTo(1, 2);
    dev.moveTo(3, 4); // merged: no new event, no second wakeup
    expect(wakeups.length).toBe(1);
  });
});

describe('mouse', () => {
  const mk = () => setup((clock) => new UsbMouse({ clock }));

  test('relative report, deltas beyond ±127 spill into following reports', () => {
    const { dev, drain } = mk();
    dev.move(300, -5);
    expect(drain(4)).toEqual(['007ffb00', '007f0000', '002e0000']);
  });

  test('relative motion adds up while unread; 5 buttons', () => {
    const { dev, drain } = mk();
    dev.move(1, 1);
    dev.move(2, 3);
    dev.buttons(0x10);
    expect(drain(4)).toEqual(['00030400', '10000000']);
  });

  test('boot/report protocol is stored, reset to report protocol', () => {
    const { dev, host } = mk();
    expect(host.control(0xa1, 3, 0, 0, 1)[0]).toBe(1);
    host.control(0x21, 11, 0, 0, 0);
    expect(host.control(0xa1, 3, 0, 0, 1)[0]).toBe(0);
    expect(dev.protocol).toBe(0);
    dev.move(1, 0);
    expect(host.in(1, 8).actualLength).toBe(4); // same format in both protocols (QEMU)
    dev.reset();
    expect(dev.protocol).toBe(1);
  });
});

describe('idle rate', () => {
  test('SET_IDLE n: the state is re-sent every n×4 ms while polled; 0 stops it', () => {
    const { clock, dev, host, wakeups } = setup((c) => new UsbMouse({ clock: c }));
    host.control(0x00, 3, 1, 0, 0); // remote wakeup on
    host.control(0x21, 10, 0x0200, 0, 0); // 8 ms
    expect(host.control(0xa1, 2, 0, 0, 1)[0]).toBe(2);
    expect(dev.idleRate).toBe(2);
    expect(host.in(1, 4).status).toBe('nak');
    clock.advance(7_999_999);
    expect(host.in(1, 4).status).toBe('nak');
    clock.advance(1);
    expect(wakeups).toEqual([8_000_000]); // idle expiry asks for wakeup like input does
    expect(host.in(1, 4).status).toBe('ack');
    expect(host.in(1, 4).status).toBe('nak');
    clock.advance(8_000_000);
    expect(host.in(1, 4).status).toBe('ack');
    host.control(0x21, 10, 0, 0, 0);
    clock.advance(50_000_000);
    expect(host.in(1, 4).status).toBe('nak');
  });

  test('the idle timer restarts at each report (not periodic on its own)', () => {
    const { clock, dev, host } = setup((c) => new UsbTablet({ clock: c }));
    host.control(0x21, 10, 0x0100, 0, 0); // 4 ms
    clock.advance(2_000_000);
    dev.moveTo(1, 1);
    expect(host.in(1, 8).status).toBe('ack'); // re-arms: next at 6 ms
    clock.advance(3_000_000);
    expect(host.in(1, 8).status).toBe('nak');
    clock.advance(1_000_000);
    expect(host.in(1, 8).status).toBe('ack');
  });
});

describe('keyboard', () => {
  const mk = () => setup((clock) => new UsbKeyboard({ clock }));

  test('press and release: 8-byte boot report', () => {
    const { dev, drain } = mk();
    dev.keyDown(0x04);
    dev.keyDown(0xe1);
    dev.keyUp(0x04);
    dev.keyUp(0xe1);
    expect(drain()).toEqual(['0000040000000000', '0200040000000000', '0200000000000000', '0000000000000000']);
  });

  test('extended keys take one report per scancode (E0 prefix gives an unchanged report)', () => {
    const { dev, drain } = mk();
    dev.keyDown(0x4f); // Right Arrow: E0 4D
    dev.keyDown(0xe4); // Right Ctrl: E0 1D
    expect(drain()).toEqual([
      '0000000000000000', '00004f0000000000',
      '00004f0000000000', '10004f0000000000',
    ]);
  });

  test('Pause is E1 1D 45 / E1 9D C5', () => {
    const { dev, drain } = mk();
    expect(scancodesForUsage(0x48, true)).toEqual([0xe1, 0x1d, 0x45]);
    dev.keyDown(0x48);
    dev.keyUp(0x48);
    expect(drain().map((r) => r.slice(4, 6))).toEqual(['00', '00', '48', '48', '48', '00']);
  });

  test('more than 6 keys: ErrorRollOver in all six slots', () => {
    const { dev, drain } = mk();
    for (let u = 0x04; u < 0x0b; u++) dev.keyDown(u);
    const r = drain();
    expect(r[5]).toBe('0000040506070809');
    expect(r[6]).toBe('0000010101010101');
    dev.keyUp(0x05);
    // QEMU moves the last key into the released key's slot.
    expect(drain()).toEqual(['0000040a06070809']);
  });

  test('a key event that does not fit in the 16-scancode queue is dropped', () => {
    const { dev, drain } = mk();
    for (let k = 0; k < 8; k++) expect(dev.keyDown(0x4f)).toBe(true); // 2 scancodes each
    expect(dev.keyDown(0x04)).toBe(false);
    expect(dev.queuedEvents).toBe(16);
    expect(drain().length).toBe(16);
  });

  test('type() feeds a backlog into the queue as reports are read', () => {
    const { dev, drain } = mk();
    dev.type('Hi!');
    expect(drain()).toEqual([
      '0200000000000000', '02000b0000000000', '0200000000000000', '0000000000000000',
      '00000c0000000000', '0000000000000000',
      '0200000000000000', '02001e0000000000', '0200000000000000', '0000000000000000',
    ]);
    dev.type('abcdefghijklmnopqrst');
    expect(dev.pendingKeyEvents).toBeGreaterThan(0);
    const keys = drain().map((r) => parseInt(r.slice(4, 6), 16)).filter((k) => k !== 0);
    expect(keys).toEqual(Array.from({ length: 20 }, (_, k) => 4 + k));
    expect(dev.pendingKeyEvents).toBe(0);
    expect(() => dev.type('\u00e9')).toThrow(UnsupportedKeyError);
  });

  test('LEDs by SET_REPORT; GET_REPORT below 2 bytes is empty', () => {
    const leds: number[] = [];
    const { host, dev } = setup((clock) => new UsbKeyboard({ clock, onLeds: (l) => leds.push(l) }));
    host.control(0x21, 9, 0x0200, 0, 1, Uint8Array.of(LED_NUM_LOCK | LED_CAPS_LOCK));
    expect(dev.leds).toBe(3);
    expect(leds).toEqual([3]);
    expect(host.control(0xa1, 1, 0x0100, 0, 1).length).toBe(0);
    dev.reset(); // QEMU keeps the LED state over a reset
    expect(dev.leds).toBe(3);
  });

  test('every supported usage round-trips through its scancodes', () => {
    const supported: number[] = [];
    for (let u = 1; u < 0x100; u++) if (isSupportedUsage(u)) supported.push(u);
    expect(supported.length).toBeGreaterThan(100);
    for (const u of supported) {
      const { dev, drain } = mk();
      dev.keyDown(u);
      const last = drain().pop()!;
      if (u >= 0xe0 && u <= 0xe7) expect(parseInt(last.slice(0, 2), 16)).toBe(1 << (u & 7));
      else expect(parseInt(last.slice(4, 6), 16)).toBe(u);
      dev.keyUp(u);
      expect(drain().pop()).toBe('0000000000000000');
    }
    expect(() => mk().dev.keyDown(0x03)).toThrow(UnsupportedKeyError);
    // Spot checks of QEMU's table: scancode 0x1e is 'a', E0 0x48 is Up Arrow.
    expect(HID_USAGE_BY_SCANCODE[0x1e]).toBe(0x04);
    expect(HID_USAGE_BY_SCANCODE[0xc8]).toBe(0x52);
  });
});

describe('factory', () => {
  test('qemu-dm and QEMU -device names', () => {
    const clock = new ManualClock();
    expect(createDevice('tablet', { clock })).toBeInstanceOf(UsbTablet);
    expect(createDevice('usb-tablet', { clock }).productName).toBe('QEMU USB Tablet');
    expect(createDevice('mouse', { clock })).toBeInstanceOf(UsbMouse);
    expect(createDevice('usb-mouse', { clock }).kind).toBe('mouse');
    expect(createDevice('keyboard', { clock })).toBeInstanceOf(UsbKeyboard);
    expect(createDevice('usb-kbd', { clock }).productName).toBe('QEMU USB Keyboard');
    expect(() => createDevice('usb-storage', { clock })).toThrow(UnknownDeviceError);
    expect(DEVICE_SPECS.every(isEmulatedDeviceSpec)).toBe(true);
    expect(isEmulatedDeviceSpec('host:1234:5678')).toBe(false);
    const d = createDevice('usb-kbd', { clock });
    expect([d.speed, d.vendorId, d.productId, d.address]).toEqual(['full', 0x0627, 0x0001, 0]);
  });
});

test('buttons constants', () => {
  expect([BUTTON_LEFT, BUTTON_RIGHT]).toEqual([1, 2]);
});
