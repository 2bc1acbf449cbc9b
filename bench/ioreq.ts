/**
 * ioreq round trips per second through the simulated hypervisor: vCPUs
 * issue synchronous port reads of USBSTS (request → READY → event channel →
 * server → RESP_READY → event back → NONE) as fast as they can, for
 * `seconds`, with 1 and 4 vCPUs; plus buffered writes per second. Printed,
 * not asserted: it measures our serving path (codec, dispatch, model) plus
 * the simulation's notification cost (microtasks), not Xen's.
 *
 * Run: npm run -s build && node dist/bench/ioreq.js [seconds]
 */
import { fileURLToPath } from 'node:url';
import { ManualClock } from '../src/platform/clock.js';
import { IoreqServer } from '../src/xen/ioreq-server.js';
import { SimHypervisor } from '../src/xen/sim/hypervisor.js';

export interface IoreqBenchResult {
  vcpus: number;
  seconds: number;
  roundTrips: number;
  perSecond: number;
  bufferedPerSecond: number;
}

export async function benchIoreq(vcpus: number, seconds: number): Promise<IoreqBenchResult> {
  const hv = new SimHypervisor({ vcpus, ramBytes: 1 << 20 });
  const server = new IoreqServer({ platform: hv.platform, domid: hv.domid, clock: new ManualClock(), livenessMs: 0 });
  await server.start();
  const cpu0 = hv.vcpus[0]!;
  // PCI probe by hand: BAR4 = 0xc000, I/O decode on.
  await cpu0.pio('out', 0xcf8, 4, 0x80002820);
  await cpu0.pio('out', 0xcfc, 4, 0xc001);
  await cpu0.pio('out', 0xcf8, 4, 0x80002804);
  await cpu0.pio('out', 0xcfc, 2, 0x5);
  const end = performance.now() + seconds * 1000;
  let roundTrips = 0;
  await Promise.all(
    hv.vcpus.map(async (cpu) => {
      while (performance.now() < end) {
        for (let i = 0; i < 256; i++) await cpu.pio('in', 0xc002, 2);
        roundTrips += 256;
      }
    }),
  );
  const elapsed = seconds;
  // Buffered writes: fill the ring, let one event drain it.
  const bEnd = performance.now() + Math.max(0.2, seconds / 4) * 1000;
  let buffered = 0;
  const t0 = performance.now();
  while (performance.now() < bEnd) {
    let n = 0;
    while (cpu0.bufferedWrite(0xc00c, 1, 0x40)) n++;
    await cpu0.pio('in', 0xc00c, 1); // ordered after the ring: forces the drain
    buffered += n;
  }
  const bSeconds = (performance.now() - t0) / 1000;
  await server.stop();
  return { vcpus, seconds: elapsed, roundTrips, perSecond: roundTrips / elapsed, bufferedPerSecond: buffered / bSeconds };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? process.env.BENCH_SECONDS ?? '2');
  for (const vcpus of [1, 4]) {
    const r = await benchIoreq(vcpus, seconds);
    process.stdout.write(
      `ioreq (simulated hypervisor) ${vcpus} vCPU${vcpus > 1 ? 's' : ''}: ${Math.round(r.perSecond).toLocaleString('en')} round trips/s ` +
        `(${r.roundTrips} in ${r.seconds} s); buffered writes ${Math.round(r.bufferedPerSecond).toLocaleString('en')}/s\n`,
    );
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    process.stderr.write(`bench ioreq: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
