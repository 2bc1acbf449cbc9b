/**
 * Guest-controlled log growth (issue 13): every line a guest can trigger
 * goes through a per-key token bucket (src/platform/logger.ts: LOG_BURST
 * lines at once, one more every LOG_REFILL_NS, a "suppressed K similar
 * lines" summary in front of the next allowed line). Before: 20,000 BAR
 * moves logged 38,401 info lines, and a halt/restart loop one warning per
 * restart.
 */
import { ManualClock } from '../../src/platform/clock.js';
import { LOG_BURST, LOG_REFILL_NS, MemoryLogger } from '../../src/platform/logger.js';
import { IOREQ_TYPE_PCI_CONFIG, IOREQ_TYPE_PIO, IOREQ_WRITE, encodePciConfigAddr } from '../../src/xen/ioreq.js';
import { IoreqServer } from '../../src/xen/ioreq-server.js';
import { SimHypervisor } from '../../src/xen/sim/hypervisor.js';

async function setup() {
  const hv = new SimHypervisor({ domid: 7, vcpus: 1, ramBytes: 1 << 20 });
  const clock = new ManualClock();
  const logger = new MemoryLogger();
  const server = new IoreqServer({ platform: hv.platform, domid: 7, clock, logger, livenessMs: 0 });
  await server.start();
  const cpu = hv.vcpus[0]!;
  const s = hv.serverList[0]!;
  const write = (type: number, addr: bigint, size: 1 | 2 | 4, value: number) =>
    cpu.send(s, { type, addr, data: BigInt(value >>> 0), count: 1, size, dataIsPtr: false, dir: IOREQ_WRITE, df: false });
  const cfg = (reg: number, size: 1 | 2 | 4, value: number) => write(IOREQ_TYPE_PCI_CONFIG, encodePciConfigAddr({ segment: 0, bus: 0, device: 5, fn: 0 }, reg), size, value);
  const out = (port: number, size: 1 | 2 | 4, value: number) => write(IOREQ_TYPE_PIO, BigInt(port), size, value);
  const lines = logger.records;
  return { hv, clock, server, cfg, out, lines };
}

test('20,000 guest BAR moves: at most LOG_BURST lines per key (2 keys: unmapped, mapped), i.e. 20', async () => {
  const { hv, server, cfg, lines } = await setup();
  await cfg(0x04, 2, 0x0005);
  const before = lines.length;
  for (let i = 0; i < 20_000; i++) await cfg(0x20, 4, (0x1000 + (i % 0x700) * 0x20) | 1);
  const logged = lines.length - before;
  expect(logged).toBe(2 * LOG_BURST);
  // The moves themselves all took effect (the ranges follow the BAR).
  const last = 0x1000 + (19_999 % 0x700) * 0x20;
  expect(hv.serverList[0]!.ranges).toEqual([{ isMmio: false, start: last, end: last + 31 }]);
  await server.stop();
});

test('10,000 halt/restart cycles with a faulting schedule over 10 s of guest time: 12 lines, not 10,000', async () => {
  const { server, clock, cfg, out, lines } = await setup();
  await cfg(0x20, 4, 0xc001);
  await cfg(0x04, 2, 0x0005);
  const before = lines.length;
  const cycles = 10_000;
  for (let i = 0; i < cycles; i++) {
    await out(0xc000, 2, 0x0002); // HCRESET
    await out(0xc008, 4, 0x7fff0000); // frame list outside guest RAM: the frame ends in HSE (a warning)
    await out(0xc000, 2, 0x0001); // RS
    clock.advance(1_000_000);
  }
  const logged = lines.slice(before);
  expect(logged.every((r) => r.component === 'uhci')).toBe(true);
  // 10 s at one token per 6 s: the burst, then one refill (with its summary line).
  const elapsed = cycles * 1_000_000;
  const bound = LOG_BURST + 2 * Math.floor(elapsed / LOG_REFILL_NS);
  expect(logged.length).toBe(bound);
  expect(bound).toBe(12);
  expect(logged.filter((r) => r.msg.startsWith('host system error'))).toHaveLength(LOG_BURST + 1);
  // Every cycle did fault: the summary at 6 s accounts for every cycle before it that was not logged.
  const perRefill = LOG_REFILL_NS / 1_000_000;
  expect(logged.filter((r) => r.msg.startsWith('suppressed'))).toEqual([expect.objectContaining({ msg: `suppressed ${perRefill - LOG_BURST} similar lines` })]);
  await server.stop();
});
