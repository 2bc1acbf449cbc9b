import { closeSync, mkdtempSync, openSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendTrailer, encodeTrailer, MAX_RECORD_BYTES, readTrailer, SavedStateError, type SavedUsbState } from '../../src/xl/saved-state.js';

const dir = mkdtempSync(join(tmpdir(), 'uhci-saved-'));
const QEMU = Buffer.from('QEVM\0\0\0\x03' + 'device state '.repeat(100), 'latin1');
const STATE: SavedUsbState = {
  format: 'uhci-dm-xl-state',
  version: 1,
  controllers: [{ id: '', bdf: '00:01.2', devices: [{ id: '#1', port: 1 }], snapshot: { format: 'uhci-dm-xen-snapshot', version: 1 } }],
};

function split(bytes: Buffer) {
  const f = join(dir, `s${Math.random()}`);
  writeFileSync(f, bytes);
  const fd = openSync(f, 'r');
  try {
    return readTrailer(fd);
  } finally {
    closeSync(fd);
  }
}

test('QEMU bytes + trailer: QEMU\'s length and the record come back; QEMU\'s bytes are untouched', () => {
  const f = join(dir, 'save');
  writeFileSync(f, QEMU);
  appendTrailer(f, STATE);
  const all = readFileSync(f);
  expect(all.subarray(0, QEMU.length).equals(QEMU)).toBe(true);
  const fd = openSync(f, 'r');
  expect(readTrailer(fd)).toEqual({ qemuBytes: QEMU.length, usb: STATE });
  closeSync(fd);
});

test('a file of QEMU\'s alone (saved without the wrapper) has no USB part', () => {
  expect(split(QEMU)).toEqual({ qemuBytes: QEMU.length, usb: null });
  expect(split(Buffer.alloc(3))).toEqual({ qemuBytes: 3, usb: null });
});

test('damaged trailers are errors, not guesses', () => {
  const good = Buffer.concat([QEMU, encodeTrailer(STATE)]);
  const badCrc = Buffer.from(good);
  badCrc[QEMU.length + 5]! ^= 1;
  expect(() => split(badCrc)).toThrow(/CRC/);
  const tooLong = Buffer.from(good);
  tooLong.writeUInt32LE(good.length, good.length - 8);
  expect(() => split(tooLong)).toThrow(SavedStateError);
  const huge = Buffer.from(good);
  huge.writeUInt32LE(MAX_RECORD_BYTES + 1, good.length - 8);
  expect(() => split(huge)).toThrow(/claims/);
  const wrong = Buffer.concat([QEMU, encodeTrailer({ ...STATE, controllers: [{ ...STATE.controllers[0]!, bdf: '../x' }] })]);
  expect(() => split(wrong)).toThrow(/unknown format/);
});
