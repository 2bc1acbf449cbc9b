/**
 * `npm run fuzz -- --runs N [--seed S] [--mode both|controller|ioreq]`
 *
 * Runs N hostile-guest cases: by default one in four drives the Xen ioreq
 * server with hostile ioreqs (ioreq-harness.ts), the others the controller
 * with hostile schedules, registers and devices (harness.ts). Work is done in
 * chunks of 5000 cases (chunk k uses seed S+k*5000 for the controller part and
 * S+k*5000+1 for the ioreq part), so a failure is reproduced from the seed and
 * path in its report. Failures do not stop the run; each one's report goes
 * to stderr (the first 10 in full). Progress to stderr every 50,000 cases.
 * Controller cases whose frames were replayed are run again with replay off
 * and compared; the totals are reported, and a controller run of 1,000
 * cases or more in which no frame was replayed counts as a failure (the
 * replay path would not have been fuzzed).
 * Last line on stdout: `fuzz: N cases, F failures`.
 */
import { fuzz } from './harness.js';
import { fuzzIoreq } from './ioreq-harness.js';

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

function modeArg(): 'both' | 'controller' | 'ioreq' {
  const i = process.argv.indexOf('--mode');
  if (i < 0) return 'both';
  const m = process.argv[i + 1];
  if (m === 'both' || m === 'controller' || m === 'ioreq') return m;
  process.stderr.write('fuzz: --mode is both, controller or ioreq\n');
  process.exit(2);
}

const runs = arg('runs', 10000);
const seed = arg('seed', Date.now() % 2 ** 31);
const mode = modeArg();
const CHUNK = 5000;
const PROGRESS_EVERY = 50000;
/** Share of ioreq cases in `both` mode. */
const IOREQ_SHARE = 0.25;

let done = 0;
let controllerCases = 0;
const replay = { cases: 0, frames: 0, walked: 0 };
let failures = 0;
let nextProgress = PROGRESS_EVERY;
const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(0)} s`;

function report(kind: string, error: string | undefined): void {
  failures++;
  if (failures <= 10 && error) process.stderr.write(`fuzz: ${kind} failure:\n${error}\n`);
  else process.stderr.write(`fuzz: ${kind} failure #${failures}${error ? ': ' + error.split('\n').find((l) => l.startsWith('Got ')) : ''}\n`);
}

process.stderr.write(`fuzz: ${runs} cases, mode ${mode}, seed ${seed}\n`);
while (done < runs) {
  const n = Math.min(CHUNK, runs - done);
  const nIoreq = mode === 'ioreq' ? n : mode === 'controller' ? 0 : Math.round(n * IOREQ_SHARE);
  const nController = n - nIoreq;
  const chunkSeed = (seed + done) % 2 ** 31;
  if (nController) {
    const r = fuzz(nController, chunkSeed);
    if (r.failures) report('controller', r.error);
    controllerCases += r.runs;
    replay.cases += r.casesReplayed;
    replay.frames += r.framesReplayed;
    replay.walked += r.framesWalked;
    // A failing chunk ends early: count its cases as run, the rest of the chunk is skipped.
    done += r.failures ? r.runs : nController;
  }
  if (nIoreq) {
    const r = await fuzzIoreq(nIoreq, (chunkSeed + 1) % 2 ** 31);
    if (r.failures) report('ioreq', r.error);
    done += r.failures ? r.runs : nIoreq;
  }
  if (done >= nextProgress) {
    process.stderr.write(`fuzz: ${done}/${runs} cases, ${failures} failures (${elapsed()})\n`);
    while (nextProgress <= done) nextProgress += PROGRESS_EVERY;
  }
}
if (controllerCases) {
  process.stderr.write(`fuzz: ${replay.frames} frames replayed, ${replay.walked} walked; ${replay.cases} of ${controllerCases} controller cases replayed frames and matched a run without replay\n`);
  if (controllerCases >= 1000 && replay.frames === 0) report('controller', 'no frame was replayed: the replay path was not fuzzed');
}
process.stderr.write(`fuzz: seed ${seed}, mode ${mode}, ${elapsed()}\n`);
process.stdout.write(`fuzz: ${done} cases, ${failures} failures\n`);
process.exit(failures ? 1 : 0);
