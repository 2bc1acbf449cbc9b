/**
 * The one I/O-window decode (src/device/io-window.ts) at its edges, against
 * QEMU's memory-core rule: the bytes inside the window reach the function as
 * naturally aligned pieces, the bytes past its end read all ones.
 */
import { windowOffset } from '../../src/device/io-window.js';
import { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';

const BASE = 0xc040;

function fn() {
  const f = new UhciPciFunction({ mem: new FlatMemory(1 << 16), irq: new LatchedIrq(), clock: new ManualClock() });
  f.configWrite(0x20, 4, BASE | 1);
  f.configWrite(0x04, 2, 0x0005);
  f.ioWrite(0x0c, 1, 0x5a); // SOFMOD, so the bytes read are not all reset values
  f.ioWrite(0x04, 2, 0x000f);
  return f;
}

/** What QEMU's memory core returns: aligned pieces, each inside (the function) or outside (all ones). */
function piecewise(f: UhciPciFunction, off: number, size: number): number {
  let v = 0;
  for (let i = 0; i < size; ) {
    const o = off + i;
    let len = Math.min(size - i, 4);
    while (len > 1 && (o % len !== 0 || len > size - i)) len >>= 1;
    if (len === 3) len = 2;
    const piece = o >= 0 && o + len <= 32 ? f.ioRead(o, len as 1 | 2 | 4) : len === 4 ? 0xffffffff : (1 << (8 * len)) - 1;
    v = (v | (piece << (8 * i))) >>> 0;
    i += len;
  }
  return v >>> 0;
}

describe('I/O window decode', () => {
  test('the window follows the BAR and I/O decoding', () => {
    const f = fn();
    expect(f.ioWindow).toEqual({ base: BASE, size: 32 });
    expect(f.ioWindow).toBe(f.ioWindow); // no allocation per access while the BAR stays put
    const seen: unknown[] = [];
    f.onIoWindowChange = (w) => seen.push(w);
    f.configWrite(0x04, 2, 0x0004); // I/O decoding off
    expect(f.ioWindow).toBeNull();
    expect(f.portRead(BASE, 2)).toBeUndefined();
    expect(f.portWrite(BASE, 2, 0)).toBe(false);
    f.configWrite(0x04, 2, 0x0005);
    expect(seen).toEqual([null, { base: BASE, size: 32 }]);
  });

  test.each([
    [0x00, 4],
    [0x1c, 4],
    [0x1d, 4],
    [0x1e, 4],
    [0x1f, 4],
    [0x1e, 2],
    [0x1f, 2],
    [0x1f, 1],
  ])('an access at offset 0x%s of size %d reads as QEMU cuts it at the window end', (off, size) => {
    const f = fn();
    expect(f.portRead(BASE + off, size as 1 | 2 | 4)).toBe(piecewise(f, off, size));
  });

  test('a straddle reads the bytes inside from the function and all ones past the end', () => {
    const f = fn();
    const inside = f.ioRead(0x1e, 2);
    expect(inside).not.toBe(0xffff); // (QEMU: an unimplemented register, 0xff7f)
    expect(f.portRead(BASE + 0x1e, 4)).toBe((0xffff0000 | inside) >>> 0);
    expect(f.portRead(BASE + 0x1f, 2)).toBe(0xff00 | f.ioRead(0x1f, 1));
  });

  test('accesses whose first byte is outside the window are not the function’s', () => {
    const f = fn();
    for (const port of [BASE - 1, BASE - 2, BASE - 4, BASE + 0x20, BASE + 0x21, 0]) {
      expect(f.portRead(port, 4)).toBeUndefined();
      expect(f.portWrite(port, 4, 0xffffffff)).toBe(false);
    }
    expect(f.ioRead(0x0c, 1)).toBe(0x5a); // the dropped writes changed nothing
    expect(windowOffset({ base: BASE, size: 32 }, BASE + 31)).toBe(31);
    expect(windowOffset({ base: BASE, size: 32 }, BASE + 32)).toBeNull();
    expect(windowOffset(null, BASE)).toBeNull();
  });
});
