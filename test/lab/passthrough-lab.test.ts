/**
 * The passthrough lab's guest script (no QEMU needed): the HID gadget's
 * report descriptor survives the shell's printf byte for byte, the script
 * sets up what the proof phases need, and `@@PT` lines parse.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { HID_GADGET } from '../../src/guest/passthrough-proof-facts.js';
import { hidGadgetScript, parsePassthroughLines, passthroughGuestScript, printfOctal } from '../../src/lab/passthrough-lab.js';
import { reportDescriptor } from '../../src/usb/hid/qemu-hid-descriptors.js';

const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));

test('printfOctal: every byte value comes out of sh printf unchanged (and out of busybox printf, which the guest runs)', () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const viaSh = execFileSync('/bin/sh', ['-c', `printf '${printfOctal(all)}'`]);
  expect([...viaSh]).toEqual([...all]);
  if (busybox) expect([...execFileSync(busybox, ['printf', printfOctal(all)])]).toEqual([...all]);
  const kbd = reportDescriptor('keyboard');
  expect([...execFileSync('/bin/sh', ['-c', `printf '${printfOctal(kbd)}'`])]).toEqual([...kbd]);
});

test('the HID gadget script: boot keyboard function on the second dummy UDC with our ids and report length', () => {
  const s = hidGadgetScript();
  expect(s).toContain(`echo 0x${HID_GADGET.vendorId.toString(16).padStart(4, '0')} > idVendor`);
  expect(s).toContain(`echo 0x${HID_GADGET.productId.toString(16)} > idProduct`);
  expect(s).toContain('echo 1 > functions/hid.usb0/subclass; echo 1 > functions/hid.usb0/protocol');
  expect(s).toContain(`echo ${HID_GADGET.reportLength} > functions/hid.usb0/report_length`);
  expect(s).toContain('ln -s functions/hid.usb0 configs/c.1/');
  expect(s).toMatch(/echo dummy_udc\.1 > UDC/);
});

test('the guest script: two dummy UDCs, the HID phase unless disabled, progress records for large runs', () => {
  const s = passthroughGuestScript({ bytes: 100 << 20, unplugRounds: 2 }, '/repo', '/usr/bin/node');
  expect(s).toContain('insmod /lib/modules/dummy_hcd.ko is_high_speed=0 is_super_speed=0 num=2');
  expect(s).toContain('/sys/kernel/config/usb_gadget/g2');
  expect(s).toContain('$proof --phase main --bytes 104857600 --progress-bytes 10485760');
  expect(s).toContain('$proof --phase hid || rc=$?');
  expect(s).toContain('seq 1 2');
  const small = passthroughGuestScript({ bytes: 1 << 20, hid: false }, '/repo', '/usr/bin/node');
  expect(small).not.toContain('usb_gadget/g2');
  expect(small).not.toContain('--phase hid');
  expect(small).toContain('$proof --phase main --bytes 1048576\n');
});

test('@@PT lines parse into records by name, in order; other console lines are ignored', () => {
  const m = parsePassthroughLines(['noise', '@@PT unplug {"round":1}', '@@PT unplug {"round":2}', '  @@PT hid-reports {"written":16}\r', '@@PT odd not-json']);
  expect(m.get('unplug')).toEqual([{ round: 1 }, { round: 2 }]);
  expect(m.get('hid-reports')).toEqual([{ written: 16 }]);
  expect(m.get('odd')).toEqual(['not-json']);
  expect(m.has('noise')).toBe(false);
});
