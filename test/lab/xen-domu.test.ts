/**
 * The Xen lab domU's port-0xE9 report channel: the wrapper's relay (run
 * here with busybox sh) chunks long
 * lines, and XenGuestChannel reassembles them from Xen's "(dN) " console
 * lines, per domain, reporting lost line numbers.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { DOMU_CHUNK, DOMU_XEN_INIT, XenGuestChannel, xenLabInit } from '../../src/lab/xen-domu.js';
import { GUEST_INIT } from '../../src/lab/guest-init.js';

const haveBusybox = existsSync('/bin/busybox');

(haveBusybox ? test : test.skip)('relay chunks lines for Xen and the channel puts them back together', () => {
  const relay = DOMU_XEN_INIT.slice(DOMU_XEN_INIT.indexOf('relay() {'), DOMU_XEN_INIT.indexOf('\n}\n') + 3);
  const long = '@@LAB:events event0 ' + 'ab'.repeat(150);
  const input = ['@@LAB:boot 1.23', long, '', '@@LAB:usb 1-1 product QEMU USB Tablet', '@@LAB:done'].join('\n') + '\n';
  // In the domU the relay's output goes to the port-0xE9 writer; here to us.
  const records = execFileSync('/bin/busybox', ['sh', '-c', `${relay}\nrelay`], { input, encoding: 'utf8' }).trimEnd().split('\n');
  for (const r of records) {
    expect(r).toMatch(/^@@\d+[+=]/);
    expect(r.length - '@@999+'.length).toBeLessThanOrEqual(DOMU_CHUNK);
  }
  expect(records.length).toBeGreaterThan(5);
  const ch = new XenGuestChannel();
  // As Xen prints them (domain 3), interleaved with another domain and dom0 noise.
  for (const r of records) {
    ch.line(`(d3) ${r}\r`);
    ch.line('(d4) @@1=@@LAB:boot 9.9');
    ch.line('@@XEN:waiting dm 12.0');
  }
  expect(ch.lines(3)).toEqual(['@@LAB:boot 1.23', long, '', '@@LAB:usb 1-1 product QEMU USB Tablet', '@@LAB:done']);
  expect(ch.lost(3)).toEqual([]);
  expect(ch.report(3)).toMatchObject({ booted: true, done: true });
  expect(ch.domains().sort()).toEqual([3, 4]);
});

test('a missing chunk shows up as a lost line number; printk timestamps are tolerated', () => {
  const ch = new XenGuestChannel();
  ch.line('(d1) [   12.5] @@1=@@LAB:boot 3.0');
  ch.line('(d1) @@2+@@LAB:usb 1-1 ');
  ch.line('(d1) @@3=@@LAB:done');
  expect(ch.lines(1)).toEqual(['@@LAB:boot 3.0', '@@LAB:done']);
  expect(ch.lost(1)).toEqual([2]);
});

test('one guest saved and restored (two domids, one numbering): its lines are joined, a chunk split across the restore too', () => {
  const ch = new XenGuestChannel();
  ch.line('(d1) @@1=@@LAB:boot 3.0');
  ch.line('(d1) @@2=@@LAB:ready');
  ch.line('(d2) @@3+@@LAB:events event0 ');
  ch.line('(d2) @@3=00ff');
  ch.line('(d2) @@4=@@LAB:done');
  expect(ch.lost(1)).toEqual([]);
  expect(ch.lost(2)).toEqual([1, 2]);
  expect(ch.lines(1, 2)).toEqual(['@@LAB:boot 3.0', '@@LAB:ready', '@@LAB:events event0 00ff', '@@LAB:done']);
  expect(ch.lost(1, 2)).toEqual([]);
  expect(ch.report(1, 2)).toMatchObject({ booted: true, done: true });
  // A line begun before the save and never finished is lost, not joined to a later one.
  ch.line('(d1) @@5+@@LAB:klog x');
  expect(ch.lost(1, 2)).toEqual([5]);
});

test('the domU init is the lab init minus its final power-off (the wrapper powers off after the relay drained)', () => {
  const init = xenLabInit();
  expect(GUEST_INIT.startsWith(init)).toBe(true);
  expect(GUEST_INIT.slice(init.length)).toBe('poweroff -f\n');
  expect(init).toContain('@@LAB:done');
});
