/**
 * `uhci-dm xen`: argument errors, the one-line failure without Xen (also in
 * a separate process, so that nothing the C libraries print slips through),
 * and a full run against a simulated hypervisor with devices, the control
 * socket (hot add/remove, info usb, save/restore) and stop on SIGTERM.
 */
import { parseDeviceSpec } from '../../src/xen/usb-ports.js';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { xenCommand } from '../../src/cli/xen.js';
import { SimHypervisor } from '../../src/xen/sim/hypervisor.js';
import { SimGuestBus } from '../../src/xen/sim/vcpu.js';
import { UhciGuestDriver } from '../../src/guest/uhci-driver.js';
import type { IoreqServer } from '../../src/xen/ioreq-server.js';
import type { UsbPorts } from '../../src/xen/usb-ports.js';
import { startSimXen } from './sim-xen.js';

const hypervisorPresent = existsSync('/dev/xen/privcmd') || existsSync('/proc/xen/privcmd');

async function run(argv: string[]) {
  let out = '';
  let err = '';
  const code = await xenCommand(argv, { out: (s) => (out += s), err: (s) => (err += s), signals: false });
  return { code, out, err };
}

test('usage errors exit 2 with one line', async () => {
  for (const argv of [[], ['--domid', '0'], ['--domid', '1', '--bdf', '00:40.0'], ['--domid', '1', '--bogus'], ['--domid', '1', 'extra']]) {
    const r = await run(argv);
    expect(r.code).toBe(2);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).toMatch(/^uhci-dm xen: /);
  }
});

test('host device specs: both spellings parse; malformed ones are refused before touching Xen', async () => {
  expect(parseDeviceSpec('host:046d:c077')).toEqual({ kind: 'host', selector: { kind: 'ids', vendorId: 0x046d, productId: 0xc077 }, text: 'host:046d:c077' });
  expect(parseDeviceSpec('usb-host,vendorid=0x046d,productid=0xc077')).toEqual(parseDeviceSpec('host:46d:c077'));
  expect(parseDeviceSpec('usb-host,hostbus=1,hostaddr=5').kind).toBe('host');
  for (const spec of [['-usbdevice', 'host:zz:top'], ['-device', 'usb-host,serial=1'], ['-usbdevice', 'printer']]) {
    const r = await run(['--domid', '1', ...spec]);
    expect(r.code).toBe(1);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).toMatch(/bad host device|usb-host needs|unknown USB device/);
    expect(r.err).not.toMatch(/xendevicemodel/);
  }
});

(hypervisorPresent ? test.skip : test)('without Xen: exit 1 and one clear line (in-process)', async () => {
  const r = await run(['--domid', '1']);
  expect(r.code).toBe(1);
  expect(r.err.trim().split('\n')).toHaveLength(1);
  expect(r.err).toMatch(/^uhci-dm xen: xendevicemodel_open failed .*cannot reach the Xen hypervisor/);
});

(hypervisorPresent ? test.skip : test)('without Xen: a separate process prints exactly one line on stderr, no stack', () => {
  const built = join(process.cwd(), 'dist/src/cli/xen.js');
  if (!existsSync(built)) throw new Error('dist/ is not built: run `npm run build` before this test (npm test does)');
  const script = `const { xenCommand } = await import(${JSON.stringify(built)}); process.exitCode = await xenCommand(['--domid', '1']);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20000 });
  expect(r.status).toBe(1);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^uhci-dm xen: xendevicemodel_open failed/);
  expect(r.stderr).not.toMatch(/\n\s+at /);
});

function client(path: string) {
  const s = net.connect(path);
  s.setEncoding('utf8');
  let buf = '';
  const waiting: ((v: unknown) => void)[] = [];
  const lines: unknown[] = [];
  s.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const msg = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      const w = waiting.shift();
      if (w) w(msg);
      else lines.push(msg);
    }
  });
  const next = () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((r) => waiting.push(r)));
  return {
    next,
    async cmd(execute: string, args?: Record<string, unknown>) {
      s.write(JSON.stringify({ execute, arguments: args }) + '\n');
      return (await next()) as { return?: unknown; error?: { desc: string } };
    },
    end: () => s.end(),
  };
}

test('serves a simulated hypervisor: devices from the command line, control socket, SIGTERM-equivalent stop', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'uhci-xen-'));
  const sock = join(dir, 'ctl.sock');
  const hv = new SimHypervisor({ domid: 9, vcpus: 2 });
  let server!: IoreqServer;
  let ports!: UsbPorts;
  let err = '';
  const done = xenCommand(['--domid', '9', '--bdf', '00:06.0', '-usb', '-usbdevice', 'tablet', '-device', 'usb-kbd', '--control', sock, '--log-json'], {
    platform: hv.platform,
    signals: false,
    err: (s) => (err += s),
    out: () => undefined,
    onReady: (s, p) => {
      server = s;
      ports = p;
    },
  });
  while (!server) await new Promise((r) => setTimeout(r, 5));
  expect(hv.serverList[0]!.pcidevs).toEqual([{ segment: 0, bus: 0, device: 6, fn: 0 }]);
  expect(ports.list().map((d) => d.kind)).toEqual(['tablet', 'keyboard']);

  // The guest enumerates both devices through ioreqs (real time: the CLI uses the wall clock).
  const driver = new UhciGuestDriver(new SimGuestBus(hv.vcpus[1]!, null));
  await driver.probe(0xc100, [6]);
  await driver.start();
  const kb = await driver.enumerate(1);
  expect(kb.product).toBe('QEMU USB Keyboard');

  const c = client(sock);
  expect(await c.next()).toEqual({ QMP: { version: { 'uhci-dm': expect.any(String) }, capabilities: [] } });
  expect((await c.cmd('usb_del', { devname: 'tablet' })).return).toEqual({ port: 1 });
  expect((await c.cmd('usb_add', { devname: 'mouse' })).return).toEqual({ port: 1 });
  expect((await c.cmd('usb_add', { devname: 'host:1:2' })).error?.desc).toMatch(/needs libusb/);
  expect((await c.cmd('usb_add', { devname: 'tablet' })).error?.desc).toMatch(/all 2 ports are in use/);
  const info = (await c.cmd('query-usb')).return as { port: number; kind: string; address: number }[];
  expect(info.map((d) => [d.port, d.kind])).toEqual([
    [1, 'mouse'],
    [2, 'keyboard'],
  ]);
  expect(info[1]!.address).toBe(kb.address);
  const hmp = (await c.cmd('human-monitor-command', { 'command-line': 'info usb' })).return as string;
  expect(hmp).toMatch(/Port 2, Speed 12 Mb\/s, Product QEMU USB Keyboard/);

  // save → change → restore brings devices and controller state back.
  const snapFile = join(dir, 'snap.json');
  expect((await c.cmd('save', { file: snapFile })).return).toEqual({ file: snapFile });
  const saved = JSON.parse(readFileSync(snapFile, 'utf8'));
  expect(saved.devices).toEqual([
    { port: 1, kind: 'mouse', spec: 'mouse' },
    { port: 2, kind: 'keyboard', spec: 'keyboard' },
  ]);
  await c.cmd('usb_del', { devname: '2' });
  await driver.bus.outw(driver.ioBase + 0x04, 0x0000); // USBINTR changes after the save
  expect((await c.cmd('restore', { file: snapFile })).return).toHaveLength(2);
  expect(await driver.bus.inw(driver.ioBase + 0x04)).toBe(0x000f);
  expect(server.fn.controller.ports[1]!.device!.address).toBe(kb.address);
  const status = (await c.cmd('query-status')).return as { running: boolean; ioreqs: number };
  expect(status.running).toBe(true);
  expect((await c.cmd('nonsense')).error?.desc).toMatch(/unknown command/);
  c.end();

  // What SIGTERM does: stop the server.
  await server.stop('signal');
  expect(await done).toBe(0);
  expect(hv.serverList).toEqual([]);
  expect(existsSync(sock)).toBe(false);
  const logs = err.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; component: string });
  expect(logs.some((l) => l.msg === 'ioreq server destroyed')).toBe(true);
  expect(logs.some((l) => l.component === 'control' && l.msg === 'usb_add')).toBe(true);
});

test('devices take the ports in command-line order, -device and -usbdevice mixed (as QEMU attaches them)', async () => {
  const x = await startSimXen(['--domid', '4', '-device', 'usb-tablet,serial=42', '-usbdevice', 'keyboard'], { domid: 4 });
  expect(x.ports.list().map((d) => [d.port, d.kind])).toEqual([
    [1, 'tablet'],
    [2, 'keyboard'],
  ]);
  await x.server.stop('signal');
  expect(await x.done).toBe(0);
});

test('--simulate in a separate process: the guest enumerates, SIGTERM destroys the server and exits 0', async () => {
  const built = join(process.cwd(), 'dist/src/cli/xen.js');
  if (!existsSync(built)) throw new Error('dist/ is not built: run `npm run build` before this test (npm test does)');
  const script = `const { xenCommand } = await import(${JSON.stringify(built)}); process.exitCode = await xenCommand(process.argv.slice(1));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, '--', '--simulate', '-usbdevice', 'tablet', '--log-json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const deadline = Date.now() + 20000;
  while (!out.includes('enumeration done') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(out).toMatch(/port 1: 0627:0001 QEMU QEMU USB Tablet/);
  child.kill('SIGTERM');
  expect(await exited).toBe(0);
  const msgs = err.trim().split('\n').map((l) => (JSON.parse(l) as { msg: string }).msg);
  expect(msgs).toEqual(expect.arrayContaining(['SIGTERM received', 'ioreq server destroyed', 'stopped']));
});
