/**
 * Save/restore of emulated devices as JSON-able data, including in the
 * middle of a control transfer, with queued input and an armed idle timer.
 */
import { ManualClock } from '../../src/platform/clock.js';
import { DeviceStateError } from '../../src/usb/device-base.js';
import { HidStateError } from '../../src/usb/hid/hid-core.js';
import { UsbTablet } from '../../src/usb/hid/tablet.js';
import { UsbKeyboard } from '../../src/usb/hid/keyboard.js';
import { UsbMouse } from '../../src/usb/hid/mouse.js';
import type { HidUsbDevice } from '../../src/usb/hid/hid-device.js';
import { TestHost } from './host.js';

const hooks = { complete: () => {}, wakeup: () => {} };
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Save `from`, push it through JSON, load it into a fresh device on a fresh clock. */
function migrate<T extends HidUsbDevice>(from: T, make: (c: ManualClock) => T, startNs = 0) {
  const json = JSON.stringify(from.saveState());
  const clock = new ManualClock();
  clock.advance(startNs);
  const to = make(clock);
  to.attach(hooks);
  to.loadState(JSON.parse(json) as unknown);
  const host = new TestHost(to, to.address);
  return { to, host, clock, json };
}

test('mid IN data stage: the rest of the descriptor comes from the restored device', () => {
  const clock = new ManualClock();
  const a = new UsbTablet({ clock });
  a.attach(hooks);
  const ha = new TestHost(a);
  ha.enumerate(5);
  const whole = hex(ha.control(0x80, 6, 0x0200, 0, 34));
  ha.setup(0x80, 6, 0x0200, 0, 34);
  const first = ha.in(0, 8);
  expect(a.controlStage).toBe('data');
  const { to, host } = migrate(a, (c) => new UsbTablet({ clock: c }));
  expect(to.controlStage).toBe('data');
  expect(to.address).toBe(5);
  const rest: number[] = [];
  for (;;) {
    const p = host.in(0, 8);
    rest.push(...p.data.subarray(0, p.actualLength));
    if (p.actualLength < 8) break;
  }
  expect(hex(first.data) + hex(Uint8Array.from(rest))).toBe(whole);
  expect(host.out(0, new Uint8Array(0)).status).toBe('ack');
  expect(to.controlStage).toBe('idle');
});

test('mid OUT data stage and before the status stage', () => {
  const clock = new ManualClock();
  const a = new UsbKeyboard({ clock });
  a.attach(hooks);
  const ha = new TestHost(a);
  ha.enumerate(2);
  ha.setup(0x21, 9, 0x0200, 0, 10);
  ha.out(0, Uint8Array.of(0x04, 0, 0, 0, 0, 0, 0, 0));
  const { to, host } = migrate(a, (c) => new UsbKeyboard({ clock: c }));
  host.out(0, Uint8Array.of(0, 0));
  expect(to.controlStage).toBe('status');
  const { to: to2, host: host2 } = migrate(to, (c) => new UsbKeyboard({ clock: c }));
  expect(to2.leds).toBe(0);
  expect(host2.in(0, 0).status).toBe('ack');
  expect(to2.leds).toBe(0x04);
});

test('queued pointer events, configuration and remote wakeup survive', () => {
  const clock = new ManualClock();
  const a = new UsbMouse({ clock });
  a.attach(hooks);
  const ha = new TestHost(a);
  ha.enumerate(3);
  ha.control(0x00, 3, 1, 0, 0);
  a.move(200, 0);
  a.buttons(1);
  a.move(5, 5);
  const { to, host } = migrate(a, (c) => new UsbMouse({ clock: c }));
  expect([to.state, to.remoteWakeup, to.queuedEvents]).toEqual(['configured', true, 2]);
  const reports: string[] = [];
  for (let p = host.in(1, 4); p.status === 'ack'; p = host.in(1, 4)) reports.push(hex(p.data));
  expect(reports).toEqual(['007f0000', '00490000', '01050500']);
});

test('an armed idle timer keeps its remaining time on the new clock', () => {
  const clock = new ManualClock();
  const a = new UsbTablet({ clock });
  a.attach(hooks);
  const ha = new TestHost(a);
  ha.enumerate(1);
  ha.control(0x21, 10, 0x0500, 0, 0); // 20 ms
  clock.advance(8_000_000);
  const { host, clock: c2, json } = migrate(a, (c) => new UsbTablet({ clock: c }), 1_000_000_000);
  expect(JSON.parse(json).idleRemainingNs).toBe(12_000_000);
  expect(c2.pendingTimers()).toBe(1);
  c2.advance(11_999_999);
  expect(host.in(1, 8).status).toBe('nak');
  c2.advance(1);
  expect(host.in(1, 8).status).toBe('ack');
});

test('keyboard scancode queue, modifier state and type() backlog survive', () => {
  const clock = new ManualClock();
  const a = new UsbKeyboard({ clock });
  a.attach(hooks);
  new TestHost(a).enumerate(1);
  a.keyDown(0xe1);
  new TestHost(a, 1).in(1, 8); // shift now held
  a.type('abcdefghij'); // 20 key events: more than the queue holds
  const { to, host } = migrate(a, (c) => new UsbKeyboard({ clock: c }));
  expect(to.pendingKeyEvents).toBeGreaterThan(0);
  const keys: number[] = [];
  for (let p = host.in(1, 8); p.status === 'ack'; p = host.in(1, 8)) {
    expect(p.data[0]).toBe(0x02);
    if (p.data[2]) keys.push(p.data[2]);
  }
  expect(keys).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
});

test('saved state is plain JSON data and round-trips unchanged', () => {
  const clock = new ManualClock();
  const a = new UsbTablet({ clock });
  a.attach(hooks);
  new TestHost(a).enumerate(1);
  a.moveTo(7, 8);
  const s1 = JSON.stringify(a.saveState());
  const { to } = migrate(a, (c) => new UsbTablet({ clock: c }));
  expect(JSON.stringify(to.saveState())).toBe(s1);
});

test('corrupt or foreign state is rejected with typed errors', () => {
  const clock = new ManualClock();
  const tab = new UsbTablet({ clock });
  const kbd = new UsbKeyboard({ clock });
  const good = tab.saveState();
  expect(() => kbd.loadState(good)).toThrow(HidStateError); // tablet state into a keyboard
  const bad = JSON.parse(JSON.stringify(good));
  bad.base.control.setupLen = 70000;
  expect(() => tab.loadState(bad)).toThrow(DeviceStateError);
  const bad2 = JSON.parse(JSON.stringify(good));
  bad2.base.version = 9;
  expect(() => tab.loadState(bad2)).toThrow(DeviceStateError);
  expect(() => tab.loadState(null)).toThrow(TypeError);
});
