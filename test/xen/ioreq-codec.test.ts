/**
 * ioreq_t and buf_ioreq_t codecs against hand-built byte layouts derived from
 * xen/include/public/hvm/ioreq.h (Xen 4.17) as GCC lays it out on x86-64
 * (little endian; bitfields fill a byte from bit 0). Checked on this machine
 * with offsetof / bitfield probes compiled against Debian's libxen-dev 4.17:
 * sizeof(ioreq_t) 32, addr 0, data 8, count 16, size 20, vp_eport 24,
 * _pad0 28, type 31; byte 30: state 0x0f, data_is_ptr 0x10, dir 0x20, df 0x40;
 * sizeof(buf_ioreq_t) 8, buffered_iopage 4096 with slots from offset 8;
 * {type 0xab, dir 1, size 3, addr 0xfedcb, data 0x11223344} → ab be dc fe 44 33 22 11.
 */
import {
  BUF_IOREQ_SLOT_NUM,
  IOREQ_READ,
  IOREQ_SIZE,
  IOREQ_TYPE_INVALIDATE,
  IOREQ_TYPE_PCI_CONFIG,
  IOREQ_TYPE_PIO,
  IOREQ_TYPE_TIMEOFFSET,
  IOREQ_TYPE_COPY,
  STATE_IOREQ_INPROCESS,
  STATE_IOREQ_READY,
  STATE_IORESP_READY,
  advanceBufReadPointer,
  bufPointers,
  bufSlotOffset,
  decodeBufIoreq,
  decodeIoreq,
  decodePciConfigAddr,
  drainBufRing,
  encodeBufIoreq,
  encodeIoreq,
  encodePciConfigAddr,
  ioreqState,
  setBufWritePointer,
  setIoreqData,
  setIoreqState,
  type BufferedWrite,
  type BufRingProblem,
} from '../../src/xen/ioreq.js';

const hex = (s: string) => Uint8Array.from(s.split(/\s+/).filter(Boolean).map((b) => parseInt(b, 16)));

test('constants match ioreq.h', () => {
  expect([IOREQ_TYPE_PIO, IOREQ_TYPE_COPY, IOREQ_TYPE_PCI_CONFIG, IOREQ_TYPE_TIMEOFFSET, IOREQ_TYPE_INVALIDATE]).toEqual([0, 1, 2, 7, 8]);
  expect([STATE_IOREQ_READY, STATE_IOREQ_INPROCESS, STATE_IORESP_READY]).toEqual([1, 2, 3]);
  expect(IOREQ_SIZE).toBe(32);
  expect(8 + BUF_IOREQ_SLOT_NUM * 8).toBe(4096);
});

test('decodes a hand-built rep insw request (data_is_ptr, dir=read, df, state READY)', () => {
  const bytes = hex(`
    62 c0 00 00 00 00 00 00
    00 30 12 00 00 00 00 00
    03 00 00 00 02 00 00 00
    2a 00 00 00 00 00
    71 00`);
  expect(bytes.length).toBe(32);
  expect(decodeIoreq(bytes)).toEqual({
    addr: 0xc062n,
    data: 0x123000n,
    count: 3,
    size: 2,
    vpEport: 42,
    state: STATE_IOREQ_READY,
    dataIsPtr: true,
    dir: IOREQ_READ,
    df: true,
    type: IOREQ_TYPE_PIO,
  });
});

test('encodes a PCI config write for 0000:00:05.0 register 0x20 byte for byte', () => {
  const page = new Uint8Array(64).fill(0xcc);
  encodeIoreq(page, 32, {
    addr: encodePciConfigAddr({ segment: 0, bus: 0, device: 5, fn: 0 }, 0x20),
    data: 0xc001n,
    count: 1,
    size: 4,
    vpEport: 0x1234,
    state: STATE_IOREQ_READY,
    dataIsPtr: false,
    dir: 0,
    df: false,
    type: IOREQ_TYPE_PCI_CONFIG,
  });
  // SBDF 0000:00:05.0 → (5 << 3) = 0x28 in bits 32..39.
  expect(page.subarray(32)).toEqual(hex(`
    20 00 00 00 28 00 00 00
    01 c0 00 00 00 00 00 00
    01 00 00 00 04 00 00 00
    34 12 00 00 00 00
    01 02`));
  expect(page.subarray(0, 32).every((b) => b === 0xcc)).toBe(true); // the neighbouring slot is untouched
});

test('PCI config address: segment 48..63, bus 40..47, device 35..39, function 32..34', () => {
  const a = encodePciConfigAddr({ segment: 0x1234, bus: 0xab, device: 0x1f, fn: 7 }, 0xffc);
  expect(a).toBe(0x1234abff00000ffcn);
  expect(decodePciConfigAddr(a)).toEqual({ sbdf: { segment: 0x1234, bus: 0xab, device: 0x1f, fn: 7 }, reg: 0xffc });
});

test('state updates keep data_is_ptr/dir/df; data write is at offset 8', () => {
  const page = hex('00 '.repeat(30) + '71 00');
  setIoreqState(page, 0, STATE_IORESP_READY);
  expect(page[30]).toBe(0x73);
  expect(ioreqState(page, 0)).toBe(STATE_IORESP_READY);
  setIoreqData(page, 0, 0xffffn);
  expect([...page.subarray(8, 16)]).toEqual([0xff, 0xff, 0, 0, 0, 0, 0, 0]);
});

test('buf_ioreq slot: GCC layout from the header probe', () => {
  const page = new Uint8Array(4096);
  const off = bufSlotOffset(0);
  expect(off).toBe(8);
  encodeBufIoreq(page, off, { type: 0xab, dir: 1, size: 8, addr: 0xfedcb, data: 0x11223344 });
  expect(page.subarray(8, 16)).toEqual(hex('ab be dc fe 44 33 22 11'));
  // byte 1 = pad (bit 0, ignored) | size code 2 (bits 2-3) | addr bits 0-3 in bits 4-7
  expect(decodeBufIoreq(hex('00 09 c0 00 55 00 00 00'), 0)).toEqual({ type: 0, dir: 0, size: 4, addr: 0xc00, data: 0x55 });
  expect(bufSlotOffset(511)).toBe(8); // the pointers are free-running, slots wrap
  expect(bufSlotOffset(510)).toBe(8 + 510 * 8);
});

test('ring: writes drained in order, an 8-byte write takes two slots, pointers wrap', () => {
  const page = new Uint8Array(4096);
  // Start near the wrap so the qword straddles slot 510 → slot 0.
  const start = 510;
  new DataView(page.buffer).setUint32(0, start, true);
  let w = start;
  const put = (b: Parameters<typeof encodeBufIoreq>[2]) => encodeBufIoreq(page, bufSlotOffset(w++), b);
  put({ type: 0, dir: 0, size: 8, addr: 0xc008, data: 0x00002000 });
  put({ type: 0, dir: 0, size: 8, addr: 0xc008, data: 0x11223344 });
  put({ type: 0, dir: 0, size: 2, addr: 0xc004, data: 0x000f });
  setBufWritePointer(page, w);
  const got: BufferedWrite[] = [];
  const n = drainBufRing(page, (r) => got.push(r), () => {
    throw new Error('no problem expected');
  });
  expect(n).toBe(2);
  expect(got).toEqual([
    { type: 0, dir: 0, size: 8, addr: 0xc008, data: 0x1122334400002000n },
    { type: 0, dir: 0, size: 2, addr: 0xc004, data: 0xfn },
  ]);
  expect(bufPointers(page)).toEqual({ read: start + 3, write: start + 3 });
});

test('ring: overrun and a lone qword half are resynchronised, not handled', () => {
  const page = new Uint8Array(4096);
  setBufWritePointer(page, 600);
  const problems: BufRingProblem[] = [];
  expect(drainBufRing(page, () => undefined, (p) => problems.push(p))).toBe(0);
  expect(problems).toEqual([{ kind: 'overrun', read: 0, write: 600 }]);
  expect(bufPointers(page)).toEqual({ read: 600, write: 600 });

  encodeBufIoreq(page, bufSlotOffset(600), { type: 0, dir: 0, size: 8, addr: 1, data: 1 });
  setBufWritePointer(page, 601);
  const handled: BufferedWrite[] = [];
  expect(drainBufRing(page, (r) => handled.push(r), (p) => problems.push(p))).toBe(0);
  expect(handled).toEqual([]);
  expect(problems[1]).toEqual({ kind: 'incomplete-qword', read: 600, write: 601 });
  advanceBufReadPointer(page, 0);
  expect(bufPointers(page).read).toBe(601);
});
