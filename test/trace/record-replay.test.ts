import { formatDivergence } from '../../src/trace/divergence.js';
import { replayTrace, type ReplayResult } from '../../src/trace/replay.js';
import { TRACE_FORMAT, TRACE_VERSION } from '../../src/trace/format.js';
import { MemorySink } from '../../src/trace/sink.js';
import { createDevice } from '../../src/usb/devices.js';
import { InProcessBus } from '../../src/guest/model-bus.js';
import { UhciGuestDriver } from '../../src/guest/uhci-driver.js';
import { RealClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';
import { createRecordedFunction } from '../../src/trace/recorded-function.js';
import { Recorder } from '../../src/trace/recorder.js';
import { makeRig, recordAsyncScenario, recordHidScenario, recordLateClockScenario, traceEvents, traceText } from './scenarios.js';

function expectOk(r: ReplayResult): asserts r is Extract<ReplayResult, { ok: true }> {
  if (!r.ok) throw new Error('unexpected divergence:\n' + formatDivergence(r.divergence));
}

describe('record and replay', () => {
  test('HID tablet + keyboard enumeration, input, snapshot/restore and idle replay exactly', async () => {
    const rec = await recordHidScenario();
    // The scenario really moved data: the tablet report carries the injected position.
    expect(rec.reports[0]!.slice(1, 5)).toEqual([0x34, 0x12, 0x45, 0x23]);
    expect(rec.summary.frames).toBeGreaterThan(200);
    const r = await replayTrace(rec.bytes);
    expectOk(r);
    expect(r.events).toBe(rec.summary.events);
    expect(r.frames).toBe(rec.summary.frames);
    const kinds = new Set(traceEvents(rec.bytes).map((e) => e[0]));
    for (const k of ['N', 'A', 'cr', 'cw', 'pr', 'pw', 't', 'S', 'L', 'K']) expect(kinds).toContain(k);
  });

  test('async packets: completion, cancel on deactivation and on unlink, wakeup, activity, unplug, PCI reset', async () => {
    const rec = await recordAsyncScenario();
    expect(rec.reports[0]).toEqual([1, 2, 3]);
    expect(rec.fake.cancelled).toHaveLength(2);
    const text = traceText(rec.bytes);
    expect(text).toMatch(/\["C",0,0,1,"ack",3,"010203"/);
    expect(text.match(/\["x",0,\d+,\[\]\]/g)).toHaveLength(2);
    const kinds = traceEvents(rec.bytes).map((e) => e[0]);
    for (const k of ['C', 'W', 'K', 'D', 'X']) expect(kinds).toContain(k);
    expectOk(await replayTrace(rec.bytes));
  });

  test('a live-style clock (time moves on every read, timers fire late) replays exactly', async () => {
    const rec = await recordLateClockScenario(1_700_000);
    expect(rec.reports).toHaveLength(1);
    const events = traceEvents(rec.bytes);
    // Timers fired late: some timer events run two frames (two frame-list reads;
    // the driver's frame list is at 0x100000).
    const frameListReads = (e: unknown[]) =>
      (e[4] as unknown[]).filter((i) => {
        const a = typeof i === 'number' ? i : Array.isArray(i) && typeof i[0] === 'number' ? i[0] : -1;
        return a >= 0x100000 && a < 0x101000;
      }).length;
    expect(events.filter((e) => e[0] === 't').some((e) => frameListReads(e) >= 2)).toBe(true);
    const deltas = events.filter((e) => e[0] === 't').map((e) => e[1] as number);
    expect(deltas.some((d) => d % 1_000_000 !== 0)).toBe(true);
    expectOk(await replayTrace(rec.bytes));
  });

  test('a recording on the real clock (live timers, input arriving between frames) replays exactly', async () => {
    const clock = new RealClock();
    const mem = new FlatMemory(4 << 20);
    const sink = new MemorySink();
    const recorder = new Recorder(sink, { notes: 'real clock' });
    const fn = createRecordedFunction({ mem, irq: new LatchedIrq(), clock, recorder, idleCoalesce: 16 });
    const tablet = createDevice('tablet', { clock, portPath: '1' });
    fn.attach(0, tablet);
    const bus = new InProcessBus(fn, mem, null, 5);
    const driver = new UhciGuestDriver(bus);
    await driver.probe();
    await driver.start();
    const d = await driver.enumerate(0);
    tablet.moveTo(300, 400);
    expect(await driver.pollInterrupt(d, 0, 50)).not.toBeNull();
    await new Promise((r) => setTimeout(r, 100));
    await bus.outw(driver.ioBase, 0); // stop: no timers left behind
    const summary = await recorder.close();
    const r = await replayTrace(sink.bytes());
    expectOk(r);
    expect(r.frames).toBe(summary.frames);
    expect(summary.frames).toBeGreaterThan(50);
  });

  test('file layout: header, construction first, summary last; many gzip members read as one stream', async () => {
    const sink = new MemorySink();
    const rig = makeRig(sink, { notes: 'layout' });
    // Tiny flush size: one gzip member every few events.
    (rig.recorder as unknown as { opts: { flushBytes: number } }).opts.flushBytes = 256;
    rig.fn.attach(0, createDevice('mouse', { clock: rig.clock, portPath: '1' }));
    await rig.driver.probe();
    await rig.driver.start();
    await rig.driver.enumerate(0);
    const summary = await rig.recorder.close();
    const bytes = sink.bytes();
    let members = 0;
    for (let i = 0; i + 2 < bytes.length; i++) if (bytes[i] === 0x1f && bytes[i + 1] === 0x8b && bytes[i + 2] === 8) members++;
    expect(members).toBeGreaterThan(10);
    const lines = traceText(bytes).trimEnd().split('\n');
    const header = JSON.parse(lines[0]!);
    expect(header).toMatchObject({ format: TRACE_FORMAT, version: TRACE_VERSION, model: 'uhci-dm test', notes: 'layout', options: { variant: 'piix3' } });
    expect(Date.parse(header.created)).not.toBeNaN();
    expect(JSON.parse(lines[1]!)[0]).toBe('N');
    expect(JSON.parse(lines[lines.length - 1]!)).toEqual({ summary });
    expect(summary.events).toBe(lines.length - 2);
    const r = await replayTrace(bytes);
    expectOk(r);
    expect(r.frames).toBe(summary.frames);
  });

  test('an idle schedule re-reads known memory without repeating the bytes', async () => {
    // Past one trip round the 1024-entry frame list, every entry is known.
    const rec = await recordHidScenario({ idleMs: 1500 });
    const events = traceEvents(rec.bytes);
    const lastTimers = events.filter((e) => e[0] === 't').slice(-50);
    // Idle frames: every read is a known one (bare address), no hex.
    const withHex = lastTimers.filter((e) => JSON.stringify(e[4]).match(/\[\d+,"[0-9a-f]+"\]/));
    expect(lastTimers).toHaveLength(50);
    expect(withHex).toEqual([]);
    expect(lastTimers.some((e) => (e[4] as unknown[]).some((i) => typeof i === 'number'))).toBe(true);
    expectOk(await replayTrace(rec.bytes));
  });
});
