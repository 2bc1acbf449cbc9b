/**
 * The reference side of the oracle: QEMU 7.2's `piix3-usb-uhci` with a
 * `usb-tablet` on port 1, driven over qtest. Debian's QEMU has no qtest
 * accelerator, so the machine runs under TCG with a BIOS that only halts
 * (test/support/halt-rom.ts) and frames run in real time.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { QtestClient } from '../support/qtest.js';
import { createHaltRom, type HaltRom } from '../support/halt-rom.js';
import { configAddress, PCI_CONFIG_ADDRESS, PCI_CONFIG_DATA } from '../support/pci-cf8.js';
import type { IoSize, Target } from './target.js';

/**
 * The UHCI function's INTx: QEMU's piix3-usb-uhci uses pin D (UHCIInfo irq_pin 3).
 * On the `pc` machine the PIIX3 maps slot S pin P to PIRQ (P + S - 1) & 3
 * (hw/i386/pc_piix.c pci_slot_get_pirq), so slot 5 pin D is PIRQD, routed by
 * PIIX3 config register 0x63 to an ISA IRQ, which reaches IOAPIC input of the
 * same number. Checked here: with 0x60..0x63 = 05 09 0a 0b the UHCI raises IRQ 11.
 */
export const UHCI_SLOT = 5;
const PIIX3_PIRQD_ROUTE = 0x63;
export const UHCI_ISA_IRQ = 11;

export interface QemuTargetOptions {
  binary?: string;
}

export class QemuTarget implements Target {
  readonly name = 'qemu';
  readonly pollMs = 2;
  private level = false;

  private constructor(
    private readonly qt: QtestClient,
    private readonly rom: HaltRom,
  ) {}

  static async start(opts: QemuTargetOptions = {}): Promise<QemuTarget> {
    const rom = createHaltRom();
    // close() removes the ROM; this covers a process that dies without it.
    process.once('exit', () => rom.dispose());
    let target: QemuTarget | undefined;
    const args = [
      '-machine', 'pc',
      '-accel', 'tcg',
      '-m', '128',
      '-bios', rom.path,
      '-nodefaults',
      '-display', 'none',
      '-qtest-log', '/dev/null',
      '-device', `piix3-usb-uhci,id=uhci,addr=0${UHCI_SLOT}.0`,
      '-device', 'usb-tablet,bus=uhci.0,port=1',
      // Debugging aid: e.g. ORACLE_QEMU_ARGS="-trace usb_uhci* -D /tmp/uhci-trace.log".
      ...(process.env['ORACLE_QEMU_ARGS'] ?? '').split(' ').filter((a) => a !== ''),
    ];
    let qt: QtestClient;
    try {
      qt = await QtestClient.start(args, {
        binary: opts.binary,
        onIrq: (raised, line) => {
          if (line === UHCI_ISA_IRQ && target) target.level = raised;
        },
      });
    } catch (err) {
      rom.dispose();
      throw err;
    }
    target = new QemuTarget(qt, rom);
    await qt.irqInterceptIn('ioapic');
    // Route PIRQD to IRQ 11 in the PIIX3 (00:01.0), as a BIOS would.
    await qt.outl(PCI_CONFIG_ADDRESS, configAddress({ bus: 0, device: 1, fn: 0 }, PIIX3_PIRQD_ROUTE));
    await qt.outb(PCI_CONFIG_DATA + (PIIX3_PIRQD_ROUTE & 3), UHCI_ISA_IRQ);
    return target;
  }

  portIn(port: number, size: IoSize): Promise<number> {
    if (size === 1) return this.qt.inb(port);
    if (size === 2) return this.qt.inw(port);
    return this.qt.inl(port);
  }
  portOut(port: number, size: IoSize, value: number): Promise<void> {
    if (size === 1) return this.qt.outb(port, value);
    if (size === 2) return this.qt.outw(port, value);
    return this.qt.outl(port, value);
  }
  readMem(addr: number, len: number): Promise<Uint8Array> {
    return this.qt.readMem(addr, len);
  }
  writeMem(addr: number, bytes: Uint8Array): Promise<void> {
    return this.qt.writeMem(addr, bytes);
  }
  async fillMem(addr: number, len: number, byte: number): Promise<void> {
    await this.qt.command(`memset 0x${addr.toString(16)} 0x${len.toString(16)} 0x${(byte & 0xff).toString(16)}`);
  }
  async irqLevel(): Promise<boolean> {
    // IRQ lines arrive on the same stream as answers: once a command is
    // answered, every IRQ change before it has been seen.
    await this.qt.command('endianness');
    return this.level;
  }
  async settle(ms: number): Promise<void> {
    await sleep(ms);
  }
  async close(): Promise<void> {
    try {
      await this.qt.close();
    } finally {
      this.rom.dispose();
    }
  }
}
