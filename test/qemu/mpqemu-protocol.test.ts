import {
  MPQEMU_CMD,
  MPQEMU_HEADER_SIZE,
  MessageAssembler,
  MpqemuProtocolError,
  decodeHeader,
  decodeMessage,
  encodeBarMsg,
  encodeConfigMsg,
  encodeRet,
  encodeSyncSysmem,
  needsReply,
} from '../../src/qemu/mpqemu-protocol.js';

/** Hand-built message: header {i32 cmd, 4 pad, u64 size} + payload (QEMU 7.2 mpqemu-link.h). */
function raw(cmd: number, payload: number[]): Uint8Array {
  const b = new Uint8Array(16 + payload.length);
  b[0] = cmd & 0xff;
  b[4] = 0xaa; // QEMU zeroes the padding; the decoder must not read it anyway
  b[8] = payload.length;
  b.set(payload, 16);
  return b;
}
const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const le64 = (v: number) => [...le32(v % 2 ** 32), ...le32(Math.floor(v / 2 ** 32))];

function feedWhole(asm: MessageAssembler, bytes: Uint8Array, fds: number[] = []) {
  let off = 0;
  let first = true;
  let msg = null;
  while (off < bytes.length) {
    const n = asm.wanted();
    msg = asm.push(bytes.subarray(off, off + n), first ? fds : []);
    first = false;
    off += n;
  }
  return msg;
}

describe('mpqemu header', () => {
  test('16 bytes: cmd at 0, size at 8, padding ignored', () => {
    expect(MPQEMU_HEADER_SIZE).toBe(16);
    const h = decodeHeader(raw(3, new Array(12).fill(0)));
    expect(h).toEqual({ cmd: 3, size: 12 });
  });
  test('payload larger than sizeof(MPQemuMsg.data) = 192 is refused', () => {
    const b = raw(0, []);
    b[8] = 193;
    expect(() => decodeHeader(b)).toThrow(MpqemuProtocolError);
    b[8] = 192;
    expect(decodeHeader(b).size).toBe(192);
  });
});

describe('mpqemu payloads', () => {
  test('PCI_CFGREAD {u32 addr, u32 val, i32 len}', () => {
    const b = raw(MPQEMU_CMD.PCI_CFGREAD, [...le32(0x3d), ...le32(0), ...le32(1)]);
    expect(decodeMessage(3, b.subarray(16), [])).toEqual({ cmd: 'config-read', addr: 0x3d, len: 1 });
  });
  test('PCI_CFGWRITE carries the value', () => {
    const b = raw(MPQEMU_CMD.PCI_CFGWRITE, [...le32(0x20), ...le32(0xc001), ...le32(4)]);
    expect(decodeMessage(2, b.subarray(16), [])).toEqual({ cmd: 'config-write', addr: 0x20, value: 0xc001, len: 4 });
  });
  test('BAR_READ/BAR_WRITE {u64 addr, u64 val, u32 size, bool memory} (24 bytes with tail padding)', () => {
    const p = [...le64(0xc010), ...le64(0x1234), ...le32(2), 0, 0xee, 0xee, 0xee];
    expect(p.length).toBe(24);
    expect(decodeMessage(MPQEMU_CMD.BAR_WRITE, new Uint8Array(p), [])).toEqual({
      cmd: 'bar-write', addr: 0xc010, value: 0x1234n, size: 2, memory: false,
    });
    const q = [...le64(0xfebf0000), ...le64(0), ...le32(4), 1, 0, 0, 0];
    expect(decodeMessage(MPQEMU_CMD.BAR_READ, new Uint8Array(q), [])).toEqual({
      cmd: 'bar-read', addr: 0xfebf0000, size: 4, memory: true,
    });
  });
  test('SYNC_SYSMEM {gpas[8], sizes[8], offsets[8]} pairs entry i with fd i', () => {
    const p = new Array(192).fill(0);
    const put = (at: number, v: number) => p.splice(at, 8, ...le64(v));
    put(0, 0);
    put(8, 0x100000);
    put(64, 0xa0000);
    put(72, 0x1ff00000);
    put(128, 0);
    put(136, 0x100000);
    const m = decodeMessage(MPQEMU_CMD.SYNC_SYSMEM, new Uint8Array(p), [40, 41]);
    expect(m).toEqual({
      cmd: 'sync-sysmem',
      regions: [
        { gpa: 0, size: 0xa0000, offset: 0, fd: 40 },
        { gpa: 0x100000, size: 0x1ff00000, offset: 0x100000, fd: 41 },
      ],
    });
    expect(() => decodeMessage(MPQEMU_CMD.SYNC_SYSMEM, new Uint8Array(p), [])).toThrow(MpqemuProtocolError);
  });
  test('SET_IRQFD: no payload, two fds (irq, resample)', () => {
    expect(decodeMessage(MPQEMU_CMD.SET_IRQFD, new Uint8Array(0), [7, 8])).toEqual({ cmd: 'set-irqfd', irqFd: 7, resampleFd: 8 });
    expect(() => decodeMessage(MPQEMU_CMD.SET_IRQFD, new Uint8Array(0), [7])).toThrow(MpqemuProtocolError);
  });
  test('short payloads and stray fds are protocol errors', () => {
    expect(() => decodeMessage(MPQEMU_CMD.PCI_CFGREAD, new Uint8Array(8), [])).toThrow(MpqemuProtocolError);
    expect(() => decodeMessage(MPQEMU_CMD.BAR_READ, new Uint8Array(24), [5])).toThrow(MpqemuProtocolError);
  });
  test('unknown commands are passed through with their fds', () => {
    expect(decodeMessage(42, new Uint8Array([1, 2]), [9])).toEqual({ cmd: 'unknown', code: 42, payload: new Uint8Array([1, 2]), fds: [9] });
  });
  test('which requests wait for a RET', () => {
    expect(needsReply({ cmd: 'bar-read', addr: 0, size: 1, memory: false })).toBe(true);
    expect(needsReply({ cmd: 'device-reset' })).toBe(true);
    expect(needsReply({ cmd: 'set-irqfd', irqFd: 1, resampleFd: 2 })).toBe(false);
    expect(needsReply({ cmd: 'sync-sysmem', regions: [] })).toBe(false);
  });
});

describe('encoders', () => {
  test('RET is header(cmd 1, size 8) + u64', () => {
    expect([...encodeRet(0x7020_8086)]).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0x86, 0x80, 0x20, 0x70, 0, 0, 0, 0]);
    expect([...encodeRet(-1).subarray(16)]).toEqual(new Array(8).fill(0xff));
  });
  test('encoders round-trip through the decoder', () => {
    const asm = new MessageAssembler();
    expect(feedWhole(asm, encodeConfigMsg(true, 0x04, 0x0105, 2))).toEqual({ cmd: 'config-write', addr: 4, value: 0x105, len: 2 });
    expect(feedWhole(asm, encodeBarMsg(false, 0xc002, 0n, 2, false))).toEqual({ cmd: 'bar-read', addr: 0xc002, size: 2, memory: false });
    const m = feedWhole(asm, encodeSyncSysmem([{ gpa: 0x100000, size: 0x1000, offset: 0x100000 }]), [33]);
    expect(m).toEqual({ cmd: 'sync-sysmem', regions: [{ gpa: 0x100000, size: 0x1000, offset: 0x100000, fd: 33 }] });
  });
});

describe('MessageAssembler', () => {
  test('asks for the header, then exactly the payload', () => {
    const asm = new MessageAssembler();
    expect(asm.wanted()).toBe(16);
    const msg = encodeConfigMsg(false, 0x08, 0, 4);
    expect(asm.push(msg.subarray(0, 16))).toBeNull();
    expect(asm.wanted()).toBe(12);
    expect(asm.push(msg.subarray(16))).toEqual({ cmd: 'config-read', addr: 8, len: 4 });
    expect(asm.wanted()).toBe(16);
  });
  test('byte-at-a-time reads reassemble; fds from the first read stay with the message', () => {
    const asm = new MessageAssembler();
    const bytes = raw(MPQEMU_CMD.SET_IRQFD, []);
    let msg = null;
    for (let i = 0; i < bytes.length; i++) msg = asm.push(bytes.subarray(i, i + 1), i === 0 ? [11, 12] : []);
    expect(msg).toEqual({ cmd: 'set-irqfd', irqFd: 11, resampleFd: 12 });
    expect(asm.takeFds()).toEqual([]);
  });
  test('a zero-size message (DEVICE_RESET) completes with its header', () => {
    const asm = new MessageAssembler();
    expect(asm.push(raw(MPQEMU_CMD.DEVICE_RESET, []))).toEqual({ cmd: 'device-reset' });
  });
  test('reading past the wanted length is refused', () => {
    const asm = new MessageAssembler();
    expect(() => asm.push(new Uint8Array(17))).toThrow(MpqemuProtocolError);
  });
  test('fds of a malformed message are kept for the caller to close', () => {
    const asm = new MessageAssembler();
    expect(() => asm.push(raw(MPQEMU_CMD.SET_IRQFD, []), [21])).toThrow(MpqemuProtocolError);
    expect(asm.takeFds()).toEqual([21]);
  });
});
