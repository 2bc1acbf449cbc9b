/**
 * Unit tests of the UHCI PCI config space that need no QEMU. The expected
 * numbers are the ones read from QEMU 7.2.22 (config-space.qemu.test.ts checks
 * the class against QEMU itself).
 */
import fc from 'fast-check';
import {
  ConfigAccessError,
  ConfigStateError,
  UhciConfigSpace,
  type UhciVariant,
} from '../../src/pci/config-space.js';

const VARIANTS: UhciVariant[] = ['piix3', 'piix4'];

function dwords(cs: UhciConfigSpace): Map<number, number> {
  const m = new Map<number, number>();
  for (let off = 0; off < 256; off += 4) {
    const v = cs.read(off, 4);
    if (v !== 0) m.set(off, v);
  }
  return m;
}

describe.each(VARIANTS)('UhciConfigSpace %s power-on image', (variant) => {
  const cs = new UhciConfigSpace(variant);
  it('has exactly the non-zero dwords QEMU 7.2 shows', () => {
    // Measured with qtest on `-machine pc -device <variant>-usb-uhci,addr=05.0`.
    expect(Object.fromEntries([...dwords(cs)].map(([k, v]) => [k.toString(16), v.toString(16)]))).toEqual({
      '0': variant === 'piix3' ? '70208086' : '71128086',
      '8': 'c030001', // class 0c0300, revision 01
      '20': '1', // BAR4: I/O, unassigned
      '2c': '11001af4', // subsystem 1af4:1100
      '3c': '400', // interrupt pin D, line 0
      '60': '10', // SBRN USB 1.0
      '68': '10000', // 0x6a = 01 (USB clock)
    });
  });
  it('decodes the identity fields', () => {
    expect(cs.read(0x00, 2)).toBe(0x8086);
    expect(cs.read(0x02, 2)).toBe(variant === 'piix3' ? 0x7020 : 0x7112);
    expect(cs.read(0x08, 1)).toBe(0x01);
    expect(cs.read(0x09, 1)).toBe(0x00);
    expect(cs.read(0x0a, 2)).toBe(0x0c03);
    expect(cs.read(0x0e, 1)).toBe(0x00);
    expect(cs.read(0x34, 1)).toBe(0x00);
    expect(cs.read(0xc0, 2)).toBe(0x0000); // LEGSUP: QEMU leaves it 0, not the datasheet's 0x2000
    expect(cs.interruptPin).toBe(4);
    expect(cs.interruptLine).toBe(0);
    expect(cs.ioEnabled).toBe(false);
    expect(cs.busMaster).toBe(false);
    expect(cs.ioBase).toBeNull();
  });
});

describe('UhciConfigSpace reads', () => {
  it('assembles any size little-endian, also across dwords', () => {
    const cs = new UhciConfigSpace();
    expect(cs.read(1, 2)).toBe(0x2080);
    expect(cs.read(3, 1)).toBe(0x70);
    expect(cs.read(2, 4)).toBe(0x00007020); // bytes 2..5: 20 70 00 00
    expect(cs.read(0x3c, 4)).toBe(0x00000400);
  });
  it('reads bytes past 256 as 0 and an access starting past 256 as all ones', () => {
    const cs = new UhciConfigSpace();
    cs.write(0xfc, 4, 0xa1b2c3d4);
    expect(cs.read(0xff, 4)).toBe(0xa1);
    expect(cs.read(0xfe, 2)).toBe(0xa1b2);
    expect(cs.read(0xfd, 4)).toBe(0xa1b2c3);
    expect(cs.read(0x100, 4)).toBe(0xffffffff);
    expect(cs.read(0x100, 2)).toBe(0xffff);
    expect(cs.read(0x1ff, 1)).toBe(0xff);
  });
  it('rejects impossible accesses with a typed error', () => {
    const cs = new UhciConfigSpace();
    expect(() => cs.read(-1, 1)).toThrow(ConfigAccessError);
    expect(() => cs.read(1.5, 1)).toThrow(ConfigAccessError);
    expect(() => cs.read(0, 3 as 1)).toThrow(ConfigAccessError);
    expect(() => cs.write(0, 8 as 4, 0)).toThrow(ConfigAccessError);
  });
});

describe('UhciConfigSpace write masks', () => {
  it('COMMAND keeps only IO, MEM, MASTER, SERR, INTX_DISABLE (0x0507)', () => {
    const cs = new UhciConfigSpace();
    cs.write(0x04, 2, 0xffff);
    expect(cs.read(0x04, 2)).toBe(0x0507);
    cs.write(0x05, 1, 0x00);
    expect(cs.read(0x04, 2)).toBe(0x0007);
    cs.write(0x04, 4, 0xffff0000); // status half: nothing to set
    expect(cs.read(0x04, 4)).toBe(0x00000000);
  });
  it('BAR4 sizes as 32 bytes of I/O: 0xffffffff reads back 0xffffffe1', () => {
    const cs = new UhciConfigSpace();
    cs.write(0x20, 4, 0xffffffff);
    expect(cs.read(0x20, 4)).toBe(0xffffffe1);
    const size = (~(cs.read(0x20, 4) & ~0x3) + 1) >>> 0;
    expect(size).toBe(32);
    cs.write(0x20, 4, 0);
    expect(cs.read(0x20, 4)).toBe(0x00000001);
    cs.write(0x21, 1, 0xc0);
    cs.write(0x20, 1, 0xff);
    expect(cs.read(0x20, 4)).toBe(0x0000c0e1);
  });
  it('the other BARs, ROM BAR, latency timer, pin and identity ignore writes', () => {
    const cs = new UhciConfigSpace();
    const before = cs.bytes();
    for (const off of [0x00, 0x08, 0x10, 0x14, 0x18, 0x1c, 0x24, 0x28, 0x2c, 0x30, 0x34, 0x38]) {
      cs.write(off, 4, 0xffffffff);
    }
    cs.write(0x0d, 1, 0xff);
    cs.write(0x0e, 2, 0xffff);
    cs.write(0x3d, 1, 0x01);
    cs.write(0x3e, 2, 0xffff);
    const after = cs.bytes();
    expect(after).toEqual(before);
  });
  it('cache line size, interrupt line and all of 0x40..0xff are plain read/write', () => {
    const cs = new UhciConfigSpace();
    cs.write(0x0c, 1, 0x10);
    cs.write(0x3c, 1, 0x0b);
    expect(cs.read(0x0c, 1)).toBe(0x10);
    expect(cs.interruptLine).toBe(0x0b);
    for (let off = 0x40; off < 0x100; off += 4) cs.write(off, 4, (0x01020304 * (off >> 2)) >>> 0);
    for (let off = 0x40; off < 0x100; off += 4) expect(cs.read(off, 4)).toBe((0x01020304 * (off >> 2)) >>> 0);
    cs.write(0xc0, 2, 0x2000);
    expect(cs.read(0xc0, 2)).toBe(0x2000);
  });
  it('STATUS: W1C bits clear on 1, stay on 0; INTERRUPT bit is read only', () => {
    const cs = new UhciConfigSpace();
    const st = cs.saveState();
    const cfg = [...st.config];
    cfg[0x06] = 0x00;
    cfg[0x07] = 0xf9; // parity, target aborts, master abort, SERR, detected parity
    cs.loadState({ ...st, config: cfg });
    expect(cs.status).toBe(0xf900);
    cs.write(0x06, 2, 0x0000);
    expect(cs.status).toBe(0xf900);
    cs.write(0x06, 2, 0x2008); // clear master abort; bit 3 is not writable
    expect(cs.status).toBe(0xd900);
    cs.write(0x04, 4, 0x01000000); // dword write, clear parity (bit 8)
    expect(cs.status).toBe(0xd800);
    cs.write(0x07, 1, 0xff);
    expect(cs.status).toBe(0x0000);
  });
  it('a write past 256 is dropped and one straddling 256 keeps its first bytes', () => {
    const cs = new UhciConfigSpace();
    cs.write(0xfe, 4, 0x44332211);
    expect(cs.read(0xfc, 4)).toBe(0x22110000);
    const before = cs.bytes();
    cs.write(0x100, 4, 0xffffffff);
    expect(cs.bytes()).toEqual(before);
  });
});

describe('UhciConfigSpace I/O window', () => {
  it('decodes BAR4 only while COMMAND.IO is set, and reports each change once', () => {
    const cs = new UhciConfigSpace();
    const seen: Array<number | null> = [];
    cs.onBarChange = (b) => seen.push(b);
    cs.write(0x20, 4, 0xc000);
    expect(cs.ioBase).toBeNull();
    cs.write(0x04, 2, 0x0001);
    expect(cs.ioEnabled).toBe(true);
    expect(cs.ioBase).toBe(0xc000);
    cs.write(0x04, 2, 0x0005); // bus master too: window unchanged, no call
    expect(cs.busMaster).toBe(true);
    cs.write(0x20, 4, 0xc01f); // low bits masked: same window
    expect(cs.ioBase).toBe(0xc000);
    cs.write(0x20, 4, 0xffffffff); // sizing while decoding: window gone
    expect(cs.ioBase).toBeNull();
    cs.write(0x20, 4, 0xd020);
    expect(cs.ioBase).toBe(0xd020);
    cs.write(0x20, 4, 0); // base 0 is never decoded on the pc machine
    expect(cs.ioBase).toBeNull();
    cs.write(0x20, 4, 0xffffffc0); // last address 0xffffffdf: allowed
    expect(cs.ioBase).toBe(0xffffffc0);
    cs.write(0x04, 1, 0x04);
    expect(cs.ioBase).toBeNull();
    expect(seen).toEqual([0xc000, null, 0xd020, null, 0xffffffc0, null]);
  });
});

describe('UhciConfigSpace INTx', () => {
  it('mirrors the level in STATUS bit 3 and gates the pin with INTX_DISABLE', () => {
    const cs = new UhciConfigSpace();
    const seen: boolean[] = [];
    cs.onIntxChange = (a) => seen.push(a);
    cs.setIntxLevel(true);
    expect(cs.status & 0x08).toBe(0x08);
    expect(cs.intxAsserted).toBe(true);
    cs.write(0x05, 1, 0x04); // INTx disable
    expect(cs.intxDisabled).toBe(true);
    expect(cs.intxAsserted).toBe(false);
    expect(cs.status & 0x08).toBe(0x08); // still reported in STATUS (as QEMU)
    cs.write(0x06, 2, 0xffff); // not clearable by the guest
    expect(cs.status & 0x08).toBe(0x08);
    cs.write(0x05, 1, 0x00);
    expect(cs.intxAsserted).toBe(true);
    cs.setIntxLevel(false);
    expect(cs.status).toBe(0);
    expect(seen).toEqual([true, false, true, false]);
  });
});

describe('UhciConfigSpace reset', () => {
  it('does what QEMU device reset does (measured through a system reset)', () => {
    const cs = new UhciConfigSpace();
    const bars: Array<number | null> = [];
    const irqs: boolean[] = [];
    cs.onBarChange = (b) => bars.push(b);
    cs.onIntxChange = (a) => irqs.push(a);
    cs.write(0x20, 4, 0xc000);
    cs.write(0x04, 2, 0x0507);
    cs.write(0x0c, 1, 0x10);
    cs.write(0x3c, 1, 0x0b);
    cs.write(0x60, 1, 0x20);
    cs.write(0xc0, 2, 0x8f00);
    cs.write(0x68, 4, 0x07050000);
    cs.write(0x80, 4, 0x12345678);
    cs.write(0x04, 2, 0x0107); // enable INTx again so the pin follows the level
    cs.setIntxLevel(true);
    cs.reset();
    const after = new UhciConfigSpace();
    after.write(0x60, 1, 0x20); // device-specific bytes survive, except 0x6a/0x6b
    after.write(0xc0, 2, 0x8f00);
    after.write(0x68, 4, 0x00010000);
    after.write(0x80, 4, 0x12345678);
    expect(cs.bytes()).toEqual(after.bytes());
    expect(cs.read(0x68, 4)).toBe(0x00010000);
    expect(cs.ioBase).toBeNull();
    expect(bars).toEqual([0xc000, null]);
    expect(irqs).toEqual([true, false]);
  });
  it('powerOn() restores the whole image', () => {
    const cs = new UhciConfigSpace('piix4');
    cs.write(0x60, 1, 0x20);
    cs.write(0x20, 4, 0xc000);
    cs.powerOn();
    expect(cs.bytes()).toEqual(new UhciConfigSpace('piix4').bytes());
  });
});

describe('UhciConfigSpace save/load', () => {
  it('round-trips and re-announces the window and INTx', () => {
    const a = new UhciConfigSpace();
    a.write(0x20, 4, 0xe000);
    a.write(0x04, 2, 0x0005);
    a.write(0x3c, 1, 0x0a);
    a.setIntxLevel(true);
    const json = JSON.parse(JSON.stringify(a.saveState())) as object;
    const b = new UhciConfigSpace();
    const bars: Array<number | null> = [];
    const irqs: boolean[] = [];
    b.onBarChange = (x) => bars.push(x);
    b.onIntxChange = (x) => irqs.push(x);
    b.loadState(json);
    expect(b.bytes()).toEqual(a.bytes());
    expect(b.ioBase).toBe(0xe000);
    expect(b.intxAsserted).toBe(true);
    expect(bars).toEqual([0xe000]);
    expect(irqs).toEqual([true]);
  });
  it('refuses states of another variant, another identity or another shape', () => {
    const p3 = new UhciConfigSpace('piix3');
    const p4 = new UhciConfigSpace('piix4');
    expect(() => p4.loadState(p3.saveState())).toThrow(ConfigStateError);
    const st = p3.saveState();
    const cfg = [...st.config];
    cfg[0x0a] = 0x04; // class code is read only
    expect(() => p3.loadState({ ...st, config: cfg })).toThrow(/0xa/);
    expect(() => p3.loadState({ ...st, config: cfg.slice(0, 255) })).toThrow(ConfigStateError);
    expect(() => p3.loadState({ ...st, config: [...st.config.slice(0, 255), 256] })).toThrow(ConfigStateError);
    expect(() => p3.loadState({ ...st, version: 2 })).toThrow(ConfigStateError);
    expect(() => p3.loadState({ ...st, intxLevel: 1 })).toThrow(ConfigStateError);
    expect(() => p3.loadState({})).toThrow(ConfigStateError);
    expect(p3.bytes()).toEqual(new UhciConfigSpace('piix3').bytes()); // nothing half-loaded
  });
});

describe('UhciConfigSpace invariants under any write sequence', () => {
  const access = fc.record({
    offset: fc.integer({ min: 0, max: 0xff }),
    size: fc.constantFrom<1 | 2 | 4>(1, 2, 4),
    value: fc.integer({ min: 0, max: 0xffffffff }),
  });
  it('identity bytes never change; unused BARs stay 0; BAR4 stays I/O; ioBase matches the registers', () => {
    fc.assert(
      fc.property(fc.constantFrom(...VARIANTS), fc.array(access, { maxLength: 60 }), (variant, writes) => {
        const cs = new UhciConfigSpace(variant);
        const fresh = cs.bytes();
        let lastReported: number | null = null;
        cs.onBarChange = (b) => (lastReported = b);
        for (const w of writes) cs.write(w.offset, w.size, w.value);
        const now = cs.bytes();
        for (const off of [0, 1, 2, 3, 8, 9, 10, 11, 0x0d, 0x0e, 0x0f, 0x2c, 0x2d, 0x2e, 0x2f, 0x34, 0x3d]) {
          expect(now[off]).toBe(fresh[off]);
        }
        for (const off of [0x10, 0x14, 0x18, 0x1c, 0x24, 0x28, 0x30]) expect(cs.read(off, 4)).toBe(0);
        expect(cs.read(0x20, 1) & 0x1f).toBe(0x01);
        expect(cs.read(0x04, 2) & ~0x0507).toBe(0);
        expect(cs.read(0x06, 2)).toBe(0);
        const bar = cs.read(0x20, 4) & ~0x1f;
        const expected = (cs.read(0x04, 1) & 1) !== 0 && bar !== 0 && bar !== 0xffffffe0 ? bar >>> 0 : null;
        expect(cs.ioBase).toBe(expected);
        expect(lastReported).toBe(expected);
      }),
      { numRuns: 300 },
    );
  });
});
