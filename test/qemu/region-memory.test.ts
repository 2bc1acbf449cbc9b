import { GuestMemoryFault } from '../../src/platform/memory.js';
import { RegionMemory } from '../../src/qemu/region-memory.js';

function mem() {
  const low = new Uint8Array(0x100);
  const high = new Uint8Array(0x100);
  const m = new RegionMemory();
  // A hole at 0x100..0x1ff; the second region is adjacent to a third at 0x300.
  const third = new Uint8Array(0x10);
  m.setRegions([{ gpa: 0x200, bytes: high }, { gpa: 0, bytes: low }, { gpa: 0x300, bytes: third }]);
  return { m, low, high, third };
}

test('reads and writes land at gpa - region base', () => {
  const { m, low, high } = mem();
  m.write(0x10, new Uint8Array([1, 2]));
  m.write(0x2fe, new Uint8Array([9, 8]));
  expect([low[0x10], low[0x11]]).toEqual([1, 2]);
  expect([high[0xfe], high[0xff]]).toEqual([9, 8]);
  const b = new Uint8Array(2);
  m.read(0x2fe, b);
  expect([...b]).toEqual([9, 8]);
});

test('an access spanning adjacent regions is split', () => {
  const { m, high, third } = mem();
  m.write(0x2fe, new Uint8Array([1, 2, 3, 4]));
  expect([high[0xfe], high[0xff], third[0], third[1]]).toEqual([1, 2, 3, 4]);
  const b = new Uint8Array(4);
  m.read(0x2fe, b);
  expect([...b]).toEqual([1, 2, 3, 4]);
});

test('a hole faults, and a faulting write changes nothing', () => {
  const { m, low } = mem();
  expect(() => m.read(0x150, new Uint8Array(1))).toThrow(GuestMemoryFault);
  expect(() => m.write(0xfe, new Uint8Array([7, 7, 7, 7]))).toThrow(GuestMemoryFault);
  expect([low[0xfe], low[0xff]]).toEqual([0, 0]);
  expect(() => m.read(0x310, new Uint8Array(1))).toThrow(GuestMemoryFault);
  expect(() => m.read(-1, new Uint8Array(1))).toThrow(GuestMemoryFault);
});

test('the map can be replaced and emptied; overlaps are refused', () => {
  const { m } = mem();
  expect(m.map).toEqual([{ gpa: 0, size: 0x100 }, { gpa: 0x200, size: 0x100 }, { gpa: 0x300, size: 0x10 }]);
  m.setRegions([]);
  expect(() => m.read(0, new Uint8Array(1))).toThrow(GuestMemoryFault);
  expect(() => m.setRegions([{ gpa: 0, bytes: new Uint8Array(0x20) }, { gpa: 0x10, bytes: new Uint8Array(4) }])).toThrow(RangeError);
});

test('readU32: little-endian inside a region, split across adjacent regions, faults in a hole', () => {
  const { m, low, high, third } = mem();
  low.set([0x78, 0x56, 0x34, 0x12], 0x20);
  expect(m.readU32(0x20)).toBe(0x12345678);
  high.set([0xff, 0xee], 0xfe);
  third.set([0xdd, 0xcc], 0);
  expect(m.readU32(0x2fe)).toBe(0xccddeeff);
  expect(() => m.readU32(0xfe)).toThrow(GuestMemoryFault);
  expect(() => m.readU32(0x150)).toThrow(GuestMemoryFault);
  expect(() => m.readU32(-4)).toThrow(GuestMemoryFault);
});
