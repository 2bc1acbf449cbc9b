#!/usr/bin/env node
// Xen-lab reproducer for dom0 crashes: allocation/GC/JIT churn plus two
// checks that tell register-state loss from memory corruption:
// - fp: a floating-point/SIMD-heavy sum recomputed and compared each round;
// - mem: a 32 MiB pattern buffer re-verified each round.
// Usage: node stress.mjs ID SECONDS   (prints "@@XEN:stress-..." lines)
const [id = '0', secs = '180'] = process.argv.slice(2);
const end = Date.now() + Number(secs) * 1000;
const say = (s) => console.log(`@@XEN:stress-${s} ${id}`);
const fp = () => { let s = 0; for (let i = 1; i < 200000; i++) s += Math.sqrt(i) / (i + 0.5); return s; };
const ref = fp();
const mem = Buffer.alloc(32 << 20);
for (let i = 0; i < mem.length; i += 4) mem.writeUInt32LE((i * 2654435761) >>> 0, i);
let round = 0, keep = [], bad = 0, nextTick = Date.now() + 15000;
while (Date.now() < end) {
  const a = [];
  for (let i = 0; i < 20000; i++) a.push({ i, s: 'x' + i, f: i * 1.5, o: { k: [i, i + 1] } });
  const j = JSON.stringify(a);
  keep.push(JSON.parse(j));
  if (keep.length > 4) keep.shift();
  // fresh closures keep the JIT busy
  const f = new Function('x', `return x * ${round} + ${round % 7}`);
  if (f(2) !== round * 2 + (round % 7)) { say(`jit-mismatch round=${round}`); bad++; }
  if (fp() !== ref) { say(`fp-mismatch round=${round}`); bad++; }
  if (round % 5 === 0) {
    for (let i = 0; i < mem.length; i += 4) {
      if (mem.readUInt32LE(i) !== ((i * 2654435761) >>> 0)) { say(`mem-mismatch round=${round} off=${i}`); bad++; break; }
    }
  }
  round++;
  if (Date.now() >= nextTick) { say(`tick round=${round}`); nextTick += 15000; }
}
say(`ok rounds=${round} bad=${bad}`);
process.exit(bad ? 3 : 0);
