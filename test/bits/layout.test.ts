import { Layout } from '../../src/bits/layout.js';
import { USBSTS, PORTSC, USBCMD } from '../../src/uhci/registers.js';
import { TD_CTRL, TD_TOKEN, makeToken, tokenMaxLen } from '../../src/uhci/descriptors.js';

describe('Layout', () => {
  const L = new Layout('T', 16, {
    A: { lsb: 0, access: 'RW' },
    B: { lsb: 1, width: 3, access: 'RO' },
    C: { lsb: 4, access: 'RW1C' },
  });

  test('decode/encode round trip', () => {
    const w = L.encode({ A: 1, B: 5, C: 1 });
    expect(w).toBe(0b11011);
    expect(L.decode(w)).toEqual({ A: 1, B: 5, C: 1 });
  });

  test('applyWrite keeps RO, sets RW, clears RW1C on 1', () => {
    const old = L.encode({ A: 0, B: 5, C: 1 });
    expect(L.decode(L.applyWrite(old, 0xffff))).toEqual({ A: 1, B: 5, C: 0 });
    expect(L.decode(L.applyWrite(old, 0))).toEqual({ A: 0, B: 5, C: 1 });
  });

  test('reset value, stored bits and write semantics of every access kind', () => {
    const K = new Layout('K', 16, {
      RW: { lsb: 0, access: 'RW', reset: 1 },
      C: { lsb: 1, access: 'RW1C', reset: 1 },
      R: { lsb: 2, width: 2, access: 'RO', reset: 2 },
      W: { lsb: 4, access: 'WO' },
      X: { lsb: 5, access: 'RSVD' },
      V: { lsb: 6, access: 'RO', computed: true },
      H: { lsb: 7, access: 'RW', reserved: true },
    });
    expect(K.reset).toBe(0b1011);
    expect(K.storedMask).toBe(0b10001111);
    expect(K.bit.R).toBe(0b1100);
    expect(K.lsb.R).toBe(2);
    // WO and RSVD never stick, RO keeps, RW takes, RW1C clears on 1, reserved-but-stored takes.
    expect(K.applyWrite(K.reset, 0xffff)).toBe(0b10001001);
    expect(K.applyWrite(K.reset, 0)).toBe(0b1010);
    expect(K.format(0xff)).toBe('K[V W R=3 C RW]');
    expect(() => new Layout('Y', 8, { A: { lsb: 0, access: 'RSVD', reset: 1 } })).toThrow(/not stored/);
    expect(() => new Layout('Y', 8, { A: { lsb: 0, width: 2, access: 'RW', reset: 4 } })).toThrow(/does not fit/);
  });

  test('a 16-bit write to one half of a 32-bit register leaves the other half', () => {
    const L32 = new Layout('L32', 32, { LO: { lsb: 0, width: 12, access: 'RSVD' }, HI: { lsb: 12, width: 20, access: 'RW' } });
    expect(L32.applyHalfWrite(0x12345000, 0, 0xffff)).toBe(0x1234f000);
    expect(L32.applyHalfWrite(0x12345000, 1, 0xabcd)).toBe(0xabcd5000);
  });

  test('overlapping fields are rejected', () => {
    expect(() => new Layout('X', 8, { A: { lsb: 0, width: 2, access: 'RW' }, B: { lsb: 1, access: 'RW' } })).toThrow(/overlaps/);
  });

  test('format names set bits and multi-bit values', () => {
    expect(USBSTS.format(0x21)).toBe('USBSTS[HCHALTED USBINT]');
    expect(PORTSC.format(0x95)).toBe('PORTSC[ONE LS=1 PE CCS]');
  });
});

describe('UHCI layouts (UHCI DG §2.1, §3.2)', () => {
  test('USBCMD bit positions (§2.1.1)', () => {
    expect(USBCMD.mask('RS')).toBe(1);
    expect(USBCMD.mask('MAXP')).toBe(0x80);
    expect(USBCMD.mask('SWDBG', 'CF')).toBe(0x60);
  });

  test('TD control word (§3.2.2)', () => {
    const c = TD_CTRL.encode({ SPD: 1, CERR: 3, LS: 1, IOS: 0, IOC: 1, ACTIVE: 1, ACTLEN: 0x7ff });
    expect(c).toBe(0x3d8007ff);
    expect(TD_CTRL.decode(c).CERR).toBe(3);
  });

  test('TD token MaxLen encodes n-1, 0x7ff = zero length (§3.2.3)', () => {
    const t = makeToken(0x69, 5, 1, 1, 8);
    expect(TD_TOKEN.decode(t)).toEqual({ PID: 0x69, DEVADDR: 5, ENDPT: 1, D: 1, RSVD: 0, MAXLEN: 7 });
    expect(tokenMaxLen(t)).toBe(8);
    expect(tokenMaxLen(makeToken(0xe1, 0, 0, 0, 0))).toBe(0);
  });
});
