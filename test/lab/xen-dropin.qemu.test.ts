/**
 * Real Xen, the drop-in (issue: an unmodified xl.cfg plus one line): Xen 4.17
 * under QEMU TCG, a domU whose config is an ordinary one (`usb = 1`,
 * `usbdevice = ["tablet", "keyboard"]`, `usbctrl`) plus
 * `device_model_override` naming bin/uhci-dm-qemu.js, driven by xl only
 * (src/lab/xen-dropin.ts): create, input, `xl save` + `xl restore`,
 * `xl usbdev-attach` of dom0's gadget, `xl usb-list`, `xl usbdev-detach`,
 * the domain ending by itself. Minutes on 2 cores; UHCI_DM_SKIP_LAB=1 or
 * UHCI_DM_SKIP_XEN_LAB=1 skip it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runXenLab, type XenLabResult } from '../../src/lab/xen-lab.js';

const skip = process.env.UHCI_DM_SKIP_LAB === '1' || process.env.UHCI_DM_SKIP_XEN_LAB === '1';
const d = skip ? describe.skip : describe;
let r: XenLabResult;
const marker = (name: string) => {
  let m: RegExpMatchArray | null = null;
  for (const x of r.serial.matchAll(new RegExp(`@@XEN:${name}( .*)? [0-9.]+\\r?$`, 'gm'))) m = x;
  return m ? (m[1] ?? '').trim() : null;
};

d('Xen 4.17 under QEMU TCG: an ordinary xl.cfg + device_model_override = uhci-dm-qemu', () => {
  beforeAll(async () => {
    r = await runXenLab({ dropIn: true, timeout: 900, progress: (l) => process.stderr.write(`[xen-dropin] ${l}\n`) });
    process.stderr.write(`[xen-dropin] phases: ${JSON.stringify(r.phases)}; logs in ${r.workDir}\n`);
  }, 960_000);

  test('xl create starts uhci-dm for -usb and the usbctrl controller before the guest runs; the domU boots and reports', () => {
    expect(marker('dm-procs')).toMatch(/^3 qmp\.sock usb\.ctl xenusb-0\.ctl$/);
    expect({ booted: r.dm.booted, done: r.dm.done }).toEqual({ booted: true, done: true });
  });

  test('the domU sees the UHCI at 00:01.2 (where QEMU-xen puts usb=1) and the usbctrl one at 00:01.4, and enumerates our tablet and keyboard', () => {
    const uhci = r.dm.pci.filter((p) => p.class === 0x0c0300);
    expect(uhci.map((p) => [p.slot, p.vendor, p.device])).toEqual([
      ['0000:00:01.2', 0x8086, 0x7020],
      ['0000:00:01.4', 0x8086, 0x7020],
    ]);
    const products = r.dm.devices.filter((x) => x.path.includes('-')).map((x) => x.product);
    expect(products).toEqual(expect.arrayContaining(['QEMU USB Tablet', 'QEMU USB Keyboard']));
  });

  test('input goes in before xl save and after xl restore, with no other command; no uhci-dm process outlives the saved domain', () => {
    expect(marker('dm-input-sent')).toBe('7');
    expect(marker('dm-saved')).toBe('');
    expect(marker('dm-procs-after-save')).toBe('0');
    expect(marker('dm-restored')).toMatch(/^\d+$/);
    expect(JSON.parse(marker('dm-polled-restored') ?? '{}')).toMatchObject({ polled: 2 });
    expect(marker('dm-input-sent-restored')).toBe('7');
  });

  test('xl usbdev-attach passes dom0\'s gadget to the guest, xl usb-list lists it, xl usbdev-detach removes it', () => {
    expect(marker('usbdev-attached')).toMatch(/^\d+ \d+$/);
    expect(JSON.parse(marker('dm-hotplug-addressed') ?? '{}').address).toBeGreaterThan(0);
    const [bus, addr] = marker('usbdev-attached')!.split(' ').map(Number);
    const list = readFileSync(join(r.workDir, 'usb-list.txt'), 'utf8');
    expect(list).toMatch(/devicemodel/);
    expect(list).toContain(`Port 1: Bus ${String(bus).padStart(3, '0')} Device ${String(addr).padStart(3, '0')}`);
    expect(marker('usbdev-detached')).toBe('');
    expect(readFileSync(join(r.workDir, 'usb-list-after.txt'), 'utf8')).toMatch(/Port 1:\s*\n/);
    expect(JSON.parse(readFileSync(join(r.workDir, 'after-detach-usb.txt'), 'utf8').trim().split('\n').pop()!)).toEqual({ return: [] });
    expect(r.dm.kernelLog.join('\n')).toMatch(/New USB device found, idVendor=0525, idProduct=a4a0/);
  });

  test('the domain ends and leaves no uhci-dm process and no run directory', () => {
    expect(marker('dm-procs-end')).toBe('0 0');
  });
});
