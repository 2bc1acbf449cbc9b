/**
 * The register declarations (registers.ts) against QEMU 7.2 hw/usb/hcd-uhci.c:
 * reset values (uhci_reset) and guest-write semantics (uhci_port_write),
 * checked exhaustively over every 16-bit written value.
 */
import { FLBASEADD, FRNUM, PORTSC, SOFMOD, USBCMD, USBINTR, USBSTS } from '../../src/uhci/registers.js';
import { LINK, TD_CTRL, TD_TOKEN } from '../../src/uhci/descriptors.js';

/** A sample of stored register values: every single bit, none, all. */
function samples(stored: number): number[] {
  const out = [0, stored];
  for (let b = 0; b < 16; b++) if (stored & (1 << b)) out.push(1 << b, stored & ~(1 << b));
  return out;
}

function forEveryWrite(check: (v: number) => void): void {
  for (let v = 0; v <= 0xffff; v++) check(v);
}

describe('UHCI register declarations (UHCI DG §2.1) match QEMU 7.2', () => {
  test('reset values are those of QEMU uhci_reset', () => {
    expect(USBCMD.reset).toBe(0);
    expect(USBSTS.reset).toBe(0x0020); // UHCI_STS_HCHALTED
    expect(USBINTR.reset).toBe(0);
    expect(FLBASEADD.reset).toBe(0);
    expect(SOFMOD.reset).toBe(64);
    expect(PORTSC.reset).toBe(0x0080); // bit 7 reads 1 (UHCI DG §2.1.7)
  });

  test('USBSTS: every status bit is write-1-to-clear (s->status &= ~val), HCHalted included', () => {
    expect(USBSTS.clearMask).toBe(0x3f);
    expect(USBSTS.writableMask).toBe(0);
    for (const old of samples(USBSTS.storedMask)) forEveryWrite((v) => {
      if (USBSTS.applyWrite(old, v) !== (old & ~v & 0xffff)) throw new Error(`USBSTS 0x${old.toString(16)} write 0x${v.toString(16)}`);
    });
  });

  test('USBCMD and USBINTR store the whole written word (s->cmd = val, s->intr = val)', () => {
    forEveryWrite((v) => {
      if (USBCMD.applyWrite(0x00c1, v) !== v) throw new Error(`USBCMD write 0x${v.toString(16)}`);
      if (USBINTR.applyWrite(0x000f, v) !== v) throw new Error(`USBINTR write 0x${v.toString(16)}`);
    });
  });

  test('FRNUM keeps 11 bits, SOFMOD 8 bits, FLBASEADD bits 31:12 (written a half at a time)', () => {
    forEveryWrite((v) => {
      if (FRNUM.applyWrite(0x7ff, v) !== (v & 0x7ff)) throw new Error(`FRNUM write 0x${v.toString(16)}`);
      if (SOFMOD.applyWrite(64, v & 0xff) !== (v & 0xff)) throw new Error(`SOFMOD write 0x${v.toString(16)}`);
      const fl = 0x12345000;
      if (FLBASEADD.applyHalfWrite(fl, 0, v) !== ((fl & 0xffff0000) | (v & ~0xfff)) >>> 0) throw new Error(`FLBASEADD low 0x${v.toString(16)}`);
      if (FLBASEADD.applyHalfWrite(fl, 1, v) !== ((fl & 0xffff) | (v << 16)) >>> 0) throw new Error(`FLBASEADD high 0x${v.toString(16)}`);
    });
    expect(SOFMOD.get(0xc0 | 12, 'SOF')).toBe(0x40 | 12);
  });

  test('PORTSC: read-only 0x1bb, write-clear CSC|PEC, the rest takes the written value (uhci_port_write)', () => {
    const UHCI_PORT_READ_ONLY = 0x1bb;
    const UHCI_PORT_WRITE_CLEAR = 0x0a;
    expect(~PORTSC.writableMask & 0xffff).toBe(UHCI_PORT_READ_ONLY);
    expect(PORTSC.clearMask).toBe(UHCI_PORT_WRITE_CLEAR);
    // Line status is computed on read: never stored, never saved.
    expect(PORTSC.storedMask).toBe(0xffff & ~0x30);
    for (const old of samples(PORTSC.storedMask)) forEveryWrite((v) => {
      const qemu = ((old & UHCI_PORT_READ_ONLY) | (v & ~UHCI_PORT_READ_ONLY)) & ~(v & UHCI_PORT_WRITE_CLEAR) & 0xffff;
      if (PORTSC.applyWrite(old, v) !== qemu) throw new Error(`PORTSC 0x${old.toString(16)} write 0x${v.toString(16)}`);
    });
  });

  test('PORTSC pretty printing hides the reserved bits QEMU stores', () => {
    expect(PORTSC.format(0xfe85)).toBe('PORTSC[SUSP PR ONE LS=0 PE CCS]');
  });
});

describe('UHCI descriptor declarations (UHCI DG §3)', () => {
  test('link pointer: T, Q, Vf and a 16-byte aligned address (§3.1)', () => {
    expect(LINK.bit).toMatchObject({ T: 1, Q: 2, VF: 4, PTR: 0xfffffff0 });
  });

  test('TD control/status bits (§3.2.2) are QEMU TD_CTRL_*', () => {
    expect(TD_CTRL.bit).toMatchObject({
      SPD: 1 << 29, IOS: 1 << 25, IOC: 1 << 24, ACTIVE: 1 << 23, STALLED: 1 << 22, BABBLE: 1 << 20, NAK: 1 << 19, CRCTO: 1 << 18,
      ACTLEN: 0x7ff, CERR: 3 << 27, LS: 1 << 26, DBE: 1 << 21, BITSTUFF: 1 << 17,
    });
    expect(TD_CTRL.lsb.CERR).toBe(27); // TD_CTRL_ERROR_SHIFT
  });

  test('TD token fields cover the word (§3.2.3)', () => {
    expect(TD_TOKEN.bit).toMatchObject({ PID: 0xff, DEVADDR: 0x7f00, ENDPT: 0x78000, D: 1 << 19, MAXLEN: 0xffe00000 });
    expect(TD_TOKEN.fields.reduce((m, f) => (m | f.mask) >>> 0, 0)).toBe(0xffffffff);
    expect(TD_CTRL.fields.reduce((m, f) => (m | f.mask) >>> 0, 0)).toBe(0xffffffff);
  });
});
