/**
 * Per-frame cost over time as an SVG plot: the busy schedule (120 NAKing
 * queues on Linux's skeleton) and the idle one, run on a virtual clock with
 * each frame's processing time measured.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { UhciPciFunction } from '../src/device/uhci-pci-function.js';
import { ManualClock } from '../src/platform/clock.js';
import { LatchedIrq } from '../src/platform/irq.js';
import { FlatMemory } from '../src/platform/memory.js';
import { idleTabletGuest } from '../test/support/linux-schedule.js';
import { installBulkLoad } from '../test/support/bulk-load.js';

async function perFrameCosts(busy: boolean, frames: number): Promise<number[]> {
  const clock = new ManualClock();
  const mem = new FlatMemory(16 << 20);
  const fn = new UhciPciFunction({ mem, irq: new LatchedIrq(), clock });
  const { bus, dev, sched } = await idleTabletGuest(fn, mem, clock, clock);
  if (busy) await installBulkLoad(bus, sched, dev.address);
  const hc = fn.controller;
  const costs: number[] = [];
  const run = hc.runOneFrame.bind(hc);
  hc.runOneFrame = () => {
    const t = process.hrtime.bigint();
    run();
    costs.push(Number(process.hrtime.bigint() - t) / 1000);
  };
  clock.advance(frames * 1e6);
  return costs.slice(0, frames);
}

export async function plotFrameCosts(path: string, frames = 3000): Promise<{ busyMedianUs: number; idleMedianUs: number }> {
  const busy = await perFrameCosts(true, frames);
  const idle = await perFrameCosts(false, frames);
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  const W = 900;
  const H = 300;
  const cap = Math.max(median(busy) * 4, 1);
  const pts = (a: number[]) => a.map((v, i) => `${((i / a.length) * W).toFixed(1)},${(H - (Math.min(v, cap) / cap) * H).toFixed(1)}`).join(' ');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W + 60}" height="${H + 60}" font-family="sans-serif" font-size="12">
<g transform="translate(50,20)">
<rect width="${W}" height="${H}" fill="none" stroke="#888"/>
<polyline fill="none" stroke="#c33" stroke-width="0.6" points="${pts(busy)}"/>
<polyline fill="none" stroke="#36c" stroke-width="0.6" points="${pts(idle)}"/>
<text x="0" y="${H + 16}">frame 0</text><text x="${W - 60}" y="${H + 16}">frame ${frames}</text>
<text x="-45" y="10">${cap.toFixed(0)} µs</text><text x="-20" y="${H}">0</text>
<text x="10" y="15" fill="#c33">busy: 120 NAKing queues, median ${median(busy).toFixed(1)} µs/frame</text>
<text x="10" y="30" fill="#36c">idle tablet: median ${median(idle).toFixed(1)} µs/frame</text>
</g></svg>
`;
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, svg);
  return { busyMedianUs: median(busy), idleMedianUs: median(idle) };
}
