import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspectTrace } from '../../src/inspect/inspector.js';
import { LINKTYPE_USB_LINUX_MMAPPED, usbmonPcap } from '../../src/inspect/usbmon-pcap.js';
import { inspectCommand } from '../../src/cli/inspect.js';
import { DeviceBook, TransferAssembler, type Urb } from '../../src/inspect/transfers.js';
import { recordHidSession } from './seeded.js';
import { haveTshark, tsharkFields } from './tools.js';

const FIXTURE = join(process.cwd(), 'test/fixtures/traces/seeded-data-toggle.uhcitrace.gz');

describe('usbmon pcap export', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'uhci-inspect-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('layout: pcap header, 64-byte usbmon headers (Documentation/usb/usbmon.rst), S then C per transfer', async () => {
    const r = await inspectTrace(FIXTURE);
    const start = Date.parse(r.header.created);
    const pcap = usbmonPcap(r.urbs, start);
    const dv = new DataView(pcap.buffer, pcap.byteOffset, pcap.byteLength);
    expect(dv.getUint32(0, true)).toBe(0xa1b2c3d4);
    expect(dv.getUint32(20, true)).toBe(LINKTYPE_USB_LINUX_MMAPPED);
    // First record: the submission of GET_DESCRIPTOR(DEVICE, 8) to address 0.
    let o = 24;
    const incl = dv.getUint32(o + 8, true);
    const h = o + 16;
    expect(incl).toBe(64);
    expect(String.fromCharCode(pcap[h + 8]!)).toBe('S');
    expect(pcap[h + 9]).toBe(2); // control
    expect(pcap[h + 10]).toBe(0x80); // ep 0 IN
    expect(pcap[h + 11]).toBe(0); // devnum
    expect(dv.getUint16(h + 12, true)).toBe(1); // busnum
    expect(pcap[h + 14]).toBe(0); // flag_setup: setup present
    expect(dv.getInt32(h + 28, true)).toBe(-115); // -EINPROGRESS
    expect(dv.getUint32(h + 32, true)).toBe(8); // length asked
    expect([...pcap.subarray(h + 40, h + 48)]).toEqual([0x80, 6, 0, 1, 0, 0, 8, 0]);
    const id = dv.getBigUint64(h, true);
    // Its completion: same id, status 0, 8 bytes of device descriptor.
    o = h + incl;
    const h2 = o + 16;
    expect(dv.getUint32(o + 8, true)).toBe(64 + 8);
    expect(dv.getBigUint64(h2, true)).toBe(id);
    expect(String.fromCharCode(pcap[h2 + 8]!)).toBe('C');
    expect(dv.getInt32(h2 + 28, true)).toBe(0);
    expect(dv.getUint32(h2 + 36, true)).toBe(8); // len_cap
    expect(pcap[h2 + 15]).toBe(0); // flag_data: data present
    expect([...pcap.subarray(h2 + 64, h2 + 72)]).toEqual([0x12, 1, 0, 2, 0, 0, 0, 8]);
    // Timestamps come from the trace clock on top of the header's creation time.
    const sec = Number(dv.getBigInt64(h + 16, true));
    const usec = dv.getInt32(h + 24, true);
    const firstNs = r.urbs[0]!.submitNs;
    expect(sec * 1e6 + usec).toBe(Math.floor((start * 1e6 + firstNs) / 1000));
    expect(dv.getUint32(24, true)).toBe(sec);
  });

  test('tshark decodes the enumeration, the device descriptor and the HID reports', async () => {
    if (!haveTshark()) throw new Error('tshark is not installed (apt-get install -y tshark); CI must install it for this test');
    const bytes = await recordHidSession('ack');
    const trace = join(dir, 'hid.uhcitrace.gz');
    const out = join(dir, 'hid.pcap');
    writeFileSync(trace, bytes);
    const lines: string[] = [];
    const code = await inspectCommand([trace, '--pcap', out, '--quiet'], { out: (s) => lines.push(s), err: (s) => lines.push(s) });
    expect(code).toBe(0);
    expect(readFileSync(out).length).toBeGreaterThan(24);
    const rows = tsharkFields(out, ['usb.urb_type', 'usb.transfer_type', 'usb.device_address', 'usb.setup.bRequest', 'usb.bDescriptorType', 'usb.idVendor', 'usb.urb_status', 'usbhid.data']);
    expect(rows.length).toBeGreaterThan(40);
    const control = rows.filter((r) => r[1] === '0x02');
    const interrupt = rows.filter((r) => r[1] === '0x01');
    // GET_DESCRIPTOR (bRequest 6) requests on the submissions, to both devices.
    const getDesc = control.filter((r) => r[0] === "'S'" && r[3] === '6');
    expect(getDesc.length).toBeGreaterThanOrEqual(10);
    expect(new Set(getDesc.map((r) => r[2].split(',')[0]))).toEqual(new Set(['0', '1', '2']));
    // The device descriptor response carries QEMU's vendor id.
    expect(control.filter((r) => r[5] === '0x0627').length).toBeGreaterThanOrEqual(2);
    // Every completion succeeded.
    expect(rows.filter((r) => r[0] === "'C'").every((r) => r[6] === '0')).toBe(true);
    // Interrupt IN completions are decoded as HID data: the tablet's absolute position 0x1234/0x2345.
    const hid = interrupt.filter((r) => r[0] === "'C'" && r[7]).map((r) => r[7]!.replace(/:/g, ''));
    expect(hid).toContain('003412452300');
    expect(hid.length).toBeGreaterThanOrEqual(3);
    // Nothing Wireshark considers malformed or worth a warning.
    expect(tsharkFields(out, ['frame.number', '_ws.expert.message']).filter((r) => r[1])).toEqual([]);
  });

  test('failed transfers: a stalled control transfer is -EPIPE, CRC/timeout and babble as uhci-hcd maps them', async () => {
    const urbs: Urb[] = [];
    const asm = new TransferAssembler(new DeviceBook(), (u) => urbs.push(u));
    const base = { frame: 1, tNs: 0, sinceNs: 0, sinceFrame: 1, port: 0, devaddr: 1, endpoint: 0, maxLen: 8, iso: false, lowSpeed: false, td: 0x1000 };
    asm.transaction({ ...base, pid: 0x2d, toggle: 0, data: Uint8Array.from([0x80, 6, 0, 1, 0, 0, 18, 0]), result: 'ok' });
    asm.transaction({ ...base, pid: 0x69, toggle: 1, data: new Uint8Array(0), result: 'stall' });
    expect(urbs).toHaveLength(1);
    expect(urbs[0]).toMatchObject({ status: -32, type: 'control', endpoint: 0x80, requested: 18 });
    // Bulk/interrupt: one transfer per TD, errors as Linux uhci_map_status reports them.
    asm.transaction({ ...base, endpoint: 2, pid: 0x69, toggle: 0, data: new Uint8Array(0), result: 'crc-timeout' });
    asm.transaction({ ...base, endpoint: 2, pid: 0xe1, toggle: 0, data: new Uint8Array(0), result: 'crc-timeout' });
    asm.transaction({ ...base, endpoint: 2, pid: 0x69, toggle: 0, data: new Uint8Array(0), result: 'babble' });
    expect(urbs.slice(1).map((u) => [u.endpoint, u.status])).toEqual([
      [0x82, -84],
      [0x02, -71],
      [0x82, -75],
    ]);
  });
});
