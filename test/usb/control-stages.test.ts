/**
 * The control-transfer stages shared by the emulated devices and the libusb
 * passthrough (src/usb/control-pipe.ts, QEMU core.c do_token_*), without a
 * device: SETUP, data stage in either direction, status stage, stalls.
 */
import { ControlPipe } from '../../src/usb/control-pipe.js';
import { PID_IN, PID_OUT, PID_SETUP, UsbPacket } from '../../src/usb/packet.js';

const setup = (rt: number, len: number) => new UsbPacket(PID_SETUP, 0, 0, Uint8Array.of(rt, 9, 0, 0, 0, 0, len & 0xff, len >> 8));
const inp = (n: number) => new UsbPacket(PID_IN, 0, 0, new Uint8Array(n));
const out = (bytes: number[]) => new UsbPacket(PID_OUT, 0, 0, Uint8Array.from(bytes));

test('host-to-device with data: OUT chunks fill the buffer, the status IN hands the request to the device once', () => {
  const pipe = new ControlPipe(64);
  expect(pipe.setupToken(setup(0x21, 5))).toBe(true);
  pipe.stage = 'data';
  const a = out([1, 2, 3]);
  pipe.outToken(a);
  expect([a.status, a.actualLength, pipe.stage]).toEqual(['ack', 3, 'data']);
  pipe.outToken(out([4, 5, 6])); // one byte too many: only wLength is kept
  expect(pipe.stage).toBe('status');
  expect([...pipe.data()]).toEqual([1, 2, 3, 4, 5]);
  pipe.outToken(out([7])); // extra OUT in the status stage: acknowledged, ignored
  expect(pipe.stage).toBe('status');
  expect(pipe.inToken(inp(0))).toBe(true);
  expect(pipe.stage).toBe('idle');
  const again = inp(0);
  expect(pipe.inToken(again)).toBe(false);
  expect(again.status).toBe('stall');
});

test('device-to-host: the answer is cut to wLength, served in packet-sized pieces, then zero-length INs; the status OUT ends it', () => {
  const pipe = new ControlPipe(64);
  expect(pipe.setupToken(setup(0x80, 10))).toBe(true);
  pipe.buffer.set([...Array(12).keys()]);
  pipe.answered(12); // more than asked for: wLength wins
  const chunks: number[][] = [];
  for (let k = 0; k < 3; k++) {
    const p = inp(4);
    expect(pipe.inToken(p)).toBe(false);
    chunks.push([...p.data.subarray(0, p.actualLength)]);
  }
  expect(chunks).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
  expect(pipe.stage).toBe('status');
  const extra = inp(4);
  expect(pipe.inToken(extra)).toBe(false);
  expect([extra.status, extra.actualLength]).toEqual(['ack', 0]);
  pipe.outToken(out([]));
  expect(pipe.stage).toBe('idle');
});

test('a token in the wrong direction during the data stage stalls and ends the transfer', () => {
  const pipe = new ControlPipe(64);
  pipe.setupToken(setup(0x80, 8));
  pipe.answered(8);
  const o = out([1]);
  pipe.outToken(o);
  expect([o.status, pipe.stage]).toEqual(['stall', 'idle']);
  pipe.setupToken(setup(0x00, 4));
  pipe.stage = 'data';
  const i = inp(4);
  expect(pipe.inToken(i)).toBe(false);
  expect([i.status, pipe.stage]).toEqual(['stall', 'idle']);
});

test('SETUP not 8 bytes, or wLength beyond the buffer: refused, stage and length kept (QEMU "ctrl buffer too small")', () => {
  const pipe = new ControlPipe(64);
  pipe.setupToken(setup(0x80, 8));
  pipe.answered(8);
  expect(pipe.setupToken(new UsbPacket(PID_SETUP, 0, 0, new Uint8Array(7)))).toBe(false);
  expect(pipe.setupToken(setup(0x80, 65))).toBe(false);
  expect([pipe.stage, pipe.length]).toEqual(['data', 8]);
  // The too-long SETUP's bytes were taken (as QEMU copies setup_buf before the check).
  expect([pipe.setup[6], pipe.setup[7], pipe.index]).toEqual([65, 0, 0]);
});
