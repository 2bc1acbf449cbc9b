/**
 * Benchmark child: our model with an emulated tablet on the real clock,
 * enumerated by the built-in guest driver, then left running the Linux-style
 * idle schedule (or a busy bulk schedule). Prints "ready" on stdout; the
 * parent measures this process's CPU from /proc.
 * argv: idle|busy|suspended [idleCoalesce] [replay|walk]
 */
import { UhciPciFunction } from '../src/device/uhci-pci-function.js';
import { RealClock } from '../src/platform/clock.js';
import { LatchedIrq } from '../src/platform/irq.js';
import { FlatMemory } from '../src/platform/memory.js';
import { idleTabletGuest, suspendLikeLinux } from '../test/support/linux-schedule.js';
import { installBulkLoad } from '../test/support/bulk-load.js';

async function main(): Promise<void> {
  const mode = process.argv[2] ?? 'idle';
  const coalesce = Number(process.argv[3] ?? '128');
  const clock = new RealClock();
  const mem = new FlatMemory(128 << 20);
  const fn = new UhciPciFunction({ mem, irq: new LatchedIrq(), clock, idleCoalesce: coalesce });
  fn.controller.engine.replayEnabled = process.argv[4] !== 'walk';
  const { bus, driver, dev, sched } = await idleTabletGuest(fn, mem, clock, null);
  if (mode === 'busy') await installBulkLoad(bus, sched, dev.address);
  if (mode === 'suspended') await suspendLikeLinux(bus, driver, dev, sched);
  process.stdout.write('ready\n');
  // Stay alive; the parent kills us.
  setInterval(() => undefined, 1 << 30);
}

main().catch((e) => {
  process.stderr.write(String(e?.stack ?? e) + '\n');
  process.exit(1);
});
