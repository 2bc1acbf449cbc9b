/**
 * CPU over 10 s of running time: QEMU 7.2's piix3-usb-uhci + usb-tablet
 * (qtest, guest CPU halted) next to our model in a child Node process, the
 * same schedule on both, measured side by side in the same run from
 * /proc/PID/task/* /schedstat.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { UhciGuestDriver } from '../src/guest/uhci-driver.js';
import { QtestClient } from '../test/support/qtest.js';
import { createHaltRom } from '../test/support/halt-rom.js';
import { installLinuxSchedule, suspendLikeLinux } from '../test/support/linux-schedule.js';
import { installBulkLoad } from '../test/support/bulk-load.js';
import { processCpuNs, processRssBytes } from './proc-cpu.js';
import { qtestBus } from './qtest-bus.js';

const here = dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * idle: the Linux skeleton with the tablet's NAKing interrupt TD; busy: plus
 * 120 NAKing bulk queues; suspended: the guest autosuspended the tablet and
 * the root hub (suspendLikeLinux: port suspended, EGSM, controller halted).
 */
export type CpuMode = 'idle' | 'busy' | 'suspended';

export interface CpuOptions {
  /** Idle coalescing of the model (frames per wake-up at most). */
  coalesce?: number;
  /** Replay quiescent frames (default true); false walks every frame. */
  replay?: boolean;
}

export interface CpuResult {
  mode: CpuMode;
  seconds: number;
  qemuCpuMs: number;
  modelCpuMs: number;
  ratio: number;
  modelRssBytes: number;
}

async function startQemu(mode: CpuMode): Promise<{ pid: number; close: () => Promise<void> }> {
  const rom = createHaltRom();
  const q = await QtestClient.start([
    '-machine', 'pc', '-accel', 'tcg', '-m', '128', '-bios', rom.path, '-nodefaults', '-display', 'none',
    '-device', 'piix3-usb-uhci,id=uhci,addr=05.0', '-device', 'usb-tablet,bus=uhci.0,port=1',
  ]);
  const bus = qtestBus(q);
  const driver = new UhciGuestDriver(bus);
  await driver.probe(0xc000, [5]);
  await driver.start();
  const dev = await driver.enumerate(0);
  const sched = await installLinuxSchedule(bus, 0x200000, dev.address, dev.interruptIn!.endpoint, dev.interruptIn!.maxPacket);
  await bus.outl(driver.ioBase + 0x08, sched.frameList);
  if (mode === 'busy') await installBulkLoad(bus, sched, dev.address);
  if (mode === 'suspended') await suspendLikeLinux(bus, driver, dev, sched);
  const pid = (q as unknown as { proc: { pid: number } }).proc.pid;
  return { pid, close: async () => { await q.close(); rom.dispose(); } };
}

async function startModel(mode: CpuMode, coalesce: number, replay: boolean): Promise<{ pid: number; close: () => void }> {
  const args = [join(here, 'model-child.js'), mode, String(coalesce), replay ? 'replay' : 'walk'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`model child exited early (${code})`)));
  });
  return { pid: child.pid!, close: () => child.kill('SIGKILL') };
}

/**
 * Steady state starts this long after set-up: JIT warm-up and QEMU start-up
 * are over, and so is V8's memory reducer, which runs two full GCs about 8 s
 * after start-up (measured with --trace-gc: 20-40 ms of CPU, once).
 */
export const SETTLE_MS = 20_000;

export async function benchCpu(mode: CpuMode, seconds = 10, opts: CpuOptions = {}): Promise<CpuResult> {
  const [qemu, model] = await Promise.all([startQemu(mode), startModel(mode, opts.coalesce ?? 128, opts.replay ?? true)]);
  try {
    await sleep(SETTLE_MS);
    const q0 = processCpuNs(qemu.pid);
    const m0 = processCpuNs(model.pid);
    await sleep(seconds * 1000);
    const q1 = processCpuNs(qemu.pid);
    const m1 = processCpuNs(model.pid);
    const rss = processRssBytes(model.pid);
    const qemuCpuMs = (q1 - q0) / 1e6;
    const modelCpuMs = (m1 - m0) / 1e6;
    return { mode, seconds, qemuCpuMs, modelCpuMs, ratio: modelCpuMs / qemuCpuMs, modelRssBytes: rss };
  } finally {
    model.close();
    await qemu.close();
  }
}
