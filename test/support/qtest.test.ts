/**
 * The qtest client itself, against a real QEMU (qemu-system-x86_64 on PATH).
 */
import { createHaltRom, haltRomBytes, RESET_VECTOR_OFFSET, type HaltRom } from './halt-rom.js';
import { QtestClient, QtestError } from './qtest.js';

describe('halt ROM', () => {
  it('is 64 KiB of zeros with hlt; jmp at the reset vector', () => {
    const rom = haltRomBytes();
    expect(rom.length).toBe(0x10000);
    expect(Array.from(rom.subarray(RESET_VECTOR_OFFSET, RESET_VECTOR_OFFSET + 3))).toEqual([0xf4, 0xeb, 0xfd]);
    expect(rom.reduce((n, b) => n + (b !== 0 ? 1 : 0), 0)).toBe(3);
  });
});

describe('QtestClient', () => {
  let rom: HaltRom;
  let qt: QtestClient;

  beforeAll(async () => {
    rom = createHaltRom();
    qt = await QtestClient.start(['-machine', 'pc', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-bios', rom.path]);
  });
  afterAll(async () => {
    await qt?.close();
    rom?.dispose();
  });

  it('writes and reads guest memory in bytes and dwords', async () => {
    const bytes = Uint8Array.from({ length: 37 }, (_, i) => (i * 7 + 1) & 0xff);
    await qt.writeMem(0x5003, bytes);
    expect(Array.from(await qt.readMem(0x5003, bytes.length))).toEqual(Array.from(bytes));
    await qt.writel(0x6000, 0xdeadbeef);
    expect(await qt.readl(0x6000)).toBe(0xdeadbeef);
    expect(Array.from(await qt.readMem(0x6000, 4))).toEqual([0xef, 0xbe, 0xad, 0xde]);
    await qt.writew(0x6004, 0x1234);
    await qt.writeb(0x6006, 0x56);
    expect(await qt.readw(0x6004)).toBe(0x1234);
    expect(await qt.readb(0x6006)).toBe(0x56);
    expect((await qt.readMem(0x6000, 0)).length).toBe(0);
  });

  it('does port I/O (the PCI host bridge identifies itself)', async () => {
    await qt.outl(0xcf8, 0x80000000); // 00:00.0 register 0
    expect(await qt.inl(0xcfc)).toBe(0x12378086); // i440FX host bridge
    expect(await qt.inw(0xcfe)).toBe(0x1237);
    expect(await qt.inb(0xcfc)).toBe(0x86);
  });

  it('pipelines commands and matches answers in order', async () => {
    await Promise.all(Array.from({ length: 50 }, (_, i) => qt.writeb(0x7000 + i, i)));
    const got = await Promise.all(Array.from({ length: 50 }, (_, i) => qt.readb(0x7000 + i)));
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('turns an error answer into a QtestError and keeps going', async () => {
    await expect(qt.command('no_such_command')).rejects.toThrow(QtestError);
    expect(await qt.readb(0x7001)).toBe(1);
  });

  it('close() kills QEMU; later commands fail', async () => {
    const other = await QtestClient.start(['-machine', 'pc', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-bios', rom.path]);
    await other.close();
    await other.close();
    await expect(other.readb(0)).rejects.toThrow(QtestError);
  });

  it('reports a QEMU that cannot start', async () => {
    await expect(QtestClient.start(['-machine', 'no-such-machine'])).rejects.toThrow(QtestError);
    await expect(QtestClient.start([], { binary: '/nonexistent/qemu' })).rejects.toThrow(QtestError);
  });
});
