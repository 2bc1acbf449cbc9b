import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';
import { UhciController, FRAME_NS } from '../../src/uhci/controller.js';
import { PID_IN, PID_OUT, PID_SETUP } from '../../src/usb/packet.js';
import { FakeDevice } from '../support/fake-device.js';
import { ScheduleBuilder } from '../support/schedule-builder.js';
import { LINK, TD_CTRL } from '../../src/uhci/descriptors.js';

function setup(opts: { mem?: number } = {}) {
  const mem = new FlatMemory(opts.mem ?? 0x100000);
  const irq = new LatchedIrq();
  const clock = new ManualClock();
  let bm = true;
  const hc = new UhciController({ mem, irq, clock, busMaster: () => bm });
  const sb = new ScheduleBuilder(mem);
  const setBm = (v: boolean) => (bm = v);
  return { mem, irq, clock, hc, sb, setBm };
}

/** Connect a device, reset+enable its port, give it an address. */
function plug(hc: UhciController, port: number, dev: FakeDevice, address = 0) {
  hc.attach(port, dev);
  hc.ioWrite(0x10 + port * 2, 2, 0x0200);
  hc.ioWrite(0x10 + port * 2, 2, 0x0000);
  hc.ioWrite(0x10 + port * 2, 2, 0x0004 | 0x000a);
  dev.address = address;
}

function start(hc: UhciController, sb: ScheduleBuilder, cmd = 0x00c1) {
  hc.ioWrite(0x08, 4, sb.flBase);
  hc.ioWrite(0x00, 2, cmd);
}

describe('register file (UHCI DG §2.1, QEMU 7.2 access semantics)', () => {
  test('reset values', () => {
    const { hc } = setup();
    expect(hc.ioRead(0x00, 2)).toBe(0);
    expect(hc.ioRead(0x02, 2)).toBe(0x20); // HCHalted
    expect(hc.ioRead(0x04, 2)).toBe(0);
    expect(hc.ioRead(0x06, 2)).toBe(0);
    expect(hc.ioRead(0x08, 4)).toBe(0);
    expect(hc.ioRead(0x0c, 1)).toBe(64); // SOFMOD reset 64 (§2.1.6)
    expect(hc.ioRead(0x10, 2)).toBe(0x80); // bit 7 reads 1 (§2.1.7)
    expect(hc.ioRead(0x12, 2)).toBe(0x80);
  });

  test('unimplemented words read 0xff7f; misaligned accesses are cut into aligned pieces (QEMU memory core)', () => {
    const { hc } = setup();
    hc.attach(0, new FakeDevice());
    hc.ioWrite(0x08, 4, 0x100000);
    expect(hc.ioRead(0x0e, 2)).toBe(0xff7f);
    expect(hc.ioRead(0x14, 2)).toBe(0xff7f);
    expect(hc.ioRead(0x1c, 4)).toBe(0xff7fff7f);
    expect(hc.ioRead(0x0d, 1)).toBe(0x7f); // byte access = 16-bit access at that address
    // Values measured on QEMU 7.2 by the oracle:
    expect(hc.ioRead(0x0d, 2)).toBe(0x7f7f);
    expect(hc.ioRead(0x0a, 4)).toBe(0x00400010);
    expect((hc.ioRead(0x0d, 4) & 0xcfffffff) >>> 0).toBe(0x83ff7f7f); // PORTSC1 low byte on top (line status aside)
    hc.ioWrite(0x0b, 2, 0x2000); // high byte lands on SOFMOD
    expect(hc.ioRead(0x0c, 1)).toBe(0x20);
    hc.ioWrite(0x02, 4, 0x00050000); // second half is USBINTR
    expect(hc.ioRead(0x04, 2)).toBe(5);
  });

  test('FLBASEADD keeps bits 31:12 only, halves writable separately', () => {
    const { hc } = setup();
    hc.ioWrite(0x08, 4, 0x12345fff);
    expect(hc.ioRead(0x08, 4)).toBe(0x12345000);
    hc.ioWrite(0x0a, 2, 0xabcd);
    expect(hc.ioRead(0x08, 4)).toBe(0xabcd5000);
  });

  test('FRNUM is writable only while halted', () => {
    const { hc, sb } = setup();
    hc.ioWrite(0x06, 2, 0xffff);
    expect(hc.ioRead(0x06, 2)).toBe(0x7ff);
    start(hc, sb);
    hc.ioWrite(0x06, 2, 0x10);
    expect(hc.ioRead(0x06, 2)).toBe(0x7ff);
  });

  test('USBSTS bits are write-1-to-clear', () => {
    const { hc } = setup();
    hc.ioWrite(0x02, 2, 0x0000);
    expect(hc.ioRead(0x02, 2)).toBe(0x20);
    hc.ioWrite(0x02, 2, 0x0020);
    expect(hc.ioRead(0x02, 2)).toBe(0);
  });

  test('HCRESET restores defaults and reports attached devices as new connections', () => {
    const { hc } = setup();
    const dev = new FakeDevice();
    plug(hc, 0, dev, 3);
    hc.ioWrite(0x04, 2, 0xf);
    hc.ioWrite(0x0c, 1, 10);
    hc.ioWrite(0x00, 2, 0x0002);
    expect(hc.ioRead(0x00, 2)).toBe(0);
    expect(hc.ioRead(0x04, 2)).toBe(0);
    expect(hc.ioRead(0x0c, 1)).toBe(64);
    expect(hc.ioRead(0x10, 2) & 0x1ff).toBe(0x0093); // CCS CSC, J state (D+), bit 7
    expect(dev.address).toBe(0);
  });
});

describe('root ports (UHCI DG §2.1.7)', () => {
  test('connect, change bits, enable only when connected, line status', () => {
    const { hc } = setup();
    hc.ioWrite(0x12, 2, 0x0004);
    expect(hc.ioRead(0x12, 2) & 0x4).toBe(0); // PE needs a device
    const dev = new FakeDevice('low');
    hc.attach(1, dev);
    expect(hc.ioRead(0x12, 2)).toBe(0x01a3); // LSDA, bit7, D- (J for low speed), CSC, CCS
    hc.ioWrite(0x12, 2, 0x0002); // clear CSC
    expect(hc.ioRead(0x12, 2) & 0x2).toBe(0);
    hc.ioWrite(0x12, 2, 0x0200); // reset
    expect(dev.resets).toBe(1);
    expect(hc.ioRead(0x12, 2) & 0x30).toBe(0); // SE0 while in reset
    hc.ioWrite(0x12, 2, 0x0004);
    expect(hc.ioRead(0x12, 2) & 0x4).toBe(0x4);
    hc.detach(1);
    expect(hc.ioRead(0x12, 2)).toBe(0x008a); // CSC, PEC, bit 7
  });

  test('remote wakeup during global suspend sets RD and FGR', () => {
    const { hc, irq } = setup();
    const dev = new FakeDevice();
    plug(hc, 0, dev);
    hc.ioWrite(0x04, 2, 0x2); // resume interrupt
    hc.ioWrite(0x10, 2, 0x1004); // suspend port, keep enabled
    hc.ioWrite(0x00, 2, 0x0008); // EGSM
    dev.hooks!.wakeup();
    expect(hc.ioRead(0x10, 2) & 0x40).toBe(0x40);
    expect(hc.ioRead(0x00, 2) & 0x10).toBe(0x10);
    expect(hc.ioRead(0x02, 2) & 0x4).toBe(0x4);
    expect(irq.level).toBe(true);
  });
});

describe('frame clock', () => {
  test('FRNUM advances one per ms while running and stops when halted', () => {
    const { hc, sb, clock } = setup();
    start(hc, sb);
    expect(hc.ioRead(0x02, 2) & 0x20).toBe(0);
    clock.advance(10 * FRAME_NS);
    expect(hc.ioRead(0x06, 2)).toBe(10);
    clock.advance(FRAME_NS / 2);
    expect(hc.ioRead(0x06, 2)).toBe(10);
    hc.ioWrite(0x00, 2, 0);
    expect(hc.ioRead(0x02, 2) & 0x20).toBe(0x20);
    clock.advance(5 * FRAME_NS);
    expect(hc.ioRead(0x06, 2)).toBe(10);
  });

  test('a late host catches up every frame in order (no frame lost)', () => {
    const { hc, sb, clock, mem } = setup();
    const dev = new FakeDevice();
    plug(hc, 0, dev, 1);
    start(hc, sb);
    // One isochronous OUT TD per frame for 100 frames.
    const tds: number[] = [];
    for (let f = 0; f < 100; f++) {
      const buf = sb.buffer([f]);
      const td = sb.td({ pid: PID_OUT, dev: 1, ep: 2, maxLen: 1, buffer: buf, iso: true, link: LINK.bit.T });
      sb.setFrame(td, f);
      tds.push(td);
    }
    dev.fallback = { status: 'ack' };
    // Timers fire late: 100 ms pass in one step.
    clock.advance(100 * FRAME_NS);
    expect(hc.ioRead(0x06, 2)).toBe(100);
    expect(dev.seen.map((s) => s.data[0])).toEqual([...Array(100).keys()]);
    for (const td of tds) expect(mem.readU32(td + 4) & TD_CTRL.bit.ACTIVE).toBe(0);
  });
});

describe('schedule engine (UHCI DG §3)', () => {
  test('control transfer through a QH: SETUP, IN data, OUT status; element advances; IOC at end of frame', () => {
    const { hc, sb, clock, irq, mem } = setup();
    const dev = new FakeDevice();
    plug(hc, 0, dev, 0);
    dev.script = [{ status: 'ack' }, { status: 'ack', data: [0x12, 0x01, 0x10, 0x01, 0, 0, 0, 8] }, { status: 'ack' }];
    const setup8 = sb.buffer([0x80, 6, 0, 1, 0, 0, 18, 0]);
    const inBuf = sb.buffer(8);
    const tdStatus = sb.td({ pid: PID_OUT, maxLen: 0, toggle: 1, ioc: true });
    const tdData = sb.td({ pid: PID_IN, maxLen: 8, toggle: 1, buffer: inBuf, link: ScheduleBuilder.vf(tdStatus) });
    const tdSetup = sb.td({ pid: PID_SETUP, maxLen: 8, buffer: setup8, link: ScheduleBuilder.vf(tdData) });
    const qh = sb.qh(LINK.bit.T, tdSetup);
    sb.setFrame(ScheduleBuilder.q(qh));
    hc.ioWrite(0x04, 2, 0x4);
    start(hc, sb);
    clock.advance(FRAME_NS);
    expect(dev.seen.map((s) => s.pid)).toEqual([PID_SETUP, PID_IN, PID_OUT]);
    expect(dev.seen[0]!.data).toEqual([0x80, 6, 0, 1, 0, 0, 18, 0]);
    expect(sb.bytes(inBuf, 8)).toEqual([0x12, 0x01, 0x10, 0x01, 0, 0, 0, 8]);
    expect(mem.readU32(qh + 4)).toBe(LINK.bit.T);
    expect(sb.ctrlOf(tdData) & 0x7ff).toBe(7); // actual length 8 → 7
    expect(sb.ctrlOf(tdStatus) & 0x7ff).toBe(0x7ff); // zero length
    expect(hc.ioRead(0x02, 2) & 1).toBe(1);
    expect(irq.level).toBe(true);
    hc.ioWrite(0x02, 2, 1);
    expect(irq.level).toBe(false);
  });

  test('NAK leaves the TD active with NAK set; the next QH still runs', () => {
    const { hc, sb, clock } = setup();
    const a = new FakeDevice();
    const b = new FakeDevice();
    plug(hc, 0, a, 1);
    plug(hc, 1, b, 2);
    a.fallback = { status: 'nak' };
    b.fallback = { status: 'ack' };
    const tdA = sb.td({ pid: PID_IN, dev: 1, ep: 1, maxLen: 4, buffer: sb.buffer(4) });
    const tdB = sb.td({ pid: PID_OUT, dev: 2, ep: 1, maxLen: 2, buffer: sb.buffer([1, 2]) });
    const qhB = sb.qh(LINK.bit.T, tdB);
    const qhA = sb.qh(ScheduleBuilder.q(qhB), tdA);
    sb.setFrame(ScheduleBuilder.q(qhA));
    start(hc, sb);
    clock.advance(FRAME_NS);
    expect(sb.ctrlOf(tdA) & (TD_CTRL.bit.ACTIVE | TD_CTRL.bit.NAK)).toBe(TD_CTRL.bit.ACTIVE | TD_CTRL.bit.NAK);
    expect(sb.ctrlOf(tdB) & TD_CTRL.bit.ACTIVE).toBe(0);
  });

  test('short packet with SPD stops the queue without advancing the QH, raises the SP interrupt', () => {
    const { hc, sb, clock, irq, mem } = setup();
    const dev = new FakeDevice();
    plug(hc, 0, dev, 1);
    dev.script = [{ status: 'ack', data: [1, 2, 3] }];
    const td2 = sb.td({ pid: PID_IN, dev: 1, ep: 1, maxLen: 8, buffer: sb.buffer(8), toggle: 1 });
    const td1 = sb.td({ pid: PID_IN, dev: 1, ep: 1, maxLen: 8, buffer: sb.buffer(8), spd: true, link: ScheduleBuilder.vf(td2) });
    const qh = sb.qh(LINK.bit.T, td1);
    sb.setFrame(ScheduleBuilder.q(qh));
    hc.ioWrite(0x04, 2, 0x8);
    start(hc, sb);
    clock.advance(FRAME_NS);
    expect(sb.ctrlOf(td1) & 0x7ff).toBe(2);
    expect(sb.ctrlOf(td1) & TD_CTRL.bit.ACTIVE).toBe(0);
    expect(mem.readU32(qh + 4)).toBe(td1);
    expect(dev.seen.length).toBe(1);
    expect(irq.level).toBe(true);
  });

  test('timeouts count C_ERR down and retire the TD at 0 with USBERRINT (UHCI DG §3.2.2)', () => {
    const { hc, sb, clock, irq } = setup();
    const td = sb.td({ pid: PID_IN, dev: 9, ep: 1, maxLen: 8, buffer: sb.buffer(8), cerr: 3 });
    sb.setFrame(td);
    hc.ioWrite(0x04, 2, 0x1);
    start(hc, sb);
    clock.advance(FRAME_NS);
    expect((sb.ctrlOf(td) & TD_CTRL.bit.CERR) >>> 27).toBe(2);
    expect(sb.ctrlOf(td) & TD_CTRL.bit.ACTIVE).toBe(TD_CTRL.bit.ACTIVE);
    expect(irq.level).toBe(false);
    clock.advance(2 * FRAME_NS);
    expect(sb.ctrlOf(td) & (TD_CTRL.bit.ACTIVE | TD_CTRL.bit.CRCTO | TD_CTRL.bit.CERR)).toBe(TD_CTRL.bit.CRCTO);
    expect(hc.ioRead(0x02, 2) & 2).toBe(2);
    expect(irq.level).toBe(true);
  });

  test('stall retires the TD; babble stalls and ends the frame', () => {
    const { hc, sb, clock } = setup();
    const dev = new FakeDevice();
    plug(hc, 0, dev, 1);
    dev.script = [{ status: 'stall' }, { status: 'ack', data: [1, 2, 3, 4, 5] }];
    const td3 = sb.td({ pid: PID_OUT, dev: 1, ep: 3, maxLen: 1, buffer: sb.buffer([0]) });
    const td2 = sb.td({ pid: PID_IN, dev: 1, ep: 2, maxLen: 2, buffer: sb.buffer(2), link: td3 });
    const td1 = sb.td({ pid: PID_IN, dev: 1, ep: 1, maxLen: 2, buffer: sb.buffer(2), link: td2 });
    sb.setFrame(td1, 0);
    start(hc, sb);
    clock.advance(FRAME_NS);
    expect(sb.ctrlOf(td1) & (TD_CTRL.bit.ACTIVE | TD_CTRL.bit.STALLED)).toBe(TD_CTRL.bit.STALLED);
    expect(sb.ctrlOf(td2) & (TD_CTRL.bit.ACTIVE | TD_CTRL.bit.STALLED | TD_CTRL.bit.BABBLE)).toBe(TD_CTRL.bit.STALLED | TD_CTRL.bit.BABBLE);
    expect(sb.ctrlOf(td3) & TD_CTRL.bit.ACTIVE).toBe(TD_CTRL.bit.ACTIVE); // frame ended at the babble
  });

  test('async device: TD stays active until completion, then completes exactly once', () => {
    const { hc, sb, clock, mem } = setup();
    const dev = new FakeDevice();
    plug(hc, 0, dev, 1);
    dev.script = [{ status: 'async' }];
    const buf = sb.buffer(4);
    const td = sb.td({ pid: PID_IN, dev: 1, ep: 1, maxLen: 4, buffer: buf, ioc: true });
    const qh = sb.qh(LINK.bit.T, td);
    sb.setFrame(ScheduleBuilder.q(qh));
    start(hc, sb);
    clock.advance(3 * FRAME_NS);
    expect(dev.seen.length).toBe(1);
    expect(sb.ctrlOf(td) & TD_CTRL.bit.ACTIVE).toBe(TD_CTRL.bit.ACTIVE);
    dev.completeAsync('ack', [9, 8, 7, 6]);
    clock.advance(2 * FRAME_NS);
    expect(sb.bytes(buf, 4)).toEqual([9, 8, 7, 6]);
    expect(sb.ctrlOf(td) & TD_CTRL.bit.ACTIVE).toBe(0);
    expect(mem.readU32(qh + 4)).toBe(LINK.bit.T);
    expect(dev.seen.length).toBe(1);
  });

  test('async TD unlinked by the guest is cancelled at the device', () => {
    const { hc, sb, clock, mem } = setup();
    const dev = new FakeDevice();
    plug(hc, 0, dev, 1);
    dev.script = [{ status: 'async' }];
    const td = sb.td({ pid: PID_IN, dev: 1, ep: 1, maxLen: 4, buffer: sb.buffer(4) });
    const qh = sb.qh(LINK.bit.T, td);
    sb.setFrame(ScheduleBuilder.q(qh));
    start(hc, sb);
    clock.advance(2 * FRAME_NS);
    mem.writeU32(qh + 4, LINK.bit.T);
    clock.advance(40 * FRAME_NS);
    expect(dev.cancelled.length).toBe(1);
  });

  test('a full-speed TD to a low-speed device gets no answer (UHCI DG §3.2.2 LS)', () => {
    const { hc, sb, clock } = setup();
    const dev = new FakeDevice('low');
    plug(hc, 0, dev, 1);
    dev.fallback = { status: 'ack' };
    const fs = sb.td({ pid: PID_OUT, dev: 1, maxLen: 1, buffer: sb.buffer([1]), cerr: 1 });
    const ls = sb.td({ pid: PID_OUT, dev: 1, maxLen: 1, buffer: sb.buffer([2]), ls: true, link: fs });
    sb.setFrame(ls, 0);
    start(hc, sb);
    clock.advance(FRAME_NS);
    expect(dev.seen.map((x) => x.data[0])).toEqual([2]);
    expect(sb.ctrlOf(fs) & (TD_CTRL.bit.ACTIVE | TD_CTRL.bit.CRCTO)).toBe(TD_CTRL.bit.CRCTO);
  });

  test('invalid PID → HC process error, halt, interrupt', () => {
    const { hc, sb, clock, irq } = setup();
    const td = sb.td({ pid: 0xa5, maxLen: 1 });
    sb.setFrame(td);
    start(hc, sb);
    clock.advance(FRAME_NS);
    expect(hc.ioRead(0x02, 2) & 0x30).toBe(0x30);
    expect(hc.ioRead(0x00, 2) & 1).toBe(0);
    expect(irq.level).toBe(true);
  });
});

describe('hostile schedules stay bounded', () => {
  test('self-linked QH and TD loops, frame list full of loops', () => {
    const { hc, sb, clock } = setup();
    const qh = sb.alloc(16);
    sb.mem.writeU32(qh, ScheduleBuilder.q(qh));
    sb.mem.writeU32(qh + 4, ScheduleBuilder.q(qh));
    const td = sb.alloc(32);
    sb.mem.writeU32(td, td | 4);
    sb.mem.writeU32(td + 4, 0); // inactive
    for (let f = 0; f < 1024; f++) sb.setFrame(f % 2 ? ScheduleBuilder.q(qh) : td, f);
    start(hc, sb);
    clock.advance(50 * FRAME_NS);
    expect(hc.ioRead(0x06, 2)).toBe(50);
    expect(hc.engine.stats.links).toBeLessThanOrEqual(1025);
  });

  test('pointers past guest RAM → host system error and halt, no exception', () => {
    const { hc, sb, clock, irq } = setup({ mem: 0x40000 });
    sb.setFrame(0x7fff0000);
    start(hc, sb);
    expect(() => clock.advance(2 * FRAME_NS)).not.toThrow();
    expect(hc.ioRead(0x02, 2) & 0x28).toBe(0x28);
    expect(irq.level).toBe(true);
  });

  test('MaxLen 0x7fe is refused with HC process error (UHCI DG §3.2.3)', () => {
    const { hc, sb, clock } = setup();
    const dev = new FakeDevice();
    plug(hc, 0, dev, 1);
    const td = sb.td({ pid: PID_OUT, dev: 1, maxLen: 0x7ff, buffer: 0 });
    sb.setFrame(td);
    start(hc, sb);
    clock.advance(FRAME_NS);
    expect(hc.ioRead(0x02, 2) & 0x10).toBe(0x10);
    expect(dev.seen.length).toBe(0);
  });

  test('bus mastering disabled: no DMA happens, HSE instead', () => {
    const { hc, sb, clock, setBm } = setup();
    setBm(false);
    start(hc, sb);
    clock.advance(FRAME_NS);
    expect(hc.ioRead(0x02, 2) & 0x08).toBe(0x08);
  });
});

describe('software debug mode (UHCI DG §2.1.1 SWDBG)', () => {
  test('the controller halts after each transaction', () => {
    const { hc, sb, clock } = setup();
    const dev = new FakeDevice();
    plug(hc, 0, dev, 1);
    dev.fallback = { status: 'ack' };
    const td2 = sb.td({ pid: PID_OUT, dev: 1, maxLen: 1, buffer: sb.buffer([2]) });
    const td1 = sb.td({ pid: PID_OUT, dev: 1, maxLen: 1, buffer: sb.buffer([1]), link: td2 });
    sb.setFrame(td1);
    start(hc, sb, 0x00e1);
    clock.advance(FRAME_NS);
    expect(dev.seen.length).toBe(1);
    expect(hc.ioRead(0x00, 2) & 1).toBe(0);
    expect(hc.ioRead(0x02, 2) & 0x20).toBe(0x20);
    hc.ioWrite(0x00, 2, 0x00e1);
    clock.advance(FRAME_NS);
    expect(dev.seen.length).toBe(2);
  });
});

describe('save/restore', () => {
  test('registers, ports and frame timing survive a round trip', () => {
    const a = setup();
    const dev = new FakeDevice();
    plug(a.hc, 0, dev, 1);
    start(a.hc, a.sb);
    a.hc.ioWrite(0x04, 2, 0x5);
    a.clock.advance(7 * FRAME_NS + 300_000);
    const snap = JSON.parse(JSON.stringify(a.hc.saveState()));
    const b = setup();
    const dev2 = new FakeDevice();
    b.hc.attach(0, dev2);
    b.hc.loadState(snap);
    expect(b.hc.ioRead(0x06, 2)).toBe(7);
    expect(b.hc.ioRead(0x10, 2)).toBe(a.hc.ioRead(0x10, 2));
    expect(b.hc.ioRead(0x04, 2)).toBe(5);
    b.clock.advance(700_000);
    expect(b.hc.ioRead(0x06, 2)).toBe(8);
  });
});

describe('idle coalescing', () => {
  test('an idle schedule wakes rarely; device activity resumes per-frame polling at once', () => {
    const mem = new FlatMemory(0x100000);
    const clock = new ManualClock();
    const hc = new UhciController({ mem, irq: new LatchedIrq(), clock, idleCoalesce: 64 });
    const sb = new ScheduleBuilder(mem);
    const dev = new FakeDevice();
    plug(hc, 0, dev, 1);
    const buf = sb.buffer(4);
    const td = sb.td({ pid: PID_IN, dev: 1, ep: 1, maxLen: 4, buffer: buf });
    sb.setFrame(ScheduleBuilder.q(sb.qh(LINK.bit.T, td)));
    let wakeups = 0;
    const setTimer = clock.setTimer.bind(clock);
    clock.setTimer = (at, cb) => setTimer(at, () => (wakeups++, cb()));
    start(hc, sb);
    clock.advance(500 * FRAME_NS);
    expect(wakeups).toBeLessThan(40);
    // A guest access catches up: every frame is processed, in order.
    expect(hc.ioRead(0x06, 2)).toBe(500);
    expect(dev.seen.length).toBe(500);
    const before = dev.seen.length;
    dev.script = [{ status: 'ack', data: [1, 2, 3, 4] }];
    dev.hooks!.activity!();
    clock.advance(FRAME_NS);
    expect(dev.seen.length).toBe(before + 1);
    expect(sb.ctrlOf(td) & TD_CTRL.bit.ACTIVE).toBe(0);
    expect(sb.bytes(buf, 4)).toEqual([1, 2, 3, 4]);
  });
});
