/**
 * End-to-end wire-time check through the controller: a queue of TDs to a
 * device that always answers is processed for one frame; the number of
 * transactions that fit must be within one of the USB 2.0 full-speed
 * transaction-limit tables (§5.7.4 Table 5-4 isochronous, §5.8.4 Table 5-7
 * interrupt, §5.8.4 Table 5-9 bulk: max per frame = floor(1500 / (overhead +
 * payload)), overhead 9 bytes for isochronous, 13 for bulk/interrupt), which
 * assume no bit stuffing; stuffing-heavy payloads (0xFF) fit fewer.
 */
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';
import { UhciController, FRAME_NS } from '../../src/uhci/controller.js';
import { PID_OUT } from '../../src/usb/packet.js';
import { FakeDevice } from '../support/fake-device.js';
import { ScheduleBuilder } from '../support/schedule-builder.js';
import { LINK, TD_CTRL } from '../../src/uhci/descriptors.js';

function transactionsInOneFrame(payload: number, fill: number, iso: boolean, sofmod = 64): number {
  const mem = new FlatMemory(0x400000);
  const clock = new ManualClock();
  const hc = new UhciController({ mem, irq: new LatchedIrq(), clock });
  const sb = new ScheduleBuilder(mem);
  const dev = new FakeDevice();
  dev.fallback = { status: 'ack' };
  hc.attach(0, dev);
  hc.ioWrite(0x10, 2, 0x000e);
  dev.address = 1;
  const n = 400;
  const tds: number[] = [];
  const buf = sb.buffer(new Array(payload).fill(fill));
  let next = LINK.bit.T;
  for (let i = n - 1; i >= 0; i--) {
    const td = sb.td({ pid: PID_OUT, dev: 1, ep: 1, maxLen: payload, buffer: buf, link: next, iso });
    next = iso ? td : ScheduleBuilder.vf(td);
    tds.unshift(td);
  }
  if (iso) sb.setFrame(tds[0]!, 0);
  else sb.setFrame(ScheduleBuilder.q(sb.qh(LINK.bit.T, tds[0]!)), 0);
  hc.ioWrite(0x08, 4, sb.flBase);
  hc.ioWrite(0x0c, 1, sofmod);
  hc.ioWrite(0x00, 2, 0x00c1);
  clock.advance(FRAME_NS);
  return tds.filter((td) => (mem.readU32(td + 4) & TD_CTRL.bit.ACTIVE) === 0).length;
}

const table = (overhead: number, payload: number) => Math.floor(1500 / (overhead + payload));

describe('transactions per frame under saturation (USB 2.0 §5.7.4, §5.8.4)', () => {
  test.each([1, 2, 4, 8, 16, 32, 48, 64])('bulk OUT, %i-byte zero payloads: within one of the table', (n) => {
    const got = transactionsInOneFrame(n, 0, false);
    expect(Math.abs(got - table(13, n))).toBeLessThanOrEqual(1);
  });

  test.each([8, 64, 128, 256, 512, 1023])('isochronous OUT, %i-byte zero payloads: within one of the table', (n) => {
    const got = transactionsInOneFrame(n, 0, true);
    expect(Math.abs(got - table(9, n))).toBeLessThanOrEqual(1);
  });

  test.each([8, 32, 64])('bulk OUT with 0xFF payloads (%i bytes) fits fewer than zero payloads', (n) => {
    expect(transactionsInOneFrame(n, 0xff, false)).toBeLessThan(transactionsInOneFrame(n, 0, false));
  });

  test('SOFMOD sets the frame length (UHCI DG §2.1.6: 11936 + SOFMOD bit times)', () => {
    // 1-byte bulk costs ~110 bit times: 127 more bit times fit at least one more.
    expect(transactionsInOneFrame(1, 0, false, 127)).toBeGreaterThan(transactionsInOneFrame(1, 0, false, 0));
  });
});
