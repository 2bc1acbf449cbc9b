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
import { installLinuxSchedule } from './linux-schedule.js';
import { installBulkLoad } from './bulk-load.js';
import { processCpuNs, processRssBytes } from './proc-cpu.js';
import { qtestBus } from './qtest-bus.js';

const here = dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface CpuResult {
  mode: 'idle' | 'busy';
  seconds: number;
  qemuCpuMs: number;
  modelCpuMs: number;
  ratio: number;
  modelRssBytes: number;
}

async function startQemu(mode: 'idle' | 'busy'): Promise<{ pid: number; close: () => Promise<void> }> {
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
  const pid = (q as unknown as { proc: { pid: number } }).proc.pid;
  return { pid, close: async () => { await q.close(); rom.dispose(); } };
}

async function startModel(mode: 'idle' | 'busy', coalesce: number): Promise<{ pid: number; close: () => void }> {
  const child = spawn(process.execPath, [join(here, 'model-child.js'), mode, String(coalesce)], { stdio: ['ignore', 'pipe', 'inherit'] });
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

export async function benchCpu(mode: 'idle' | 'busy', seconds = 10, coalesce = 128): Promise<CpuResult> {
  const [qemu, model] = await Promise.all([startQemu(mode), startModel(mode, coalesce)]);
  try {
    await sleep(8000); // settle after set-up: JIT warm-up and QEMU start-up are not steady state
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
