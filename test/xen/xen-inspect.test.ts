/**
 * Live inspection of `uhci-dm xen --simulate` (in-process): the control
 * socket's `inspect` command decodes the running instance's in-memory
 * recording (enumeration transfers, no anomalies, a bounded window), and
 * `--pcap` streams a usbmon capture that tshark decodes while the server
 * runs and after it stopped.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { xenCommand } from '../../src/cli/xen.js';
import type { IoreqServer } from '../../src/xen/ioreq-server.js';
import { haveTshark, tsharkFields } from '../inspect/tools.js';

interface Reply {
  return?: unknown;
  error?: { class: string; desc: string };
}

function client(path: string) {
  const s = net.connect(path);
  s.setEncoding('utf8');
  let buf = '';
  const waiting: ((v: Reply) => void)[] = [];
  s.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const msg = JSON.parse(buf.slice(0, nl)) as Reply;
      buf = buf.slice(nl + 1);
      waiting.shift()?.(msg);
    }
  });
  const next = () => new Promise<Reply>((r) => waiting.push(r));
  return {
    greeting: next(),
    cmd(execute: string, args?: Record<string, unknown>): Promise<Reply> {
      const p = next();
      s.write(JSON.stringify({ execute, arguments: args }) + '\n');
      return p;
    },
    end: () => s.end(),
  };
}

/** Start `xen --simulate` with `extra` options; resolves once the built-in guest enumerated. */
async function simulate(extra: string[], dir: string) {
  const sock = join(dir, 'ctl.sock');
  let server = null as IoreqServer | null;
  let out = '';
  let err = '';
  const done = xenCommand(['--simulate', '-usbdevice', 'tablet', '--control', sock, '--log-json', ...extra], {
    signals: false,
    out: (s) => (out += s),
    err: (s) => (err += s),
    onReady: (s) => (server = s),
  });
  const stop = async () => {
    if (server?.running) await server.stop('signal');
  };
  cleanup = stop;
  const deadline = Date.now() + 20000;
  while (!out.includes('enumeration done') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  expect(out).toMatch(/port 1: 0627:0001 QEMU QEMU USB Tablet/);
  const c = client(sock);
  await c.greeting;
  return { c, done, stop, logs: () => err };
}

interface JsonUrb {
  devaddr: number;
  endpoint: number;
  status: number;
  setup: { bmRequestType: number; bRequest: number; wValue: number; wLength: number } | null;
  data: string;
  completeFrame: number;
}
interface JsonInspection {
  trace: { header: { format: string }; frames: number };
  range: { from: number; to: number };
  anomalies: { kind: string }[];
  transfers: JsonUrb[];
  devices: { port: number; address: number; vendorId: number | null }[];
  timeline: { kind: string; frame?: { serial: number }; toFrame?: number; event?: { frame: number } }[];
}

const GET_DESCRIPTOR = 6;
const SET_ADDRESS = 5;

let dir: string;
/** Stops a server a failed test left running (jest would never exit). */
let cleanup: (() => Promise<unknown>) | null = null;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'uhci-xen-inspect-'));
});
afterEach(async () => {
  await cleanup?.();
  cleanup = null;
  rmSync(dir, { recursive: true, force: true });
});

test('inspect on the control socket: the enumeration as transfers, no anomalies; text form and the monitor command', async () => {
  const { c, done, stop } = await simulate(['--inspect'], dir);
  const r = (await c.cmd('inspect', { from: 1, json: true })).return as JsonInspection;
  expect(r.trace.header.format).toBe('uhci-dm-trace');
  expect(r.range.from).toBe(1);
  expect(r.anomalies).toEqual([]);
  const control = r.transfers.filter((u) => u.setup !== null);
  const getDesc = control.filter((u) => u.setup!.bRequest === GET_DESCRIPTOR && u.setup!.bmRequestType === 0x80);
  // The device descriptor (type 1) first from address 0, then the configuration (type 2) from the new address.
  const dev0 = getDesc.find((u) => u.devaddr === 0 && u.setup!.wValue >> 8 === 1);
  expect(dev0).toBeDefined();
  expect(dev0!.status).toBe(0);
  expect(dev0!.data.slice(0, 4)).toBe('1201'); // bLength 18, bDescriptorType DEVICE
  const setAddr = control.find((u) => u.setup!.bRequest === SET_ADDRESS);
  expect(setAddr).toBeDefined();
  const addr = setAddr!.setup!.wValue;
  expect(addr).toBeGreaterThan(0);
  expect(getDesc.some((u) => u.devaddr === addr && u.setup!.wValue >> 8 === 2 && u.status === 0)).toBe(true);
  // The device descriptor from the new address carries QEMU's vendor id 0x0627.
  const full = getDesc.find((u) => u.devaddr === addr && u.setup!.wValue >> 8 === 1 && u.data.length >= 36);
  expect(full!.data.slice(16, 20)).toBe('2706');
  expect(r.devices).toEqual([expect.objectContaining({ port: 0, address: addr, vendorId: 0x0627 })]);

  // Default: the last 100 frames; the range follows the running instance.
  const last = (await c.cmd('inspect', { json: true })).return as JsonInspection;
  expect(last.range.to - last.range.from + 1).toBe(100);
  expect(last.range.to).toBeGreaterThanOrEqual(r.range.to);

  const text = (await c.cmd('inspect', { from: 1 })).return as string;
  expect(text).toMatch(/^uhci-dm xen \(domain 1\): recorded /);
  expect(text).toMatch(/transfer: control dev 0 \(port 1\) ep 0x80 GET_DESCRIPTOR\(DEVICE/);
  expect(text).toMatch(/anomalies: none\n$/);
  const hmp = (await c.cmd('human-monitor-command', { 'command-line': 'inspect 1-50' })).return as string;
  expect(hmp).toMatch(/showing frames 1\.\.50:/);
  expect((await c.cmd('human-monitor-command', { 'command-line': 'inspect anomalies' })).return).toMatch(/anomalies: none/);
  expect((await c.cmd('human-monitor-command', { 'command-line': 'inspect x' })).error?.desc).toMatch(/usage: inspect/);
  expect((await c.cmd('inspect', { from: 0 })).error?.desc).toMatch(/'from' must be a positive integer/);
  expect((await c.cmd('inspect', { from: 9, to: 3 })).error?.desc).toMatch(/before/);
  c.end();
  await stop();
  expect(await done).toBe(0);
}, 30000);

test('the live window is bounded: older frames are dropped, anomalies and devices stay', async () => {
  const { c, done, stop } = await simulate(['--inspect-frames', '40'], dir);
  // Let at least 40 more frames run after the enumeration.
  const first = (await c.cmd('inspect', { json: true, last: 1 })).return as JsonInspection;
  while (((await c.cmd('inspect', { json: true, last: 1 })).return as JsonInspection).trace.frames < first.trace.frames + 80) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const r = (await c.cmd('inspect', { from: 1, json: true })).return as JsonInspection;
  const frames = r.trace.frames;
  expect(r.range.from).toBeGreaterThan(first.trace.frames - 40);
  expect(r.timeline.length).toBeGreaterThan(0);
  // Every entry ends inside the window (an idle stretch reaching into it is one entry, kept whole).
  for (const e of r.timeline) {
    const end = e.kind === 'frame' ? e.frame!.serial : e.kind === 'idle' ? e.toFrame! : e.event!.frame + 1;
    expect(end).toBeGreaterThan(frames - 40);
  }
  // The enumeration's transfers are gone with their frames; what was learnt about the device is not.
  expect(r.transfers.filter((u) => u.setup !== null)).toEqual([]);
  expect(r.devices[0]).toEqual(expect.objectContaining({ vendorId: 0x0627 }));
  expect(r.anomalies).toEqual([]);
  c.end();
  await stop();
  expect(await done).toBe(0);
}, 30000);

test('without --inspect the command says how to turn it on', async () => {
  const { c, done, stop } = await simulate([], dir);
  const r = await c.cmd('inspect', {});
  expect(r.error?.desc).toMatch(/live inspection is off .*--inspect/);
  c.end();
  await stop();
  expect(await done).toBe(0);
}, 30000);

test('--pcap streams usbmon records: tshark decodes the GET_DESCRIPTOR requests while running and after the stop', async () => {
  if (!haveTshark()) throw new Error('tshark is not installed (apt-get install -y tshark); CI must install it for this test');
  const pcap = join(dir, 'live.pcap');
  const { c, done, stop, logs } = await simulate(['--pcap', pcap], dir);
  // Inspection comes with --pcap; the query also makes sure every queued event was decoded and written.
  const r = (await c.cmd('inspect', { from: 1, json: true })).return as JsonInspection;
  const fields = ['usb.urb_type', 'usb.transfer_type', 'usb.device_address', 'usb.setup.bRequest', 'usb.bDescriptorType', 'usb.bLength', 'usb.idVendor', 'usb.urb_status'];
  // Read while the server is running: the file is a complete pcap already.
  const running = tsharkFields(pcap, fields);
  expect(running.length).toBe(2 * r.transfers.length);
  const getDescRunning = running.filter((row) => row[0] === "'S'" && row[3] === String(GET_DESCRIPTOR));
  expect(getDescRunning.length).toBeGreaterThanOrEqual(2);
  c.end();
  await stop();
  expect(await done).toBe(0);
  const rows = tsharkFields(pcap, fields);
  expect(rows.length).toBeGreaterThanOrEqual(running.length);
  const submissions = rows.filter((row) => row[0] === "'S'");
  const completions = rows.filter((row) => row[0] === "'C'");
  expect(completions.length).toBe(submissions.length);
  const getDesc = submissions.filter((row) => row[1] === '0x02' && row[3] === String(GET_DESCRIPTOR));
  expect(new Set(getDesc.map((row) => row[2]))).toEqual(new Set(['0', '1']));
  // The device descriptor answer carries QEMU's vendor id; every completion succeeded.
  expect(completions.some((row) => row[6] === '0x0627')).toBe(true);
  expect(completions.every((row) => row[7] === '0')).toBe(true);
  // Same bytes as the in-memory transfers: the file size is header + 2 records per transfer.
  expect(readFileSync(pcap).length).toBeGreaterThan(24 + 2 * (16 + 64) * r.transfers.length - 1);
  const written = logs()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { msg: string; transfers?: number })
    .find((l) => l.msg === 'pcap written');
  expect(written?.transfers).toBe(submissions.length);
}, 30000);

test('option errors: a pcap that cannot be written (exit 1), a zero window (exit 2), one line each', async () => {
  for (const [argv, code, msg] of [
    [['--pcap', join(dir, 'no-such-dir', 'x.pcap')], 1, /^uhci-dm xen: cannot write pcap .*no-such-dir.*ENOENT/],
    [['--inspect-frames', '0'], 2, /^uhci-dm xen: .*inspect-frames/],
  ] as const) {
    let err = '';
    const r = await xenCommand(['--simulate', '-usbdevice', 'tablet', ...argv], { signals: false, out: () => undefined, err: (s) => (err += s) });
    expect(r).toBe(code);
    expect(err.trim().split('\n')).toHaveLength(1);
    expect(err).toMatch(msg);
  }
});
