import fc from 'fast-check';
import { ScheduleEngine } from '/work/wt/fuzz/dist/src/uhci/schedule.js';
import { caseArb, runCase } from '/work/wt/fuzz/dist/test/fuzz/harness.js';
let tx = 0, walks = 0, links = 0;
const orig = ScheduleEngine.prototype.processFrame;
ScheduleEngine.prototype.processFrame = function (a, b) { const r = orig.call(this, a, b); tx += this.stats.transactions; walks++; links += this.stats.links; return r; };
const cases = fc.sample(caseArb, { numRuns: 400, seed: 5 });
let tame = 0;
for (const c of cases) {
  if (!c.tame) continue;
  tame++;
  tx = 0; walks = 0; links = 0;
  const out = runCase(c);
  if (tame <= 8) console.log(JSON.stringify({ walks, tx, links, objs: c.objects.length, dev0: c.device0, ops: c.ops.map((o) => o[0]).join(','), fl: c.frameLinks.map((x) => x.toString(16)).join(',') }));
}
