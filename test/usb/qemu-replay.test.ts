/**
 * Replays, request by request, what a Linux guest asked QEMU 7.2's HID
 * devices (test/fixtures/qemu-7.2/raw-console.txt) against our devices and
 * expects the same answers: the same bytes, or a stall where QEMU stalled.
 */
import { ManualClock } from '../../src/platform/clock.js';
import { createDevice } from '../../src/usb/devices.js';
import type { HidUsbDevice } from '../../src/usb/hid/hid-device.js';
import { loadQemuFixture, type ProbeLine } from './qemu-fixture.js';
import { TestHost } from './host.js';

const fx = loadQemuFixture();

const cases: [string, 'usb-tablet' | 'usb-kbd' | 'usb-mouse'][] = [
  ['QEMU USB Tablet', 'usb-tablet'],
  ['QEMU USB Keyboard', 'usb-kbd'],
  ['QEMU USB Mouse', 'usb-mouse'],
];

/** usbfs bulk/interrupt read: packets of wMaxPacketSize until short or full, NAKs retried each 1 ms frame. */
function interruptRead(host: TestHost, clock: ManualClock, ep: number, mps: number, len: number, timeoutMs: number): Uint8Array | 'ETIMEDOUT' {
  const got: number[] = [];
  for (let t = 0; t < timeoutMs; ) {
    const p = host.in(ep & 0x0f, Math.min(mps, len - got.length));
    if (p.status === 'nak') {
      clock.advance(1_000_000);
      t++;
      continue;
    }
    if (p.status !== 'ack') throw new Error(`interrupt IN: ${p.status}`);
    got.push(...p.data.subarray(0, p.actualLength));
    if (p.actualLength < mps || got.length >= len) return Uint8Array.from(got);
  }
  return got.length ? Uint8Array.from(got) : 'ETIMEDOUT';
}

describe.each(cases)('%s answers like QEMU 7.2', (product, spec) => {
  const path = fx.pathOf.get(product)!;
  const sys = fx.sysfs.get(path)!;
  const probes = fx.probes.get(path)!;

  test('the capture has this device', () => {
    expect(path).toBeDefined();
    expect(probes.length).toBeGreaterThan(60);
  });

  test('every probed request gives the same result', () => {
    const clock = new ManualClock();
    const dev: HidUsbDevice = createDevice(spec, {
      clock,
      hcdPath: '0000:00:02.0',
      portPath: path.replace(/^\d+-/, ''),
    });
    dev.attach({ complete: () => {}, wakeup: () => {} });
    const host = new TestHost(dev);
    host.enumerate(Number(sys.get('devnum')));
    const mps = dev.descriptorSet.device.configs[0]!.interfaces[0]!.endpoints[0]!.maxPacketSize;
    const mismatches: string[] = [];
    for (const pr of probes as ProbeLine[]) {
      let ours: Uint8Array | string;
      if (pr.kind === 'R') {
        const out = pr.label === 'set_report' ? Uint8Array.of(0x03) : undefined;
        ours = host.tryControl(pr.requestType, pr.request, pr.value, pr.index, pr.length, out);
      } else {
        ours = interruptRead(host, clock, pr.endpoint!, mps, pr.length, pr.label === 'intr_noidle' ? 200 : 1000);
      }
      const theirs = pr.data ? Buffer.from(pr.data).toString('hex') : pr.error;
      const mine = typeof ours === 'string' ? ours : pr.kind === 'R' && !(pr.requestType & 0x80) ? '' : Buffer.from(ours).toString('hex');
      if (mine !== theirs) mismatches.push(`${pr.label}: qemu=${theirs} ours=${mine}`);
    }
    expect(mismatches).toEqual([]);
    // The set_report of the probe (0x03) reached the keyboard's LEDs.
    if (spec === 'usb-kbd') expect((dev as unknown as { leds: number }).leds).toBe(0x03);
  });
});
