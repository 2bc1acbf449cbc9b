import { PID_IN, PID_OUT, PID_SETUP, UsbPacket, type UsbPortHooks } from '../../../src/usb/packet.js';
import { HostDeviceOpenError, HostUsbDevice, type HostUsbDeviceOptions } from '../../../src/usb/host/host-device.js';
import { HostDeviceSpeedError, fullSpeedCompatible, guestSpeedFor } from '../../../src/usb/host/host-speed.js';
import {
  LIBUSB_ERROR_ACCESS,
  LIBUSB_ERROR_BUSY,
  LIBUSB_ERROR_NO_DEVICE,
  LIBUSB_ERROR_PIPE,
  type TransferStatus,
} from '../../../src/usb/host/libusb.js';
import { TRANSFER_STATUS_MAP } from '../../../src/usb/host/status-map.js';
import { FakeLibusbDevice, makeInfo, settle } from './fake-libusb.js';
import { LOG_BURST } from '../../../src/platform/logger.js';

/** A recording callback (jest.fn needs @jest/globals under ESM). */
function spy() {
  const calls: [HostUsbDevice, string][] = [];
  const f = (d: HostUsbDevice, r: string) => {
    calls.push([d, r]);
  };
  return Object.assign(f, { calls });
}

/** Port hooks that count completions per packet. */
class Port implements UsbPortHooks {
  readonly completions = new Map<UsbPacket, number>();
  activityCount = 0;
  complete(p: UsbPacket): void {
    this.completions.set(p, (this.completions.get(p) ?? 0) + 1);
  }
  wakeup(): void {}
  activity(): void {
    this.activityCount++;
  }
  count(p: UsbPacket): number {
    return this.completions.get(p) ?? 0;
  }
}

const setupBytes = (t: number, r: number, v: number, i: number, l: number) =>
  Uint8Array.of(t, r, v & 0xff, v >> 8, i & 0xff, i >> 8, l & 0xff, l >> 8);
const setupPkt = (addr: number, t: number, r: number, v: number, i: number, l: number) =>
  new UsbPacket(PID_SETUP, addr, 0, setupBytes(t, r, v, i, l));
const inPkt = (addr: number, ep: number, len: number, iso = false) => new UsbPacket(PID_IN, addr, ep, new Uint8Array(len), iso);
const outPkt = (addr: number, ep: number, data: number[] | Uint8Array, iso = false) => new UsbPacket(PID_OUT, addr, ep, Uint8Array.from(data), iso);

function make(opts: HostUsbDeviceOptions = {}, fake = new FakeLibusbDevice()) {
  const dev = new HostUsbDevice(fake, opts);
  const port = new Port();
  dev.attach(port);
  dev.reset();
  return { dev, fake, port };
}

/** Run a host-to-device request with no data stage through to the end of its status stage. */
async function noDataRequest(dev: HostUsbDevice, addr: number, t: number, r: number, v: number, i: number): Promise<UsbPacket> {
  const s = setupPkt(addr, t, r, v, i, 0);
  dev.handlePacket(s);
  expect(s.status).toBe('ack');
  const st = inPkt(addr, 0, 0);
  dev.handlePacket(st);
  await settle();
  return st;
}

async function configure(dev: HostUsbDevice, port: Port, addr = 0, value = 1): Promise<void> {
  const st = await noDataRequest(dev, addr, 0x00, 0x09, value, 0);
  if (st.status === 'async') expect(port.count(st)).toBe(1);
  expect(st.status).toBe('ack');
}

describe('HostUsbDevice control transfers', () => {
  test('device-to-host request: SETUP is async, one libusb control transfer, data stage served from its result', async () => {
    const { dev, fake, port } = make();
    const s = setupPkt(0, 0x80, 0x06, 0x0100, 0, 18);
    dev.handlePacket(s);
    expect(s.status).toBe('async');
    expect(fake.pending).toHaveLength(1);
    const t = fake.pending[0]!;
    expect(Buffer.from(t.setup!).toString('hex')).toBe('8006000100001200');
    expect(t.timeoutMs).toBe(10_000);
    // While the request runs, other ep0 tokens are NAKed.
    const early = inPkt(0, 0, 8);
    dev.handlePacket(early);
    expect(early.status).toBe('nak');
    const desc = [18, 1, 0x10, 0x01, 0, 0, 0, 64, 0x34, 0x12, 0x78, 0x56, 0, 1, 1, 2, 0, 1];
    t.complete('completed', desc);
    expect(port.count(s)).toBe(1);
    expect(s.status).toBe('ack');
    expect(s.actualLength).toBe(8);
    const got: number[] = [];
    for (let k = 0; k < 3; k++) {
      const p = inPkt(0, 0, 8);
      dev.handlePacket(p);
      expect(p.status).toBe('ack');
      got.push(...p.data.subarray(0, p.actualLength));
    }
    expect(got).toEqual(desc);
    const status = outPkt(0, 0, []);
    dev.handlePacket(status);
    expect(status.status).toBe('ack');
    expect(fake.transfers).toHaveLength(1);
  });

  test('short answer ends the data stage early; a stalled request stalls the SETUP', () => {
    const { dev, fake, port } = make();
    const s = setupPkt(0, 0x80, 0x06, 0x0300, 0, 255);
    dev.handlePacket(s);
    fake.pending[0]!.complete('completed', [4, 3, 9, 4]);
    const p = inPkt(0, 0, 64);
    dev.handlePacket(p);
    expect([...p.data.subarray(0, p.actualLength)]).toEqual([4, 3, 9, 4]);
    const zlp = inPkt(0, 0, 64);
    dev.handlePacket(zlp); // extra IN after the data: zero-length
    expect(zlp.status).toBe('ack');
    expect(zlp.actualLength).toBe(0);

    const s2 = setupPkt(0, 0x80, 0x06, 0x0600, 0, 10);
    dev.handlePacket(s2);
    fake.pending[0]!.complete('stall');
    expect(port.count(s2)).toBe(1);
    expect(s2.status).toBe('stall');
    const after = inPkt(0, 0, 8);
    dev.handlePacket(after);
    expect(after.status).toBe('stall'); // no transfer in progress
  });

  test('host-to-device request: OUT data collected, sent with the SETUP at the status stage', async () => {
    const { dev, fake, port } = make();
    const s = setupPkt(0, 0x40, 0x5b, 0, 0, 6);
    dev.handlePacket(s);
    expect(s.status).toBe('ack');
    expect(fake.transfers).toHaveLength(0);
    const d1 = outPkt(0, 0, [1, 2, 3, 4]);
    const d2 = outPkt(0, 0, [5, 6]);
    dev.handlePacket(d1);
    dev.handlePacket(d2);
    expect(d1.actualLength + d2.actualLength).toBe(6);
    const st = inPkt(0, 0, 0);
    dev.handlePacket(st);
    expect(st.status).toBe('async');
    const t = fake.pending[0]!;
    expect(Buffer.from(t.setup!).toString('hex')).toBe('405b000000000600');
    expect([...t.out]).toEqual([1, 2, 3, 4, 5, 6]);
    t.complete('completed');
    expect(port.count(st)).toBe(1);
    expect(st.status).toBe('ack');
  });

  test('wLength above 4096 stalls the SETUP without a transfer (QEMU)', () => {
    const { dev, fake } = make();
    const s = setupPkt(0, 0x80, 0x06, 0x0200, 0, 4097);
    dev.handlePacket(s);
    expect(s.status).toBe('stall');
    expect(fake.transfers).toHaveLength(0);
  });

  test('SET_ADDRESS is handled locally after its status stage', async () => {
    const { dev, fake } = make();
    const st = await noDataRequest(dev, 0, 0x00, 0x05, 9, 0);
    expect(st.status).toBe('ack');
    expect(dev.address).toBe(9);
    expect(fake.calls.filter((c) => c.startsWith('control'))).toEqual([]);
    const old = setupPkt(0, 0x80, 0x06, 0x0100, 0, 18);
    dev.handlePacket(old);
    expect(old.status).toBe('nodev');
    const now = setupPkt(9, 0x80, 0x06, 0x0100, 0, 18);
    dev.handlePacket(now);
    expect(now.status).toBe('async');
  });

  test('SET_CONFIGURATION claims interfaces (detaching kernel drivers); single-config devices skip libusb_set_configuration', async () => {
    const { dev, fake, port } = make();
    fake.kernelDrivers.add(0);
    const pre = inPkt(0, 1, 64);
    dev.handlePacket(pre);
    expect(pre.status).toBe('stall'); // not configured: no such endpoint
    await configure(dev, port);
    expect(fake.calls).toEqual(['open', 'detachKernelDriver 0', 'claim 0']);
    expect(dev.configurationValue).toBe(1);
    const p = inPkt(0, 1, 64);
    dev.handlePacket(p);
    expect(p.status).toBe('async');
  });

  test('SET_CONFIGURATION on a multi-config device calls libusb_set_configuration; claim failure stalls', async () => {
    const info = makeInfo();
    info.configs.push({ value: 2, attributes: 0x80, interfaces: [{ number: 0, alternate: 0, interfaceClass: 0xff, subClass: 0, protocol: 0, endpoints: [] }] });
    info.numConfigurations = 2;
    const { dev, fake, port } = make({ detachKernelDriver: false }, new FakeLibusbDevice(info));
    await configure(dev, port, 0, 1);
    expect(fake.calls).toEqual(['open', 'setConfiguration 1', 'claim 0']);
    fake.failNext.set('claimInterface', LIBUSB_ERROR_BUSY);
    const st = await noDataRequest(dev, 0, 0x00, 0x09, 2, 0);
    expect(port.count(st)).toBe(1);
    expect(st.status).toBe('stall');
    expect(fake.calls.slice(3)).toEqual(['release 0', 'setConfiguration 2', 'claim 0']);
  });

  test('SET_INTERFACE → libusb_set_interface_alt_setting and the new endpoints; CLEAR_FEATURE(HALT) → libusb_clear_halt', async () => {
    const { dev, fake, port } = make();
    await configure(dev, port);
    const iso0 = inPkt(0, 4, 32, true);
    dev.handlePacket(iso0);
    expect(iso0.status).toBe('stall'); // alt 0 has no endpoint 4
    const st = await noDataRequest(dev, 0, 0x01, 0x0b, 1, 0);
    expect(port.count(st)).toBe(1); // answered async, completed once
    expect(st.status).toBe('ack');
    expect(fake.calls).toContain('setInterface 0 1');
    const iso1 = inPkt(0, 4, 32, true);
    dev.handlePacket(iso1);
    expect(iso1.status).toBe('ack'); // iso never async
    expect(fake.pending.map((t) => t.type)).toEqual(['isochronous']);

    fake.failNext.set('clearHalt', LIBUSB_ERROR_PIPE);
    const ch = await noDataRequest(dev, 0, 0x02, 0x01, 0, 0x81);
    expect(fake.calls).toContain('clearHalt 0x81');
    expect(ch.status).toBe('ack'); // result ignored, as QEMU does
    expect(port.count(ch)).toBe(1);
  });

  test('a guest repeating a failing request cannot flood the log: warnings are rate limited (LogLimiter)', async () => {
    const lines: string[] = [];
    const { dev, fake, port } = make({ log: (level, msg) => lines.push(`${level} ${msg}`) });
    await configure(dev, port);
    for (let i = 0; i < 50; i++) {
      fake.failNext.set('setInterface', LIBUSB_ERROR_PIPE);
      expect((await noDataRequest(dev, 0, 0x01, 0x0b, 1, 0)).status).toBe('stall');
    }
    expect(lines).toHaveLength(LOG_BURST);
    expect(lines.every((l) => l.startsWith('warn '))).toBe(true);
  });

  test('SET_INTERFACE failure stalls', async () => {
    const { dev, fake, port } = make();
    await configure(dev, port);
    fake.failNext.set('setInterface', LIBUSB_ERROR_PIPE);
    const st = await noDataRequest(dev, 0, 0x01, 0x0b, 1, 0);
    expect(st.status).toBe('stall');
  });

  test('remote wakeup is hidden in the configuration descriptor (suppress-remote-wake)', () => {
    for (const suppress of [true, false]) {
      const { dev, fake } = make({ suppressRemoteWake: suppress });
      dev.handlePacket(setupPkt(0, 0x80, 0x06, 0x0200, 0, 9));
      fake.pending[0]!.complete('completed', [9, 2, 9, 0, 1, 1, 0, 0xa0, 50]);
      const p = inPkt(0, 0, 9);
      dev.handlePacket(p);
      expect(p.data[7]).toBe(suppress ? 0x80 : 0xa0);
    }
  });
});

describe('HostUsbDevice data endpoints', () => {
  test('bulk IN: async, one transfer per endpoint, sized to the packet', async () => {
    const { dev, fake, port } = make();
    await configure(dev, port);
    const a = inPkt(0, 1, 64);
    dev.handlePacket(a);
    expect(a.status).toBe('async');
    const b = inPkt(0, 1, 64);
    dev.handlePacket(b);
    expect(b.status).toBe('nak');
    const data = fake.pending.filter((t) => t.kind === 'data');
    expect(data).toHaveLength(1);
    expect(data[0]!).toMatchObject({ endpoint: 0x81, type: 'bulk', length: 64, timeoutMs: 0 });
    data[0]!.complete('completed', [7, 8, 9]);
    expect(port.count(a)).toBe(1);
    expect(a.status).toBe('ack');
    expect(a.actualLength).toBe(3);
    expect([...a.data.subarray(0, 3)]).toEqual([7, 8, 9]);
  });

  test('a cancelled IN packet is never completed; its transfer keeps running and feeds the next IN packet', async () => {
    const { dev, fake, port } = make();
    await configure(dev, port);
    const a = inPkt(0, 3, 8);
    dev.handlePacket(a);
    dev.cancelPacket(a);
    const t = fake.pending[0]!;
    expect(t.cancelRequested).toBe(false);
    t.complete('completed', [1, 2, 3, 4]);
    expect(port.count(a)).toBe(0);
    expect(port.activityCount).toBe(1);
    const b = inPkt(0, 3, 8);
    dev.handlePacket(b);
    expect(b.status).toBe('ack');
    expect([...b.data.subarray(0, b.actualLength)]).toEqual([1, 2, 3, 4]);
    expect(fake.transfers.filter((x) => x.kind === 'data')).toHaveLength(1);
    // An orphaned transfer still running is taken over by the next packet.
    const c = inPkt(0, 3, 8);
    dev.handlePacket(c);
    dev.cancelPacket(c);
    const d = inPkt(0, 3, 8);
    dev.handlePacket(d);
    expect(d.status).toBe('async');
    fake.pending[0]!.complete('completed', [5]);
    expect(port.count(c)).toBe(0);
    expect(port.count(d)).toBe(1);
    expect(d.actualLength).toBe(1);
  });

  test('bulk OUT: bounded transfers in flight per endpoint, NAK beyond, cancel cancels the transfer', async () => {
    const { dev, fake, port } = make({ maxOutInFlight: 2 });
    await configure(dev, port);
    const a = outPkt(0, 2, [1, 2, 3]);
    const b = outPkt(0, 2, [4]);
    const c = outPkt(0, 2, [5]);
    dev.handlePacket(a);
    dev.handlePacket(b);
    dev.handlePacket(c);
    expect([a.status, b.status, c.status]).toEqual(['async', 'async', 'nak']);
    const [ta, tb] = fake.pending;
    expect([...ta!.out]).toEqual([1, 2, 3]);
    ta!.complete('completed');
    expect(port.count(a)).toBe(1);
    expect(a.status).toBe('ack');
    expect(a.actualLength).toBe(3);
    dev.handlePacket(c);
    expect(c.status).toBe('async');
    dev.cancelPacket(b);
    expect(tb!.cancelRequested).toBe(true);
    await settle();
    expect(tb!.done).toBe(true);
    expect(port.count(b)).toBe(0);
  });

  test.each(Object.entries(TRANSFER_STATUS_MAP) as [TransferStatus, string][])('libusb status %s → packet status %s', async (libusbStatus, expected) => {
    const { dev, fake, port } = make();
    await configure(dev, port);
    const p = inPkt(0, 1, 64);
    dev.handlePacket(p);
    fake.pending[0]!.complete(libusbStatus, libusbStatus === 'completed' ? [1] : undefined);
    expect(port.count(p)).toBe(1);
    expect(p.status).toBe(expected);
    await settle();
    expect(dev.disconnected).toBe(libusbStatus === 'no_device');
  });

  test('the map is QEMU status_map[]', () => {
    expect(TRANSFER_STATUS_MAP).toEqual({
      completed: 'ack',
      error: 'ioerror',
      timed_out: 'ioerror',
      cancelled: 'ioerror',
      stall: 'stall',
      no_device: 'nodev',
      overflow: 'babble',
    });
  });

  test('a refused submit answers nodev; NO_DEVICE also disconnects', async () => {
    const onDisconnect = spy();
    const { dev, fake, port } = make({ onDisconnect });
    await configure(dev, port);
    fake.failNext.set('submit', LIBUSB_ERROR_BUSY);
    const p = inPkt(0, 1, 64);
    dev.handlePacket(p);
    expect(p.status).toBe('nodev');
    await settle();
    expect(onDisconnect.calls).toHaveLength(0);
    fake.failNext.set('submit', LIBUSB_ERROR_NO_DEVICE);
    const q = outPkt(0, 2, [1]);
    dev.handlePacket(q);
    expect(q.status).toBe('nodev');
    await settle();
    expect(onDisconnect.calls).toHaveLength(1);
  });

  test('IN data longer than the packet buffer is babble', async () => {
    const { dev, fake, port } = make();
    await configure(dev, port);
    const a = inPkt(0, 3, 8);
    dev.handlePacket(a);
    dev.cancelPacket(a);
    fake.pending[0]!.complete('completed', [1, 2, 3, 4, 5, 6]);
    const b = inPkt(0, 3, 4);
    dev.handlePacket(b);
    expect(b.status).toBe('babble');
  });

  test('isochronous: not supported by the backend → ioerror; bounded OUT drops extra packets', async () => {
    const fake = new FakeLibusbDevice();
    fake.isoUnsupported = true;
    const { dev, port } = make({}, fake);
    await configure(dev, port);
    await noDataRequest(dev, 0, 0x01, 0x0b, 1, 0);
    const p = inPkt(0, 4, 32, true);
    dev.handlePacket(p);
    expect(p.status).toBe('ioerror');
    const o = outPkt(0, 4, [1, 2], true);
    dev.handlePacket(o);
    expect(o.status).toBe('ioerror');

    const ok = make({ maxOutInFlight: 1 });
    await configure(ok.dev, ok.port);
    await noDataRequest(ok.dev, 0, 0x01, 0x0b, 1, 0);
    const o1 = outPkt(0, 4, [1], true);
    const o2 = outPkt(0, 4, [2], true);
    ok.dev.handlePacket(o1);
    ok.dev.handlePacket(o2);
    expect([o1.status, o2.status]).toEqual(['ack', 'ack']);
    expect(ok.dev.stats.isoDropped).toBe(1);
    // Iso IN: empty until a transfer has finished, then its data.
    const i1 = inPkt(0, 4, 32, true);
    ok.dev.handlePacket(i1);
    expect(i1.actualLength).toBe(0);
    ok.fake.pending.find((t) => t.endpoint === 0x84)!.complete('completed', [9, 9]);
    const i2 = inPkt(0, 4, 32, true);
    ok.dev.handlePacket(i2);
    expect([...i2.data.subarray(0, i2.actualLength)]).toEqual([9, 9]);
  });
});

describe('HostUsbDevice unplug and reset', () => {
  test('unplug mid-transfer: every in-flight packet completed exactly once with nodev, onDisconnect once', async () => {
    const onDisconnect = spy();
    const { dev, fake, port } = make({ onDisconnect });
    await configure(dev, port);
    const bulkIn = inPkt(0, 1, 64);
    const bulkOut = outPkt(0, 2, [1, 2]);
    const intIn = inPkt(0, 3, 8);
    const ctrl = setupPkt(0, 0x80, 0x06, 0x0100, 0, 18);
    for (const p of [bulkIn, bulkOut, intIn, ctrl]) {
      dev.handlePacket(p);
      expect(p.status).toBe('async');
    }
    // The interrupt packet was given up by the guest before the unplug.
    dev.cancelPacket(intIn);
    const tOut = fake.pending.find((t) => t.endpoint === 0x02)!;
    tOut.complete('no_device');
    expect(port.count(bulkOut)).toBe(1);
    expect(bulkOut.status).toBe('nodev');
    await settle();
    await settle();
    for (const p of [bulkIn, ctrl]) {
      expect(port.count(p)).toBe(1);
      expect(p.status).toBe('nodev');
    }
    expect(port.count(intIn)).toBe(0);
    expect(onDisconnect.calls).toHaveLength(1);
    expect(onDisconnect.calls[0]![0]).toBe(dev);
    expect(fake.pending).toHaveLength(0); // everything cancelled at libusb
    expect(fake.calls).toContain('close');
    expect(dev.packetsInFlight).toBe(0);
    // Late libusb callbacks change nothing.
    const later = inPkt(0, 1, 64);
    dev.handlePacket(later);
    expect(later.status).toBe('nodev');
    expect([...port.completions.values()].every((n) => n === 1)).toBe(true);
  });

  test('hotplug detach without transfers in flight still disconnects once', async () => {
    const onDisconnect = spy();
    const { dev } = make({ onDisconnect });
    dev.hostUnplugged();
    dev.hostUnplugged();
    await settle();
    expect(onDisconnect.calls).toHaveLength(1);
    expect(onDisconnect.calls[0]![1]).toMatch(/unplugged/);
  });

  test('port reset: in-flight packets complete with nodev; the host device is reset only once it had an address', async () => {
    const { dev, fake, port } = make();
    expect(fake.calls).not.toContain('reset'); // the attach-time reset is not passed on
    await noDataRequest(dev, 0, 0x00, 0x05, 3, 0);
    await configure(dev, port, 3);
    const p = inPkt(3, 1, 64);
    dev.handlePacket(p);
    expect(p.status).toBe('async');
    dev.reset();
    expect(port.count(p)).toBe(1);
    expect(p.status).toBe('nodev');
    expect(dev.address).toBe(0);
    expect(dev.configurationValue).toBe(0);
    expect(fake.calls.filter((c) => c === 'reset')).toHaveLength(1);
    expect(dev.stats.hostResets).toBe(1);
    const during = setupPkt(0, 0x80, 0x06, 0x0100, 0, 8);
    dev.handlePacket(during);
    expect(during.status).toBe('nak');
    await settle();
    dev.handlePacket(during);
    expect(during.status).toBe('async');
    // A second reset at address 0 is not passed on; guest-resets-all passes every one.
    dev.reset();
    expect(fake.calls.filter((c) => c === 'reset')).toHaveLength(1);
    const all = make({ guestResetsAll: true });
    expect(all.fake.calls.filter((c) => c === 'reset')).toHaveLength(1);
  });

  test('a reset while SET_CONFIGURATION runs: the status packet completes once (nodev) and the old request changes nothing', async () => {
    const { dev, port } = make();
    const s = setupPkt(0, 0x00, 0x09, 1, 0, 0);
    dev.handlePacket(s);
    const st = inPkt(0, 0, 0);
    dev.handlePacket(st);
    expect(st.status).toBe('async');
    dev.reset();
    expect(port.count(st)).toBe(1);
    expect(st.status).toBe('nodev');
    await settle();
    expect(port.count(st)).toBe(1);
    expect(dev.configurationValue).toBe(0);
    const p = inPkt(0, 1, 64);
    dev.handlePacket(p);
    expect(p.status).toBe('stall');
  });

  test('detach forgets packets without completing them and cancels their transfers', async () => {
    const { dev, fake, port } = make();
    await configure(dev, port);
    const p = inPkt(0, 1, 64);
    dev.handlePacket(p);
    dev.detach();
    await settle();
    expect(port.count(p)).toBe(0);
    expect(fake.pending).toHaveLength(0);
  });

  test('close releases interfaces, resets, gives kernel drivers back and closes', async () => {
    const fake = new FakeLibusbDevice();
    fake.kernelDrivers.add(0);
    const { dev, port } = make({}, fake);
    await configure(dev, port);
    await dev.close();
    expect(fake.calls.slice(-4)).toEqual(['release 0', 'reset', 'attachKernelDriver 0', 'close']);
  });
});

describe('HostUsbDevice open and speed', () => {
  test('low and full speed pass through', () => {
    expect(guestSpeedFor(makeInfo({ speed: 'low' }))).toBe('low');
    expect(new HostUsbDevice(new FakeLibusbDevice(makeInfo({ speed: 'low' }))).speed).toBe('low');
    expect(guestSpeedFor(makeInfo({ speed: 'full' }))).toBe('full');
  });

  test('high speed: full speed when QEMU compat allows, else a clear refusal', () => {
    const bulkOnly = makeInfo({
      speed: 'high',
      configs: [{ value: 1, attributes: 0x80, interfaces: [{ number: 0, alternate: 0, interfaceClass: 8, subClass: 6, protocol: 0x50, endpoints: [{ address: 0x81, attributes: 2, maxPacketSize: 512, interval: 0 }] }] }],
    });
    expect(fullSpeedCompatible(bulkOnly)).toBe(true);
    expect(guestSpeedFor(bulkOnly)).toBe('full');
    expect(() => guestSpeedFor(bulkOnly, { fullSpeedCompat: false })).toThrow(HostDeviceSpeedError);
    const withIso = makeInfo({ speed: 'high' }); // has isochronous endpoints in alt 1
    expect(fullSpeedCompatible(withIso)).toBe(false);
    expect(() => new HostUsbDevice(new FakeLibusbDevice(withIso))).toThrow(/cannot be used at full speed on a UHCI/);
    const bigInt = makeInfo({
      speed: 'super',
      configs: [{ value: 1, attributes: 0x80, interfaces: [{ number: 0, alternate: 0, interfaceClass: 3, subClass: 0, protocol: 0, endpoints: [{ address: 0x81, attributes: 3, maxPacketSize: 1024, interval: 1 }] }] }],
    });
    expect(() => guestSpeedFor(bigInt)).toThrow(HostDeviceSpeedError);
    expect(guestSpeedFor(makeInfo({ speed: 'unknown' }), { unknownSpeed: 'low' })).toBe('low');
  });

  test('open failure (no permission) is a HostDeviceOpenError with the libusb errno', () => {
    const fake = new FakeLibusbDevice();
    fake.failNext.set('open', LIBUSB_ERROR_ACCESS);
    let err: unknown;
    try {
      new HostUsbDevice(fake);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HostDeviceOpenError);
    expect((err as HostDeviceOpenError).errno).toBe(LIBUSB_ERROR_ACCESS);
    expect((err as Error).message).toMatch(/ACCESS/);
  });

  test('product name comes from the product string', async () => {
    const { dev } = make();
    expect(dev.vendorId).toBe(0x1234);
    await settle();
    expect(dev.productName).toBe('Fake Device');
  });
});
