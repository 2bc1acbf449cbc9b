import { buildCpio, parseCpio } from '../../src/lab/cpio.js';
import { GuestImageError, resolveModules } from '../../src/lab/guest-image.js';
import { GuestReportParser, decodeInputEvents, formatLsusb } from '../../src/lab/lab-report.js';

describe('cpio newc', () => {
  test('entries round-trip with 4-byte alignment and a trailer', () => {
    const data = new TextEncoder().encode('hello');
    const a = buildCpio([
      { type: 'dir', path: '/bin' },
      { type: 'file', path: 'bin/x', data, mode: 0o755 },
      { type: 'symlink', path: 'bin/sh', target: 'busybox' },
      { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    ]);
    expect(new TextDecoder().decode(a.subarray(0, 6))).toBe('070701');
    expect(a.length % 4).toBe(0);
    const m = parseCpio(a);
    expect(m.map((e) => e.name)).toEqual(['bin', 'bin/x', 'bin/sh', 'dev/console']);
    expect(m[0]!.mode).toBe(0o040755);
    expect(m[1]!.mode).toBe(0o100755);
    expect(new TextDecoder().decode(m[1]!.data)).toBe('hello');
    expect(new TextDecoder().decode(m[2]!.data)).toBe('busybox');
    expect([m[3]!.mode & 0o170000, m[3]!.rdevmajor, m[3]!.rdevminor]).toEqual([0o020000, 5, 1]);
    const tail = new TextDecoder().decode(a.subarray(a.length - 16));
    expect(tail).toContain('TRAILER!!!');
  });
});

describe('modules.dep resolution', () => {
  const dep = [
    'kernel/drivers/usb/host/uhci-hcd.ko: kernel/drivers/usb/core/usbcore.ko kernel/drivers/usb/common/usb-common.ko',
    'kernel/drivers/usb/common/usb-common.ko:',
    'kernel/drivers/usb/core/usbcore.ko: kernel/drivers/usb/common/usb-common.ko',
    'kernel/drivers/hid/usbhid/usbhid.ko.xz: kernel/drivers/hid/hid.ko kernel/drivers/usb/core/usbcore.ko kernel/drivers/usb/common/usb-common.ko',
    'kernel/drivers/hid/hid.ko:',
  ].join('\n');
  test('dependencies come first, each module once; - and _ are the same', () => {
    expect(resolveModules(dep, ['usbhid', 'uhci_hcd'])).toEqual([
      'kernel/drivers/usb/common/usb-common.ko',
      'kernel/drivers/usb/core/usbcore.ko',
      'kernel/drivers/hid/hid.ko',
      'kernel/drivers/hid/usbhid/usbhid.ko.xz',
      'kernel/drivers/usb/host/uhci-hcd.ko',
    ]);
  });
  test('an unknown module is a user-facing error', () => {
    expect(() => resolveModules(dep, ['nope'])).toThrow(GuestImageError);
  });
});

describe('guest report', () => {
  test('input_event records: 24 bytes, type/code/value after the timeval', () => {
    const rec = (type: number, code: number, value: number) => {
      const b = new Uint8Array(24);
      const dv = new DataView(b.buffer);
      dv.setBigUint64(0, 123n, true);
      dv.setUint16(16, type, true);
      dv.setUint16(18, code, true);
      dv.setInt32(20, value, true);
      return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
    };
    expect(decodeInputEvents(rec(1, 35, 1) + rec(3, 1, -5) + 'abcd')).toEqual([
      { type: 1, code: 35, value: 1 },
      { type: 3, code: 1, value: -5 },
    ]);
  });
  test('marker lines build devices, interfaces, inputs and the kernel log; other lines are ignored', () => {
    const p = new GuestReportParser();
    const lines = [
      '[    0.1] some boot line',
      '@@LAB:boot 1.25',
      '@@LAB:settled 3.5 2 2',
      '@@LAB:usb 1-1 idVendor 0627',
      '@@LAB:usb 1-1 idProduct 0001',
      '@@LAB:usb 1-1 busnum 1',
      '@@LAB:usb 1-1 devnum 2',
      '@@LAB:usb 1-1 product QEMU USB Tablet',
      '@@LAB:usb 1-1 manufacturer QEMU',
      '@@LAB:usb 1-1 version  2.00',
      '@@LAB:if 1-1:1.0 bInterfaceClass 03',
      '@@LAB:if 1-1:1.0 driver usbhid',
      '@@LAB:if 1-1:1.0 endpoint 81 Interrupt 0008 10ms',
      '@@LAB:input event1 name QEMU QEMU USB Tablet',
      '@@LAB:input event1 vendor 0627',
      '@@LAB:events event1 ' + '00'.repeat(16) + '0300' + '0000' + '00400000',
      '@@LAB:klog [    2.1] usb 1-1: new full-speed USB device number 2 using uhci_hcd',
      '@@LAB:script-begin',
      'user output @@LAB:usb not-a-marker-here',
      '@@LAB:script-end 3',
      '@@LAB:done',
    ];
    for (const l of lines) p.line(l + '\r');
    const r = p.report;
    expect(r.booted).toBe(true);
    expect(r.done).toBe(true);
    expect(r.settled).toEqual({ uptime: 3.5, boundInterfaces: 2, eventDevices: 2 });
    expect(r.devices).toHaveLength(1);
    const d = r.devices[0]!;
    expect(d).toMatchObject({ path: '1-1', vendorId: 0x627, productId: 1, product: 'QEMU USB Tablet', bcdUSB: '2.00' });
    expect(d.interfaces[0]).toMatchObject({ interfaceClass: 3, driver: 'usbhid', endpoints: [{ address: 0x81, type: 'Interrupt', maxPacketSize: 8, interval: '10ms' }] });
    expect(r.inputs[0]).toMatchObject({ event: 'event1', name: 'QEMU QEMU USB Tablet', vendor: 0x627, events: [{ type: 3, code: 0, value: 0x4000 }] });
    expect(r.kernelLog).toEqual(['[    2.1] usb 1-1: new full-speed USB device number 2 using uhci_hcd']);
    expect(r.scriptOutput).toEqual(['user output @@LAB:usb not-a-marker-here']);
    expect(r.scriptExitCode).toBe(3);
    expect(formatLsusb(d)).toBe('Bus 001 Device 002: ID 0627:0001 QEMU QEMU USB Tablet');
  });
});
