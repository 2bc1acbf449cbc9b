/**
 * Regressions found by the hostile-ioreq fuzzer (test/fuzz/ioreq-harness.ts)
 * and by reading the server while writing it.
 */
import { LOG_BURST, MemoryLogger } from '../../src/platform/logger.js';
import { ManualClock } from '../../src/platform/clock.js';
import { IOREQ_READ, IOREQ_WRITE, IOREQ_TYPE_PCI_CONFIG, IOREQ_TYPE_PIO, encodePciConfigAddr } from '../../src/xen/ioreq.js';
import { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { IoreqServer } from '../../src/xen/ioreq-server.js';
import { SimHypervisor } from '../../src/xen/sim/hypervisor.js';

test('BAR4 programmed above 0xFFFF with ever new values: a bounded number of lines, not one per value', async () => {
  const hv = new SimHypervisor({ domid: 7, vcpus: 1, ramBytes: 1 << 20 });
  const logger = new MemoryLogger();
  const server = new IoreqServer({ platform: hv.platform, domid: 7, clock: new ManualClock(), logger, livenessMs: 0 });
  await server.start();
  const cpu = hv.vcpus[0]!;
  const cfg = (reg: number, size: 1 | 2 | 4, value: number) =>
    cpu.send(hv.serverList[0]!, { type: IOREQ_TYPE_PCI_CONFIG, addr: encodePciConfigAddr({ segment: 0, bus: 0, device: 5, fn: 0 }, reg), data: BigInt(value >>> 0), count: 1, size, dataIsPtr: false, dir: IOREQ_WRITE, df: false });
  await cfg(0x04, 2, 0x0005);
  // A guest walking BAR4 through 2^27 bases above the port space: each one used to add a
  // key to the server's log-once set and a warning to the log (memory and log exhaustion).
  for (let i = 1; i <= 200; i++) await cfg(0x20, 4, ((0x10000 + i * 0x20) | 1) >>> 0);
  const warnings = logger.records.filter((r) => r.msg.startsWith('BAR4 programmed above'));
  expect(warnings).toHaveLength(LOG_BURST);
  expect(server.mappedRange).toBeNull();
  expect(hv.serverList[0]!.ranges).toEqual([]);
  // Still serving: a base in the port space maps again.
  await cfg(0x20, 4, 0xc001);
  expect(hv.serverList[0]!.ranges).toEqual([{ isMmio: false, start: 0xc000, end: 0xc01f }]);
  await server.stop();
});

test('a bug of ours while handling an ioreq still answers the vCPU (all-ones), halts the controller with HSE, and serving goes on', async () => {
  const hv = new SimHypervisor({ domid: 7, vcpus: 1, ramBytes: 1 << 20 });
  const logger = new MemoryLogger();
  let broken = true;
  const server = new IoreqServer({
    platform: hv.platform,
    domid: 7,
    clock: new ManualClock(),
    logger,
    livenessMs: 0,
    createFunction: (io) => {
      const fn = new UhciPciFunction(io);
      const read = fn.portRead.bind(fn);
      fn.portRead = (port, size) => {
        if (broken) throw new TypeError('simulated internal bug');
        return read(port, size);
      };
      return fn;
    },
  });
  await server.start();
  const cpu = hv.vcpus[0]!;
  const cfg = (reg: number, size: 1 | 2 | 4, value: number) =>
    cpu.send(hv.serverList[0]!, { type: IOREQ_TYPE_PCI_CONFIG, addr: encodePciConfigAddr({ segment: 0, bus: 0, device: 5, fn: 0 }, reg), data: BigInt(value >>> 0), count: 1, size, dataIsPtr: false, dir: IOREQ_WRITE, df: false });
  await cfg(0x20, 4, 0xc001);
  await cfg(0x04, 2, 0x0005);
  const inw = (port: number) => cpu.send(hv.serverList[0]!, { type: IOREQ_TYPE_PIO, addr: BigInt(port), data: 0n, count: 1, size: 2, dataIsPtr: false, dir: IOREQ_READ, df: false });
  // USBSTS reads HCHalted (bit 5) after reset; the broken read answers all-ones instead of hanging.
  expect(await inw(0xc002)).toBe(0xffffn);
  expect(await inw(0xc002)).toBe(0xffffn);
  expect(server.stats.internalErrors).toBe(2);
  expect(logger.records.filter((r) => r.level === 'error')).toEqual([
    expect.objectContaining({ component: 'uhci', msg: 'internal error in an ioreq: host system error, controller halted' }),
  ]);
  broken = false;
  expect(await inw(0xc002)).toBe(0x28n); // HSE | HCHalted
  expect(server.intxLevel).toBe(true);
  await server.stop();
});
