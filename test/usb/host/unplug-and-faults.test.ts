/**
 * Defined behaviour when a passed-through device is pulled mid-transfer, and
 * when our own code fails while handling a libusb result (issue 13, fatal
 * errors). The ExactlyOnceProbe sits between the port and the device, as in
 * the passthrough proof: every packet answered `async` must be completed
 * once or cancelled once, never both, never twice.
 *
 * What the guest sees for a pulled device: the packets in flight complete
 * with `nodev` (QEMU host-libusb.c: status_map[LIBUSB_TRANSFER_NO_DEVICE] =
 * USB_RET_NODEV, then usb_host_nodev closes the device and aborts every
 * other request with NODEV), which UHCI reports as a CRC/timeout error on
 * the TD — no handshake, as on the wire when nothing answers (QEMU
 * hcd-uhci.c treats NODEV like IOERROR: TD_CTRL_TIMEOUT) — retried until
 * C_ERR runs out (UHCI DG §3.2.2), and the port shows the disconnect (CCS=0,
 * CSC=1, §2.1.7). Not a stall: a stall is a handshake from a device that is
 * there.
 */
import { UhciController } from '../../../src/uhci/controller.js';
import { ManualClock } from '../../../src/platform/clock.js';
import { LatchedIrq } from '../../../src/platform/irq.js';
import { FlatMemory } from '../../../src/platform/memory.js';
import { FRAME_NS } from '../../../src/uhci/controller.js';
import { PID_IN, PID_OUT, PID_SETUP, UsbPacket, type UsbPortHooks } from '../../../src/usb/packet.js';
import { ExactlyOnceProbe } from '../../../src/usb/host/exactly-once-probe.js';
import { HostUsbDevice, type HostUsbDeviceOptions } from '../../../src/usb/host/host-device.js';
import type { HostLogLevel } from '../../../src/usb/host/host-context.js';
import type { TransferResult } from '../../../src/usb/host/libusb.js';
import { HostPassthrough } from '../../../src/usb/host/passthrough.js';
import { parseHostSelector } from '../../../src/usb/host/selector.js';
import { ScheduleBuilder } from '../../support/schedule-builder.js';
import { FakeLibusbDevice, FakeLibusbHost, makeInfo, settle, type FakeTransfer } from './fake-libusb.js';
import { LINK, TD_CTRL } from '../../../src/uhci/descriptors.js';

/** Port hooks recording completions; `throwOn` makes complete() throw for that packet (a failing consumer). */
class Port implements UsbPortHooks {
  readonly completed: UsbPacket[] = [];
  throwOn: UsbPacket | null = null;
  throwOnActivity = false;
  complete(p: UsbPacket): void {
    this.completed.push(p);
    if (p === this.throwOn) throw new Error('port hook failed');
  }
  wakeup(): void {}
  activity(): void {
    if (this.throwOnActivity) throw new Error('activity hook failed');
  }
}

function logRecorder() {
  const lines: [HostLogLevel, string][] = [];
  return { lines, log: (level: HostLogLevel, msg: string) => lines.push([level, msg]), errors: () => lines.filter(([l]) => l === 'error') };
}

const setup = (t: number, r: number, v: number, i: number, l: number) =>
  new UsbPacket(PID_SETUP, 0, 0, Uint8Array.of(t, r, v & 0xff, v >> 8, i & 0xff, i >> 8, l & 0xff, l >> 8));
const inPkt = (ep: number, len: number) => new UsbPacket(PID_IN, 0, ep, new Uint8Array(len));
const outPkt = (ep: number, data: number[]) => new UsbPacket(PID_OUT, 0, ep, Uint8Array.from(data));

/** A configured host device behind an ExactlyOnceProbe. */
async function configured(opts: HostUsbDeviceOptions = {}) {
  const fake = new FakeLibusbDevice();
  const disconnects: string[] = [];
  const rec = logRecorder();
  const dev = new HostUsbDevice(fake, { log: rec.log, onDisconnect: (_d, reason) => disconnects.push(reason), ...opts });
  const probe = new ExactlyOnceProbe(dev);
  const port = new Port();
  probe.attach(port);
  probe.reset();
  probe.handlePacket(setup(0x00, 0x09, 1, 0, 0)); // SET_CONFIGURATION 1
  const st = inPkt(0, 0);
  probe.handlePacket(st);
  await settle();
  expect(st.status).toBe('ack');
  return { fake, dev, probe, port, disconnects, rec };
}

/**
 * Seven transfers in flight on every kind of endpoint: a device-to-host
 * control request, bulk IN, four bulk OUT (maxOutInFlight), interrupt IN.
 */
function fillEndpoints(probe: ExactlyOnceProbe) {
  const ctrl = setup(0x80, 0x06, 0x0100, 0, 18);
  const bulkIn = inPkt(1, 64);
  const bulkOut = [1, 2, 3, 4].map((k) => outPkt(2, [k]));
  const intIn = inPkt(3, 8);
  const packets = [ctrl, bulkIn, ...bulkOut, intIn];
  for (const p of packets) {
    probe.handlePacket(p);
    expect(p.status).toBe('async');
  }
  return { packets, ctrl, bulkIn, bulkOut, intIn };
}

const transferOf = (fake: FakeLibusbDevice, endpoint: number): FakeTransfer => fake.pending.find((t) => t.endpoint === endpoint)!;

describe('a host device pulled mid-transfer', () => {
  const triggers: [string, (fake: FakeLibusbDevice, dev: HostUsbDevice) => void][] = [
    ['hotplug detach', (_f, dev) => dev.hostUnplugged()],
    ['NO_DEVICE on the control transfer', (f) => transferOf(f, 0).complete('no_device')],
    ['NO_DEVICE on bulk IN', (f) => transferOf(f, 0x81).complete('no_device')],
    ['NO_DEVICE on a bulk OUT', (f) => transferOf(f, 0x02).complete('no_device')],
    ['NO_DEVICE on interrupt IN', (f) => transferOf(f, 0x83).complete('no_device')],
  ];

  test.each(triggers)('%s: every packet in flight completes exactly once with nodev, the device disconnects once', async (_name, pull) => {
    const { fake, dev, probe, port, disconnects, rec } = await configured();
    const before = probe.report.completed;
    const { packets } = fillEndpoints(probe);
    expect(fake.pending).toHaveLength(7);
    pull(fake, dev);
    await settle();
    await settle();
    const r = probe.report;
    expect(r).toMatchObject({ outstanding: 0, duplicateOrLate: 0, unknownCompletions: 0, cancelled: 0 });
    expect(r.completed - before).toBe(packets.length);
    expect(r.completed + r.cancelled).toBe(r.asyncPackets);
    for (const p of packets) expect([p.status, p.actualLength]).toEqual(['nodev', 0]);
    expect(new Set(port.completed).size).toBe(port.completed.length);
    expect(disconnects).toHaveLength(1);
    expect(fake.pending).toHaveLength(0); // everything still running was cancelled at libusb
    expect(fake.calls.filter((c) => c === 'close')).toHaveLength(1);
    expect(dev.transfersInFlight).toBe(0);
    expect(rec.errors()).toEqual([]); // an unplug is not an error of ours
    // After the unplug every packet answers nodev at once.
    const late = inPkt(1, 64);
    probe.handlePacket(late);
    expect(late.status).toBe('nodev');
  });

  test('through the controller: the started TDs end with CRC/timeout (not stall) after C_ERR retries, the port shows the disconnect', async () => {
    const mem = new FlatMemory(0x100000);
    const clock = new ManualClock();
    const hc = new UhciController({ mem, irq: new LatchedIrq(), clock });
    const sb = new ScheduleBuilder(mem);
    const host = new FakeLibusbHost();
    const raw = new FakeLibusbDevice(makeInfo());
    host.plug(raw);
    let probe: ExactlyOnceProbe | null = null;
    const pt = new HostPassthrough(host, parseHostSelector('1234:5678'), {
      log: () => {},
      onAttach: (dev) => hc.attach(0, (probe = new ExactlyOnceProbe(dev))),
      onDetach: () => hc.detach(0),
    });
    const dev = pt.start()!;
    // Port reset and enable, as the guest's driver does (UHCI DG §2.1.7).
    hc.ioWrite(0x10, 2, 0x0200);
    hc.ioWrite(0x10, 2, 0x0000);
    hc.ioWrite(0x10, 2, 0x0004 | 0x000a);
    // SET_CONFIGURATION through the probe (no schedule needed for that).
    probe!.handlePacket(setup(0x00, 0x09, 1, 0, 0));
    probe!.handlePacket(inPkt(0, 0));
    await settle();
    expect(dev.configurationValue).toBe(1);

    // One queue per endpoint: control SETUP (GET_DESCRIPTOR), bulk IN, bulk OUT, interrupt IN; each TD with C_ERR = 3.
    const setupBuf = sb.buffer([0x80, 0x06, 0x00, 0x01, 0, 0, 18, 0]);
    const tds = [
      sb.td({ pid: PID_SETUP, ep: 0, maxLen: 8, buffer: setupBuf }),
      sb.td({ pid: PID_IN, ep: 1, maxLen: 64, buffer: sb.buffer(64) }),
      sb.td({ pid: PID_OUT, ep: 2, maxLen: 4, buffer: sb.buffer([1, 2, 3, 4]) }),
      sb.td({ pid: PID_IN, ep: 3, maxLen: 8, buffer: sb.buffer(8) }),
    ];
    let next = LINK.bit.T;
    for (const td of [...tds].reverse()) next = ScheduleBuilder.q(sb.qh(next, td));
    sb.setFrame(next);
    hc.ioWrite(0x08, 4, sb.flBase);
    hc.ioWrite(0x00, 2, 0x00c1); // RS, CF, MAXP
    clock.advance(2 * FRAME_NS);
    expect(raw.pending.map((t) => t.endpoint).sort((a, b) => a - b)).toEqual([0, 0x02, 0x81, 0x83]);
    for (const td of tds) expect(sb.ctrlOf(td) & TD_CTRL.bit.ACTIVE).toBeTruthy();

    host.unplug(raw);
    await settle();
    clock.advance(10 * FRAME_NS);
    for (const td of tds) {
      const ctrl = sb.ctrlOf(td);
      expect({ td, active: !!(ctrl & TD_CTRL.bit.ACTIVE), crcTimeout: !!(ctrl & TD_CTRL.bit.CRCTO), stalled: !!(ctrl & TD_CTRL.bit.STALLED), cerr: ctrl & TD_CTRL.bit.CERR }).toEqual({
        td,
        active: false,
        crcTimeout: true,
        stalled: false,
        cerr: 0,
      });
    }
    expect(hc.ioRead(0x02, 2) & 0x0002).toBe(0x0002); // USBSTS USBERRINT
    expect(hc.ioRead(0x10, 2) & 0x0003).toBe(0x0002); // PORTSC1: CCS=0, CSC=1
    expect(hc.ports[0]!.device).toBeNull();
    expect(probe!.report).toMatchObject({ outstanding: 0, duplicateOrLate: 0, unknownCompletions: 0 });
    expect(probe!.report.completed + probe!.report.cancelled).toBe(probe!.report.asyncPackets);
    expect(raw.pending).toHaveLength(0);
  });
});

describe('an exception in our completion code is contained', () => {
  /** A result whose data is missing: the code handling it throws (TypeError). */
  const malformed = { status: 'completed', data: null, actualLength: 8 } as unknown as TransferResult;

  test.each([
    ['the control transfer', 0, 'a control transfer'],
    ['bulk IN', 0x81, 'endpoint 0x81'],
    ['interrupt IN', 0x83, 'endpoint 0x83'],
  ] as const)('a malformed result on %s: that packet ioerror, the others nodev, one error line, the device disconnects', async (_name, endpoint, what) => {
    const { fake, probe, disconnects, rec } = await configured();
    const { packets, ctrl, bulkIn, intIn } = fillEndpoints(probe);
    const affected = endpoint === 0 ? ctrl : endpoint === 0x81 ? bulkIn : intIn;
    const before = probe.report.completed;
    expect(() => transferOf(fake, endpoint).completeRaw(malformed)).not.toThrow();
    await settle();
    await settle();
    expect(probe.report).toMatchObject({ outstanding: 0, duplicateOrLate: 0, unknownCompletions: 0 });
    expect(probe.report.completed - before).toBe(packets.length);
    for (const p of packets) expect(p.status).toBe(p === affected ? 'ioerror' : 'nodev');
    expect(rec.errors()).toHaveLength(1);
    expect(rec.errors()[0]![1]).toContain(`error handling the result of ${what}`);
    expect(rec.lines.filter(([l]) => l === 'warn')).toEqual([]); // the failure is said once, as an error
    expect(disconnects).toHaveLength(1);
    expect(fake.pending).toHaveLength(0);
  });

  test("the port's complete hook throws: the libusb callback returns, every other packet still completes exactly once", async () => {
    const { fake, probe, port, disconnects, rec } = await configured();
    const { packets, bulkIn } = fillEndpoints(probe);
    port.throwOn = bulkIn;
    const before = probe.report.completed;
    expect(() => transferOf(fake, 0x81).complete('completed', [1, 2, 3])).not.toThrow();
    await settle();
    await settle();
    expect(bulkIn.status).toBe('ack'); // it was handed over before the hook threw
    expect(probe.report).toMatchObject({ outstanding: 0, duplicateOrLate: 0, unknownCompletions: 0 });
    expect(probe.report.completed - before).toBe(packets.length);
    for (const p of packets) if (p !== bulkIn) expect(p.status).toBe('nodev');
    expect(rec.errors()).toHaveLength(1);
    expect(disconnects).toHaveLength(1);
  });

  test('a hook failing while an unplug completes the packets: the rest still complete, the port is still told', async () => {
    const { fake, dev, probe, port, disconnects, rec } = await configured();
    const { packets, ctrl } = fillEndpoints(probe);
    port.throwOn = ctrl;
    const before = probe.report.completed;
    dev.hostUnplugged();
    await settle();
    await settle();
    expect(probe.report).toMatchObject({ outstanding: 0, duplicateOrLate: 0, unknownCompletions: 0 });
    expect(probe.report.completed - before).toBe(packets.length);
    expect(disconnects).toHaveLength(1);
    expect(rec.errors()).toHaveLength(1);
    expect(rec.errors()[0]![1]).toContain('error in the disconnect');
    expect(fake.calls.filter((c) => c === 'close')).toHaveLength(1);
  });

  test('an exception after a passed-on port reset ends (promise callback) is contained', async () => {
    const { fake, dev, probe, port, disconnects, rec } = await configured();
    probe.handlePacket(setup(0x00, 0x05, 4, 0, 0)); // SET_ADDRESS 4: now resets are passed on
    probe.handlePacket(inPkt(0, 0));
    expect(dev.address).toBe(4);
    port.throwOnActivity = true;
    probe.reset();
    expect(fake.calls.filter((c) => c === 'reset')).toHaveLength(1);
    await settle();
    await settle();
    expect(rec.errors()).toHaveLength(1);
    expect(rec.errors()[0]![1]).toContain('error in the end of a port reset');
    expect(disconnects).toHaveLength(1);
  });

  test('a hotplug event that makes our code throw is contained (one error line)', () => {
    const host = new FakeLibusbHost();
    const rec = logRecorder();
    const pt = new HostPassthrough(host, parseHostSelector('1234:5678'), { reattach: true, log: rec.log, onAttach: () => {}, onDetach: () => {} });
    expect(pt.start()).toBeNull();
    const broken = new FakeLibusbDevice(makeInfo());
    Object.defineProperty(broken, 'info', {
      get() {
        throw new Error('descriptor read failed');
      },
    });
    expect(() => host.plug(broken)).not.toThrow();
    expect(rec.errors()).toEqual([['error', '1234:5678: error handling a hotplug attach: descriptor read failed']]);
    expect(pt.device).toBeNull();
  });

  test('without a log option, the error line goes to stderr', async () => {
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (written.push(String(s)), true)) as typeof process.stderr.write;
    try {
      const { fake, probe } = await configured({ log: undefined });
      fillEndpoints(probe);
      transferOf(fake, 0x81).completeRaw(malformed);
      await settle();
    } finally {
      process.stderr.write = write;
    }
    expect(written.filter((l) => l.includes('usb-host error'))).toHaveLength(1);
  });
});
