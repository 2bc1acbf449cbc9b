/**
 * Internal faults under the simulated hypervisor: a guest-memory backend or
 * a device that throws (a bug, not guest input) in the middle of a
 * timer-driven frame walk. The process must survive, every vCPU ioreq must
 * still be answered, the controller must do what UHCI does on an internal
 * fault (Host System Error: USBSTS.HSE and HCHalted set, Run/Stop cleared,
 * the interrupt asserted whatever USBINTR says — UHCI Design Guide §2.1.2;
 * QEMU's uhci_update_irq), exactly one error line must be logged, and a
 * guest HCRESET must recover.
 */
import { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { UhciGuestDriver } from '../../src/guest/uhci-driver.js';
import { ManualClock } from '../../src/platform/clock.js';
import { MemoryLogger } from '../../src/platform/logger.js';
import type { GuestMemory } from '../../src/platform/memory.js';
import { createDevice } from '../../src/usb/devices.js';
import type { UsbDevice, UsbPacket } from '../../src/usb/packet.js';
import { IoreqServer } from '../../src/xen/ioreq-server.js';
import { SimHypervisor } from '../../src/xen/sim/hypervisor.js';
import { SimGuestBus } from '../../src/xen/sim/vcpu.js';

const INTX = '0:5.3'; // PIIX3 UHCI: INTD → intx 3
const USBCMD = 0xc000;
const USBSTS = 0xc002;
const USBINTR = 0xc004;
const FRNUM = 0xc006;
const HSE_HALTED = 0x28;

/** Guest memory that throws a RangeError (as the restored control pipe of issue 13 did) while armed. */
function breakable(mem: GuestMemory) {
  const state = { armed: false, throws: 0 };
  const check = () => {
    if (state.armed) {
      state.throws++;
      throw new RangeError('offset is out of bounds');
    }
  };
  const wrapped: GuestMemory = {
    read: (a, b) => (check(), mem.read(a, b)),
    write: (a, b) => (check(), mem.write(a, b)),
    readU32: mem.readU32 ? (a) => (check(), mem.readU32!(a)) : undefined,
  };
  return { state, wrapped };
}

async function setup(wrapMem: (m: GuestMemory) => GuestMemory = (m) => m) {
  const hv = new SimHypervisor({ domid: 7, vcpus: 1, ramBytes: 8 << 20 });
  const clock = new ManualClock();
  const logger = new MemoryLogger();
  const server = new IoreqServer({
    platform: hv.platform,
    domid: 7,
    clock,
    logger,
    livenessMs: 0,
    createFunction: (io) => new UhciPciFunction({ ...io, mem: wrapMem(io.mem) }),
  });
  await server.start();
  const cpu = hv.vcpus[0]!;
  const bus = new SimGuestBus(cpu, clock);
  const driver = new UhciGuestDriver(bus, { frameList: 0x100000, heap: 0x110000 });
  const errors = () => logger.records.filter((r) => r.level === 'error');
  return { hv, clock, logger, server, cpu, bus, driver, errors };
}

describe('an internal fault in a timer-driven frame walk', () => {
  test('a throwing guest-memory backend: HSE|HCHalted, IRQ asserted, one error line, ioreqs answered, HCRESET recovers', async () => {
    const mem = { b: null as ReturnType<typeof breakable> | null };
    const { hv, server, cpu, bus, driver, errors, clock } = await setup((m) => (mem.b = breakable(m)).wrapped);
    server.fn.attach(0, createDevice('keyboard', { clock, hcdPath: '0000:00:05.0', portPath: '1' }));
    await driver.probe(0xc000, [5]);
    await driver.start();
    await driver.enumerate(0);
    await cpu.pio('out', USBINTR, 2, 0); // every interrupt source masked: HSE must interrupt anyway
    expect(hv.intx.get(INTX) ?? false).toBe(false);
    expect(errors()).toEqual([]);

    mem.b!.state.armed = true;
    await bus.wait(5); // frame timers fire; the walk throws inside the timer callback
    expect(mem.b!.state.throws).toBeGreaterThan(0);
    const answeredBefore = server.stats.ioreqs;
    expect((await cpu.pio('in', USBSTS, 2)) & 0x3c).toBe(HSE_HALTED);
    expect((await cpu.pio('in', USBCMD, 2)) & 1).toBe(0); // Run/Stop cleared
    expect(hv.intx.get(INTX)).toBe(true);
    expect(server.stats.ioreqs).toBe(answeredBefore + 2);
    // Still answering, nothing more logged while the fault stands.
    for (let i = 0; i < 50; i++) await cpu.pio('in', FRNUM, 2);
    await bus.wait(5);
    expect(server.running).toBe(true);
    expect(errors()).toEqual([
      expect.objectContaining({
        component: 'uhci',
        msg: 'internal error in frame processing: host system error, controller halted',
        fields: expect.objectContaining({ error: 'RangeError: offset is out of bounds' }),
      }),
    ]);

    // The guest resets the controller and starts it again: it runs, the IRQ drops.
    mem.b!.state.armed = false;
    await cpu.pio('out', USBCMD, 2, 0x0002); // HCRESET
    expect(await cpu.pio('in', USBSTS, 2)).toBe(0x20);
    expect(hv.intx.get(INTX)).toBe(false);
    await driver.start();
    const f0 = await cpu.pio('in', FRNUM, 2);
    await bus.wait(5);
    expect(await cpu.pio('in', FRNUM, 2)).not.toBe(f0);
    expect((await cpu.pio('in', USBSTS, 2)) & 0x3c).toBe(0);
    const d = await driver.enumerate(0);
    expect(d.product).toBe('QEMU USB Keyboard');
    await server.stop();
  });

  test('a device that throws on a packet: the same, and the device is still plugged afterwards', async () => {
    const { hv, server, cpu, bus, driver, errors, clock } = await setup();
    const kb = createDevice('keyboard', { clock, hcdPath: '0000:00:05.0', portPath: '1' });
    let broken = false;
    const handle = kb.handlePacket.bind(kb);
    kb.handlePacket = (p: UsbPacket) => {
      if (broken) throw new TypeError('device bug');
      handle(p);
    };
    server.fn.attach(0, kb as UsbDevice);
    await driver.probe(0xc000, [5]);
    await driver.start();
    const dev = await driver.enumerate(0);
    broken = true;
    // An interrupt IN poll makes the walk hand the device a packet.
    await driver.pollInterrupt(dev, 0, 5).catch(() => null);
    await bus.wait(3);
    expect((await cpu.pio('in', USBSTS, 2)) & 0x3c).toBe(HSE_HALTED);
    expect(hv.intx.get(INTX)).toBe(true);
    expect(errors()).toHaveLength(1);
    expect(errors()[0]!.fields).toEqual(expect.objectContaining({ error: 'TypeError: device bug' }));
    expect(server.fn.deviceAt(0)).toBe(kb);
    broken = false;
    await cpu.pio('out', USBCMD, 2, 0x0002);
    await driver.start();
    expect((await driver.enumerate(0)).product).toBe('QEMU USB Keyboard');
    await server.stop();
  });
});
