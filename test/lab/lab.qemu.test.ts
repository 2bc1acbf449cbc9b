/**
 * The lab end to end: a real Linux 6.1 guest under QEMU 7.2 (TCG) drives
 * our UHCI model through x-pci-proxy-dev, and the same guest boots once
 * more with QEMU's own piix3-usb-uhci + usb-tablet + usb-kbd. Both must
 * enumerate the same devices (ids, strings, serials, interfaces, drivers)
 * and deliver the same input events. Needs qemu-system-x86_64 (with
 * x-pci-proxy-dev), a /boot/vmlinuz-* kernel with its modules, busybox-static
 * and koffi; set UHCI_DM_SKIP_LAB=1 to skip on machines without them.
 * About 30 s on 2 cores (the initramfs is cached in .cache/lab/).
 */
import { runLab, type LabResult } from '../../src/lab/lab.js';
import { EV_MSC, EV_SYN, type LabUsbDevice } from '../../src/lab/lab-report.js';
import { ABS_X, ABS_Y, BTN_LEFT, KEY_H, KEY_I } from '../../src/lab/input-plan.js';

const skip = process.env.UHCI_DM_SKIP_LAB === '1';
const d = skip ? describe.skip : describe;

let model: LabResult;
let reference: LabResult;

/** What must match between our model and QEMU's device, per device. */
function identity(dev: LabUsbDevice | undefined) {
  if (!dev) return undefined;
  const { devnum: _devnum, ...rest } = dev;
  return rest;
}
const byPath = (r: LabResult, path: string) => r.devices.find((x) => x.path === path);
const inputNamed = (r: LabResult, name: string) => r.inputs.find((i) => i.name === name);
const meaningful = (r: LabResult, name: string) =>
  (inputNamed(r, name)?.events ?? []).filter((e) => e.type !== EV_SYN && e.type !== EV_MSC).map((e) => [e.type, e.code, e.value]);

d('lab: real Linux guest on the model vs QEMU reference', () => {
  beforeAll(async () => {
    const progress = (tag: string) => (m: string) => process.stderr.write(`[lab ${tag}] ${m}\n`);
    model = await runLab({ ports: ['tablet', 'keyboard'], onProgress: progress('model'), timeoutMs: 150_000 });
    reference = await runLab({ ports: ['tablet', 'keyboard'], reference: true, onProgress: progress('reference'), timeoutMs: 150_000 });
  }, 320_000);

  test('both guests ran to the end of their script', () => {
    for (const r of [model, reference]) {
      expect({ mode: r.mode, done: r.done, timedOut: r.timedOut, insmod: r.insmodFailures }).toEqual({
        mode: r.mode, done: true, timedOut: false, insmod: [],
      });
      expect(r.settled).toMatchObject({ boundInterfaces: 2, eventDevices: 2 });
    }
  });

  test('the model guest enumerates the tablet and keyboard with QEMU ids and strings', () => {
    const tablet = byPath(model, '1-1');
    const kbd = byPath(model, '1-2');
    expect(tablet).toMatchObject({ vendorId: 0x0627, productId: 0x0001, manufacturer: 'QEMU', product: 'QEMU USB Tablet', speed: '12' });
    expect(kbd).toMatchObject({ vendorId: 0x0627, productId: 0x0001, manufacturer: 'QEMU', product: 'QEMU USB Keyboard', speed: '12' });
    expect(tablet!.interfaces.map((i) => i.driver)).toEqual(['usbhid']);
    expect(kbd!.interfaces.map((i) => i.driver)).toEqual(['usbhid']);
    expect(byPath(model, 'usb1')).toMatchObject({ product: 'UHCI Host Controller', serial: '0000:00:05.0' });
  });

  test('same devices as QEMU piix3-usb-uhci (ids, strings, serials, interfaces, endpoints)', () => {
    for (const path of ['usb1', '1-1', '1-2']) {
      expect({ path, dev: identity(byPath(model, path)) }).toEqual({ path, dev: identity(byPath(reference, path)) });
    }
    expect(model.inputs.map((i) => [i.name, i.phys, i.vendor, i.product])).toEqual(
      reference.inputs.map((i) => [i.name, i.phys, i.vendor, i.product]),
    );
  });

  test('injected input arrives in the guest, as with QEMU', () => {
    const EV_KEY = 1;
    const EV_ABS = 3;
    const tablet = meaningful(model, 'QEMU QEMU USB Tablet');
    const kbd = meaningful(model, 'QEMU QEMU USB Keyboard');
    expect(tablet).toEqual([[EV_ABS, ABS_X, 0x4000], [EV_ABS, ABS_Y, 0x2000], [EV_KEY, BTN_LEFT, 1], [EV_KEY, BTN_LEFT, 0]]);
    expect(kbd).toEqual([[EV_KEY, KEY_H, 1], [EV_KEY, KEY_H, 0], [EV_KEY, KEY_I, 1], [EV_KEY, KEY_I, 0]]);
    expect(meaningful(reference, 'QEMU QEMU USB Tablet')).toEqual(tablet);
    expect(meaningful(reference, 'QEMU QEMU USB Keyboard')).toEqual(kbd);
  });

  test('no USB errors in the model guest kernel log; the proxy saw no model errors', () => {
    const bad = model.kernelLog.filter((l) => /error|fail|unable|not accepting|disabled by hub|cannot|reset .* using/i.test(l));
    expect(bad).toEqual([]);
    expect(model.proxy).toMatchObject({ functionErrors: 0, barMisses: 0 });
    expect(model.proxyEnd).toBe('peer-closed');
    expect(model.modelLog.filter((l) => l.startsWith('error'))).toEqual([]);
  });
});
