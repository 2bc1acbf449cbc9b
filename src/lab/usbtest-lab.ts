/**
 * Linux usbtest against our controller: a lab guest whose UHCI is our model
 * (through x-pci-proxy-dev) with our emulated gadget zero on root port 1
 * loads the kernel's usbtest driver, and runs the usbtest cases with
 * scripts/guest/testusb.mjs — the equivalent of tools/usb/testusb.c, run by
 * the host's node inside the guest (host root over virtio-9p + chroot; the
 * guest has no compiler and no testusb binary).
 */
import { join } from 'node:path';
import { HOST_ROOT_MODULES, hostRootMountScript, hostRootQemuArgs, repoRoot } from './guest-image.js';
import { runLab, type LabResult } from './lab.js';

/** testusb.c defaults. */
export const TESTUSB_DEFAULTS = { iterations: 1000, length: 512, vary: 512, sglen: 32 } as const;

export interface UsbtestParams {
  iterations: number;
  length: number;
  vary: number;
  sglen: number;
}

export interface UsbtestOptions {
  /** Cases to run (default 0..29, as testusb -a). */
  cases?: readonly number[];
  iterations?: number;
  length?: number;
  vary?: number;
  sglen?: number;
  /** Per-case parameters that override the common ones (slow cases under TCG, test 14's vary). */
  caseParams?: ReadonlyMap<number, Partial<UsbtestParams>>;
  timeoutMs?: number;
  onProgress?: (msg: string) => void;
}

export type UsbtestOutcome = 'pass' | 'fail' | 'skip';

export interface UsbtestCaseResult {
  test: number;
  outcome: UsbtestOutcome;
  /** Duration the kernel measured (pass). */
  seconds: number | null;
  /** errno (fail, skip). */
  errno: string | null;
  /** The parameters the case ran with ("iterations=.. length=.. vary=.. sglen=.."). */
  params: string | null;
  /** Wall-clock seconds in the guest. */
  wallSeconds: number | null;
}

export interface UsbtestLabResult {
  cases: UsbtestCaseResult[];
  /** The usbfs path of the tested device. */
  device: string | null;
  lab: LabResult;
}

/** Parse the `@@USBTEST` lines of testusb.mjs. */
export function parseUsbtestLines(lines: readonly string[]): { device: string | null; cases: UsbtestCaseResult[] } {
  const cases: UsbtestCaseResult[] = [];
  let device: string | null = null;
  for (const l of lines) {
    const m = /^@@USBTEST (\S+) (\d+) (pass|fail|skip) (.*)$/.exec(l.trim());
    if (!m) continue;
    device = m[1]!;
    const rest = m[4]!.split(/\s+/);
    const params = /(iterations=\d+ length=\d+ vary=\d+ sglen=\d+)/.exec(m[4]!);
    const wall = /wall=([\d.]+)/.exec(m[4]!);
    const outcome = m[3] as UsbtestOutcome;
    cases.push({
      test: Number(m[2]),
      outcome,
      seconds: outcome === 'pass' ? Number(rest[0]) : null,
      errno: outcome === 'fail' ? `${rest[1]} (${rest[0]})` : outcome === 'skip' ? rest[0]! : null,
      params: params ? params[1]! : null,
      wallSeconds: wall ? Number(wall[1]) : null,
    });
  }
  return { device, cases };
}

/** The guest script: mount the host root, run testusb.mjs with the host's node. */
export function usbtestGuestScript(opts: UsbtestOptions, root = repoRoot(), node = process.execPath): string {
  const args = [
    '--cases', (opts.cases ?? [...Array(30).keys()]).join(','),
    '--iterations', String(opts.iterations ?? TESTUSB_DEFAULTS.iterations),
    '--length', String(opts.length ?? TESTUSB_DEFAULTS.length),
    '--vary', String(opts.vary ?? TESTUSB_DEFAULTS.vary),
    '--sglen', String(opts.sglen ?? TESTUSB_DEFAULTS.sglen),
  ];
  if (opts.caseParams?.size) {
    const specs = [...opts.caseParams].map(([c, p]) => [String(c), ...Object.entries(p).map(([k, v]) => `${k}=${v}`)].join(':'));
    args.push('--case', specs.join(','));
  }
  return [
    '#!/bin/sh',
    hostRootMountScript('/host'),
    `chroot /host ${node} ${join(root, 'scripts/guest/testusb.mjs')} ${args.join(' ')}`,
    'rc=$?',
    'dmesg | grep -E "usbtest|uhci|usb 1-" | tail -n 40',
    'exit $rc',
    '',
  ].join('\n');
}

/**
 * The plan the jest test runs (about a minute under TCG): every case 0..29
 * with testusb's length/vary/sglen, 100 iterations instead of 1000, fewer
 * for the slow queue cases. Cases 14 and 21 (ctrl_out) get vary 63: with
 * testusb's defaults (vary 512 = length) usbtest's ctrl_out refuses the
 * parameters with EINVAL before any I/O, on every device.
 */
export const CI_USBTEST_PLAN: UsbtestOptions = {
  cases: [...Array(30).keys()],
  iterations: 100,
  caseParams: new Map<number, Partial<UsbtestParams>>([
    [5, { iterations: 10 }],
    [6, { iterations: 10 }],
    [7, { iterations: 10 }],
    [8, { iterations: 10 }],
    [9, { iterations: 20 }],
    [10, { iterations: 10 }],
    [13, { iterations: 20 }],
    [14, { vary: 63 }],
    [21, { vary: 63 }],
    [24, { iterations: 10 }],
    [27, { iterations: 10 }],
    [28, { iterations: 10 }],
  ]),
};

export async function runUsbtestLab(opts: UsbtestOptions = {}): Promise<UsbtestLabResult> {
  const lab = await runLab({
    ports: ['gadget-zero', 'none'],
    modules: ['usbtest', ...HOST_ROOT_MODULES],
    extraQemuArgs: hostRootQemuArgs(),
    script: usbtestGuestScript(opts),
    timeoutMs: opts.timeoutMs ?? 600_000,
    onProgress: opts.onProgress,
    settleSeconds: 60,
  });
  const { device, cases } = parseUsbtestLines(lab.scriptOutput ?? []);
  return { cases, device, lab };
}

/** A table of the results, one case per line. */
export function formatUsbtestTable(r: Pick<UsbtestLabResult, 'cases' | 'device'>): string {
  const out = [`usbtest on ${r.device ?? '(no device)'}`, 'case  result  detail'];
  for (const c of r.cases) {
    const detail = [c.outcome === 'pass' ? `${c.seconds?.toFixed(3)} s` : c.errno ?? '', c.params ?? ''].join('  ');
    out.push(`${String(c.test).padStart(4)}  ${c.outcome.padEnd(6)}  ${detail}`);
  }
  return out.join('\n');
}
