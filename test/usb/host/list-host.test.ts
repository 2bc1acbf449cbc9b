import { formatListing, listHostCommand, listHostDevices } from '../../../src/cli/list-host.js';
import { LIBUSB_ERROR_ACCESS } from '../../../src/usb/host/libusb.js';
import { FakeLibusbDevice, FakeLibusbHost, makeInfo } from './fake-libusb.js';

async function capture(f: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const w1 = process.stdout.write.bind(process.stdout);
  const w2 = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string | Uint8Array) => ((out += String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => ((err += String(s)), true)) as typeof process.stderr.write;
  try {
    const code = await f();
    return { code, out, err };
  } finally {
    process.stdout.write = w1;
    process.stderr.write = w2;
  }
}

describe('uhci-dm list-host', () => {
  test('no devices: a clear message, exit 0', async () => {
    const r = await capture(() => listHostCommand([], new FakeLibusbHost()));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^No USB devices found on this host/);
  });

  test('lsusb-style lines with strings, speed, port and UHCI fitness; permission problems said plainly', async () => {
    const host = new FakeLibusbHost();
    host.devices.push(new FakeLibusbDevice(makeInfo({ busNumber: 1, deviceAddress: 4, portNumbers: [1, 2], speed: 'low' })));
    const locked = new FakeLibusbDevice(makeInfo({ busNumber: 2, deviceAddress: 3, vendorId: 0x0781, productId: 0x5567, speed: 'high' }));
    locked.failNext.set('open', LIBUSB_ERROR_ACCESS);
    host.devices.push(locked);
    const r = await capture(() => listHostCommand([], host));
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines[0]).toBe('Bus 001 Device 004: ID 1234:5678 Fake Inc. Fake Device [low speed, port 1-1.2, usable on UHCI]');
    expect(lines[1]).toBe('Bus 002 Device 003: ID 0781:5567 (strings unreadable: no permission) [high speed, port 2-2, not usable on UHCI]');
    expect(lines[2]).toMatch(/No permission to open 1 of 2 device\(s\)/);
  });

  test('--json', async () => {
    const host = new FakeLibusbHost();
    host.devices.push(new FakeLibusbDevice());
    const r = await capture(() => listHostCommand(['--json'], host));
    const j = JSON.parse(r.out) as { vendorId: string; product: string; readable: boolean }[];
    expect(j).toEqual([expect.objectContaining({ vendorId: '1234', product: 'Fake Device', readable: true })]);
  });

  test('the listing closes every device it opened', async () => {
    const host = new FakeLibusbHost();
    const d = new FakeLibusbDevice();
    host.devices.push(d);
    await listHostDevices(host);
    expect(d.calls).toEqual(['open', 'close']);
    expect(formatListing([])).toMatch(/No USB devices/);
  });

  test('real libusb backend (usb@2): exits 0 and prints devices or the no-devices message', async () => {
    const r = await capture(() => listHostCommand([]));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^(No USB devices found on this host|Bus \d{3} Device \d{3}: ID [0-9a-f]{4}:[0-9a-f]{4})/);
  });
});
