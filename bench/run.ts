/**
 * `npm run bench`: prints measured ratios, side by side in one run (never a
 * timed test). Lines: CPU of our model vs QEMU 7.2 over 10 s for the idle
 * tablet schedule (Linux skeleton + NAKing interrupt TD) and a busy
 * schedule; RSS of one instance.
 */
import { benchCpu } from './cpu.js';
import { benchReplay } from './replay.js';

const seconds = Number(process.env.BENCH_SECONDS ?? '10');

async function main(): Promise<void> {
  for (const mode of ['idle', 'busy'] as const) {
    const r = await benchCpu(mode, seconds);
    process.stdout.write(
      `cpu ${mode.padEnd(4)} ${r.seconds}s: model ${r.modelCpuMs.toFixed(1)} ms, QEMU 7.2 ${r.qemuCpuMs.toFixed(1)} ms, ratio ${r.ratio.toFixed(2)} (goal ${mode === 'idle' ? '<= 0.5' : '<= 0.5'})\n`,
    );
    if (mode === 'idle') process.stdout.write(`rss  model ${(r.modelRssBytes / 1048576).toFixed(1)} MiB (one instance, 128 MiB guest RAM buffer)\n`);
  }
  const rp = await benchReplay(seconds);
  process.stdout.write(`replay idle tablet trace: ${rp.traceSeconds} s of guest time replayed in ${rp.replaySeconds.toFixed(3)} s = ${rp.ratio.toFixed(0)}x real time (goal >= 100x)\n`);
}

main().catch((e) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
