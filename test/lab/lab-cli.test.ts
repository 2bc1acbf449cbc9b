import { labCommand } from '../../src/cli/lab.js';
import { UsageError } from '../../src/cli/args.js';
import { checkQemu, QemuUnavailableError } from '../../src/qemu/qemu-binary.js';

test('bad port and unknown options are usage errors', async () => {
  await expect(labCommand(['--port1', 'printer'])).rejects.toThrow(UsageError);
  await expect(labCommand(['--bogus'])).rejects.toThrow(UsageError);
  await expect(labCommand(['--script', '/nonexistent/x.sh'])).rejects.toThrow(UsageError);
  // The Xen lab runs its own fixed scenario: the proxy lab's options are refused before anything boots.
  await expect(labCommand(['--xen', '--record', 'x.gz'])).rejects.toThrow(/--record cannot be used with --xen/);
  await expect(labCommand(['--xen', '--bios'])).rejects.toThrow(/--bios cannot be used with --xen/);
  await expect(labCommand(['--no-reference'])).rejects.toThrow(/only applies to --xen/);
  await expect(labCommand(['--no-save-restore'])).rejects.toThrow(/--no-save-restore only applies to --xen/);
});

test('missing QEMU is a user-facing error naming the package', async () => {
  const e = await checkQemu('/nonexistent/qemu-system-x86_64').catch((x: unknown) => x);
  expect(e).toBeInstanceOf(QemuUnavailableError);
  expect((e as QemuUnavailableError).userFacing).toBe(true);
  expect((e as Error).message).toMatch(/not found.*qemu-system-x86/);
});

test('a QEMU without x-pci-proxy-dev is refused', async () => {
  // /bin/true answers every question with nothing: no proxy device listed.
  const e = await checkQemu('/bin/true').catch((x: unknown) => x);
  expect(e).toBeInstanceOf(QemuUnavailableError);
  expect((e as Error).message).toMatch(/no x-pci-proxy-dev/);
});
