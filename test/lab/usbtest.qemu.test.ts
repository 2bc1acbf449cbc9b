/**
 * Linux usbtest against our controller: a Linux 6.1 guest (QEMU 7.2 TCG)
 * whose UHCI is our model, with our gadget zero on root port 1, runs the
 * usbtest cases through scripts/guest/testusb.mjs (testusb.c's ioctls, run
 * by the host's node inside the guest over 9p + chroot). Every case that
 * applies to a full-speed gadget zero must pass; the ones that do not apply
 * (isochronous 15/16/22/23: usbtest only uses the first altsetting with
 * bulk endpoints; interrupt 25/26: no interrupt endpoints) answer
 * EOPNOTSUPP, which testusb skips. Iterations are reduced (CI_USBTEST_PLAN)
 * to keep the run near a minute. Needs qemu-system-x86_64, a /boot kernel
 * with modules, busybox-static and koffi; UHCI_DM_SKIP_LAB=1 skips it.
 */
import * as usbtestLab from '../../src/lab/usbtest-lab.js';
import { CI_USBTEST_PLAN, formatUsbtestTable, runUsbtestLab, type UsbtestLabResult } from '../../src/lab/usbtest-lab.js';

const skip = process.env.UHCI_DM_SKIP_LAB === '1';
const d = skip ? describe.skip : describe;

let r: UsbtestLabResult;

d('usbtest (reduced iterations) in a Linux guest on our UHCI with gadget zero', () => {
  beforeAll(async () => {
    r = await runUsbtestLab({ ...CI_USBTEST_PLAN, timeoutMs: 240_000, onProgress: (m) => process.stderr.write(`[usbtest] ${m}\n`) });
    process.stderr.write(formatUsbtestTable(r) + '\n');
  }, 260_000);

  test('the guest ran testusb against gadget zero on the model', () => {
    expect({ done: r.lab.done, timedOut: r.lab.timedOut, insmod: r.lab.insmodFailures }).toEqual({ done: true, timedOut: false, insmod: [] });
    expect(r.device).toMatch(/^\/dev\/bus\/usb\/001\/\d{3}$/);
    expect(r.lab.devices.find((x) => x.path === '1-1')).toMatchObject({ vendorId: 0x0525, productId: 0xa4a0, speed: '12' });
    expect(r.cases.map((c) => c.test)).toEqual([...Array(30).keys()]);
  });

  test('every applicable case passes; only isochronous and interrupt cases are not applicable', () => {
    const failed = r.cases.filter((c) => c.outcome === 'fail').map((c) => `${c.test}: ${c.errno}`);
    expect(failed).toEqual([]);
    expect(r.cases.filter((c) => c.outcome === 'skip').map((c) => c.test)).toEqual([15, 16, 22, 23, 25, 26]);
  });

  test('the guest kernel logged no usbtest error and enumerated gadget zero cleanly', () => {
    const out = (r.lab.scriptOutput ?? []).join('\n');
    expect(out).not.toMatch(/usbtest .*(error|fail)/i);
    expect(r.lab.kernelLog.join('\n')).not.toMatch(/different from the descriptor's value/);
  });
});

describe('usbtest lab plumbing (no QEMU)', () => {
  test('testusb.mjs result lines are parsed per case', () => {
    const { parseUsbtestLines } = usbtestLab;
    const r = parseUsbtestLines([
      'noise',
      '@@USBTEST /dev/bus/usb/001/002 0 pass 0.000623 iterations=10 length=512 vary=512 sglen=32 wall=0.0',
      '@@USBTEST /dev/bus/usb/001/002 14 fail 22 EINVAL iterations=10 length=512 vary=512 sglen=32 wall=0.0',
      '@@USBTEST /dev/bus/usb/001/002 15 skip EOPNOTSUPP',
    ]);
    expect(r.device).toBe('/dev/bus/usb/001/002');
    expect(r.cases).toEqual([
      { test: 0, outcome: 'pass', seconds: 0.000623, errno: null, params: 'iterations=10 length=512 vary=512 sglen=32', wallSeconds: 0 },
      { test: 14, outcome: 'fail', seconds: null, errno: 'EINVAL (22)', params: 'iterations=10 length=512 vary=512 sglen=32', wallSeconds: 0 },
      { test: 15, outcome: 'skip', seconds: null, errno: 'EOPNOTSUPP', params: null, wallSeconds: null },
    ]);
  });

  test('the guest script mounts the host root and passes testusb defaults and per-case overrides', () => {
    const s = usbtestLab.usbtestGuestScript({ cases: [1, 14], caseParams: new Map([[14, { vary: 63 }]]) }, '/repo', '/usr/bin/node');
    expect(s).toContain('mount -t 9p');
    expect(s).toContain('chroot /host /usr/bin/node /repo/scripts/guest/testusb.mjs --cases 1,14 --iterations 1000 --length 512 --vary 512 --sglen 32 --case 14:vary=63');
  });
});
