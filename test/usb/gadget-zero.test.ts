import { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { InProcessBus } from '../../src/guest/model-bus.js';
import { UhciGuestDriver } from '../../src/guest/uhci-driver.js';
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';
import { encodeConfigDescriptor } from '../../src/usb/descriptors.js';
import {
  CONFIG_LOOPBACK,
  CONFIG_SOURCESINK,
  GadgetZero,
  gadgetZeroDescriptors,
  patternByte,
} from '../../src/usb/gadget-zero.js';
import { PID_IN, PID_OUT, PID_SETUP, UsbPacket } from '../../src/usb/packet.js';

function setup(dev: GadgetZero, t: number, r: number, v: number, i: number, len: number, out?: number[]): { status: string; data: number[] } {
  const s = new UsbPacket(PID_SETUP, dev.address, 0, Uint8Array.of(t, r, v & 0xff, v >> 8, i & 0xff, i >> 8, len & 0xff, len >> 8));
  dev.handlePacket(s);
  if (s.status !== 'ack') return { status: s.status, data: [] };
  const got: number[] = [];
  if (t & 0x80) {
    for (;;) {
      const p = new UsbPacket(PID_IN, dev.address, 0, new Uint8Array(64));
      dev.handlePacket(p);
      if (p.status !== 'ack') return { status: p.status, data: got };
      got.push(...p.data.subarray(0, p.actualLength));
      if (p.actualLength < 64 || got.length >= len) break;
    }
    dev.handlePacket(new UsbPacket(PID_OUT, dev.address, 0, new Uint8Array(0)));
    return { status: 'ack', data: got };
  }
  for (let o = 0; o < len; o += 64) {
    const p = new UsbPacket(PID_OUT, dev.address, 0, Uint8Array.from(out!.slice(o, o + 64)));
    dev.handlePacket(p);
    if (p.status !== 'ack') return { status: p.status, data: [] };
  }
  const st = new UsbPacket(PID_IN, dev.address, 0, new Uint8Array(0));
  dev.handlePacket(st);
  return { status: st.status, data: [] };
}

function fresh(opts: ConstructorParameters<typeof GadgetZero>[0] = {}, config = CONFIG_SOURCESINK): GadgetZero {
  const dev = new GadgetZero(opts);
  dev.attach({ complete: () => {}, wakeup: () => {} });
  dev.reset();
  expect(setup(dev, 0x00, 0x09, config, 0, 0).status).toBe('ack');
  return dev;
}

const bulkIn = (dev: GadgetZero, len = 64) => {
  const p = new UsbPacket(PID_IN, dev.address, 1, new Uint8Array(len));
  dev.handlePacket(p);
  return p;
};
const bulkOut = (dev: GadgetZero, data: number[]) => {
  const p = new UsbPacket(PID_OUT, dev.address, 1, Uint8Array.from(data));
  dev.handlePacket(p);
  return p;
};

describe('Gadget Zero', () => {
  test('enumerates through the UHCI model with the Linux gadget zero ids and descriptors', async () => {
    const clock = new ManualClock();
    const mem = new FlatMemory(16 << 20);
    const fn = new UhciPciFunction({ mem, irq: new LatchedIrq(), clock });
    const gz = new GadgetZero();
    fn.attach(0, gz);
    const driver = new UhciGuestDriver(new InProcessBus(fn, mem, clock, 5));
    await driver.probe();
    await driver.start();
    const d = await driver.enumerate(0);
    expect(d.vendorId).toBe(0x0525);
    expect(d.productId).toBe(0xa4a0);
    expect(d.product).toBe('Gadget Zero');
    expect(d.serial).toBe('0123456789.0123456789.0123456789');
    expect(d.deviceClass).toBe(0xff);
    expect(d.maxPacket0).toBe(64);
    expect(d.lowSpeed).toBe(false);
    expect([...d.configDescriptor]).toEqual([...encodeConfigDescriptor(gadgetZeroDescriptors().configs[0]!)]);
    // bConfigurationValue 3, self powered, interface class 0xff, bulk 0x01 OUT / 0x81 IN, 64 bytes.
    expect(d.configDescriptor[5]).toBe(CONFIG_SOURCESINK);
    expect(d.configDescriptor[7]).toBe(0xc0);
    expect(gz.configurationValue).toBe(CONFIG_SOURCESINK);
    expect(gz.address).toBe(d.address);
    const loop = await driver.getDescriptor(d.address, false, 64, 2, 1, 255);
    expect(loop[5]).toBe(CONFIG_LOOPBACK);
    // usbtest's vendor control write/read (test 14, ctrl_out) through the controller.
    const payload = Uint8Array.from({ length: 100 }, (_, k) => (k * 7) & 0xff);
    await driver.control(d.address, false, 64, { bmRequestType: 0x40, bRequest: 0x5b, wValue: 0, wIndex: 0, wLength: 100 }, payload);
    const back = await driver.control(d.address, false, 64, { bmRequestType: 0xc0, bRequest: 0x5c, wValue: 0, wIndex: 0, wLength: 100 });
    expect([...back]).toEqual([...payload]);
  });

  test('loopdefault puts the loopback configuration first', () => {
    expect(gadgetZeroDescriptors({ loopdefault: true }).configs.map((c) => c.value)).toEqual([CONFIG_LOOPBACK, CONFIG_SOURCESINK]);
    expect(gadgetZeroDescriptors().configs.map((c) => c.value)).toEqual([CONFIG_SOURCESINK, CONFIG_LOOPBACK]);
  });

  test('source: full packets of zeros (pattern 0) or mod63 (pattern 1); a buffer below one packet is babble', () => {
    const z = fresh();
    const p = bulkIn(z);
    expect(p.status).toBe('ack');
    expect(p.actualLength).toBe(64);
    expect(p.data.every((b) => b === 0)).toBe(true);
    const m = fresh({ pattern: 1 });
    for (let k = 0; k < 3; k++) {
      const q = bulkIn(m, 64);
      expect([...q.data]).toEqual(Array.from({ length: 64 }, (_, i) => (i % 64) % 63));
    }
    expect(patternByte(1, 63, 64)).toBe(0);
    expect(patternByte(1, 62, 64)).toBe(62);
    expect(bulkIn(m, 32).status).toBe('babble');
  });

  test('sink: accepts the pattern, halts on a bad byte until CLEAR_FEATURE(ENDPOINT_HALT)', () => {
    const m = fresh({ pattern: 1 });
    const good = Array.from({ length: 64 }, (_, i) => i % 63);
    expect(bulkOut(m, good).status).toBe('ack');
    expect(bulkOut(m, good.slice(0, 10)).status).toBe('ack');
    const bad = [...good];
    bad[5] = 99;
    expect(bulkOut(m, bad).status).toBe('ack'); // received, then the endpoint halts
    expect(m.sinkErrors).toBe(1);
    expect(bulkOut(m, good).status).toBe('stall');
    expect(setup(m, 0x02, 0x01, 0, 0x01, 0).status).toBe('ack');
    expect(bulkOut(m, good).status).toBe('ack');
    const none = fresh({ pattern: 2 });
    expect(bulkOut(none, [1, 2, 3]).status).toBe('ack');
    expect(bulkOut(none, [4]).status).toBe('ack');
  });

  test('vendor requests 0x5b/0x5c: round trip, stall on bad wValue or in the loopback configuration', () => {
    const z = fresh();
    const data = Array.from({ length: 200 }, (_, k) => (k * 3 + 1) & 0xff);
    expect(setup(z, 0x40, 0x5b, 0, 0, 200, data).status).toBe('ack');
    const r = setup(z, 0xc0, 0x5c, 0, 0, 200);
    expect(r.status).toBe('ack');
    expect(r.data).toEqual(data);
    expect(setup(z, 0xc0, 0x5c, 1, 0, 4).status).toBe('stall');
    expect(setup(z, 0x41, 0x5b, 0, 0, 0).status).toBe('stall');
    const l = fresh({}, CONFIG_LOOPBACK);
    expect(setup(l, 0x40, 0x5b, 0, 0, 2, [1, 2]).status).toBe('stall');
  });

  test('chapter 9 answers usbtest checks: interface/endpoint status, alt settings, no qualifier at full speed', () => {
    const z = fresh();
    expect(setup(z, 0x81, 0x00, 0, 0, 2)).toEqual({ status: 'ack', data: [0, 0] });
    expect(setup(z, 0x82, 0x00, 0, 0x81, 2)).toEqual({ status: 'ack', data: [0, 0] });
    expect(setup(z, 0x80, 0x00, 0, 0, 2).data[0]! & 1).toBe(1); // self powered
    expect(setup(z, 0x80, 0x06, 0x0600, 0, 10).status).toBe('stall'); // device qualifier: not HS capable
    expect(setup(z, 0x80, 0x06, 0x0400, 0, 9).status).toBe('stall'); // interface descriptor: always stalls
    expect(setup(z, 0x01, 0x0b, 1, 0, 0).status).toBe('ack'); // alt 1 (iso)
    expect(setup(z, 0x81, 0x0a, 0, 0, 1).data).toEqual([1]);
    const iso = new UsbPacket(PID_IN, z.address, 2, new Uint8Array(1023), true);
    z.handlePacket(iso);
    expect(iso.status).toBe('ack');
    expect(iso.actualLength).toBe(1023);
    expect(setup(z, 0x01, 0x0b, 0, 0, 0).status).toBe('ack');
    const isoGone = new UsbPacket(PID_IN, z.address, 2, new Uint8Array(1023), true);
    z.handlePacket(isoGone);
    expect(isoGone.status).toBe('stall');
  });

  test('loopback: OUT requests come back IN, ending short or with a zero-length packet', () => {
    const l = fresh({}, CONFIG_LOOPBACK);
    expect(bulkIn(l).status).toBe('nak');
    const a = Array.from({ length: 64 }, (_, i) => i);
    const b = [200, 201, 202];
    expect(bulkOut(l, a).status).toBe('ack');
    expect(bulkIn(l).status).toBe('nak'); // request not finished yet (full packet)
    expect(bulkOut(l, b).status).toBe('ack'); // short packet ends it
    const r1 = bulkIn(l);
    const r2 = bulkIn(l);
    expect([...r1.data.subarray(0, r1.actualLength)]).toEqual(a);
    expect([...r2.data.subarray(0, r2.actualLength)]).toEqual(b);
    expect(bulkIn(l).status).toBe('nak');
    // 64 bytes then a ZLP from the host: 64 bytes back, then a ZLP.
    bulkOut(l, a);
    bulkOut(l, []);
    const f = bulkIn(l);
    expect(f.actualLength).toBe(64);
    const zlp = bulkIn(l);
    expect(zlp.status).toBe('ack');
    expect(zlp.actualLength).toBe(0);
    expect(bulkIn(l).status).toBe('nak');
  });

  test('loopback: at most 32 requests wait; SET_CONFIGURATION drops them', () => {
    const l = fresh({}, CONFIG_LOOPBACK);
    for (let k = 0; k < 32; k++) expect(bulkOut(l, [k]).status).toBe('ack');
    expect(bulkOut(l, [99]).status).toBe('nak');
    expect(l.loopbackQueued).toBe(32);
    expect(bulkIn(l).data[0]).toBe(0);
    expect(bulkOut(l, [99]).status).toBe('ack');
    expect(setup(l, 0x00, 0x09, CONFIG_LOOPBACK, 0, 0).status).toBe('ack');
    expect(l.loopbackQueued).toBe(0);
  });

  test('save/restore keeps loopback data and the ep0 buffer', () => {
    const l = fresh({}, CONFIG_LOOPBACK);
    bulkOut(l, [1, 2, 3]);
    const copy = new GadgetZero();
    copy.loadState(JSON.parse(JSON.stringify(l.saveState())));
    const r = bulkIn(copy);
    expect([...r.data.subarray(0, r.actualLength)]).toEqual([1, 2, 3]);
    expect(() => copy.loadState({})).toThrow(TypeError);
  });
});

describe('gadget zero: findings of the usbtest lab', () => {
  test('bNumInterfaces counts interfaces, not alternate settings (Linux: "config 3 has 1 interface, different from the descriptor\'s value: 2")', () => {
    const d = gadgetZeroDescriptors();
    const ss = encodeConfigDescriptor(d.configs[0]!);
    expect(d.configs[0]!.interfaces.length).toBe(2); // alt 0 and alt 1 of interface 0
    expect(ss[4]).toBe(1);
  });

  test('GET_DESCRIPTOR(BOS) stalls: a bcdUSB 2.00 gadget without LPM has none (usbtest test 10 subcase 15)', () => {
    const dev = fresh();
    expect(setup(dev, 0x80, 0x06, 0x0f00, 0, 5).status).toBe('stall');
    // ep0 still works after the stall
    expect(setup(dev, 0x80, 0x06, 0x0100, 0, 18).data.length).toBe(18);
  });
});
