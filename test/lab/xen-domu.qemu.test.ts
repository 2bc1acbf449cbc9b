/**
 * The Xen lab domU's initramfs and its port-0xE9 report, without Xen:
 * plain QEMU TCG with `-debugcon` (QEMU's port-0xE9 device) and QEMU's own
 * UHCI + tablet. Proves the wrapper, the relay and the hand-built E9 writer
 * deliver the lab guest's complete report, reassembled by XenGuestChannel
 * (Xen prefixes each line with "(dN) "; we add that here). ~20 s;
 * UHCI_DM_SKIP_LAB=1 skips it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { prepareGuestImage, repoRoot } from '../../src/lab/guest-image.js';
import { XenGuestChannel, prepareXenDomUInitrd, DOMU_E9_CMDLINE } from '../../src/lab/xen-domu.js';

const skip = process.env.UHCI_DM_SKIP_LAB === '1' || spawnSync('qemu-system-x86_64', ['--version']).status !== 0;

(skip ? test.skip : test)('the domU initramfs reports enumeration of a tablet over port 0xE9', () => {
  const cacheDir = join(repoRoot(), '.cache', 'xen-lab');
  const g = prepareGuestImage({ cacheDir });
  const initrd = prepareXenDomUInitrd(cacheDir, g.initrd);
  const out = join(mkdtempSync(join(cacheDir, 'e9-')), 'e9.out');
  const r = spawnSync(
    'qemu-system-x86_64',
    ['-accel', 'tcg', '-m', '512', '-nodefaults', '-display', 'none', '-serial', `file:${out}.serial`, '-debugcon', `file:${out}`, '-no-reboot',
      '-kernel', g.kernel, '-initrd', initrd, '-append', `console=ttyS0 quiet panic=-1 no_timer_check ${DOMU_E9_CMDLINE} lab.devices=1 lab.inputs=1 lab.wait=60 lab.evwait=1`,
      '-device', 'piix3-usb-uhci', '-device', 'usb-tablet'],
    { timeout: 150_000 },
  );
  expect(r.status).toBe(0);
  const ch = new XenGuestChannel();
  for (const l of readFileSync(out, 'latin1').split('\n')) ch.line(`(d7) ${l}`);
  expect(ch.lost(7)).toEqual([]);
  const rep = ch.report(7);
  expect(rep).toMatchObject({ booted: true, done: true });
  expect(rep.devices.find((d) => d.path === '1-1')).toMatchObject({ vendorId: 0x0627, productId: 0x0001, product: 'QEMU USB Tablet' });
  // Long lines (the klog lines, the interface list) came through in chunks.
  expect(rep.kernelLog.some((l) => /uhci_hcd/.test(l))).toBe(true);
}, 180_000);
