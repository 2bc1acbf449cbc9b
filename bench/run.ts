/**
 * `npm run bench`: prints measured ratios, side by side in one run (never a
 * timed test). Lines: CPU of our model vs QEMU 7.2 over 10 s for the idle
 * tablet schedule (Linux skeleton + NAKing interrupt TD) and a busy
 * schedule; RSS of one instance; the same idle tablet once the guest has
 * autosuspended it (port suspended, controller in global suspend); the busy
 * schedule with frame replay off (every frame walked) for comparison.
 */
import { benchCpu } from './cpu.js';
import { benchReplay } from './replay.js';
import { measureSaturation, specLimit, type TransferType } from './saturation.js';
import { plotFrameCosts } from './frame-plot.js';
import { benchIoreq } from './ioreq.js';

const seconds = Number(process.env.BENCH_SECONDS ?? '10');

async function main(): Promise<void> {
  for (const mode of ['idle', 'busy'] as const) {
    const r = await benchCpu(mode, seconds);
    process.stdout.write(
      `cpu ${mode.padEnd(4)} ${r.seconds}s: model ${r.modelCpuMs.toFixed(1)} ms, QEMU 7.2 ${r.qemuCpuMs.toFixed(1)} ms, ratio ${r.ratio.toFixed(2)} (goal ${mode === 'idle' ? '<= 0.1' : '<= 0.5'})\n`,
    );
    if (mode === 'idle') {
      process.stdout.write(`cpu idle share: model ${((r.modelCpuMs / (r.seconds * 1000)) * 100).toFixed(2)} % of one core with RS=1 and a tablet, QEMU 7.2 ${((r.qemuCpuMs / (r.seconds * 1000)) * 100).toFixed(2)} %, ratio ${r.ratio.toFixed(2)}\n`);
      process.stdout.write(`rss  model ${(r.modelRssBytes / 1048576).toFixed(1)} MiB (one instance, 128 MiB guest RAM buffer)\n`);
    }
  }
  for (const type of ['control', 'interrupt', 'bulk', 'isochronous'] as TransferType[]) {
    const sizes = type === 'isochronous' ? [8, 64, 256, 1023] : [1, 8, 16, 32, 64];
    const cells = sizes.map((n) => {
      const got = measureSaturation(type, n);
      const spec = specLimit(type, n);
      return `${n}B ${got}/${spec} (${(got / spec).toFixed(2)})`;
    });
    process.stdout.write(`saturation ${type.padEnd(11)} per frame model/spec: ${cells.join(', ')}\n`);
  }
  const plot = await plotFrameCosts('bench/out/frame-cost.svg');
  process.stdout.write(`plot bench/out/frame-cost.svg: per-frame cost median busy ${plot.busyMedianUs.toFixed(1)} µs, idle ${plot.idleMedianUs.toFixed(1)} µs\n`);
  try {
    const io = await benchIoreq(1, 2);
    process.stdout.write(`ioreq round trips (simulated hypervisor, 1 vCPU): ${JSON.stringify(io)}\n`);
  } catch (e) {
    process.stdout.write(`ioreq bench failed: ${(e as Error).message}\n`);
  }
  // The idle line again with the deepest idle coalescing (1 wake-up per 1024 frames).
  const deep = await benchCpu('idle', seconds, { coalesce: 1024 });
  process.stdout.write(
    `cpu idle 10s, --idle-coalesce 1024: model ${deep.modelCpuMs.toFixed(1)} ms, QEMU 7.2 ${deep.qemuCpuMs.toFixed(1)} ms, ratio ${deep.ratio.toFixed(2)} (goal <= 0.1)\n`,
  );
  const sus = await benchCpu('suspended', seconds);
  process.stdout.write(
    `cpu idle tablet, guest autosuspended (port suspended, EGSM, halted) ${sus.seconds}s: model ${sus.modelCpuMs.toFixed(1)} ms, QEMU 7.2 ${sus.qemuCpuMs.toFixed(1)} ms, ratio ${sus.ratio.toFixed(2)} (goal <= 0.1)\n`,
  );
  const walk = await benchCpu('busy', seconds, { replay: false });
  process.stdout.write(
    `cpu busy ${walk.seconds}s, frame replay off (every frame walked): model ${walk.modelCpuMs.toFixed(1)} ms, QEMU 7.2 ${walk.qemuCpuMs.toFixed(1)} ms, ratio ${walk.ratio.toFixed(2)}\n`,
  );
  const rp = await benchReplay(seconds);
  process.stdout.write(`replay idle tablet trace: ${rp.traceSeconds} s of guest time replayed in ${rp.replaySeconds.toFixed(3)} s = ${rp.ratio.toFixed(0)}x real time (goal >= 100x)\n`);
}

main().catch((e) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
