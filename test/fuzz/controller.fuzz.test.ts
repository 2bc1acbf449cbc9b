/** A short fuzz run inside `npm test` (the long run is `npm run fuzz -- --runs N`). */
import { fuzz, InvariantViolation, CheckingMemory } from './harness.js';
import { makeToken, TD_CTRL } from '../../src/uhci/descriptors.js';
import { PID_IN } from '../../src/usb/packet.js';

test('hostile guests: 300 random cases keep every invariant', () => {
  const r = fuzz(300, 20261125);
  if (r.error) throw new Error(r.error);
  expect(r.failures).toBe(0);
  expect(r.runs).toBe(300);
}, 120_000);

test('the invariant checker bites: stray writes, overlong IN data, double retire', () => {
  const m = new CheckingMemory();
  const w32 = (v: number) => Uint8Array.from([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24]);
  expect(() => m.write(0x5000, new Uint8Array(4))).toThrow(InvariantViolation);
  // Fetch an active IN TD (maxLen 8, buffer 0x5000) at 0x2000.
  m.ram.writeU32(0x2004, TD_CTRL.bit.ACTIVE);
  m.ram.writeU32(0x2008, makeToken(PID_IN, 1, 1, 0, 8));
  m.ram.writeU32(0x200c, 0x5000);
  m.newFrame();
  m.read(0x2000, new Uint8Array(16));
  expect(() => m.write(0x5000, new Uint8Array(8))).not.toThrow();
  expect(() => m.write(0x5000, new Uint8Array(9))).toThrow(InvariantViolation);
  m.write(0x2004, w32(0)); // retire once
  m.read(0x2000, new Uint8Array(16));
  (m as unknown as { tds: Map<number, { ctrl: number }> }).tds.get(0x2000)!.ctrl = TD_CTRL.bit.ACTIVE;
  expect(() => m.write(0x2004, w32(0))).toThrow(/retired twice/);
});
