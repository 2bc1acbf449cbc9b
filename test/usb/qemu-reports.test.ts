/**
 * Interrupt reports for scripted input, compared with what QEMU 7.2 sent a
 * Linux guest for the same input (test/fixtures/qemu-7.2/report-scenarios.json
 * → reports.txt, captured by scripts/capture-qemu-hid-reports.mjs). Covers
 * report formats, event merging, the 16-slot queues (15 pointer events,
 * 16 scancodes), E0/E1 prefixes and rollover.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock } from '../../src/platform/clock.js';
import { createDevice } from '../../src/usb/devices.js';
import type { HidUsbDevice } from '../../src/usb/hid/hid-device.js';
import { HidPointerDevice } from '../../src/usb/hid/pointer-device.js';
import { UsbKeyboard } from '../../src/usb/hid/keyboard.js';
import type { PointerInput } from '../../src/usb/hid/hid-core.js';
import { fixtureDir } from './qemu-fixture.js';
import { TestHost } from './host.js';

interface QmpEvent {
  type: 'abs' | 'rel' | 'btn' | 'key';
  data: { axis?: 'x' | 'y'; value?: number; button?: string; down?: boolean; key?: { type: 'qcode'; data: string } };
}
interface Scenario { name: string; commands: QmpEvent[][] }
const spec = JSON.parse(readFileSync(join(fixtureDir, 'report-scenarios.json'), 'utf8')) as {
  devices: Record<string, { mps: number; scenarios: Scenario[] }>;
};

/** Captured reports: device → scenario → hex reports. */
function loadReports(): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  let dev = '';
  for (const line of readFileSync(join(fixtureDir, 'reports.txt'), 'utf8').split('\n')) {
    const [tag, a, b] = line.split(' ');
    if (tag === 'DEV') out.set((dev = a!), new Map());
    else if (tag === 'REP' || tag === 'DONE') {
      const m = out.get(dev)!;
      if (!m.has(a!)) m.set(a!, []);
      if (tag === 'REP') m.get(a!)!.push(b!);
    }
  }
  return out;
}

/** QEMU button names → report bits (hw/input/hid.c bmap). */
const BUTTON_BITS: Record<string, number> = { left: 1, right: 2, middle: 4, side: 8, extra: 0x10 };
/** QEMU qcodes used by the scenarios → HID usages. */
const QCODE_USAGE: Record<string, number> = {
  a: 0x04, s: 0x16, d: 0x07, f: 0x09, g: 0x0a, h: 0x0b, j: 0x0d, shift: 0xe1, ctrl_r: 0xe4,
  right: 0x4f, left: 0x50, down: 0x51, up: 0x52, home: 0x4a, end: 0x4d, pgup: 0x4b, pgdn: 0x4e,
  insert: 0x49, pause: 0x48,
};

function inject(dev: HidUsbDevice, events: QmpEvent[]): void {
  if (dev instanceof UsbKeyboard) {
    for (const e of events) {
      const u = QCODE_USAGE[e.data.key!.data]!;
      if (e.data.down) dev.keyDown(u);
      else dev.keyUp(u);
    }
    return;
  }
  const p = dev as HidPointerDevice;
  const batch: PointerInput = {};
  let buttons = p.buttonState;
  for (const e of events) {
    if (e.type === 'abs') batch[e.data.axis === 'x' ? 'absX' : 'absY'] = e.data.value!;
    else if (e.type === 'rel') {
      const k = e.data.axis === 'x' ? 'dx' : 'dy';
      batch[k] = (batch[k] ?? 0) + e.data.value!;
    } else if (e.type === 'btn') {
      const b = e.data.button!;
      if (b === 'wheel-up' || b === 'wheel-down') {
        if (e.data.down) batch.wheel = (batch.wheel ?? 0) + (b === 'wheel-up' ? 1 : -1);
      } else {
        buttons = e.data.down ? buttons | BUTTON_BITS[b]! : buttons & ~BUTTON_BITS[b]!;
        batch.buttons = buttons;
      }
    }
  }
  p.input(batch);
}

const captured = loadReports();

describe.each(Object.keys(spec.devices))('%s reports match QEMU 7.2', (name) => {
  const { mps, scenarios } = spec.devices[name]!;
  const clock = new ManualClock();
  const dev = createDevice(name, { clock });
  dev.attach({ complete: () => {}, wakeup: () => {} });
  const host = new TestHost(dev);
  host.enumerate(2);
  host.control(0x21, 10, 0, 0, 0); // SET_IDLE(0), as the capture did

  test.each(scenarios.map((s) => [s.name, s] as const))('%s', (_n, s) => {
    for (const cmd of s.commands) inject(dev, cmd);
    const got: string[] = [];
    for (let p = host.in(1, mps); p.status === 'ack'; p = host.in(1, mps)) {
      got.push(Buffer.from(p.data.subarray(0, p.actualLength)).toString('hex'));
      expect(got.length).toBeLessThan(100);
    }
    const expected = captured.get(name)?.get(s.name);
    expect(expected).toBeDefined();
    expect(got).toEqual(expected);
  });
});
