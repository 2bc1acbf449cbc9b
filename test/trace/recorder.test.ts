import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { replayCommand } from '../../src/cli/replay.js';
import type { Clock, TimerHandle } from '../../src/platform/clock.js';
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';
import { createRecordedFunction } from '../../src/trace/recorded-function.js';
import { Recorder, RecorderStateError, RecordingClock } from '../../src/trace/recorder.js';
import { replayTrace } from '../../src/trace/replay.js';
import { MemorySink } from '../../src/trace/sink.js';
import { FakeDevice } from '../support/fake-device.js';
import { traceEvents } from './scenarios.js';

/** Time moves by 1 ns on every read. */
class DriftingClock implements Clock {
  t = 5000;
  nowNs(): number {
    return this.t++;
  }
  setTimer(_at: number, _cb: () => void): TimerHandle {
    return { id: 1 };
  }
  clearTimer(_h: TimerHandle): void {}
}

test('the model sees the clock stand still during an event, and the event carries that time', async () => {
  const inner = new DriftingClock();
  const sink = new MemorySink();
  const rec = new Recorder(sink);
  rec.start(inner, { variant: 'piix3' });
  const clock = new RecordingClock(inner, rec);
  const seen = rec.input(['cr', 0, 0, 4], () => [clock.nowNs(), clock.nowNs(), clock.nowNs()]);
  expect(new Set(seen).size).toBe(1);
  expect(seen[0]).toBe(5000);
  expect(clock.nowNs()).toBeGreaterThan(5000); // outside events it is the transport's clock
  await rec.close();
  const [ev] = traceEvents(sink.bytes());
  expect(ev![1]).toBe(5000);
});

test('outputs outside any input are kept as an orphan event, which replay reports', async () => {
  const sink = new MemorySink();
  const rec = new Recorder(sink);
  const clock = new ManualClock();
  const fn = createRecordedFunction({ mem: new FlatMemory(1 << 16), irq: new LatchedIrq(), clock, recorder: rec });
  clock.advance(10);
  rec.output(['i', 1]);
  await rec.close();
  expect(traceEvents(sink.bytes()).map((e) => e[0])).toEqual(['N', 'o']);
  const r = await replayTrace(sink.bytes());
  expect(r.ok).toBe(false);
  if (!r.ok) expect(r.divergence).toMatchObject({ event: 2, kind: 'o', tNs: 10 });
  void fn;
});

test('a recorder records one function and closes once', async () => {
  const rec = new Recorder(new MemorySink());
  const parts = { mem: new FlatMemory(1 << 16), irq: new LatchedIrq(), clock: new ManualClock(), recorder: rec };
  createRecordedFunction(parts);
  expect(() => createRecordedFunction(parts)).toThrow(RecorderStateError);
  await rec.close();
  await expect(rec.close()).rejects.toThrow(RecorderStateError);
});

test('the recorded function is the same API: detach returns the caller device, errors are recorded and replayed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'uhci-trace-'));
  try {
    const path = join(dir, 'api.uhcitrace.gz');
    const rec = Recorder.toFile(path, { notes: 'api' });
    const clock = new ManualClock();
    const fn = createRecordedFunction({ mem: new FlatMemory(1 << 16), irq: new LatchedIrq(), clock, recorder: rec, variant: 'piix4' });
    const dev = new FakeDevice('low');
    fn.attach(1, dev);
    expect(() => fn.attach(1, new FakeDevice())).toThrow(/occupied/);
    expect(fn.ioRead(0x12, 2) & 0x0101).toBe(0x0101); // CCS + LSDA: low speed device connected
    expect(fn.detach(1)).toBe(dev);
    expect(fn.detach(1)).toBeNull();
    const summary = await rec.close();
    expect(summary.events).toBe(6);
    expect(readFileSync(path).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    let out = '';
    expect(await replayCommand([path], { out: (s) => (out += s) })).toBe(0);
    expect(out).toBe('replay ok: 6 events, 0 frames\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
