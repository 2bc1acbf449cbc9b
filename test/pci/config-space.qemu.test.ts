/**
 * Compares UhciConfigSpace with the real thing: QEMU 7.2's piix3-usb-uhci and
 * piix4-usb-uhci on the `pc` machine, driven over qtest with the guest CPU
 * parked in a `hlt` loop. Every config access goes through mechanism #1
 * (0xCF8/0xCFC) exactly as a guest's would, and the same access is applied to
 * our model; the two must agree byte for byte.
 *
 * Needs qemu-system-x86_64 (Debian package qemu-system-x86) on PATH.
 */
import { UhciConfigSpace, type UhciVariant } from '../../src/pci/config-space.js';
import { createHaltRom, type HaltRom } from '../support/halt-rom.js';
import { PciConfigPort } from '../support/pci-cf8.js';
import { QtestClient } from '../support/qtest.js';

const SLOT = 5;
/** I/O bases used to see where QEMU decodes the UHCI window (nothing else lives there). */
const BASE_A = 0xc000;
const BASE_B = 0xd040;
/** SOFMOD (I/O offset 0x0C) reads 64 after reset: proof that the window is decoded there. */
const SOFMOD = 0x0c;
const SOFMOD_RESET = 0x40;

function hexdump(bytes: Uint8Array): string[] {
  const lines: string[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = Array.from(bytes.subarray(off, off + 16), (b) => b.toString(16).padStart(2, '0')).join(' ');
    lines.push(`${off.toString(16).padStart(2, '0')}: ${row}`);
  }
  return lines;
}

/** Deterministic PRNG (xorshift32) so a failing sequence can be replayed. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.each<[UhciVariant]>([['piix3'], ['piix4']])('config space vs QEMU 7.2 %s-usb-uhci', (variant) => {
  let rom: HaltRom;
  let qt: QtestClient;
  let qemu: PciConfigPort;
  let ours: UhciConfigSpace;
  /** Input levels of the I/O APIC, as reported by `irq_intercept_in ioapic`. */
  const ioapic = new Map<number, boolean>();

  /** Apply one config write to both. */
  async function write(offset: number, size: 1 | 2 | 4, value: number): Promise<void> {
    await qemu.write(offset, size, value);
    ours.write(offset, size, value);
  }

  async function expectSameImage(): Promise<void> {
    expect(hexdump(await qemu.dump())).toEqual(hexdump(ours.bytes()));
  }

  /** Whether QEMU decodes the UHCI I/O window at `base`. */
  async function qemuDecodesAt(base: number): Promise<boolean> {
    const v = await qt.inb(base + SOFMOD);
    return v === SOFMOD_RESET;
  }

  beforeAll(async () => {
    rom = createHaltRom();
    qt = await QtestClient.start([
      '-machine', 'pc',
      '-accel', 'tcg',
      '-nodefaults',
      '-display', 'none',
      '-bios', rom.path,
      '-device', `${variant}-usb-uhci,addr=0${SLOT}.0`,
    ], { onIrq: (raised, line) => ioapic.set(line, raised) });
    qemu = new PciConfigPort(qt, { bus: 0, device: SLOT, fn: 0 });
    ours = new UhciConfigSpace(variant);
  });

  afterAll(async () => {
    await qt?.close();
    rom?.dispose();
  });

  it('power-on image matches all 256 bytes', async () => {
    await expectSameImage();
  });

  it('every byte and word read inside a dword matches', async () => {
    for (let off = 0; off < 256; off++) {
      expect([off, await qemu.read(off, 1)]).toEqual([off, ours.read(off, 1)]);
      if ((off & 3) <= 2) expect([off, await qemu.read(off, 2)]).toEqual([off, ours.read(off, 2)]);
    }
  });

  it('write masks match for dword, word and byte writes of all-ones, zeros and a pattern', async () => {
    const patterns = [0xffffffff, 0x00000000, 0xa55a3cc3];
    for (let dw = 0; dw < 256; dw += 4) {
      const original = await qemu.read(dw, 4);
      expect(ours.read(dw, 4)).toBe(original);
      for (const p of patterns) {
        for (const [size, offsets] of [
          [4, [0]],
          [2, [0, 2]],
          [1, [0, 1, 2, 3]],
        ] as Array<[1 | 2 | 4, number[]]>) {
          for (const o of offsets) {
            const v = size === 4 ? p : (p >>> (8 * o)) & (size === 2 ? 0xffff : 0xff);
            await write(dw + o, size, v);
            const got = await qemu.read(dw, 4);
            expect({ dw, size, o, v, value: got }).toEqual({ dw, size, o, v, value: ours.read(dw, 4) });
            await write(dw, 4, original);
          }
        }
      }
      expect(await qemu.read(dw, 4)).toBe(original);
    }
    await expectSameImage();
  });

  it('BAR4 sizing reads 0xffffffe1 (32 bytes of I/O) and the other BARs are not implemented', async () => {
    for (let bar = 0x10; bar < 0x28; bar += 4) {
      await write(bar, 4, 0xffffffff);
      expect(await qemu.read(bar, 4)).toBe(ours.read(bar, 4));
      await write(bar, 4, 0);
    }
    await write(0x20, 4, 0xffffffff);
    expect(await qemu.read(0x20, 4)).toBe(0xffffffe1);
    expect(ours.read(0x20, 4)).toBe(0xffffffe1);
    await write(0x20, 4, 0);
    await expectSameImage();
  });

  it('ioBase follows QEMU’s decoding of BAR4 and COMMAND.IO', async () => {
    const steps: Array<[string, number, 1 | 2 | 4, number]> = [
      ['BAR at A, IO off', 0x20, 4, BASE_A],
      ['IO on', 0x04, 2, 0x0001],
      ['bus master too', 0x04, 2, 0x0005],
      ['sizing while decoding', 0x20, 4, 0xffffffff],
      ['BAR at B', 0x20, 4, BASE_B],
      ['byte write moves it to A', 0x20, 2, BASE_A],
      ['low bits ignored', 0x20, 1, 0x1f],
      ['IO off again', 0x04, 1, 0x04],
      ['IO on via dword write', 0x04, 4, 0x00000001],
      ['BAR 0', 0x20, 4, 0],
    ];
    for (const [what, off, size, v] of steps) {
      await write(off, size, v);
      const decoded = { A: await qemuDecodesAt(BASE_A), B: await qemuDecodesAt(BASE_B) };
      expect({ what, decoded }).toEqual({
        what,
        decoded: { A: ours.ioBase === BASE_A, B: ours.ioBase === BASE_B },
      });
      expect(ours.ioEnabled).toBe(((await qemu.read(0x04, 2)) & 1) === 1);
      expect(ours.busMaster).toBe(((await qemu.read(0x04, 2)) & 4) === 4);
    }
    expect(ours.ioBase).toBeNull();
    await write(0x04, 2, 0);
    await expectSameImage();
  });

  it('a seeded random sequence of config writes leaves identical images', async () => {
    const rnd = xorshift(variant === 'piix3' ? 0x7020 : 0x7112);
    const hot = [0x04, 0x05, 0x06, 0x07, 0x0c, 0x0d, 0x20, 0x21, 0x22, 0x23, 0x3c, 0x3d, 0x60, 0x6a, 0xc0, 0xc1];
    for (let i = 0; i < 300; i++) {
      const offset = rnd() % 2 === 0 ? hot[rnd() % hot.length]! : rnd() % 256;
      const fits = ([1, 2, 4] as const).filter((s) => (offset & 3) + s <= 4);
      const size = fits[rnd() % fits.length]!;
      let value = rnd() % 4 === 0 ? 0xffffffff : rnd();
      // Keep the UHCI window from being decoded on top of ports the test
      // itself uses (0xCF8..0xCFF): never set COMMAND.IO here.
      if (offset <= 0x04 && offset + size > 0x04) value &= ~(1 << (8 * (0x04 - offset)));
      value = size === 4 ? value >>> 0 : value & ((1 << (8 * size)) - 1);
      await write(offset, size, value);
      const dw = offset & ~3;
      expect({ i, offset, size, value, dword: await qemu.read(dw, 4) }).toEqual({
        i,
        offset,
        size,
        value,
        dword: ours.read(dw, 4),
      });
    }
    await expectSameImage();
  });

  it('STATUS.INTERRUPT and the INTx pin follow QEMU, INTX_DISABLE included', async () => {
    // Route the function's INTx to a visible I/O APIC input: with no BIOS the
    // PIIX3 PIRQ route registers (00:01.0, 0x60..0x63) are disabled (0x80);
    // send all four PIRQs to ISA IRQ 11.
    const ISA_IRQ = 11;
    const isaBridge = new PciConfigPort(qt, { bus: 0, device: 1, fn: 0 });
    await isaBridge.write(0x60, 4, 0x0b0b0b0b);
    await qt.irqInterceptIn('ioapic');
    const pin = (): boolean => ioapic.get(ISA_IRQ) ?? false;

    // Make QEMU's controller raise an interrupt: a frame list whose entries all
    // point to one active OUT TD for device 0, where no device is attached, so
    // the TD fails (time-out) and sets USBSTS.USBERRINT; USBINTR enables it.
    const FRAME_LIST = 0x10000;
    const TD = 0x20000;
    await write(0x20, 4, BASE_A);
    await write(0x04, 2, 0x0005); // IO + bus master
    await qt.writeMem(FRAME_LIST, new Uint8Array(new Uint32Array(1024).fill(TD).buffer));
    const td = new Uint32Array([0x1, (1 << 23) | (3 << 27), 0xe1 | (0x7ff << 21), 0]);
    await qt.writeMem(TD, new Uint8Array(td.buffer));
    await qt.outw(BASE_A + 0x04, 0x000f); // USBINTR: all sources
    await qt.outl(BASE_A + 0x08, FRAME_LIST);
    await qt.outw(BASE_A + 0x00, 0x0001); // RS
    await waitFor('the UHCI interrupt', async () => ((await qemu.read(0x06, 2)) & 0x08) !== 0);
    await qt.outw(BASE_A + 0x00, 0x0000); // stop
    ours.setIntxLevel(true);
    expect([pin(), ours.intxAsserted]).toEqual([true, true]);
    await expectSameImage();

    // INTx disable (a word write, as Linux's pci_intx() does): the pin drops,
    // STATUS still shows the request.
    await write(0x04, 2, 0x0405);
    expect([pin(), ours.intxAsserted]).toEqual([false, false]);
    await expectSameImage();
    await write(0x06, 2, 0xffff); // the guest cannot clear it through config space
    await expectSameImage();
    await write(0x04, 2, 0x0005);
    expect([pin(), ours.intxAsserted]).toEqual([true, true]);

    await qt.outw(BASE_A + 0x02, 0xffff); // acknowledge in USBSTS: request drops
    ours.setIntxLevel(false);
    expect([pin(), ours.intxAsserted]).toEqual([false, false]);
    await expectSameImage();
    await write(0x04, 2, 0);
  });

  it('system reset does what reset() does', async () => {
    await write(0x20, 4, BASE_A);
    await write(0x04, 2, 0x0507);
    await write(0x0c, 1, 0x10);
    await write(0x3c, 1, 0x0b);
    await write(0x60, 1, 0x20);
    await write(0xc0, 2, 0x8f00);
    await write(0x68, 4, 0x07050000);
    await write(0x80, 4, 0x12345678);
    await expectSameImage();
    // PIIX3 reset control register: 0x06 = hard reset (system reset request).
    await qt.outb(0xcf9, 0x06);
    await waitFor('the reset', async () => (await qemu.read(0x04, 2)) === 0);
    ours.reset();
    await expectSameImage();
    expect(await qemuDecodesAt(BASE_A)).toBe(false);
    expect(ours.ioBase).toBeNull();
  });
});
