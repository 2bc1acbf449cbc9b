/** `npm run fuzz -- --runs N [--seed S]`: prints `fuzz: N cases, F failures`. */
import { fuzz } from './harness.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) {
    process.stderr.write(`fuzz: --${name} needs a non-negative integer\n`);
    process.exit(2);
  }
  return v;
}

const runs = arg('runs', 10000);
const seed = arg('seed', Date.now() % 2 ** 31);
const chunk = 5000;
let done = 0;
let failures = 0;
const t0 = Date.now();
while (done < runs && failures === 0) {
  const n = Math.min(chunk, runs - done);
  const r = fuzz(n, seed + done);
  done += r.runs;
  failures += r.failures;
  if (r.error) process.stderr.write(r.error + '\n');
  if (runs > chunk) process.stderr.write(`fuzz: ${done}/${runs} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
}
process.stdout.write(`fuzz: ${done} cases, ${failures} failures (seed ${seed})\n`);
process.exit(failures ? 1 : 0);
