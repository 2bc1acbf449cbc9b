/**
 * The oracle loop shared by run.ts and the jest test: run each program on the
 * reference (QEMU) and on the candidate (model), compare, filter the
 * documented deviations.
 */
import { compareObservations, formatDifference, type Difference } from './compare.js';
import { classify } from './deviations.js';
import { runProgram, type Observation } from './interpret.js';
import type { Program } from './program.js';
import type { Target } from './target.js';

export interface OracleResult {
  programs: number;
  differences: Difference[];
  forgiven: (Difference & { id: string })[];
}

/** Run `programs` on `reference` and on targets from `makeCandidate` (recreated after a crash). */
export async function runOracle(
  programs: Program[],
  reference: Target,
  makeCandidate: () => Promise<Target>,
  report: (line: string) => void,
  maxPrint = Infinity,
): Promise<OracleResult> {
  const differences: Difference[] = [];
  const forgiven: (Difference & { id: string })[] = [];
  let candidate = await makeCandidate();
  let printed = 0;
  for (const p of programs) {
    const expected = await runProgram(reference, p);
    let got: Observation[];
    let diffs: Difference[];
    try {
      got = await runProgram(candidate, p);
      diffs = compareObservations(p, expected, got);
    } catch (err) {
      diffs = [
        {
          program: p.name,
          step: -1,
          action: 'run program',
          label: 'exception',
          expected: 'no exception',
          got: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
          detail: err instanceof Error && err.stack ? err.stack.split('\n').slice(1, 6) : [],
        },
      ];
      await candidate.close();
      candidate = await makeCandidate();
    }
    const c = classify(diffs, p.steps);
    forgiven.push(...c.forgiven);
    for (const d of c.unexplained) {
      differences.push(d);
      if (printed++ < maxPrint) report(formatDifference(d));
    }
  }
  await candidate.close();
  return { programs: programs.length, differences, forgiven };
}

