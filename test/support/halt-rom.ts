/**
 * A 64 KiB BIOS image whose reset vector (offset 0xFFF0, i.e. physical
 * 0xFFFFFFF0) holds `hlt; jmp $-3` (f4 eb fd), so the guest CPU stays halted
 * while a test drives the machine over qtest. Every other byte is zero.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const HALT_ROM_SIZE = 0x10000;
export const RESET_VECTOR_OFFSET = 0xfff0;

export function haltRomBytes(): Uint8Array {
  const rom = new Uint8Array(HALT_ROM_SIZE);
  rom.set([0xf4, 0xeb, 0xfd], RESET_VECTOR_OFFSET); // hlt; jmp back to the hlt
  return rom;
}

export interface HaltRom {
  /** Path of the ROM file, for `-bios`. */
  readonly path: string;
  /** Remove the temporary directory. */
  dispose(): void;
}

/** Write the ROM into a fresh temporary directory. */
export function createHaltRom(): HaltRom {
  const dir = mkdtempSync(join(tmpdir(), 'uhci-dm-halt-'));
  const path = join(dir, 'HALT.ROM');
  writeFileSync(path, haltRomBytes());
  return { path, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}
