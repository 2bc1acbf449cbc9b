/**
 * The device-model wrapper end to end without Xen: QEMU 7.2 (Debian's
 * qemu-system-x86_64, built without Xen, so a stand-in script drops the
 * Xen-only options) behind the wrapper, controllers served by `uhci-dm xen
 * --simulate` processes, and a client that speaks QMP as libxl does.
 * - device_add/device_del of controllers and USB devices get the same
 *   answers QEMU's own piix3-usb-uhci gets (differential, same commands);
 * - `xl save`'s sequence (stop, add-fd with SCM_RIGHTS, xen-save-devices-state
 *   on /dev/fdset/N) leaves QEMU's stream followed by uhci-dm's trailer;
 * - a restore with -incoming fd:N feeds QEMU its own bytes (it loads them) and
 *   brings the controllers back with their devices; libxl's re-add of the
 *   same ids succeeds;
 * - quit ends QEMU, then every controller, and removes the run directory.
 */
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync, constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLogger } from '../../src/platform/logger.js';
import { ControlClient } from '../../src/xl/control-client.js';
import { planFromLibxlArgv } from '../../src/xl/dm-plan.js';
import { readTrailer } from '../../src/xl/saved-state.js';
import { runWrapper } from '../../src/xl/wrapper.js';
import type { QmpMessage } from '../../src/xl/qmp-framing.js';
import { TestQmpClient } from '../support/qmp-client.js';

const dir = mkdtempSync(join(tmpdir(), 'uhci-xl-'));
chmodSync(dir, 0o700);
const FAKE_QEMU = join(dir, 'qemu-xen');
writeFileSync(
  FAKE_QEMU,
  `#!/bin/bash
# QEMU-xen stand-in: the Xen-only options dropped, the pc machine instead of xenfv.
a=()
while [ $# -gt 0 ]; do
  case "$1" in
    -xen-domid|-runas|-chroot) shift 2;;
    -xen-domid-restrict) shift;;
    # xen-save-devices-state writes no configuration section, and QEMU-xen loads
    # its stream without one; the pc machine is told the same.
    -machine) a+=(-machine pc,accel=tcg -global migration.send-configuration=off); shift 2;;
    *) a+=("$1"); shift;;
  esac
done
exec qemu-system-x86_64 "\${a[@]}"
`,
);
chmodSync(FAKE_QEMU, 0o755);

const libxlArgv = (domid: number, sock: string, extra: string[] = []) => [
  '-xen-domid', String(domid), '-no-shutdown',
  '-chardev', `socket,id=libxl-cmd,path=${sock},server=on,wait=off`,
  '-mon', 'chardev=libxl-cmd,mode=control',
  '-nodefaults', '-no-user-config', '-name', 'guest', '-display', 'none', '-S',
  '-usb', '-usbdevice', 'tablet',
  '-machine', 'xenfv,suppress-vmdesc=on', '-m', '64',
  ...extra,
];

/** Commands libxl's usbctrl/usbdev paths send, and the error cases around them. */
const DEVICE_COMMANDS: [string, Record<string, unknown>][] = [
  ['device_add', { driver: 'piix3-usb-uhci', id: 'xenusb-0' }],
  ['device_add', { driver: 'piix3-usb-uhci', id: 'xenusb-0' }],
  ['device_add', { driver: 'usb-tablet', id: 't1', bus: 'xenusb-0.0', port: '1' }],
  ['device_add', { driver: 'usb-kbd', id: 'k1', bus: 'xenusb-0.0', port: '1' }],
  ['device_add', { driver: 'usb-kbd', id: 'k2', bus: 'xenusb-0.0', port: '3' }],
  ['device_add', { driver: 'usb-tablet', id: 't1', bus: 'xenusb-0.0', port: '2' }],
  ['device_add', { driver: 'usb-mouse', id: 'm1', bus: 'nosuch.0', port: '1' }],
  ['device_add', { driver: 'usb-host', id: 'xenusb-3-9', bus: 'xenusb-0.0', port: '2', hostbus: '3', hostaddr: '9' }],
  ['device_del', { id: 'nosuch' }],
  ['device_del', { id: 't1' }],
  // Ports given, as libxl gives them: without one, QEMU chains a usb-hub onto the
  // last free root port and puts the device behind it (hw/usb/bus.c); uhci-dm has no hub.
  ['device_add', { driver: 'usb-kbd', id: 'k3', bus: 'xenusb-0.0', port: '1' }],
  ['device_add', { driver: 'usb-mouse', id: 'm2', bus: 'xenusb-0.0', port: '2' }],
  ['device_add', { driver: 'usb-tablet', id: 't4', bus: 'xenusb-0.0' }],
];

const answer = (m: QmpMessage) => ('return' in m ? { return: m.return } : { error: m.error });

function startWrapper(domid: number, sock: string, extra: string[] = []) {
  const logger = new MemoryLogger();
  const guest = { started: false };
  const done = runWrapper(planFromLibxlArgv(libxlArgv(domid, sock, extra)), {
    qemu: FAKE_QEMU,
    runRoot: join(dir, 'run'),
    logger,
    guestStarted: () => guest.started,
    controllerArgs: ['--simulate'],
    signals: false,
  });
  return { logger, done, guest };
}

test('device_add/device_del through the wrapper are answered as QEMU 7.2 answers them', async () => {
  // QEMU alone, with its own UHCI added the way libxl adds one.
  const refSock = join(dir, 'ref.qmp');
  const ref = spawn('qemu-system-x86_64', ['-machine', 'pc,accel=tcg', '-nodefaults', '-display', 'none', '-S', '-m', '64', '-qmp', `unix:${refSock},server=on,wait=off`], { stdio: 'ignore' });
  const r = await TestQmpClient.connect(refSock);
  await r.execute('qmp_capabilities');
  const refAnswers = [];
  for (const [c, a] of DEVICE_COMMANDS) refAnswers.push(answer(await r.execute(c, a)));
  await r.waitEvent('DEVICE_DELETED');
  await r.execute('quit');
  await new Promise((res) => ref.once('exit', res));

  const sock = join(dir, 'qmp-libxl-7');
  const w = startWrapper(7, sock);
  const q = await TestQmpClient.connect(sock);
  expect(q.greeting?.QMP).toBeDefined();
  await q.execute('qmp_capabilities');
  const ours = [];
  for (const [c, a] of DEVICE_COMMANDS) ours.push(answer(await q.execute(c, a)));
  const deleted = await q.waitEvent('DEVICE_DELETED');
  expect(deleted.data).toEqual({ device: 't1', path: '/machine/peripheral/t1' });
  // usb-host: QEMU looks for host device 3:9 (absent on both); the simulated controller has no libusb, so its reason differs.
  const hostIdx = DEVICE_COMMANDS.findIndex(([, a]) => a.driver === 'usb-host');
  expect(refAnswers[hostIdx]).toEqual({ error: { class: 'GenericError', desc: 'failed to find host usb device 3:9' } });
  expect((ours[hostIdx] as { error?: unknown }).error).toBeDefined();
  expect(ours.filter((_, i) => i !== hostIdx)).toEqual(refAnswers.filter((_, i) => i !== hostIdx));
  // Everything else is QEMU's own answer.
  expect((await q.execute('query-status')).return).toEqual({ status: 'prelaunch', singlestep: false, running: false });
  // A controller cannot be added or removed once the guest has run (PCI hot plug is QEMU's): one clear error.
  w.guest.started = true;
  const late = answer(await q.execute('device_add', { driver: 'piix3-usb-uhci', id: 'xenusb-5' }));
  expect(late).toEqual({ error: { class: 'GenericError', desc: expect.stringMatching(/running guest needs PCI hot plug/) } });
  expect(answer(await q.execute('device_del', { id: 'xenusb-0' }))).toEqual({ error: { class: 'GenericError', desc: expect.stringMatching(/PCI hot unplug/) } });
  // Devices on an existing controller still come and go.
  expect(answer(await q.execute('device_del', { id: 'k3' }))).toEqual({ return: {} });
  await q.execute('quit');
  expect(await w.done).toBe(0);
  expect(existsSync(join(dir, 'run', '7'))).toBe(false);
  expect(existsSync(sock)).toBe(false);
}, 120_000);

test('xl save\'s QMP sequence carries the controllers in the device-model file; a restore brings them back', async () => {
  const sock = join(dir, 'qmp-libxl-8');
  const w = startWrapper(8, sock);
  const q = await TestQmpClient.connect(sock);
  await q.execute('qmp_capabilities');
  expect(answer(await q.execute('device_add', { driver: 'piix3-usb-uhci', id: 'xenusb-1' }))).toEqual({ return: {} });
  expect(answer(await q.execute('device_add', { driver: 'usb-kbd', id: 'kb', bus: 'xenusb-1.0', port: '2' }))).toEqual({ return: {} });

  // libxl__qmp_suspend_save: stop, add-fd (the file libxl opened), xen-save-devices-state on the fd set.
  const file = join(dir, 'qemu-save.8');
  const fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  expect(answer(await q.execute('stop'))).toEqual({ return: {} });
  const added = await q.execute('add-fd', {}, [fd]);
  closeSync(fd);
  const fdset = (added.return as { 'fdset-id': number })['fdset-id'];
  expect(typeof fdset).toBe('number');
  expect(answer(await q.execute('xen-save-devices-state', { filename: `/dev/fdset/${fdset}`, live: false }))).toEqual({ return: {} });
  await q.execute('quit');
  expect(await w.done).toBe(0);

  const bytes = readFileSync(file);
  expect(bytes.subarray(0, 4).toString('latin1')).toBe('QEVM');
  const rfd = openSync(file, 'r');
  const split = readTrailer(rfd);
  closeSync(rfd);
  expect(split.qemuBytes).toBeGreaterThan(0);
  expect(split.usb?.controllers.map((c) => [c.id, c.bdf, c.devices])).toEqual([
    ['', '00:01.2', [{ id: '#1', port: 1 }]],
    ['xenusb-1', '00:01.4', [{ id: 'kb', port: 2 }]],
  ]);

  // Restore: libxl opens the saved file and passes -incoming fd:N.
  const inFd = openSync(file, 'r');
  const w2 = startWrapper(9, sock, ['-incoming', `fd:${inFd}`]);
  const q2 = await TestQmpClient.connect(sock);
  await q2.execute('qmp_capabilities');
  // QEMU loaded its own bytes (a trailer would make it fail): it waits paused (-S) as libxl expects.
  expect((await q2.execute('query-status')).return).toMatchObject({ status: 'paused' });
  // libxl re-adds the domain's usbctrl and usbdev: same ids, same places — already there.
  expect(answer(await q2.execute('device_add', { driver: 'piix3-usb-uhci', id: 'xenusb-1' }))).toEqual({ return: {} });
  expect(answer(await q2.execute('device_add', { driver: 'usb-kbd', id: 'kb', bus: 'xenusb-1.0', port: '2' }))).toEqual({ return: {} });
  const ctl = await ControlClient.connect(join(dir, 'run', '9', 'xenusb-1.ctl'));
  const usb = (await ctl.execute('query-usb')) as { port: number; kind: string }[];
  expect(usb.map((d) => [d.port, d.kind])).toEqual([[2, 'keyboard']]);
  ctl.close();
  expect(w2.logger.records.some((r) => r.msg === 'controller state restored' && r.fields?.id === 'xenusb-1')).toBe(true);
  await q2.execute('quit');
  expect(await w2.done).toBe(0);
  closeSync(inFd);
}, 180_000);
