/**
 * input-send-event (QMP-shaped) on our emulated HID devices: pointer events
 * of one call become one report, keys one report each, routing by kind or
 * port, and malformed batches are refused before anything is queued.
 */
import { sendInputEvents, InputEventError } from '../../src/xen/input-events.js';
import { createDevice } from '../../src/usb/devices.js';
import { ManualClock } from '../../src/platform/clock.js';
import type { HidUsbDevice } from '../../src/usb/hid/hid-device.js';

function setup() {
  const clock = new ManualClock();
  const tablet = createDevice('tablet', { clock, portPath: '1' });
  const mouse = createDevice('mouse', { clock, portPath: '2' });
  const kbd = createDevice('keyboard', { clock, portPath: '3' });
  const pick = (kind: 'abs' | 'rel' | 'key'): HidUsbDevice => (kind === 'abs' ? tablet : kind === 'rel' ? mouse : kbd);
  return { tablet, mouse, kbd, pick };
}

test('abs x/y and a button in one call are one tablet report; key down/up are two keyboard reports', () => {
  const { tablet, kbd, mouse, pick } = setup();
  const n = sendInputEvents(
    [
      { type: 'abs', data: { axis: 'x', value: 0x4000 } },
      { type: 'abs', data: { axis: 'y', value: 0x2000 } },
      { type: 'btn', data: { down: true, button: 'left' } },
    ],
    pick,
  );
  expect(n).toBe(1);
  expect(tablet.queuedEvents).toBe(1);
  expect(tablet.buttonState).toBe(0x01);
  expect(mouse.queuedEvents).toBe(0);
  expect(sendInputEvents([{ type: 'btn', data: { down: false, button: 'left' } }], pick)).toBe(1);
  expect(tablet.buttonState).toBe(0);
  expect(
    sendInputEvents(
      [
        { type: 'key', data: { down: true, key: { type: 'qcode', data: 'h' } } },
        { type: 'key', data: { down: false, key: { type: 'qcode', data: 'h' } } },
      ],
      pick,
    ),
  ).toBe(2);
  expect(kbd.queuedEvents).toBe(2);
});

test('rel events go to the mouse; malformed batches throw InputEventError and queue nothing', () => {
  const { mouse, tablet, kbd, pick } = setup();
  expect(sendInputEvents([{ type: 'rel', data: { axis: 'x', value: 10 } }, { type: 'rel', data: { axis: 'y', value: -5 } }], pick)).toBe(1);
  expect(mouse.queuedEvents).toBe(1);
  for (const bad of [[], 'x', [{ type: 'abs', data: { axis: 'z', value: 1 } }], [{ type: 'key', data: { down: true, key: { type: 'qcode', data: 'H' } } }], [{ type: 'warp', data: {} }]]) {
    expect(() => sendInputEvents(bad, pick)).toThrow(InputEventError);
  }
  // A key aimed at the tablet (explicit device) is refused.
  expect(() => sendInputEvents([{ type: 'key', data: { down: true, key: { type: 'qcode', data: 'a' } } }], () => tablet)).toThrow(/takes no key input/);
  expect(tablet.queuedEvents + kbd.queuedEvents).toBe(0);
});

test('uhci-dm xen: input-send-event on the control socket reaches the devices, also when --record wraps them', async () => {
  const { mkdtempSync } = await import('node:fs');
  const net = (await import('node:net')).default;
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { startSimXen } = await import('./sim-xen.js');
  const dir = mkdtempSync(join(tmpdir(), 'uhci-xen-input-'));
  const sock = join(dir, 'ctl.sock');
  const { server, ports, done } = await startSimXen(['--domid', '3', '-usbdevice', 'tablet', '-usbdevice', 'keyboard', '--control', sock, '--record', join(dir, 't.uhcitrace.gz')], { domid: 3 });
  const s = net.connect(sock);
  s.setEncoding('utf8');
  let buf = '';
  const replies: unknown[] = [];
  s.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      replies.push(JSON.parse(buf.slice(0, nl)));
      buf = buf.slice(nl + 1);
    }
  });
  const cmds = [
    { execute: 'input-send-event', arguments: { device: 'tablet', events: [{ type: 'abs', data: { axis: 'x', value: 100 } }, { type: 'abs', data: { axis: 'y', value: 200 } }] } },
    { execute: 'input-send-event', arguments: { events: [{ type: 'key', data: { down: true, key: { type: 'qcode', data: 'h' } } }] } },
    { execute: 'input-send-event', arguments: { device: 'mouse', events: [{ type: 'rel', data: { axis: 'x', value: 1 } }] } },
  ];
  for (const c of cmds) s.write(JSON.stringify(c) + '\n');
  while (replies.length < 4) await new Promise((r) => setTimeout(r, 5));
  s.end();
  expect(replies.slice(1)).toEqual([{ return: { queued: 1 } }, { return: { queued: 1 } }, { error: { class: 'GenericError', desc: 'no mouse is attached' } }]);
  expect(ports!.emulated('tablet').queuedEvents).toBe(1);
  expect(ports!.emulated(2).queuedEvents).toBe(1);
  await server!.stop('signal');
  expect(await done).toBe(0);
});
