/** A short fuzz run inside `npm test` (the long run is `npm run fuzz -- --runs N`; the mutation check `npm run mutants`). */
import { fuzz } from './harness.js';
import { CheckingMemory, InvariantViolation } from './checking-memory.js';
import { qemuIrqLevel } from './frame-invariants.js';
import { TD_CTRL, makeToken } from '../../src/uhci/descriptors.js';
import { PENDING_IOC } from '../../src/uhci/schedule-host.js';
import { PID_IN } from '../../src/usb/packet.js';

const w32 = (v: number) => Uint8Array.from([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24]);

/** Fetch the TD at `addr` the way the engine's fast path does (four dwords). */
function fetchTd(m: CheckingMemory, addr: number): void {
  for (let i = 0; i < 16; i += 4) m.readU32(addr + i);
}

test('hostile guests: 300 random cases keep every invariant, and frames were replayed and compared', () => {
  const r = fuzz(300, 20261125);
  if (r.error) throw new Error(r.error);
  expect(r.failures).toBe(0);
  expect(r.runs).toBe(300);
  // Replay must really happen (and so be compared with a run without it).
  expect(r.casesReplayed).toBeGreaterThan(10);
  expect(r.framesReplayed).toBeGreaterThan(100);
}, 120_000);

test('the memory checker bites: stray writes, overlong IN data, double retire, unaligned TDs', () => {
  const m = new CheckingMemory();
  expect(() => m.write(0x5000, new Uint8Array(4))).toThrow(InvariantViolation);
  // An active IN TD (maxLen 8, buffer 0x5000) at 0x2000.
  m.ram.writeU32(0x2004, TD_CTRL.bit.ACTIVE);
  m.ram.writeU32(0x2008, makeToken(PID_IN, 1, 1, 0, 8));
  m.ram.writeU32(0x200c, 0x5000);
  m.beginWalk();
  fetchTd(m, 0x2000);
  expect(() => m.write(0x5000, new Uint8Array(8))).not.toThrow();
  expect(() => m.write(0x5000, new Uint8Array(9))).toThrow(InvariantViolation);
  m.write(0x2004, w32(0)); // retire once
  fetchTd(m, 0x2000);
  m.ram.writeU32(0x2004, TD_CTRL.bit.ACTIVE);
  (m as unknown as { tds: Map<number, { ctrl: number }> }).tds.get(0x2000)!.ctrl = TD_CTRL.bit.ACTIVE;
  expect(() => m.write(0x2004, w32(0))).toThrow(/retired twice/);
  // A new walk: what the last one fetched no longer allows writes.
  m.beginWalk();
  expect(() => m.write(0x5000, new Uint8Array(1))).toThrow(InvariantViolation);
  // Four dwords from an address that is not 16-byte aligned are a TD fetch there.
  expect(() => fetchTd(m, 0x2008)).toThrow(/not 16-byte aligned/);
  expect(() => m.readU32(0x2002)).toThrow(/unaligned/);
});

test('a retire asks for IOC, and a short IN packet with SPD for the short-packet interrupt', () => {
  const m = new CheckingMemory();
  m.ram.writeU32(0x2004, TD_CTRL.bit.ACTIVE | TD_CTRL.bit.IOC | TD_CTRL.bit.SPD);
  m.ram.writeU32(0x2008, makeToken(PID_IN, 1, 1, 0, 8));
  m.beginWalk();
  fetchTd(m, 0x2000);
  // Retired with IOC while the engine has not asked for the interrupt: caught at the write-back.
  expect(() => m.write(0x2004, w32(TD_CTRL.bit.IOC | TD_CTRL.bit.SPD | 6))).toThrow(/without requesting the IOC interrupt/);
  m.guestWrite32(0x2004, TD_CTRL.bit.ACTIVE | TD_CTRL.bit.IOC | TD_CTRL.bit.SPD);
  m.beginWalk();
  fetchTd(m, 0x2000);
  m.pendingInt = () => PENDING_IOC;
  m.write(0x2004, w32(TD_CTRL.bit.IOC | TD_CTRL.bit.SPD | 6)); // ActLen 7 of 8: one byte short
  expect(m.expectIoc).toBe(true);
  expect(m.expectSpd).toBe(true);
  m.beginWalk();
  fetchTd(m, 0x2000);
  m.ram.writeU32(0x2004, TD_CTRL.bit.ACTIVE | TD_CTRL.bit.SPD);
  m.guestWrite32(0x2004, TD_CTRL.bit.ACTIVE | TD_CTRL.bit.SPD);
  fetchTd(m, 0x2000);
  m.write(0x2004, w32(TD_CTRL.bit.SPD | 7)); // full length: not short
  expect(m.expectIoc).toBe(false);
  expect(m.expectSpd).toBe(false);
});

test("QEMU's IRQ level: each cause only with its enable, HSE and HCPE always", () => {
  expect(qemuIrqLevel(0, 1, 0x4)).toBe(true);
  expect(qemuIrqLevel(0x1, 1, 0x8)).toBe(false); // USBINT from IOC, only SP enabled
  expect(qemuIrqLevel(0, 2, 0x8)).toBe(true);
  expect(qemuIrqLevel(0x2, 0, 0x1)).toBe(true);
  expect(qemuIrqLevel(0x2, 0, 0xe)).toBe(false);
  expect(qemuIrqLevel(0x4, 0, 0x2)).toBe(true);
  expect(qemuIrqLevel(0x8, 0, 0)).toBe(true);
  expect(qemuIrqLevel(0x10, 0, 0)).toBe(true);
  expect(qemuIrqLevel(0x21, 0, 0xf)).toBe(false); // USBINT without status2, HCHalted: no cause
});
