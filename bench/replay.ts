/**
 * Replay speed: record an idle tablet (enumerated by the built-in guest
 * driver, then polled by one NAKing interrupt TD on Linux's schedule
 * skeleton) for `seconds` of guest time on a manual clock, then time the
 * replay of that trace. Prints the replay speed as a multiple of real time
 * (goal: >= 100x for an idle schedule).
 *
 * Run: npm run -s build && node dist/bench/replay.js [seconds] [idleCoalesce]
 */
import { fileURLToPath } from 'node:url';
import { ManualClock } from '../src/platform/clock.js';
import { LatchedIrq } from '../src/platform/irq.js';
import { FlatMemory } from '../src/platform/memory.js';
import { createRecordedFunction } from '../src/trace/recorded-function.js';
import { Recorder } from '../src/trace/recorder.js';
import { replayTrace } from '../src/trace/replay.js';
import { MemorySink } from '../src/trace/sink.js';
import { idleTabletGuest } from '../test/support/linux-schedule.js';

export interface ReplayBenchResult {
  /** Guest time covered by the trace divided by the wall time of its replay. */
  ratio: number;
  traceSeconds: number;
  replaySeconds: number;
  events: number;
  frames: number;
  traceBytes: number;
  idleCoalesce: number;
}

/** Record `seconds` of an idle tablet schedule (in memory). */
export async function recordIdleTrace(seconds: number, idleCoalesce: number): Promise<{ bytes: Uint8Array; endNs: number }> {
  const clock = new ManualClock();
  const mem = new FlatMemory(16 << 20);
  const sink = new MemorySink();
  const recorder = new Recorder(sink, { notes: `bench: idle tablet, ${seconds} s`, model: 'uhci-dm bench' });
  const fn = createRecordedFunction({ mem, irq: new LatchedIrq(), clock, recorder, idleCoalesce });
  const { bus, driver } = await idleTabletGuest(fn, mem, clock, clock);
  // Idle: the guest looks at USBSTS now and then, as a driver's timer would.
  const stepMs = 250;
  for (let t = 0; t < seconds * 1000; t += stepMs) {
    await bus.wait(stepMs);
    await bus.inw(driver.ioBase + 0x02);
  }
  const summary = await recorder.close();
  return { bytes: sink.bytes(), endNs: summary.endNs };
}

export async function benchReplay(seconds = 10, idleCoalesce = 128): Promise<ReplayBenchResult> {
  const { bytes, endNs } = await recordIdleTrace(seconds, idleCoalesce);
  // One warm-up replay (JIT), then the best of three (the machine may be shared).
  let r = await replayTrace(bytes);
  let wallNs = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = process.hrtime.bigint();
    r = await replayTrace(bytes);
    wallNs = Math.min(wallNs, Number(process.hrtime.bigint() - t0));
  }
  if (!r.ok) throw new Error(`bench trace did not replay: event ${r.divergence.event}: ${r.divergence.expected} / ${r.divergence.got}`);
  return {
    ratio: endNs / wallNs,
    traceSeconds: endNs / 1e9,
    replaySeconds: wallNs / 1e9,
    events: r.events,
    frames: r.frames,
    traceBytes: bytes.length,
    idleCoalesce,
  };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? process.env.BENCH_SECONDS ?? '10');
  const coalesces = process.argv[3] ? [Number(process.argv[3])] : [1, 128];
  for (const c of coalesces) {
    const r = await benchReplay(seconds, c);
    process.stdout.write(
      `replay idle (idleCoalesce ${c}): ${r.traceSeconds.toFixed(1)} s of guest time in ${(r.replaySeconds * 1000).toFixed(1)} ms = ${r.ratio.toFixed(0)}x real time ` +
        `(goal >= 100x; ${r.events} events, ${r.frames} frames, ${(r.traceBytes / 1024).toFixed(1)} KiB trace)\n`,
    );
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    process.stderr.write(`bench replay: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
