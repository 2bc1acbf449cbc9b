#!/usr/bin/env node
// Run the Xen lab from the built dist/ (npx tsc -p . first) and print a summary.
// Usage: node scripts/xen-lab/run.mjs [--no-reference] [--timeout S]
import { runXenLab } from '../../dist/src/lab/xen-lab.js';

const argv = process.argv.slice(2);
const reference = !argv.includes('--no-reference');
const ti = argv.indexOf('--timeout');
const timeout = ti >= 0 ? Number(argv[ti + 1]) : undefined;
const r = await runXenLab({ reference, timeout, gdb: argv.includes("--gdb"), strace: argv.includes("--strace"), progress: (l) => console.log(l) });
const show = (name, rep) => {
  if (!rep) return console.log(`${name}: no console captured`);
  console.log(`${name}: booted=${rep.booted} settled=${JSON.stringify(rep.settled)} done=${rep.done}`);
  for (const d of rep.devices) console.log(`  ${d.path} ${d.vendorId.toString(16).padStart(4, '0')}:${d.productId.toString(16).padStart(4, '0')} ${d.manufacturer ?? ''} / ${d.product ?? ''} speed ${d.speed}`);
};
show('reference', r.reference);
show('uhci-dm', r.dm);
console.log(`uhci-dm exit: ${r.uhciDmExit}; phases: ${JSON.stringify(r.phases)}`);
console.log(`work dir: ${r.workDir}`);
