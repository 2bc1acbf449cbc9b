/**
 * Recorded scenarios for the trace tests: the built-in guest driver against
 * a recorded UHCI function on a manual clock.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { InProcessBus } from '../../src/guest/model-bus.js';
import { UhciGuestDriver } from '../../src/guest/uhci-driver.js';
import { ManualClock, type Clock, type TimerHandle } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';
import { createRecordedFunction, type RecordedUhciFunction } from '../../src/trace/recorded-function.js';
import { Recorder, type RecordingSummary } from '../../src/trace/recorder.js';
import { MemorySink, type TraceSink } from '../../src/trace/sink.js';
import { createDevice } from '../../src/usb/devices.js';
import { FakeDevice } from '../support/fake-device.js';
import { ScheduleBuilder } from '../support/schedule-builder.js';
import { PID_IN } from '../../src/usb/packet.js';
import { LINK, TD_CTRL } from '../../src/uhci/descriptors.js';

export interface Recorded {
  bytes: Uint8Array;
  summary: RecordingSummary;
  reports: number[][];
}

export interface Rig {
  clock: ManualClock;
  mem: FlatMemory;
  irq: LatchedIrq;
  fn: RecordedUhciFunction;
  bus: InProcessBus;
  driver: UhciGuestDriver;
  recorder: Recorder;
}

export function makeRig(sink: TraceSink, opts: { idleCoalesce?: number; notes?: string } = {}): Rig {
  const clock = new ManualClock();
  const mem = new FlatMemory(4 << 20);
  const irq = new LatchedIrq();
  const recorder = new Recorder(sink, { notes: opts.notes ?? 'test scenario', model: 'uhci-dm test' });
  const fn = createRecordedFunction({ variant: 'piix3', mem, irq, clock, recorder, idleCoalesce: opts.idleCoalesce });
  const bus = new InProcessBus(fn, mem, clock, 5);
  const driver = new UhciGuestDriver(bus);
  return { clock, mem, irq, fn, bus, driver, recorder };
}

/** Tablet on port 1, keyboard on port 2: probe, start, enumerate both, inject input, poll reports. */
export async function recordHidScenario(opts: { idleMs?: number; idleCoalesce?: number } = {}): Promise<Recorded> {
  const sink = new MemorySink();
  const rig = makeRig(sink, opts);
  const tablet = createDevice('tablet', { clock: rig.clock, portPath: '1' });
  const keyboard = createDevice('keyboard', { clock: rig.clock, portPath: '2' });
  rig.fn.attach(0, tablet);
  rig.fn.attach(1, keyboard);
  await rig.driver.probe();
  await rig.driver.start();
  const t = await rig.driver.enumerate(0);
  const k = await rig.driver.enumerate(1);
  tablet.moveTo(0x1234, 0x2345);
  keyboard.type('ok');
  const reports: number[][] = [];
  for (const [d, n] of [[t, 2], [k, 6]] as const) {
    let toggle = 0;
    for (let i = 0; i < n; i++) {
      const r = await rig.driver.pollInterrupt(d, toggle, 30);
      if (!r) break;
      toggle ^= 1;
      reports.push([...r]);
    }
  }
  // Snapshot, restore, and an idle stretch.
  rig.fn.loadState(rig.fn.saveState());
  await rig.bus.wait(opts.idleMs ?? 20);
  const summary = await rig.recorder.close();
  return { bytes: sink.bytes(), summary, reports };
}

/**
 * A FakeDevice that answers async: an IN TD in flight and completed later by
 * the device, one the guest deactivates (cancelled), one the guest unlinks
 * (cancelled when unseen), a remote wakeup and activity from the device,
 * then unplug.
 */
export async function recordAsyncScenario(): Promise<Recorded & { fake: FakeDevice; rig: Rig }> {
  const sink = new MemorySink();
  const rig = makeRig(sink);
  const { mem, bus, driver, clock } = rig;
  const fake = new FakeDevice('full');
  rig.fn.attach(0, fake);
  await driver.probe();
  await driver.start();
  await driver.resetPort(0);
  const io = driver.ioBase;
  const sb = new ScheduleBuilder(mem, 0x200000, 0x210000);
  const buf = sb.buffer(8);
  const qh = sb.qh();
  sb.setFrame(ScheduleBuilder.q(qh));
  await bus.outl(io + 0x08, 0x200000);

  // 1: async, completed by the device 3 ms later.
  fake.script = [{ status: 'async' }];
  const td1 = sb.td({ pid: PID_IN, ep: 1, maxLen: 8, buffer: buf, ioc: true });
  mem.writeU32(qh + 4, td1);
  clock.advance(3_000_000);
  fake.completeAsync('ack', [1, 2, 3]);
  clock.advance(2_000_000);
  const sts = await bus.inw(io + 0x02);
  await bus.outw(io + 0x02, sts);
  const r1 = sb.bytes(buf, 3);

  // 2: async, then the guest deactivates the TD: cancelled.
  fake.script = [{ status: 'async' }];
  const td2 = sb.td({ pid: PID_IN, ep: 1, toggle: 1, maxLen: 8, buffer: buf });
  mem.writeU32(qh + 4, td2);
  clock.advance(2_000_000);
  mem.writeU32(td2 + 4, sb.ctrlOf(td2) & ~TD_CTRL.bit.ACTIVE);
  clock.advance(2_000_000);

  // 3: async, then the guest unlinks it: cancelled once unseen long enough.
  fake.script = [{ status: 'async' }];
  const td3 = sb.td({ pid: PID_IN, ep: 1, maxLen: 8, buffer: buf });
  mem.writeU32(qh + 4, td3);
  clock.advance(2_000_000);
  mem.writeU32(qh + 4, LINK.bit.T);
  clock.advance(40_000_000);

  // Device-side events: activity and a remote wakeup, then unplug.
  fake.hooks?.activity?.();
  fake.hooks?.wakeup();
  clock.advance(1_000_000);
  rig.fn.detach(0);
  await bus.wait(3);
  rig.fn.reset();
  const summary = await rig.recorder.close();
  return { bytes: sink.bytes(), summary, reports: [r1], fake, rig };
}

/** The decompressed text of a trace. */
export function traceText(bytes: Uint8Array): string {
  return gunzipSync(bytes).toString('utf8');
}

/** A trace file from text (one gzip member). */
export function gzipText(text: string): Uint8Array {
  return new Uint8Array(gzipSync(text));
}

/** Event lines of a trace, parsed (header and summary left out). */
export function traceEvents(bytes: Uint8Array): unknown[][] {
  return traceText(bytes)
    .split('\n')
    .filter((l) => l.startsWith('['))
    .map((l) => JSON.parse(l) as unknown[]);
}

/**
 * A clock like a live transport's: time moves a little on every read and
 * timers fire late (by `lateNs`), so the controller sees irregular wake-ups
 * and runs several frames in one.
 */
export class LateClock implements Clock {
  private now = 0;
  private reads = 0;
  private nextId = 1;
  private readonly timers = new Map<number, { at: number; cb: () => void }>();
  constructor(readonly lateNs: number) {}
  nowNs(): number {
    return this.now + (this.reads++ % 7);
  }
  setTimer(atNs: number, cb: () => void): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { at: atNs + this.lateNs, cb });
    return { id };
  }
  clearTimer(h: TimerHandle): void {
    this.timers.delete(h.id);
  }
  advance(ns: number): void {
    const target = this.now + ns;
    for (;;) {
      let best: number | undefined;
      let bestAt = Infinity;
      for (const [id, t] of this.timers) if (t.at <= target && t.at < bestAt) [best, bestAt] = [id, t.at];
      if (best === undefined) break;
      const t = this.timers.get(best)!;
      this.timers.delete(best);
      this.now = Math.max(this.now, t.at);
      t.cb();
    }
    this.now = target;
  }
}

/** The tablet enumerated and polled on a LateClock. */
export async function recordLateClockScenario(lateNs: number): Promise<Recorded> {
  const sink = new MemorySink();
  const clock = new LateClock(lateNs);
  const mem = new FlatMemory(4 << 20);
  const recorder = new Recorder(sink, { notes: 'late clock' });
  const fn = createRecordedFunction({ mem, irq: new LatchedIrq(), clock, recorder });
  const tablet = createDevice('tablet', { clock, portPath: '1' });
  fn.attach(0, tablet);
  const bus = new InProcessBus(fn, mem, null, 5, async (ms) => clock.advance(ms * 1_000_000));
  const driver = new UhciGuestDriver(bus);
  await driver.probe();
  await driver.start();
  const d = await driver.enumerate(0);
  tablet.moveTo(100, 200);
  const r = await driver.pollInterrupt(d, 0, 30);
  await bus.wait(25);
  const summary = await recorder.close();
  return { bytes: sink.bytes(), summary, reports: r ? [[...r]] : [] };
}
