/**
 * Hand-made traces for the inspector: the built-in guest driver enumerates
 * an emulated tablet on a recorded UHCI function, then each scenario seeds
 * one guest-driver bug into a schedule of its own (ScheduleBuilder, frame
 * list at 0x200000). The guest "handles interrupts" like an ISR run every
 * millisecond (reads USBSTS, writes back the bits it saw), so the only
 * anomaly in a trace is the seeded one — except in the scenario that
 * leaves interrupts unacknowledged on purpose.
 */
import { InProcessBus } from '../../src/guest/model-bus.js';
import { UhciGuestDriver, type EnumeratedDevice } from '../../src/guest/uhci-driver.js';
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';
import { createRecordedFunction, type RecordedUhciFunction } from '../../src/trace/recorded-function.js';
import { Recorder } from '../../src/trace/recorder.js';
import { MemorySink } from '../../src/trace/sink.js';
import { makeToken, LINK, TD_CTRL } from '../../src/uhci/descriptors.js';
import { createDevice } from '../../src/usb/devices.js';
import type { UsbTablet } from '../../src/usb/hid/tablet.js';
import { PID_IN, PID_OUT, PID_SETUP } from '../../src/usb/packet.js';
import type { AnomalyKind } from '../../src/inspect/anomalies.js';
import { FakeDevice } from '../support/fake-device.js';
import { ScheduleBuilder } from '../support/schedule-builder.js';

/**
 * How the guest services interrupts, every millisecond (an ISR polled like
 * Linux `irqpoll`): 'ack' reads USBSTS and writes back the bits it saw;
 * 'read-only' reads USBSTS and forgets to write it back (a driver bug);
 * 'none' never looks (a polling driver that left USBINTR enabled, as the
 * built-in demo driver does).
 */
export type IsrMode = 'ack' | 'read-only' | 'none';

export class IsrBus extends InProcessBus {
  ioBase = 0;
  isr: IsrMode = 'ack';
  override async wait(ms: number): Promise<void> {
    for (let i = 0; i < ms; i++) {
      await super.wait(1);
      if (!this.ioBase || this.isr === 'none') continue;
      const sts = await this.inw(this.ioBase + 2);
      // Write back the interrupt bits seen (RW1C); HCHalted (bit 5) is status, not an interrupt.
      if (sts & 0x1f && this.isr === 'ack') await this.outw(this.ioBase + 2, sts & 0x1f);
    }
  }
}

export interface SeedRig {
  clock: ManualClock;
  mem: FlatMemory;
  fn: RecordedUhciFunction;
  bus: IsrBus;
  driver: UhciGuestDriver;
  recorder: Recorder;
  sink: MemorySink;
  io: number;
}

export async function seedRig(opts: { isr?: IsrMode; notes?: string; beforeStart?: (r: Recorder) => void } = {}): Promise<SeedRig> {
  const clock = new ManualClock();
  const mem = new FlatMemory(4 << 20);
  const sink = new MemorySink();
  const recorder = new Recorder(sink, { notes: opts.notes ?? 'inspector seeded trace', model: 'uhci-dm test' });
  opts.beforeStart?.(recorder);
  const fn = createRecordedFunction({ variant: 'piix3', mem, irq: new LatchedIrq(), clock, recorder });
  const bus = new IsrBus(fn, mem, clock, 5);
  bus.isr = opts.isr ?? 'ack';
  const driver = new UhciGuestDriver(bus);
  await driver.probe();
  bus.ioBase = driver.ioBase;
  await driver.start();
  return { clock, mem, fn, bus, driver, recorder, sink, io: driver.ioBase };
}

/** The tablet on port 1, enumerated (address 1, interrupt IN ep 1, wMaxPacketSize 8). */
export async function withTablet(rig: SeedRig): Promise<{ tablet: UsbTablet; dev: EnumeratedDevice }> {
  const tablet = createDevice('tablet', { clock: rig.clock, portPath: '1' });
  rig.fn.attach(0, tablet);
  const dev = await rig.driver.enumerate(0);
  return { tablet, dev };
}

/** A private schedule: frame list at 0x200000 (all entries → one QH), heap at 0x210000. */
export async function ownSchedule(rig: SeedRig): Promise<{ sb: ScheduleBuilder; qh: number }> {
  const sb = new ScheduleBuilder(rig.mem, 0x200000, 0x210000);
  const qh = sb.qh();
  sb.setFrame(ScheduleBuilder.q(qh));
  await rig.bus.outl(rig.io + 0x08, 0x200000);
  return { sb, qh };
}

export async function finish(rig: SeedRig): Promise<Uint8Array> {
  await rig.bus.outw(rig.io, 0); // stop the controller: no timers left behind
  await rig.recorder.close();
  return rig.sink.bytes();
}

const TABLET = { dev: 1, ep: 1 };

/** One scenario per anomaly kind. */
export const SEEDED: Record<AnomalyKind, (isr?: IsrMode) => Promise<Uint8Array>> = {
  /** An interrupt IN TD, active and NAKing in the queue, gets a new token while linked. */
  async 'td-rewritten-while-active'() {
    const rig = await seedRig();
    await withTablet(rig);
    const { sb, qh } = await ownSchedule(rig);
    const buf = sb.buffer(8);
    const td = sb.td({ pid: PID_IN, ...TABLET, toggle: 0, maxLen: 8, buffer: buf, ioc: true });
    rig.mem.writeU32(qh + 4, td);
    await rig.bus.wait(5);
    rig.mem.writeU32(td + 8, makeToken(PID_IN, 1, 1, 1, 8)); // the bug: rewrite while active and linked
    await rig.bus.wait(5);
    return finish(rig);
  },

  /** Every frame list entry points at a QH 8 bytes past a 16-byte boundary (reserved bit 3 set). */
  async 'reserved-link-bits'() {
    const rig = await seedRig();
    const { sb } = await ownSchedule(rig);
    const qh = sb.qh();
    sb.setFrame((qh + 8) | 2);
    await rig.bus.wait(4);
    return finish(rig);
  },

  /** A QH element pointing past the end of guest RAM (4 MiB). */
  async 'memory-fault'() {
    const rig = await seedRig();
    const { qh } = await ownSchedule(rig);
    rig.mem.writeU32(qh + 4, 0x7ff0000);
    await rig.bus.wait(3);
    return finish(rig);
  },

  /** A QH whose head links to itself while it holds an active (NAKing) TD. */
  async 'schedule-loop'() {
    const rig = await seedRig();
    rig.fn.attach(0, new FakeDevice('full'));
    await rig.driver.resetPort(0);
    const { sb, qh } = await ownSchedule(rig);
    const td = sb.td({ pid: PID_IN, dev: 0, ep: 1, maxLen: 8, buffer: sb.buffer(8) });
    rig.mem.writeU32(qh, ScheduleBuilder.q(qh));
    rig.mem.writeU32(qh + 4, td);
    await rig.bus.wait(4);
    return finish(rig);
  },

  /** Two successful interrupt IN transactions with DATA0 in a row. */
  async 'data-toggle'() {
    const rig = await seedRig();
    const { tablet } = await withTablet(rig);
    const { sb, qh } = await ownSchedule(rig);
    for (let i = 0; i < 2; i++) {
      tablet.moveTo(100 + i, 200);
      const td = sb.td({ pid: PID_IN, ...TABLET, toggle: 0, maxLen: 8, buffer: sb.buffer(8), ioc: true });
      rig.mem.writeU32(qh + 4, td);
      await rig.bus.wait(3);
    }
    return finish(rig);
  },

  /** An interrupt IN TD asking for 64 bytes from an endpoint whose wMaxPacketSize is 8. */
  async 'maxlen-exceeds-max-packet'() {
    const rig = await seedRig();
    const { tablet } = await withTablet(rig);
    const { sb, qh } = await ownSchedule(rig);
    tablet.moveTo(300, 400);
    const td = sb.td({ pid: PID_IN, ...TABLET, toggle: 0, maxLen: 64, buffer: sb.buffer(64), ioc: true });
    rig.mem.writeU32(qh + 4, td);
    await rig.bus.wait(3);
    return finish(rig);
  },

  /** A TD with IOC completes; the guest's ISR reads USBSTS but never writes it back, for 150 frames. */
  async 'irq-not-acknowledged'() {
    const rig = await seedRig({ isr: 'read-only' });
    const fake = new FakeDevice('full');
    fake.script = [{ status: 'ack' }];
    rig.fn.attach(0, fake);
    await rig.driver.resetPort(0);
    const { sb, qh } = await ownSchedule(rig);
    const td = sb.td({ pid: PID_OUT, dev: 0, ep: 1, maxLen: 4, buffer: sb.buffer([1, 2, 3, 4]), ioc: true });
    rig.mem.writeU32(qh + 4, td);
    await rig.bus.wait(150);
    return finish(rig);
  },

  /** An inactive TD with IOC left as the QH element: an IOC interrupt every frame (the guest acknowledges each). */
  async 'ioc-storm'(isr: IsrMode = 'ack') {
    const rig = await seedRig({ isr });
    const { sb, qh } = await ownSchedule(rig);
    const td = sb.td({ pid: PID_IN, dev: 0, ep: 1, maxLen: 8, buffer: sb.buffer(8), ioc: true, active: false });
    rig.mem.writeU32(qh + 4, td);
    await rig.bus.wait(40);
    return finish(rig);
  },

  /** A TD with a PID that is none of IN/OUT/SETUP (the controller halts with HCPE). */
  async 'invalid-td'() {
    const rig = await seedRig();
    const { sb, qh } = await ownSchedule(rig);
    const td = sb.td({ pid: 0x55, dev: 0, ep: 0, maxLen: 8, buffer: sb.buffer(8) });
    rig.mem.writeU32(qh + 4, td);
    await rig.bus.wait(3);
    return finish(rig);
  },
};

/**
 * Linux uhci-hcd's schedule shape with FSBR on: an interrupt skeleton QH,
 * the async QH (element: Linux's inactive "term TD"), a full-speed control
 * QH running a GET_DESCRIPTOR(DEVICE) to the tablet, and the terminating
 * skeleton QH (element: the term TD) whose head points back to the control
 * QH; afterwards the control QH is unlinked and the terminating QH links to
 * itself (Linux's state until FSBR times out); last, the loop entered at
 * the terminating QH (the async QH skipping the control QH). Nothing here
 * is a bug.
 */
export async function recordLinuxFsbrShape(): Promise<Uint8Array> {
  const rig = await seedRig({ notes: 'Linux FSBR schedule shape' });
  await withTablet(rig);
  const sb = new ScheduleBuilder(rig.mem, 0x200000, 0x210000);
  const termTd = sb.td({ pid: PID_IN, dev: 0x7f, ep: 0, maxLen: 0, active: false });
  const term = sb.qh(LINK.bit.T, termTd);
  const fsControl = sb.qh(ScheduleBuilder.q(term), LINK.bit.T);
  const async = sb.qh(ScheduleBuilder.q(fsControl), termTd);
  const int1 = sb.qh(ScheduleBuilder.q(async), LINK.bit.T);
  rig.mem.writeU32(term, ScheduleBuilder.q(fsControl)); // FSBR loop: terminating QH → first FSBR QH
  sb.setFrame(ScheduleBuilder.q(int1));
  await rig.bus.outl(rig.io + 0x08, 0x200000);
  // GET_DESCRIPTOR(DEVICE) to address 1: SETUP, IN 8, IN 8, IN 2, OUT status (depth first).
  const setup = sb.buffer([0x80, 6, 0, 1, 0, 0, 18, 0]);
  const data = sb.buffer(18);
  const status = sb.td({ pid: PID_OUT, dev: 1, ep: 0, toggle: 1, maxLen: 0, ioc: true });
  const in3 = sb.td({ pid: PID_IN, dev: 1, ep: 0, toggle: 1, maxLen: 8, buffer: data + 16, link: ScheduleBuilder.vf(status) });
  const in2 = sb.td({ pid: PID_IN, dev: 1, ep: 0, toggle: 0, maxLen: 8, buffer: data + 8, link: ScheduleBuilder.vf(in3) });
  const in1 = sb.td({ pid: PID_IN, dev: 1, ep: 0, toggle: 1, maxLen: 8, buffer: data, link: ScheduleBuilder.vf(in2) });
  const st = sb.td({ pid: PID_SETUP, dev: 1, ep: 0, toggle: 0, maxLen: 8, buffer: setup, link: ScheduleBuilder.vf(in1) });
  rig.mem.writeU32(fsControl + 4, st);
  await rig.bus.wait(5);
  // Unlink the control QH: the async QH points at the terminating QH, which now loops on itself.
  rig.mem.writeU32(async, ScheduleBuilder.q(term));
  rig.mem.writeU32(term, ScheduleBuilder.q(term));
  await rig.bus.wait(5);
  // Linux-style queue reuse: the queue's trailing TD is inactive, then filled in and activated.
  const dummy = sb.td({ pid: PID_OUT, dev: 0, ep: 0, maxLen: 0, active: false });
  rig.mem.writeU32(fsControl + 4, dummy);
  rig.mem.writeU32(async, ScheduleBuilder.q(fsControl));
  rig.mem.writeU32(term, ScheduleBuilder.q(fsControl));
  await rig.bus.wait(3);
  rig.mem.writeU32(dummy + 8, makeToken(PID_IN, 1, 1, 0, 8));
  rig.mem.writeU32(dummy + 12, sb.buffer(8));
  rig.mem.writeU32(dummy + 4, (3 << 27) | TD_CTRL.bit.ACTIVE | TD_CTRL.bit.IOC);
  await rig.bus.wait(5);
  // A walk that read the async QH's link before the guest relinked it and the terminating QH's after
  // (real Xen, guest vCPU running during the walk): the loop is entered at the terminating QH.
  // The control QH still holds the active (NAKed) TD queued above.
  rig.mem.writeU32(async, ScheduleBuilder.q(term));
  await rig.bus.wait(3);
  return finish(rig);
}

/** Tablet + keyboard enumerated and polled (as the demo), with the given interrupt handling. */
export async function recordHidSession(isr: IsrMode, beforeStart?: (r: Recorder) => void): Promise<Uint8Array> {
  const rig = await seedRig({ isr, notes: 'tablet + keyboard', beforeStart });
  const tablet = createDevice('tablet', { clock: rig.clock, portPath: '1' });
  const keyboard = createDevice('keyboard', { clock: rig.clock, portPath: '2' });
  rig.fn.attach(0, tablet);
  rig.fn.attach(1, keyboard);
  const t = await rig.driver.enumerate(0);
  const k = await rig.driver.enumerate(1);
  tablet.moveTo(0x1234, 0x2345);
  keyboard.type('ok');
  for (const [d, n] of [[t, 2], [k, 6]] as const) {
    let toggle = 0;
    for (let i = 0; i < n; i++) {
      const r = await rig.driver.pollInterrupt(d, toggle, 30);
      if (!r) break;
      toggle ^= 1;
    }
  }
  await rig.bus.wait(150);
  return finish(rig);
}

/**
 * Not bugs: an interrupt TD refilled in place after it completed (SeaBIOS
 * does this), and an active TD rewritten after the guest took it out of the
 * schedule for a while (Linux fixes toggles of queued TDs with the queue
 * stopped), then linked again.
 */
export async function recordLegalTdReuse(): Promise<Uint8Array> {
  const rig = await seedRig({ notes: 'legal TD reuse' });
  const { tablet } = await withTablet(rig);
  const { sb, qh } = await ownSchedule(rig);
  const buf = sb.buffer(8);
  const td = sb.td({ pid: PID_IN, ...TABLET, toggle: 0, maxLen: 8, buffer: buf, ioc: true });
  tablet.moveTo(10, 10);
  rig.mem.writeU32(qh + 4, td);
  await rig.bus.wait(3);
  // Completed: refill the same TD in place with the next toggle and link it again.
  rig.mem.writeU32(td + 8, makeToken(PID_IN, 1, 1, 1, 8));
  rig.mem.writeU32(td + 4, (3 << 27) | TD_CTRL.bit.ACTIVE | TD_CTRL.bit.IOC);
  rig.mem.writeU32(qh + 4, td);
  tablet.moveTo(20, 20);
  await rig.bus.wait(3);
  // An active TD that NAKs; the guest unlinks the queue, rewrites the TD, links it again.
  const td2 = sb.td({ pid: PID_IN, ...TABLET, toggle: 0, maxLen: 8, buffer: buf, ioc: true });
  rig.mem.writeU32(qh + 4, td2);
  await rig.bus.wait(3);
  rig.mem.writeU32(qh + 4, LINK.bit.T);
  await rig.bus.wait(2);
  rig.mem.writeU32(td2 + 12, sb.buffer(8));
  rig.mem.writeU32(qh + 4, td2);
  tablet.moveTo(30, 30);
  await rig.bus.wait(3);
  return finish(rig);
}

/** Loops that are bugs, with the walk still making progress: a TD chain looping back, a two-QH loop with no empty QH in it. */
export async function recordLoop(kind: 'td-chain' | 'busy-qh-closes'): Promise<Uint8Array> {
  const rig = await seedRig({ notes: `loop: ${kind}` });
  const fake = new FakeDevice('full');
  fake.fallback = { status: kind === 'td-chain' ? 'ack' : 'nak' };
  rig.fn.attach(0, fake);
  await rig.driver.resetPort(0);
  const { sb, qh } = await ownSchedule(rig);
  if (kind === 'td-chain') {
    const a = sb.td({ pid: PID_OUT, dev: 0, ep: 1, toggle: 0, maxLen: 2, buffer: sb.buffer([1, 2]) });
    const b = sb.td({ pid: PID_OUT, dev: 0, ep: 1, toggle: 1, maxLen: 2, buffer: sb.buffer([3, 4]), link: ScheduleBuilder.vf(a) });
    rig.mem.writeU32(a, ScheduleBuilder.vf(b));
    rig.mem.writeU32(qh + 4, a);
  } else {
    // First QH → second QH → back to the first, both holding an active NAKing TD: no empty QH in the loop.
    const busy = sb.qh(ScheduleBuilder.q(qh), sb.td({ pid: PID_IN, dev: 0, ep: 1, maxLen: 8, buffer: sb.buffer(8) }));
    rig.mem.writeU32(qh + 4, sb.td({ pid: PID_IN, dev: 0, ep: 2, maxLen: 8, buffer: sb.buffer(8) }));
    rig.mem.writeU32(qh, ScheduleBuilder.q(busy));
  }
  await rig.bus.wait(3);
  return finish(rig);
}
