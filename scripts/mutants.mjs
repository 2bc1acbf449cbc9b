#!/usr/bin/env node
/**
 * `npm run mutants [-- --runs N] [--seed S] [--only ID,ID...]`: does the safety net
 * catch the bugs it is meant to catch? (issue 13: the fuzzer missed a throw in
 * the fast TD fetch, a dropped IOC interrupt and `len < maxLen - 1`.)
 *
 * The working tree is never touched: src, test, bench and the configs are
 * copied to a temporary directory (node_modules linked). There, each mutant
 * (an exact snippet of one source file, which must occur exactly once)
 * replaces its snippet, the copy is built, and the controller fuzzer
 * (`dist/test/fuzz/run.js --mode controller`, fixed seed) and the jest tests
 * of test/uhci and test/fuzz run against it; the file is restored before the
 * next mutant. A mutant is killed when either fails. The unmutated copy runs
 * first and must pass both. Exit status 0 only if every mutant was killed.
 * Not part of `npm test` (about 20 s per mutant).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Each mutant: a file, an exact snippet in it, what replaces the snippet, and what it breaks. */
const MUTANTS = [
  {
    id: 'fetch-td-throws',
    file: 'src/uhci/frame-memory.ts',
    find: '    if (fast) {\n      this.tdLink = fast.readU32!(tdAddr);',
    replace: "    if (fast) {\n      if (tdAddr >= 0) throw new Error('mutant: fast TD fetch');\n      this.tdLink = fast.readU32!(tdAddr);",
    what: 'FrameMemory.fetchTd throws on the fast (readU32) path',
  },
  {
    id: 'replay-throws',
    file: 'src/uhci/schedule.ts',
    find: '    if (!this.memo.covers(this.host.mem, flBase, frnum)) return false;\n',
    replace: "    if (!this.memo.covers(this.host.mem, flBase, frnum)) return false;\n    if (frnum >= 0) throw new Error('mutant: replay');\n",
    what: 'the replay of a quiescent frame throws',
  },
  {
    id: 'ioc-dropped',
    file: 'src/uhci/td-status.ts',
    find: 'out.interrupt = ctrl & TD_CTRL.bit.IOC ? PENDING_IOC : 0;',
    replace: 'out.interrupt = 0;',
    what: 'a TD retired by an ACK no longer asks for its IOC interrupt',
  },
  {
    id: 'ioc-dropped-on-error',
    file: 'src/uhci/td-status.ts',
    find: 'out.interrupt = retire && ctrl & TD_CTRL.bit.IOC ? PENDING_IOC : 0;',
    replace: 'out.interrupt = 0;',
    what: 'a TD retired by an error no longer asks for its IOC interrupt',
  },
  {
    id: 'short-packet-minus-one',
    file: 'src/uhci/td-status.ts',
    find: '(ctrl & TD_CTRL.bit.SPD) !== 0 && len < maxLen;',
    replace: '(ctrl & TD_CTRL.bit.SPD) !== 0 && len < maxLen - 1;',
    what: 'short-packet condition `len < maxLen - 1` (one byte short is not short)',
  },
  {
    id: 'short-packet-le',
    file: 'src/uhci/td-status.ts',
    find: '(ctrl & TD_CTRL.bit.SPD) !== 0 && len < maxLen;',
    replace: '(ctrl & TD_CTRL.bit.SPD) !== 0 && len <= maxLen;',
    what: 'short-packet condition `len <= maxLen` (a full packet counts as short)',
  },
  {
    id: 'wire-time-unchecked',
    file: 'src/uhci/td-execution.ts',
    find: '    if (!timer.canStart(stats.bits, estimate, this.frameBits, host.maxp64)) return \'stop-frame\';\n',
    replace: '',
    what: 'a transaction starts without checking the wire time left before EOF',
  },
  {
    id: 'td-address-mask',
    file: 'src/uhci/schedule.ts',
    find: '        const tdAddr = link & LINK.bit.PTR;',
    replace: '        const tdAddr = (link & ~3) >>> 0;',
    what: 'TD address taken from link bits 31:2 instead of 31:4 (unaligned TD fetch)',
  },
  {
    id: 'replay-unchecked',
    file: 'src/uhci/frame-replay.ts',
    find: '    if (this.checked) return true;\n',
    replace: '    if (this.checked || this.count >= 0) return true;\n',
    what: 'a remembered walk is replayed without checking that its words still hold',
  },
];

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? def : process.argv[i + 1];
}
const runs = Number(arg('runs', '3000'));
const seed = Number(arg('seed', '20261205'));
const only = arg('only', null)?.split(',') ?? null;

/** Run a command in `cwd`; returns {ok, out} with out = stdout + stderr. */
function run(cwd, cmd, args) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** The line that says why a check failed, for the report. */
function why(out) {
  const lines = out.split('\n');
  const pick =
    lines.find((l) => /InvariantViolation|Got error|internal fault/.test(l)) ??
    lines.find((l) => /●/.test(l)) ??
    lines.find((l) => /error TS|Error:/.test(l)) ??
    lines.filter((l) => l.trim()).at(-1) ??
    '';
  return pick.trim().slice(0, 240);
}

/** Build and test the copy in `dir`: {build, fuzz, jest} each {ok, out}. */
function check(dir) {
  const build = run(dir, process.execPath, [join(dir, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);
  if (!build.ok) return { build };
  const fuzz = run(dir, process.execPath, ['dist/test/fuzz/run.js', '--runs', String(runs), '--seed', String(seed), '--mode', 'controller']);
  const jest = run(dir, process.execPath, ['--experimental-vm-modules', 'node_modules/jest/bin/jest.js', '--ci', 'test/uhci', 'test/fuzz']);
  return { build, fuzz, jest };
}

const dir = mkdtempSync(join(tmpdir(), 'uhci-mutants-'));
let failed = false;
try {
  for (const p of ['src', 'test', 'bench', 'tsconfig.json', 'jest.config.js', 'package.json']) cpSync(join(ROOT, p), join(dir, p), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  process.stdout.write(`mutants: copy in ${dir}; fuzzer ${runs} controller cases, seed ${seed}; jest test/uhci test/fuzz\n`);

  const base = check(dir);
  if (!base.build.ok || !base.fuzz.ok || !base.jest.ok) {
    const bad = !base.build.ok ? base.build : !base.fuzz.ok ? base.fuzz : base.jest;
    process.stdout.write(`mutants: the unmutated copy fails, nothing to compare against: ${why(bad.out)}\n`);
    process.exit(2);
  }
  process.stdout.write('mutants: unmutated copy passes the fuzzer and the tests\n');

  for (const m of MUTANTS) {
    if (only && !only.includes(m.id)) continue;
    const path = join(dir, m.file);
    const original = readFileSync(path, 'utf8');
    const at = original.indexOf(m.find);
    if (at < 0 || original.indexOf(m.find, at + 1) >= 0) {
      process.stdout.write(`ERROR    ${m.id}: snippet ${at < 0 ? 'not found' : 'not unique'} in ${m.file} (update the mutant)\n`);
      failed = true;
      continue;
    }
    writeFileSync(path, original.slice(0, at) + m.replace + original.slice(at + m.find.length));
    try {
      const t0 = Date.now();
      const r = check(dir);
      const secs = ((Date.now() - t0) / 1000).toFixed(0);
      if (!r.build.ok) {
        process.stdout.write(`ERROR    ${m.id}: does not build (${why(r.build.out)})\n`);
        failed = true;
        continue;
      }
      const killers = [];
      if (!r.fuzz.ok) killers.push(`fuzzer: ${why(r.fuzz.out)}`);
      if (!r.jest.ok) killers.push(`jest: ${why(r.jest.out)}`);
      if (killers.length) {
        process.stdout.write(`KILLED   ${m.id} (${m.what}) [${secs} s]\n${killers.map((k) => `         ${k}\n`).join('')}`);
      } else {
        process.stdout.write(`SURVIVED ${m.id} (${m.what}) [${secs} s]\n`);
        failed = true;
      }
    } finally {
      writeFileSync(path, original);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(failed ? 'mutants: some mutants survived or could not run\n' : 'mutants: every mutant was killed\n');
process.exit(failed ? 1 : 0);
