/**
 * The wrapper's reading of libxl's QEMU command line (Xen 4.17
 * libxl__build_device_model_args_new): what uhci-dm takes, what QEMU keeps.
 */
import { DmPlanError, planFromLibxlArgv, withIncoming, withQmpPath } from '../../src/xl/dm-plan.js';
import { formatKeyValues, formatQemuArgv, parseKeyValues, parseQemuArgv, QemuArgvError } from '../../src/xl/qemu-argv.js';
import { inheritedFds } from '../../src/xl/wrapper.js';

/** libxl 4.17's argv for `usb = 1`, `usbdevice = ["tablet"]`, VNC, no NIC (order as libxl builds it). */
const LIBXL_ARGV = [
  '-xen-domid', '5', '-no-shutdown',
  '-chardev', 'socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-5,server=on,wait=off',
  '-mon', 'chardev=libxl-cmd,mode=control',
  '-chardev', 'socket,id=libxenstat-cmd,path=/var/run/xen/qmp-libxenstat-5,server=on,wait=off',
  '-mon', 'chardev=libxenstat-cmd,mode=control',
  '-nodefaults', '-no-user-config', '-name', 'guest',
  '-vnc', '127.0.0.1:0,to=99', '-display', 'none',
  '-serial', 'pty', '-device', 'cirrus-vga,vgamem_mb=8', '-boot', 'order=cda',
  '-usb', '-usbdevice', 'tablet', '-usbdevice', 'keyboard',
  '-net', 'none', '-machine', 'xenfv,suppress-vmdesc=on', '-m', '248',
];

/** The dm_restrict form: QMP as a listening fd libxl opened, -S, restriction, chroot, runas. */
const RESTRICTED = [
  '-xen-domid', '9', '-no-shutdown',
  '-chardev', 'socket,id=libxl-cmd,fd=19,server=on,wait=off', '-S',
  '-mon', 'chardev=libxl-cmd,mode=control',
  '-nodefaults', '-no-user-config', '-name', 'r', '-display', 'none',
  '-usb', '-usbdevice', 'tablet',
  '-xen-domid-restrict', '-chroot', '/var/run/xen/qemu-root-9',
  '-machine', 'xenfv,suppress-vmdesc=on', '-m', '248', '-runas', '131081:131081',
];

test('usb=1 + usbdevice: uhci-dm takes -usb and each -usbdevice; QEMU keeps everything else in order', () => {
  const p = planFromLibxlArgv(LIBXL_ARGV);
  expect(p.domid).toBe(5);
  expect(p.pv).toBe(false);
  expect(p.usb1).toEqual({ devices: ['tablet', 'keyboard'] });
  expect(p.qmp).toEqual({ kind: 'path', path: '/var/run/xen/qmp-libxl-5' });
  const rest = formatQemuArgv(p.qemu);
  expect(rest).toEqual(LIBXL_ARGV.filter((a, i) => a !== '-usb' && a !== '-usbdevice' && LIBXL_ARGV[i - 1] !== '-usbdevice'));
  expect(p.taken).toEqual(['-usb', '-usbdevice tablet', '-usbdevice keyboard']);
});

test('the QMP chardev is moved to a private path; libxenstat stays', () => {
  const p = planFromLibxlArgv(LIBXL_ARGV);
  const argv = formatQemuArgv(withQmpPath(p.qemu, '/run/uhci-dm/5/qmp.sock'));
  expect(argv).toContain('socket,id=libxl-cmd,path=/run/uhci-dm/5/qmp.sock,server=on,wait=off');
  expect(argv).toContain('socket,id=libxenstat-cmd,path=/var/run/xen/qmp-libxenstat-5,server=on,wait=off');
});

test('dm_restrict: libxl\'s pre-opened QMP fd becomes a path for QEMU and is not passed on; runas and chroot are read', () => {
  const p = planFromLibxlArgv(RESTRICTED);
  expect(p.qmp).toEqual({ kind: 'fd', fd: 19 });
  expect(p.runas).toBe('131081:131081');
  expect(p.chroot).toBe('/var/run/xen/qemu-root-9');
  expect(inheritedFds(formatQemuArgv(p.qemu))).toEqual([19]);
  const moved = formatQemuArgv(withQmpPath(p.qemu, '/run/uhci-dm/9/qmp.sock'));
  expect(moved).toContain('socket,id=libxl-cmd,server=on,wait=off,path=/run/uhci-dm/9/qmp.sock');
  expect(inheritedFds(moved)).toEqual([]);
  expect(moved).toContain('-S');
  expect(moved).toContain('-xen-domid-restrict');
});

test('restore: -incoming fd:N is kept for QEMU and its fd inherited', () => {
  const p = planFromLibxlArgv([...LIBXL_ARGV, '-incoming', 'fd:23']);
  expect(p.incoming).toBe('fd:23');
  expect(inheritedFds(formatQemuArgv(p.qemu))).toEqual([23]);
  expect(formatQemuArgv(withIncoming(p.qemu, 'fd:30')).slice(-2)).toEqual(['-incoming', 'fd:30']);
});

test('usbversion=2|3: QEMU\'s EHCI/xHCI keeps every USB option', () => {
  for (const ctrl of ['usb-ehci,id=usb', 'nec-usb-xhci,p2=15,p3=15,id=usb']) {
    const argv = ['-xen-domid', '3', '-device', ctrl, '-usbdevice', 'tablet', '-machine', 'xenfv'];
    const p = planFromLibxlArgv(argv);
    expect(p.usb1).toBeNull();
    expect(formatQemuArgv(p.qemu)).toEqual(argv);
  }
});

test('-device usb-* on the -usb bus (device_model_args) is ours, on another bus it is QEMU\'s', () => {
  const p = planFromLibxlArgv(['-xen-domid', '4', '-usb', '-device', 'usb-tablet,bus=usb-bus.0,port=1,serial=42', '-device', 'usb-kbd,bus=ehci.0']);
  expect(p.usb1).toEqual({ devices: ['usb-tablet,serial=42'] });
  expect(formatQemuArgv(p.qemu)).toEqual(['-xen-domid', '4', '-device', 'usb-kbd,bus=ehci.0']);
});

test('a PV helper (-machine xenpv) is passed through whole', () => {
  const argv = ['-xen-domid', '12', '-xen-attach', '-name', 'g-dm', '-machine', 'xenpv', '-nographic'];
  const p = planFromLibxlArgv(argv);
  expect(p.pv).toBe(true);
  expect(formatQemuArgv(p.qemu)).toEqual(argv);
});

test('bad command lines: one clear error', () => {
  expect(() => planFromLibxlArgv(['-usb'])).toThrow(DmPlanError);
  expect(() => planFromLibxlArgv(['-xen-domid', 'x'])).toThrow(/bad -xen-domid/);
  expect(() => planFromLibxlArgv(['-xen-domid', '0'])).toThrow(/bad -xen-domid/);
  expect(() => parseQemuArgv(['-xen-domid'])).toThrow(QemuArgvError);
  expect(() => parseQemuArgv(['disk.img'])).toThrow(/unexpected argument/);
  expect(() => planFromLibxlArgv(['-xen-domid', '2', '-chardev', 'socket,id=libxl-cmd,server=on'])).toThrow(/neither path= nor fd=/);
});

test('QEMU key=value lists: doubled commas are literal, round trip', () => {
  const kv = parseKeyValues('socket,id=a,,b,path=/x,,y,server=on', 'backend');
  expect(kv.implied).toBe('socket');
  expect(kv.props.get('id')).toBe('a,b');
  expect(kv.props.get('path')).toBe('/x,y');
  expect(formatKeyValues(kv)).toBe('socket,id=a,,b,path=/x,,y,server=on');
  expect(parseKeyValues('driver=usb-tablet,bus=b', 'driver').implied).toBe('usb-tablet');
});
