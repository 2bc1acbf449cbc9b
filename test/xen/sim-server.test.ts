/**
 * The ioreq server against the simulated hypervisor: the guest driver
 * enumerates devices through ioreqs (CF8/CFC config cycles become
 * PCI_CONFIG requests, BAR4 accesses PIO requests), several vCPUs at once,
 * buffered writes, BAR relocation, INTx, dirty-page reporting, INVALIDATE,
 * and the life cycle.
 */
import { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { UhciGuestDriver } from '../../src/guest/uhci-driver.js';
import { MemoryLogger } from '../../src/platform/logger.js';
import { ManualClock } from '../../src/platform/clock.js';
import type { GuestMemory } from '../../src/platform/memory.js';
import { createDevice } from '../../src/usb/devices.js';
import {
  IOREQ_READ,
  IOREQ_TYPE_COPY,
  IOREQ_TYPE_PCI_CONFIG,
  IOREQ_TYPE_PIO,
  IOREQ_WRITE,
  encodePciConfigAddr,
} from '../../src/xen/ioreq.js';
import { IoreqServer, type ServedFunctionIo } from '../../src/xen/ioreq-server.js';
import { XenCallError } from '../../src/xen/platform.js';
import { SimHypervisor, type SimCall } from '../../src/xen/sim/hypervisor.js';
import { SimGuestBus } from '../../src/xen/sim/vcpu.js';

const BDF = { bus: 0, device: 5, fn: 0 };

async function setup(opts: { vcpus?: number; createFunction?: (io: ServedFunctionIo) => UhciPciFunction; mapCachePages?: number } = {}) {
  const hv = new SimHypervisor({ domid: 7, vcpus: opts.vcpus ?? 1, ramBytes: 8 << 20 });
  const clock = new ManualClock();
  const logger = new MemoryLogger();
  const server = new IoreqServer({ platform: hv.platform, domid: 7, clock, logger, createFunction: opts.createFunction, mapCachePages: opts.mapCachePages, livenessMs: 0 });
  await server.start();
  const bus = new SimGuestBus(hv.vcpus[0]!, clock);
  const driver = new UhciGuestDriver(bus, { frameList: 0x100000, heap: 0x110000 });
  return { hv, clock, logger, server, bus, driver };
}

const ops = (calls: SimCall[], op: SimCall['op']) => calls.filter((c) => c.op === op);

describe('ioreq server on the simulated hypervisor', () => {
  test('life cycle: create, map pages, bind every vCPU, map BDF, enable, restrict', async () => {
    const { hv, server } = await setup({ vcpus: 3 });
    const seq = hv.calls.map((c) => c.op);
    expect(seq.slice(0, 2)).toEqual(['create', 'mapResource']);
    expect(ops(hv.calls, 'bind')).toHaveLength(4); // buffered ring + 3 vCPUs
    const s = hv.serverList[0]!;
    expect(s.enabled).toBe(true);
    expect(s.pcidevs).toEqual([{ segment: 0, ...BDF }]);
    expect(seq.indexOf('mapPcidev')).toBeLessThan(seq.indexOf('state'));
    expect(ops(hv.calls, 'restrict').map((c) => (c as { lib: string }).lib).sort()).toEqual(['devicemodel', 'evtchn', 'foreignmemory']);
    expect(seq.indexOf('state')).toBeLessThan(seq.indexOf('restrict'));
    expect(s.ranges).toEqual([]); // BAR4 not programmed yet
    await server.stop();
  });

  test('the guest driver enumerates a tablet through ioreqs', async () => {
    const { hv, server, driver, clock } = await setup();
    server.fn.attach(0, createDevice('tablet', { clock, hcdPath: '0000:00:05.0', portPath: '1' }));
    const found = await driver.probe(0xc040, [3, 4, 5, 6]);
    expect(found).toEqual({ slot: 5, id: 0x70208086 });
    // Slots 3 and 4 belong to nobody: answered by the default device model.
    expect(hv.vcpus[0]!.unclaimed).toBeGreaterThanOrEqual(2);
    expect(hv.serverList[0]!.ranges).toEqual([{ isMmio: false, start: 0xc040, end: 0xc05f }]);
    await driver.start();
    const d = await driver.enumerate(0);
    expect(d.vendorId).toBe(0x0627);
    expect(d.productId).toBe(0x0001);
    expect(d.product).toBe('QEMU USB Tablet');
    expect(d.hidReportDescriptor?.length).toBeGreaterThan(50);
    expect(server.stats.config).toBeGreaterThan(4);
    expect(server.stats.pio).toBeGreaterThanOrEqual(10);
    expect(server.stats.malformed).toBe(0);
    // Input reaches the guest through an interrupt IN poll.
    (server.fn.controller.ports[0]!.device as unknown as { moveTo(x: number, y: number): boolean }).moveTo(0x1234, 0x2345);
    const rep = await driver.pollInterrupt(d, 0, 50);
    expect(rep).not.toBeNull();
    expect([...rep!.subarray(1, 5)]).toEqual([0x34, 0x12, 0x45, 0x23]);
    await server.stop();
  });

  test('4 vCPUs issue requests concurrently; each gets its own answer', async () => {
    const { hv, server, driver } = await setup({ vcpus: 4 });
    await driver.probe(0xc000, [5]);
    // Each vCPU writes then reads back its own scratch register value through
    // different registers: SOFMOD (byte), FRNUM (halted: writable), USBINTR, FLBASEADD.
    const regs: [number, 1 | 2 | 4, number][] = [
      [0x0c, 1, 0x55],
      [0x06, 2, 0x123],
      [0x04, 2, 0x5],
      [0x08, 4, 0x00abc000],
    ];
    const vcpuRounds = hv.vcpus.map(async (cpu, i) => {
      const [off, size, val] = regs[i]!;
      const results: number[] = [];
      for (let k = 0; k < 25; k++) {
        await cpu.pio('out', 0xc000 + off, size, val);
        results.push(await cpu.pio('in', 0xc000 + off, size));
      }
      return results;
    });
    const all = await Promise.all(vcpuRounds);
    all.forEach((r, i) => expect(new Set(r)).toEqual(new Set([regs[i]![2]])));
    hv.vcpus.forEach((c) => expect(c.completed).toBeGreaterThanOrEqual(50));
    expect(hv.maxInFlight).toBe(4); // all four slots were READY/INPROCESS at the same time
    expect(server.stats.ioreqs).toBeGreaterThanOrEqual(200);
    await server.stop();
  });

  test('buffered writes (ring) are applied in order, including the 8-byte two-slot form', async () => {
    const { hv, server, driver } = await setup();
    await driver.probe(0xc000, [5]);
    const cpu = hv.vcpus[0]!;
    expect(cpu.bufferedWrite(0xc00c, 1, 0x40)).toBe(true);
    expect(cpu.bufferedWrite(0xc00c, 1, 0x41)).toBe(true);
    expect(cpu.bufferedWrite(0xc004, 2, 0x3)).toBe(true);
    // A synchronous read afterwards is served after the ring (Xen orders them the same way).
    expect(await cpu.pio('in', 0xc00c, 1)).toBe(0x41);
    expect(await cpu.pio('in', 0xc004, 2)).toBe(0x3);
    const before = server.stats.buffered;
    expect(cpu.bufferedWrite(0xc008, 8, 0x1122334400002000n)).toBe(true);
    await cpu.pio('in', 0xc000, 2);
    expect(server.stats.buffered).toBe(before + 1);
    // PIO of size 8 is not a thing: dropped as malformed, FLBASEADD untouched.
    expect(server.stats.malformed).toBe(1);
    expect(await cpu.pio('in', 0xc008, 4)).toBe(0);
    await server.stop();
  });

  test('BAR relocation unmaps the old range and maps the new one; disabling I/O unmaps', async () => {
    const { hv, server, driver } = await setup();
    await driver.probe(0xc000, [5]);
    const s = hv.serverList[0]!;
    expect(s.ranges).toEqual([{ isMmio: false, start: 0xc000, end: 0xc01f }]);
    await driver.configWrite32(5, 0x20, 0xd101);
    expect(s.ranges).toEqual([{ isMmio: false, start: 0xd100, end: 0xd11f }]);
    const seq = hv.calls.filter((c) => c.op === 'mapIoRange' || c.op === 'unmapIoRange');
    expect(seq).toEqual([
      { op: 'mapIoRange', id: s.id, isMmio: false, start: 0xc000, end: 0xc01f },
      { op: 'unmapIoRange', id: s.id, isMmio: false, start: 0xc000, end: 0xc01f },
      { op: 'mapIoRange', id: s.id, isMmio: false, start: 0xd100, end: 0xd11f },
    ]);
    const cpu = hv.vcpus[0]!;
    // The old ports are nobody's now; the new ones reach USBSTS (HCHalted).
    const unclaimed = cpu.unclaimed;
    expect(await cpu.pio('in', 0xc002, 2)).toBe(0xffff);
    expect(cpu.unclaimed).toBe(unclaimed + 1);
    expect(await cpu.pio('in', 0xd102, 2)).toBe(0x20);
    // COMMAND.IO off → unmapped.
    await driver.configWrite32(5, 0x04, 0x4);
    expect(s.ranges).toEqual([]);
    expect(server.mappedRange).toBeNull();
    await server.stop();
  });

  test('INTx level follows USBSTS & USBINTR', async () => {
    const { hv, server, driver } = await setup();
    await driver.probe(0xc000, [5]);
    const cpu = hv.vcpus[0]!;
    // PIIX3 UHCI reports interrupt pin 4 (INTD, as QEMU's piix3-usb-uhci): intx 3.
    expect(server.fn.config.interruptPin).toBe(4);
    const key = '0:5.3';
    await cpu.pio('out', 0xc000, 2, 0x0002); // HCRESET
    await cpu.pio('out', 0xc004, 2, 0x0000);
    await cpu.pio('out', 0xc002, 2, 0xffff);
    expect(hv.intx.get(key) ?? false).toBe(false);
    // A one-TD schedule: IN to a device nobody answers (timeout), C_ERR=1, IOC → USBINT at frame end.
    const fl = 0x200000;
    const td = 0x201000;
    const u32 = (a: number, v: number) => hv.ram.writeU32(a, v >>> 0);
    for (let i = 0; i < 1024; i++) u32(fl + i * 4, td); // TD, not a QH
    u32(td, 1); // link: terminate
    u32(td + 4, (1 << 27) | (1 << 24) | (1 << 23)); // C_ERR=1, IOC, Active
    u32(td + 8, (0x7ff << 21) | (9 << 8) | 0x69); // IN to address 9 (nobody): timeout
    u32(td + 12, 0);
    await cpu.pio('out', 0xc008, 4, fl);
    await cpu.pio('out', 0xc004, 2, 0x0004); // IOC enable
    await cpu.pio('out', 0xc000, 2, 0x0001); // RS
    await driver.bus.wait(5);
    const sts = await cpu.pio('in', 0xc002, 2);
    expect(sts & 1).toBe(1); // USBINT (IOC of the completed/failed TD)
    expect(hv.intx.get(key)).toBe(true);
    expect(server.intxLevel).toBe(true);
    // Masking the interrupt in USBINTR lowers INTx although USBSTS still has it.
    await cpu.pio('out', 0xc004, 2, 0x0000);
    expect(hv.intx.get(key)).toBe(false);
    await cpu.pio('out', 0xc004, 2, 0x0004);
    expect(hv.intx.get(key)).toBe(true);
    // Acknowledging (RW1C) lowers it.
    await cpu.pio('out', 0xc000, 2, 0x0000);
    await driver.bus.wait(2);
    await cpu.pio('out', 0xc002, 2, 0x003f);
    expect(hv.intx.get(key)).toBe(false);
    const levels = hv.calls.filter((c): c is Extract<SimCall, { op: 'intx' }> => c.op === 'intx').map((c) => c.level);
    expect(levels).toEqual([true, false, true, false]);
    await server.stop();
  });

  test('modified_memory reports exactly the pages the model wrote', async () => {
    const written = new Set<number>();
    const spy = (mem: GuestMemory): GuestMemory => ({
      read: (a, b) => mem.read(a, b),
      readU32: mem.readU32 ? (a) => mem.readU32!(a) : undefined,
      write: (a, b) => {
        for (let p = Math.floor(a / 4096); p <= Math.floor((a + b.length - 1) / 4096); p++) written.add(p);
        mem.write(a, b);
      },
    });
    const { hv, server, driver, clock } = await setup({
      createFunction: (io) => new UhciPciFunction({ ...io, mem: spy(io.mem) }),
    });
    server.fn.attach(0, createDevice('keyboard', { clock, hcdPath: '0000:00:05.0', portPath: '1' }));
    await driver.probe(0xc000, [5]);
    await driver.start();
    await driver.enumerate(0);
    await Promise.resolve(); // the flush runs in a microtask
    server.flushDirty();
    expect(written.size).toBeGreaterThan(0);
    expect([...hv.modifiedPages()].sort((a, b) => a - b)).toEqual([...written].sort((a, b) => a - b));
    // Each run is reported once per flush with no overlap inside one call.
    for (const c of hv.calls) if (c.op === 'modifiedMemory') expect(c.nr).toBeGreaterThan(0);
    await server.stop();
  });

  test('rep outs / rep ins with data_is_ptr move data through guest memory (df walks down)', async () => {
    const { hv, server, driver } = await setup();
    await driver.probe(0xc000, [5]);
    const cpu = hv.vcpus[0]!;
    hv.ram.bytes.set([0x11, 0x22, 0x33], 0x3000);
    // rep outsb to SOFMOD: the last byte written wins (0x33 forward, 0x11 with DF walking down from 0x3002).
    expect(await cpu.repPio('out', 0xc00c, 1, 3, 0x3000)).toBe(true);
    expect(await cpu.pio('in', 0xc00c, 1)).toBe(0x33);
    expect(await cpu.repPio('out', 0xc00c, 1, 3, 0x3002, true)).toBe(true);
    expect(await cpu.pio('in', 0xc00c, 1)).toBe(0x11);
    // rep insw of USBSTS (0x0020 while halted) into guest RAM, with the page reported dirty.
    hv.ram.bytes.fill(0xee, 0x5000, 0x5008);
    await cpu.repPio('in', 0xc002, 2, 3, 0x5000);
    expect([...hv.ram.bytes.subarray(0x5000, 0x5008)]).toEqual([0x20, 0, 0x20, 0, 0x20, 0, 0xee, 0xee]);
    await Promise.resolve();
    expect(hv.modifiedPages().has(5)).toBe(true);
    await server.stop();
  });

  test('INVALIDATE drops every cached mapping; later DMA maps again', async () => {
    const { hv, server, driver, clock } = await setup({ mapCachePages: 8 });
    server.fn.attach(0, createDevice('mouse', { clock, hcdPath: '0000:00:05.0', portPath: '1' }));
    await driver.probe(0xc000, [5]);
    await driver.start();
    await driver.bus.wait(3);
    expect(server.mem.mappedPages).toBeGreaterThan(0);
    expect(server.mem.mappedPages).toBeLessThanOrEqual(8);
    expect(hv.mappings.live).toBe(server.mem.mappedPages);
    const unmapsBefore = hv.mappings.unmaps;
    await hv.vcpus[0]!.invalidate();
    expect(server.stats.invalidates).toBe(1);
    expect(server.mem.mappedPages).toBe(0);
    expect(hv.mappings.live).toBe(0);
    expect(hv.mappings.unmaps).toBeGreaterThan(unmapsBefore);
    await driver.enumerate(0); // schedule runs again → frames remapped
    expect(hv.mappings.live).toBeGreaterThan(0);
    await server.stop();
  });

  test('malformed and unknown requests are answered safely and logged under a rate limit', async () => {
    const { hv, server, logger, driver } = await setup();
    await driver.probe(0xc000, [5]);
    const s = hv.serverList[0]!;
    const cpu = hv.vcpus[0]!;
    const send = (r: Partial<Parameters<typeof cpu.send>[1]>) =>
      cpu.send(s, { type: IOREQ_TYPE_PIO, addr: 0xc000n, data: 0n, count: 1, size: 2, dataIsPtr: false, dir: IOREQ_READ, df: false, ...r });
    expect(await send({ type: 99 })).toBe(0xffffn);
    expect(await send({ type: 99 })).toBe(0xffffn);
    expect(await send({ type: IOREQ_TYPE_COPY, addr: 0xfe000000n, size: 4 })).toBe(0xffffffffn);
    expect(await send({ size: 3 })).toBe(0xffffffffffffffffn);
    expect(await send({ count: 5 })).toBe(0xffffn);
    expect(await send({ dataIsPtr: true, count: 100000, data: 0x1000n })).toBe(0x1000n);
    expect(await send({ addr: 0x12345n })).toBe(0xffffn);
    expect(await send({ type: IOREQ_TYPE_PCI_CONFIG, addr: encodePciConfigAddr({ segment: 0, bus: 0, device: 6, fn: 0 }, 0), size: 4 })).toBe(0xffffffffn);
    expect(await send({ type: IOREQ_TYPE_PCI_CONFIG, addr: encodePciConfigAddr({ segment: 0, ...BDF }, 0x100), size: 4 })).toBe(0xffffffffn);
    expect(await send({ type: IOREQ_TYPE_PCI_CONFIG, addr: encodePciConfigAddr({ segment: 0, ...BDF }, 0), size: 4, dir: IOREQ_WRITE, data: 0n })).toBe(0n);
    // Rep ins into memory the guest does not have: a fault, answered, no crash.
    await send({ dataIsPtr: true, count: 2, data: 0x7fff0000n });
    // Two requests, two lines (well inside the burst); a flood is bounded (see the BAR-move test).
    const unknown = logger.records.filter((r) => r.msg.includes('unknown ioreq type 99'));
    expect(unknown).toHaveLength(2);
    expect(logger.records.some((r) => r.msg.includes('guest memory fault'))).toBe(true);
    // Still serving normally.
    expect(await cpu.pio('in', 0xc002, 2)).toBe(0x20);
    expect(server.running).toBe(true);
    await server.stop();
  });

  test('stop() disables and destroys the server, releases the devices; the guest falls back to all-ones', async () => {
    const { hv, server, driver, clock } = await setup();
    const tablet = createDevice('tablet', { clock, hcdPath: '0000:00:05.0', portPath: '1' });
    server.fn.attach(0, tablet);
    await driver.probe(0xc000, [5]);
    await driver.start();
    await server.stop();
    expect(await server.stopped).toBe('stop');
    expect(hv.serverList).toEqual([]);
    const tail = hv.calls.filter((c) => c.op === 'state' || c.op === 'destroy');
    expect(tail.slice(-2)).toEqual([
      { op: 'state', id: 1, enabled: false },
      { op: 'destroy', id: 1 },
    ]);
    expect(server.fn.controller.ports[0]!.device).toBeNull();
    expect(hv.mappings.live).toBe(0);
    expect(clock.pendingTimers()).toBe(0);
    expect(await hv.vcpus[0]!.pio('in', 0xc002, 2)).toBe(0xffff);
    await server.stop(); // idempotent
  });

  test('the domain going away stops the server (liveness check)', async () => {
    const hv = new SimHypervisor({ domid: 3 });
    const server = new IoreqServer({ platform: hv.platform, domid: 3, clock: new ManualClock(), livenessMs: 5 });
    await server.start();
    hv.destroyDomain();
    expect(await server.stopped).toBe('domain-gone');
  });

  test('a failing setup step destroys the half-made server', async () => {
    const hv = new SimHypervisor({ domid: 3 });
    const platform = {
      ...hv.platform,
      openDeviceModel: () => {
        const dm = hv.platform.openDeviceModel();
        dm.setIoreqServerState = () => {
          throw new XenCallError('xendevicemodel_set_ioreq_server_state', 1);
        };
        return dm;
      },
    };
    const server = new IoreqServer({ platform, domid: 3, clock: new ManualClock(), livenessMs: 0 });
    await expect(server.start()).rejects.toThrow(/set_ioreq_server_state failed/);
    expect(ops(hv.calls, 'create')).toHaveLength(1);
    expect(ops(hv.calls, 'destroy')).toHaveLength(1);
    expect(hv.serverList).toEqual([]);
    expect(await server.stopped).toBe('error');
  });
});
