/**
 * A recording the guest can grow stops at its cap, and a disk that fails
 * under it stops the recording, not the model: one log line each time, the
 * model keeps answering, and what was written is a complete trace.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InProcessBus } from '../../src/guest/model-bus.js';
import { UhciGuestDriver } from '../../src/guest/uhci-driver.js';
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';
import { PcapWriteError, UsbmonPcapWriter } from '../../src/inspect/usbmon-pcap.js';
import { createRecordedFunction } from '../../src/trace/recorded-function.js';
import { Recorder } from '../../src/trace/recorder.js';
import { replayTrace } from '../../src/trace/replay.js';
import { MemorySink, type TraceSink } from '../../src/trace/sink.js';
import { createDevice } from '../../src/usb/devices.js';
import type { Urb } from '../../src/inspect/transfers.js';

interface Line {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

/** A tablet enumerated and polled through a recorded function; what the guest saw, and the log. */
async function session(sink: TraceSink | string): Promise<{ recorder: Recorder; log: Line[]; descriptorOk: boolean; reports: number }> {
  const log: Line[] = [];
  const logger = { log: (level: string, _c: string, msg: string, fields?: Record<string, unknown>) => void log.push({ level, msg, fields }) };
  const clock = new ManualClock();
  const mem = new FlatMemory(4 << 20);
  const opts = { logger, flushBytes: 2048, model: 'uhci-dm test' };
  const recorder = typeof sink === 'string' ? Recorder.toFile(sink, opts) : new Recorder(sink, opts);
  const fn = createRecordedFunction({ mem, irq: new LatchedIrq(), clock, recorder });
  const bus = new InProcessBus(fn, mem, clock, 5);
  const driver = new UhciGuestDriver(bus);
  const tablet = createDevice('tablet', { clock, portPath: '1' });
  fn.attach(0, tablet);
  await driver.probe();
  await driver.start();
  const d = await driver.enumerate(0);
  let reports = 0;
  let toggle = 0;
  for (let i = 0; i < 20; i++) {
    tablet.moveTo(100 * i, 50 * i);
    if (await driver.pollInterrupt(d, toggle, 30)) {
      reports++;
      toggle ^= 1;
    }
  }
  return { recorder, log, descriptorOk: d.vendorId === 0x0627, reports };
}

test('at its size cap the file ends as a complete trace (it replays), with one warning; the model goes on', async () => {
  const full = new MemorySink();
  const whole = await session(full);
  const total = await whole.recorder.close();

  const sink = new MemorySink(Math.floor(full.bytes().length / 3));
  const s = await session(sink);
  expect(s.descriptorOk).toBe(true);
  expect(s.reports).toBe(whole.reports); // the guest saw the same run
  expect(s.recorder.recording).toBe(false);
  expect(s.log).toHaveLength(1);
  expect(s.log[0]).toMatchObject({ level: 'warn', msg: expect.stringMatching(/limit reached; recording stopped/) });
  expect(s.log[0]!.fields).toMatchObject({ error: expect.stringMatching(/size limit of \d+ bytes/) });
  expect(s.recorder.writeError).toBeNull(); // a limit is not a failure
  const summary = await s.recorder.close();
  expect(summary.events).toBeGreaterThan(10);
  expect(summary.events).toBeLessThan(total.events);
  // Only the summary may pass the cap, and by less than one flush.
  expect(sink.bytes().length).toBeLessThanOrEqual(sink.maxBytes + 200);
  const r = await replayTrace(sink.bytes());
  expect(r).toMatchObject({ ok: true, events: summary.events });
});

/** A disk that takes `good` writes, then fails every one with `code`. */
class FailingSink implements TraceSink {
  readonly name = 'failing';
  writes = 0;
  constructor(
    private readonly good: number,
    private readonly code: string,
  ) {}
  write(): void {
    if (++this.writes > this.good) throw Object.assign(new Error(`${this.code}: write failed`), { code: this.code });
  }
  async close(): Promise<void> {}
}

test.each(['ENOSPC', 'EIO'])('a write failing with %s stops the recording with one error line; the model keeps answering', async (code) => {
  const sink = new FailingSink(3, code);
  const s = await session(sink);
  expect(s.descriptorOk).toBe(true);
  expect(s.reports).toBeGreaterThan(0);
  expect(s.log).toEqual([{ level: 'error', msg: expect.stringMatching(/trace write failed; recording stopped/), fields: expect.objectContaining({ file: 'failing', error: `${code}: write failed` }) }]);
  const writes = sink.writes;
  expect(s.recorder.writeError).toBe(`${code}: write failed`);
  await expect(s.recorder.close()).resolves.toMatchObject({ events: expect.any(Number) });
  expect(sink.writes).toBe(writes); // nothing more tried after the failure
});

test('a full disk (/dev/full) under --record: one error line, the run completes', async () => {
  const s = await session('/dev/full');
  expect(s.descriptorOk).toBe(true);
  expect(s.log.filter((l) => l.level === 'error')).toHaveLength(1);
  expect(s.log[0]!.fields).toMatchObject({ file: '/dev/full', error: expect.stringMatching(/ENOSPC/) });
  await s.recorder.close();
  expect(s.recorder.writeError).toMatch(/ENOSPC/); // what uhci-dm xen reports at the end instead of "trace written"
});

const URB: Urb = {
  id: 1,
  type: 'interrupt',
  port: 0,
  devaddr: 1,
  endpoint: 0x81,
  setup: null,
  setupBytes: null,
  submitNs: 0,
  completeNs: 1_000_000,
  submitFrame: 1,
  completeFrame: 1,
  status: 0,
  requested: 8,
  data: new Uint8Array(8),
  interval: 10,
  td: 0x1000,
};

test('a pcap stops at its cap and stays a valid file; a full disk is a clear error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'uhci-pcap-'));
  try {
    const path = join(dir, 'cap.pcap');
    const w = new UsbmonPcapWriter(path, 1, 24 + 3 * 200);
    w.setStart(0);
    let written = 0;
    expect(() => {
      for (;;) {
        w.write(URB);
        written++;
      }
    }).toThrow(new PcapWriteError(`pcap ${path} reached its size limit of ${24 + 3 * 200} bytes`));
    expect(written).toBeGreaterThan(0);
    expect(statSync(path).size).toBe(w.bytesWritten);
    expect(readFileSync(path).length).toBeLessThanOrEqual(24 + 3 * 200);
    w.close();
    expect(() => new UsbmonPcapWriter('/dev/full')).toThrow(PcapWriteError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
