/**
 * A busy schedule for the benchmarks and tests: 120 QHs hung off the bulk skeleton QH,
 * each with an active IN TD to the device's interrupt endpoint that NAKs
 * while there is no input — 120 transactions per frame that never complete,
 * so the load stays the same for the whole measurement on both QEMU and our
 * model.
 */
import { makeToken, LINK, TD_CTRL } from '../../src/uhci/descriptors.js';
import { PID_IN } from '../../src/usb/packet.js';
import type { LinuxSchedule, MemWriter } from './linux-schedule.js';

export const BUSY_QUEUES = 120;

export async function installBulkLoad(mem: MemWriter, sched: LinuxSchedule, devAddr: number): Promise<void> {
  const base = sched.frameList + 0x2000;
  const bytes = new Uint8Array(BUSY_QUEUES * 48);
  const dv = new DataView(bytes.buffer);
  for (let i = 0; i < BUSY_QUEUES; i++) {
    const qh = base + i * 48;
    const td = qh + 16;
    const next = i + 1 < BUSY_QUEUES ? (base + (i + 1) * 48) | LINK.bit.Q : sched.termQh | LINK.bit.Q;
    dv.setUint32(i * 48 + 0, next >>> 0, true);
    dv.setUint32(i * 48 + 4, td, true);
    dv.setUint32(i * 48 + 16, LINK.bit.T, true);
    dv.setUint32(i * 48 + 20, ((3 << TD_CTRL.lsb.CERR) | TD_CTRL.bit.ACTIVE | 0x7ff) >>> 0, true);
    dv.setUint32(i * 48 + 24, makeToken(PID_IN, devAddr, 1, 0, 8), true);
    dv.setUint32(i * 48 + 28, base + BUSY_QUEUES * 48, true);
  }
  await mem.writeMem(base, bytes);
  const link = new Uint8Array(4);
  new DataView(link.buffer).setUint32(0, (base | LINK.bit.Q) >>> 0, true);
  await mem.writeMem(sched.bulkQh, link);
}
