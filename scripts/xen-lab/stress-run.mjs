#!/usr/bin/env node
// Crash reproducer for dom0 under Xen-under-TCG: boots the Xen lab with a
// stress scenario (see dom0StressScript in src/lab/xen-dom0.ts) and prints
// what happened. Usage:
//   node scripts/xen-lab/stress-run.mjs [--xen-args "pcid=0"] [--cpu MODEL] [--smp N] [--accel A]
//        [--solo S] [--domu S] [--procs N]
import { join } from 'node:path';
import { runXenLab } from '../../dist/src/lab/xen-lab.js';
import { dom0StressScript } from '../../dist/src/lab/xen-dom0.js';
import { repoRoot } from '../../dist/src/lab/guest-image.js';

const argv = process.argv.slice(2);
const opt = (name, def) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : def; };
const script = dom0StressScript({
  stressJs: join(repoRoot(), 'scripts', 'xen-lab', 'stress.mjs'),
  soloSeconds: Number(opt('--solo', '150')),
  withDomUSeconds: Number(opt('--domu', '150')),
  processes: Number(opt('--procs', '2')),
});
const r = await runXenLab({
  reference: false, dom0Script: script, timeout: Number(opt('--timeout', '720')),
  xenArgs: opt('--xen-args', ''), cpu: opt('--cpu', undefined), smp: opt('--smp', undefined) && Number(opt('--smp')), accel: opt('--accel', undefined),
  progress: (l) => { if (!/stress-tick/.test(l)) console.log(l); },
});
const lines = r.serial.split('\n').filter((l) => /@@XEN:stress-(ok|exit|xl|klog|.*mismatch|domU|phase)|segfault|Segmentation|general protection/.test(l));
console.log('--- summary'); for (const l of lines) console.log(l.replace(/\r/g, ''));
console.log(`phases ${JSON.stringify(r.phases)} elapsed ${r.elapsed}s work ${r.workDir}`);
