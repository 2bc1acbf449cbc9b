/**
 * `npm run test:oracle`: the differential oracle. Runs hand-written and
 * generated programs against QEMU 7.2 (piix3-usb-uhci + usb-tablet, over
 * qtest) and against our model, prints every difference in decoded form and
 * ends with `oracle: N programs, M differences`. Exit status 1 when a
 * difference is not in the documented allow-list (deviations.ts).
 *
 * Options:
 *   --count N      generated programs (default 500)
 *   --seed S       base seed of the generated programs (default 20261125)
 *   --only NAME    run one program (`hand:...` or `gen:<kind>#<seed>`)
 *   --self-check   compare QEMU with a second QEMU (validates the oracle)
 *   --max-print N  print at most N differences in full (default 200)
 *   --no-hand      skip the hand-written programs
 *   --dump         print QEMU's observations of the (--only) program and exit
 */
import { performance } from 'node:perf_hooks';
import { formatObservation } from './compare.js';
import { runProgram } from './interpret.js';
import { runOracle } from './oracle.js';
import { createModelTarget } from './model-factory.js';
import { generatedPrograms, handWrittenPrograms, programByName } from './programs.js';
import type { Program } from './program.js';
import { QemuTarget } from './qemu-target.js';
import type { Target } from './target.js';

interface Options {
  count: number;
  seed: number;
  only?: string;
  selfCheck: boolean;
  maxPrint: number;
  hand: boolean;
  dump: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { count: 500, seed: 20261125, selfCheck: false, maxPrint: 200, hand: true, dump: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--count') o.count = Number(next());
    else if (a === '--seed') o.seed = Number(next());
    else if (a === '--only') o.only = next();
    else if (a === '--self-check') o.selfCheck = true;
    else if (a === '--max-print') o.maxPrint = Number(next());
    else if (a === '--no-hand') o.hand = false;
    else if (a === '--dump') o.dump = true;
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

/** `gen:control#12` → `gen:control`, `hand:io-write/2@0x3=ones` → `hand:io-write`. */
function programKind(name: string): string {
  return name.replace(/#\d+$/, '').replace(/\/.*$/, '');
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  let programs: Program[];
  if (o.only) {
    const p = programByName(o.only);
    if (!p) throw new Error(`no program named ${o.only}`);
    programs = [p];
  } else {
    programs = [...(o.hand ? handWrittenPrograms() : []), ...generatedPrograms(o.seed, o.count)];
  }
  const t0 = performance.now();
  const qemu = await QemuTarget.start();
  const extra: Target[] = [];
  // Never leave QEMU behind: on Ctrl-C / SIGTERM kill it before exiting.
  const onSignal = (sig: NodeJS.Signals): void => {
    void Promise.allSettled([qemu.close(), ...extra.map((t) => t.close())]).then(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (o.dump) {
      for (const p of programs) for (const ob of await runProgram(qemu, p)) console.log(formatObservation(p, ob));
      return 0;
    }
    const makeCandidate = async (): Promise<Target> => {
      if (!o.selfCheck) return createModelTarget();
      const t = await QemuTarget.start();
      extra.push(t);
      return t;
    };
    const r = await runOracle(programs, qemu, makeCandidate, (l) => console.log(l), o.maxPrint);
    const byLabel = new Map<string, number>();
    for (const d of r.differences) {
      const key = `${programKind(d.program)}  ${d.label.replace(/@0x[0-9a-f]+/, '@*').replace(/^io\[0x[0-9a-f]+\]/, 'io[*]')}`;
      byLabel.set(key, (byLabel.get(key) ?? 0) + 1);
    }
    if (byLabel.size) {
      console.log('differences by program kind and observation:');
      for (const [k, n] of [...byLabel].sort((a, b) => b[1] - a[1])) console.log(`  ${n}\t${k}`);
    }
    if (r.forgiven.length) {
      const ids = new Map<string, number>();
      for (const f of r.forgiven) ids.set(f.id, (ids.get(f.id) ?? 0) + 1);
      console.log(`${r.forgiven.length} differences forgiven by test/oracle/deviations.ts: ${[...ids].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
    }
    console.log(`(${((performance.now() - t0) / 1000).toFixed(1)} s, candidate: ${o.selfCheck ? 'second QEMU' : 'model'})`);
    console.log(`oracle: ${r.programs} programs, ${r.differences.length} differences`);
    return r.differences.length > 0 ? 1 : 0;
  } finally {
    await qemu.close();
    for (const t of extra) await t.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(2);
  },
);
