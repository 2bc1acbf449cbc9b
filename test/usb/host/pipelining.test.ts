/**
 * Host passthrough pipelining (bulkInReadAhead / bulkOutWriteBehind): the
 * guest's packets are served from, and coalesced into, larger libusb
 * transfers without changing what the guest sees packet by packet:
 * order, short and zero-length packets, stalls, and exactly-once completion.
 */
import { PID_IN, PID_OUT, PID_SETUP, UsbPacket, type UsbPortHooks } from '../../../src/usb/packet.js';
import { HostUsbDevice, type HostUsbDeviceOptions } from '../../../src/usb/host/host-device.js';
import { FakeLibusbDevice, settle } from './fake-libusb.js';

class Port implements UsbPortHooks {
  readonly completions = new Map<UsbPacket, number>();
  complete(p: UsbPacket): void {
    this.completions.set(p, (this.completions.get(p) ?? 0) + 1);
  }
  wakeup(): void {}
  activity(): void {}
  count(p: UsbPacket): number {
    return this.completions.get(p) ?? 0;
  }
}

const setup = (t: number, r: number, v: number, i: number, l: number) =>
  new UsbPacket(PID_SETUP, 0, 0, Uint8Array.of(t, r, v & 0xff, v >> 8, i & 0xff, i >> 8, l & 0xff, l >> 8));
const inPkt = (ep: number, len = 64) => new UsbPacket(PID_IN, 0, ep, new Uint8Array(len));
const outPkt = (ep: number, data: number[] | Uint8Array) => new UsbPacket(PID_OUT, 0, ep, Uint8Array.from(data));
const bytes = (n: number, start = 0) => Array.from({ length: n }, (_, i) => (start + i) & 0xff);

async function noData(dev: HostUsbDevice, t: number, r: number, v: number, i: number): Promise<UsbPacket> {
  const s = setup(t, r, v, i, 0);
  dev.handlePacket(s);
  const st = inPkt(0, 0);
  dev.handlePacket(st);
  await settle();
  return st;
}

async function make(opts: HostUsbDeviceOptions) {
  const fake = new FakeLibusbDevice();
  const dev = new HostUsbDevice(fake, opts);
  const port = new Port();
  dev.attach(port);
  dev.reset();
  await noData(dev, 0x00, 0x09, 1, 0); // SET_CONFIGURATION 1
  return { dev, fake, port };
}

const dataTransfers = (fake: FakeLibusbDevice, ep: number) => fake.pending.filter((t) => t.kind === 'data' && t.endpoint === ep);

describe('bulk IN read-ahead', () => {
  test('one large transfer serves successive 64-byte packets synchronously, in order, and the next is prefetched', async () => {
    const { dev, fake, port } = await make({ bulkInReadAhead: 256 });
    const a = inPkt(1);
    dev.handlePacket(a);
    expect(a.status).toBe('async');
    const [t] = dataTransfers(fake, 0x81);
    expect(t!.length).toBe(256);
    t!.complete('completed', bytes(256));
    expect(port.count(a)).toBe(1);
    expect([a.status, a.actualLength, a.data[0], a.data[63]]).toEqual(['ack', 64, 0, 63]);
    // Served from the buffer without libusb: the rest of the 256 bytes.
    const got: number[] = [];
    for (let i = 0; i < 3; i++) {
      const p = inPkt(1);
      dev.handlePacket(p);
      expect(p.status).toBe('ack');
      got.push(...p.data.subarray(0, p.actualLength));
    }
    expect(got).toEqual(bytes(192, 64));
    // A prefetch is in flight; nothing was completed twice.
    expect(dataTransfers(fake, 0x81)).toHaveLength(1);
    expect([...port.completions.values()].every((n) => n === 1)).toBe(true);
  });

  test('a transfer that ends short is served as the same packets: full chunks, then the short one', async () => {
    const { dev, fake } = await make({ bulkInReadAhead: 256 });
    const a = inPkt(1);
    dev.handlePacket(a);
    dataTransfers(fake, 0x81)[0]!.complete('completed', bytes(100));
    expect(a.actualLength).toBe(64);
    const b = inPkt(1);
    dev.handlePacket(b);
    expect([b.status, b.actualLength, b.data[0]]).toEqual(['ack', 36, 64]);
  });

  test('a transfer that ends on a packet boundary before its length ended with a zero-length packet', async () => {
    const { dev, fake } = await make({ bulkInReadAhead: 256 });
    const a = inPkt(1);
    dev.handlePacket(a);
    dataTransfers(fake, 0x81)[0]!.complete('completed', bytes(128));
    const b = inPkt(1);
    dev.handlePacket(b);
    const zlp = inPkt(1);
    dev.handlePacket(zlp);
    expect([a.actualLength, b.actualLength, zlp.status, zlp.actualLength]).toEqual([64, 64, 'ack', 0]);
    // A full-length transfer has no terminator: the next packet comes from the next transfer.
    const next = inPkt(1);
    dev.handlePacket(next);
    expect(next.status).toBe('async');
  });

  test('a stall after data: the data first, then the stall; no read-ahead until CLEAR_FEATURE(HALT), which drops the buffer', async () => {
    const { dev, fake, port } = await make({ bulkInReadAhead: 256 });
    const a = inPkt(1);
    dev.handlePacket(a);
    dataTransfers(fake, 0x81)[0]!.complete('stall', bytes(64));
    expect([a.status, a.actualLength]).toEqual(['ack', 64]);
    const b = inPkt(1);
    dev.handlePacket(b);
    expect(b.status).toBe('stall');
    expect(dataTransfers(fake, 0x81)).toHaveLength(0);
    const st = await noData(dev, 0x02, 0x01, 0, 0x81);
    expect(port.count(st)).toBe(1);
    expect(fake.calls).toContain('clearHalt 0x81');
    const c = inPkt(1);
    dev.handlePacket(c);
    expect(c.status).toBe('async');
  });

  test('a cancelled waiting packet is never completed; its data goes to the next packet', async () => {
    const { dev, fake, port } = await make({ bulkInReadAhead: 128 });
    const a = inPkt(1);
    dev.handlePacket(a);
    dev.cancelPacket(a);
    dataTransfers(fake, 0x81)[0]!.complete('completed', bytes(128));
    expect(port.count(a)).toBe(0);
    const b = inPkt(1);
    dev.handlePacket(b);
    expect([b.status, b.actualLength, b.data[0]]).toEqual(['ack', 64, 0]);
  });

  test('unplug while waiting: the packet completes once with nodev', async () => {
    const { dev, fake, port } = await make({ bulkInReadAhead: 128 });
    const a = inPkt(1);
    dev.handlePacket(a);
    dataTransfers(fake, 0x81)[0]!.complete('no_device');
    await settle();
    expect(port.count(a)).toBe(1);
    expect(a.status).toBe('nodev');
    expect(dev.disconnected).toBe(true);
  });

  test('a packet buffer smaller than the device packet is babble', async () => {
    const { dev, fake } = await make({ bulkInReadAhead: 128 });
    const a = inPkt(1);
    dev.handlePacket(a);
    dataTransfers(fake, 0x81)[0]!.complete('completed', bytes(128));
    const small = inPkt(1, 8);
    dev.handlePacket(small);
    expect(small.status).toBe('babble');
  });
});

describe('bulk OUT write-behind', () => {
  test('full packets are acknowledged at once and coalesced into one transfer after the walk; a short packet ends it', async () => {
    const { dev, fake } = await make({ bulkOutWriteBehind: 1024 });
    const ps = [outPkt(2, bytes(64)), outPkt(2, bytes(64, 64)), outPkt(2, bytes(10, 128))];
    for (const p of ps) {
      dev.handlePacket(p);
      expect(p.status).toBe('ack');
    }
    const [t] = dataTransfers(fake, 0x02);
    expect([...t!.out]).toEqual(bytes(138));
    const more = [outPkt(2, bytes(64)), outPkt(2, bytes(64))];
    for (const p of more) dev.handlePacket(p);
    await settle(); // a transfer is running and little has gathered: it waits
    expect(dataTransfers(fake, 0x02).map((x) => x.out.length)).toEqual([138]);
    expect(dev.writeBehindBytes(0x02)).toBe(266);
    dataTransfers(fake, 0x02)[0]!.complete('completed'); // its completion sends what gathered
    expect(dataTransfers(fake, 0x02).map((x) => x.out.length)).toEqual([128]);
    dataTransfers(fake, 0x02)[0]!.complete('completed');
    expect(dev.writeBehindBytes(0x02)).toBe(0);
    // With nothing running, full packets go out right after the walk.
    dev.handlePacket(outPkt(2, bytes(64)));
    await settle();
    expect(dataTransfers(fake, 0x02).map((x) => x.out.length)).toEqual([64]);
  });

  test('a zero-length packet is its own transfer, after what was buffered', async () => {
    const { dev, fake } = await make({ bulkOutWriteBehind: 1024 });
    dev.handlePacket(outPkt(2, bytes(64)));
    dev.handlePacket(outPkt(2, []));
    expect(dataTransfers(fake, 0x02).map((x) => x.out.length)).toEqual([64]);
    await settle();
    // The ZLP ended the guest transfer: it was flushed with the 64 bytes, since a short packet ends a transfer.
    expect(fake.transfers.filter((t) => t.endpoint === 0x02).length).toBe(1);
  });

  test('beyond the window the guest is NAKed; a failed transfer makes the next OUT packet stall', async () => {
    const { dev, fake } = await make({ bulkOutWriteBehind: 128 });
    const a = outPkt(2, bytes(64));
    const b = outPkt(2, bytes(64));
    const c = outPkt(2, bytes(64));
    dev.handlePacket(a);
    dev.handlePacket(b);
    dev.handlePacket(c);
    expect([a.status, b.status, c.status]).toEqual(['ack', 'ack', 'nak']);
    await settle();
    expect(dataTransfers(fake, 0x02).map((x) => x.out.length)).toEqual([128]);
    dataTransfers(fake, 0x02)[0]!.complete('stall');
    const d = outPkt(2, bytes(64));
    dev.handlePacket(d);
    expect(d.status).toBe('stall');
    const e = outPkt(2, bytes(64));
    dev.handlePacket(e);
    expect(e.status).toBe('ack');
  });
});

describe('read-ahead and the guest halting an endpoint', () => {
  test('SET_FEATURE(ENDPOINT_HALT) drops what was read ahead and cancels an unclaimed prefetch', async () => {
    const { dev, fake } = await make({ bulkInReadAhead: 256 });
    const a = inPkt(1);
    dev.handlePacket(a);
    dataTransfers(fake, 0x81)[0]!.complete('completed', bytes(256));
    expect(dev.readAheadBytes(0x81)).toBe(192);
    const prefetch = dataTransfers(fake, 0x81)[0]!;
    const st = await noData(dev, 0x02, 0x03, 0, 0x81);
    expect(st.status).toBe('async');
    expect(dev.readAheadBytes(0x81)).toBe(0);
    expect(prefetch.cancelRequested).toBe(true);
    fake.pending.find((t) => t.kind === 'control')!.complete('completed');
    // The next IN goes to the device (which now stalls).
    const b = inPkt(1);
    dev.handlePacket(b);
    expect(b.status).toBe('async');
    dataTransfers(fake, 0x81).at(-1)!.complete('stall');
    expect(b.status).toBe('stall');
  });
});
