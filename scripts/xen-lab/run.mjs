#!/usr/bin/env node
// Run the Xen lab from the built dist/ (npx tsc -p . first) and print a summary.
// Usage: node scripts/xen-lab/run.mjs [--no-reference] [--no-save-restore] [--no-passthrough] [--timeout S] [--gdb|--strace] [--xen-args "..."]
import { existsSync, readFileSync } from 'node:fs';
import { formatXenLabResult, runXenLab } from '../../dist/src/lab/xen-lab.js';

const argv = process.argv.slice(2);
const opt = (name) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined; };
const reference = !argv.includes('--no-reference');
const timeout = opt('--timeout') ? Number(opt('--timeout')) : undefined;
const r = await runXenLab({ reference, timeout, saveRestore: !argv.includes("--no-save-restore"), hostPassthrough: !argv.includes("--no-save-restore") && !argv.includes("--no-passthrough"), xenArgs: opt('--xen-args'), gdb: argv.includes('--gdb'), strace: argv.includes('--strace'), progress: (l) => console.log(l) });
console.log(formatXenLabResult(r));
const restored = `${r.workDir}/uhci-dm-restored.log`;
if (existsSync(restored)) {
  const msgs = readFileSync(restored, 'utf8').split('\n').filter(Boolean).map((l) => { try { const o = JSON.parse(l); return o.level === 'debug' ? null : `${o.msg}${o.error ? ` (${o.error})` : ''}`; } catch { return l; } }).filter(Boolean);
  console.log(`uhci-dm after restore: ${msgs.join(' | ')}`);
}
