/**
 * Locating a QEMU system emulator that can host our PCI function: it must
 * exist and offer the multi-process proxy device (`x-pci-proxy-dev`, QEMU
 * 6.0+ built with multiprocess support; Debian's qemu-system-x86 7.2 has it).
 */
import { UserFacingError } from '../platform/user-facing-error.js';
import { execFile } from 'node:child_process';

export const DEFAULT_QEMU = 'qemu-system-x86_64';

/** QEMU is missing or cannot host the proxy device (user-facing). */
export class QemuUnavailableError extends UserFacingError {}

export interface QemuInfo {
  binary: string;
  /** First line of `--version`, e.g. "QEMU emulator version 7.2.22 (Debian ...)". */
  version: string;
}

function run(binary: string, args: string[]): Promise<{ code: number | null; out: string; err?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    execFile(binary, args, { timeout: 20_000 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: string | number }) | null;
      if (e && typeof e.code === 'string') return resolve({ code: null, out: '', err: e });
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

/** Check that `binary` runs and offers x-pci-proxy-dev; throws QemuUnavailableError otherwise. */
export async function checkQemu(binary = process.env.UHCI_DM_QEMU ?? DEFAULT_QEMU): Promise<QemuInfo> {
  const v = await run(binary, ['--version']);
  if (v.err) {
    throw new QemuUnavailableError(
      v.err.code === 'ENOENT'
        ? `${binary} not found: install QEMU (Debian: apt-get install qemu-system-x86) or set UHCI_DM_QEMU`
        : `cannot run ${binary}: ${v.err.message}`,
    );
  }
  const version = v.out.split('\n')[0]!.trim();
  const d = await run(binary, ['-machine', 'none', '-device', 'x-pci-proxy-dev,help']);
  if (d.code !== 0 || !/\bfd=/.test(d.out)) {
    throw new QemuUnavailableError(
      `${binary} (${version}) has no x-pci-proxy-dev device (QEMU built without multiprocess support): ` +
        `the lab needs QEMU >= 6.0 with --enable-multiprocess, as Debian's qemu-system-x86 7.2 is`,
    );
  }
  return { binary, version };
}
