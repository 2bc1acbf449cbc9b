/**
 * A short run of the hostile-ioreq fuzzer inside `npm test` (the long run is
 * `npm run fuzz -- --runs N`, which mixes these cases with the controller's),
 * and proof that its checks bite.
 */
import { encodePciConfigAddr, IOREQ_READ, IOREQ_TYPE_PCI_CONFIG } from '../../src/xen/ioreq.js';
import { fuzzIoreq, ioreqChecks, ioreqCoverage, IoreqRig, runIoreqCase, type IoreqFuzzCase } from '../fuzz/ioreq-harness.js';
import { InvariantViolation } from '../fuzz/checking-memory.js';

test('hostile ioreqs: 1500 random cases keep every invariant and reach the interesting paths', async () => {
  const before = { ...ioreqCoverage };
  const r = await fuzzIoreq(1500, 20261126);
  if (r.error) throw new Error(r.error);
  expect(r.failures).toBe(0);
  expect(r.runs).toBe(1500);
  const got = Object.fromEntries(Object.entries(ioreqCoverage).map(([k, v]) => [k, v - before[k as keyof typeof before]]));
  // Each kind of step happened: answered and ignored requests, register reads, rep ins
  // into RAM, BAR moves, consumed rings, controller DMA, INTx asserted.
  for (const k of Object.keys(got)) expect([k, got[k]! > 0]).toEqual([k, true]);
}, 60_000);

test('a case replays the same on a fresh rig and on a reused one', async () => {
  const c: IoreqFuzzCase = {
    vcpus: 2,
    bufioreq: true,
    mapCachePages: 1,
    bar: 0xc000,
    running: true,
    stop: false,
    ops: [
      { op: 'io', reqs: [{ state: 1, target: { type: 0, port: { kind: 'bar', off: 0 } }, size: 2, count: 3, payload: { dataIsPtr: true, data: 0xfffen }, flags: 1, eport: null }], first: 0, stray: false, extra: [1], order: [] },
      { op: 'cfg', reg: 0x20, size: 4, value: 0xd001 },
      { op: 'tick', frames: 3 },
      { op: 'ring', slots: [{ kind: 'raw', w0: 0xffffffff, w1: 0 }], read: null, write: 0x80000000, notify: true },
    ],
  };
  await runIoreqCase(c, { fresh: true });
  await runIoreqCase(c);
  await runIoreqCase(c);
  await runIoreqCase({ ...c, stop: true });
});

describe('the ioreq invariant checks bite', () => {
  const rig = () => {
    const r = new IoreqRig({ vcpus: 1, bufioreq: true, mapCachePages: 4 });
    r.configWrite(0x20, 4, 0xc001);
    r.configWrite(0x04, 2, 0x0005);
    return r;
  };

  test('guest RAM changed outside a rep-ins window; or inside one but not reported dirty', () => {
    const r = rig();
    expect(() => ioreqChecks.ramConsistent(r, [], 'x')).not.toThrow();
    r.hv.ram.bytes[0x3000] = 1;
    expect(() => ioreqChecks.ramConsistent(r, [[0x2000, 0x3000]], 'x')).toThrow(InvariantViolation);
    r.hv.ram.bytes[0x3000] = 0;
    r.hv.ram.bytes[0x2000] = 1; // inside the window, but nobody told Xen
    expect(() => ioreqChecks.ramConsistent(r, [[0x2000, 0x3000]], 'x')).toThrow(/not reported with modified_memory/);
  });

  test('Xen maps a range that is not BAR4', () => {
    const r = rig();
    expect(() => ioreqChecks.mappingConsistent(r, 'x')).not.toThrow();
    r.s.ranges.push({ isMmio: false, start: 0x100, end: 0x11f });
    expect(() => ioreqChecks.mappingConsistent(r, 'x')).toThrow(InvariantViolation);
  });

  test('INTx at Xen differs from the controller request', () => {
    const r = rig();
    expect(() => ioreqChecks.irqConsistent(r, 'x')).not.toThrow();
    r.hv.intx.set(`0:5.${r.fn.config.interruptPin - 1}`, true);
    expect(() => ioreqChecks.irqConsistent(r, 'x')).toThrow(InvariantViolation);
  });

  test('a request left unanswered, or answered twice', () => {
    const r = rig();
    expect(r.configRead(0, 0, 4) >>> 0).toBe(0x70208086);
    // A second notification of the vCPU port while the slot is READY would be answered once only:
    // simulate a server that answers twice by notifying the Xen listener by hand.
    const req = { type: IOREQ_TYPE_PCI_CONFIG, addr: encodePciConfigAddr({ segment: 0, bus: 0, device: 5, fn: 0 }, 0), data: 0n, count: 1, size: 4, dataIsPtr: false, dir: IOREQ_READ as 0 | 1, df: false };
    r.hv.onXenPort(r.s.vcpuPorts[0]!, () => (r.answers[0] = r.answers[0]! + 2));
    expect(() => r.request(0, req)).toThrow(/no single answer/);
  });
});
