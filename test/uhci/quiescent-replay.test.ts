/**
 * Quiescent frame replay (ScheduleEngine.replayQuiescentFrame) and the
 * remote-wakeup / global-suspend chain, on the Linux-style schedule the
 * benchmarks use, with the real emulated tablet.
 */
import { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';
import { FRAME_NS } from '../../src/uhci/controller.js';
import { makeToken, LINK, TD_CTRL } from '../../src/uhci/descriptors.js';
import { UsbTablet } from '../../src/usb/hid/tablet.js';
import { PID_IN, type UsbPacket } from '../../src/usb/packet.js';
import { idleTabletGuest, suspendLikeLinux } from '../support/linux-schedule.js';
import { installBulkLoad } from '../support/bulk-load.js';

const REGION = 0x200000; // the Linux skeleton, its TDs and the bulk load live in 0x200000..0x210000

async function guest(opts: { coalesce: number; replay: boolean; busy?: boolean }) {
  const clock = new ManualClock();
  const mem = new FlatMemory(4 << 20);
  const irq = new LatchedIrq();
  const fn = new UhciPciFunction({ mem, irq, clock, idleCoalesce: opts.coalesce });
  fn.controller.engine.replayEnabled = opts.replay;
  const g = await idleTabletGuest(fn, mem, clock, clock);
  if (opts.busy) await installBulkLoad(g.bus, g.sched, g.dev.address);
  const tablet = fn.controller.ports[0]!.device as UsbTablet;
  // Frame (FRNUM) of every transaction the tablet acknowledged.
  const acked: number[] = [];
  const handle = tablet.handlePacket.bind(tablet);
  tablet.handlePacket = (p: UsbPacket) => {
    handle(p);
    if (p.status === 'ack' && p.endpoint === 1) acked.push(fn.controller.frnum);
  };
  return { ...g, clock, mem, irq, fn, hc: fn.controller, tablet, acked };
}

type Guest = Awaited<ReturnType<typeof guest>>;

const w32 = (g: Guest, addr: number, v: number) => g.mem.writeU32(addr, v >>> 0);

function state(g: Guest) {
  const hc = g.hc;
  return {
    frnum: hc.frnum,
    status: hc.status,
    cmd: hc.cmd,
    irq: g.irq.level,
    ports: hc.ports.map((p) => p.read()),
    acked: [...g.acked],
    region: Buffer.from(g.mem.bytes.subarray(REGION, REGION + 0x10000)).toString('hex'),
  };
}

/** Same pseudo-random guest activity on every guest (no I/O unless stated). */
function script(seed: number, steps: number): ((g: Guest) => void)[] {
  let x = seed;
  const rnd = (n: number) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return (x >>> 8) % n;
  };
  const out: ((g: Guest) => void)[] = [];
  const spareTd = REGION + 0x1800;
  for (let i = 0; i < steps; i++) {
    const ms = 1 + rnd(300);
    const kind = rnd(6);
    const arg = rnd(1024);
    out.push((g) => {
      g.clock.advance(ms * FRAME_NS + (arg % 3) * 250_000);
      const s = g.sched;
      switch (kind) {
        case 0:
          // Input, after a guest register read (so both guests are caught up to the same frame).
          g.hc.ioRead(0x06, 2);
          g.tablet.moveTo(arg * 16, 0x7fff - arg * 16);
          break;
        case 1:
          // Memory only: a new interrupt IN TD (NAKs until input) in the 1 ms queue, or unlink it.
          if (arg & 1) {
            w32(g, spareTd, LINK.bit.T);
            w32(g, spareTd + 4, (3 << TD_CTRL.lsb.CERR) | TD_CTRL.bit.ACTIVE | 0x7ff);
            w32(g, spareTd + 8, makeToken(PID_IN, g.dev.address, 1, 0, 4));
            w32(g, spareTd + 12, REGION + 0x1900);
            w32(g, s.intQh[0]! + 4, spareTd);
          } else {
            w32(g, s.intQh[0]! + 4, LINK.bit.T);
          }
          break;
        case 2:
          // Memory only: re-point one frame-list slot (the next walk of that slot sees it).
          w32(g, s.frameList + (arg << 2), s.intQh[arg % 8]! | LINK.bit.Q);
          break;
        case 3:
          // Memory only: the tablet TD is re-armed (NAK bit cleared, IOC set sometimes).
          w32(g, s.tabletTd + 4, (3 << TD_CTRL.lsb.CERR) | TD_CTRL.bit.ACTIVE | (arg & 1 ? TD_CTRL.bit.IOC : 0) | 0x7ff);
          w32(g, s.intQh[3]! + 4, s.tabletTd);
          break;
        case 4:
          // Guest I/O: acknowledge interrupts.
          g.hc.ioWrite(0x02, 2, 0x003f);
          break;
        default:
          // Nothing: time passes.
          break;
      }
    });
  }
  return out;
}

describe('quiescent frame replay is exact', () => {
  for (const coalesce of [1, 64]) {
    for (const busy of [false, true]) {
      test(`same guest memory, registers, IRQ and delivered reports as walking every frame (coalesce ${coalesce}${busy ? ', 120 NAKing queues' : ''})`, async () => {
        const walked = await guest({ coalesce, replay: false, busy });
        const replayed = await guest({ coalesce, replay: true, busy });
        const steps = script(7 + coalesce, busy ? 25 : 120);
        for (let i = 0; i < steps.length; i++) {
          steps[i]!(walked);
          steps[i]!(replayed);
          expect({ step: i, ...state(replayed) }).toEqual({ step: i, ...state(walked) });
        }
        walked.hc.ioRead(0x06, 2);
        replayed.hc.ioRead(0x06, 2);
        expect(state(replayed)).toEqual(state(walked));
        // The scenario exercised both paths.
        expect(replayed.hc.engine.framesReplayed).toBeGreaterThan(replayed.hc.framesProcessed / 2);
        expect(walked.hc.engine.framesReplayed).toBe(0);
        expect(replayed.acked.length).toBeGreaterThan(busy ? 1 : 5);
      });
    }
  }

  test('input arriving between coalesced wake-ups is delivered in the frame it arrives in, as with per-frame wake-ups', async () => {
    for (const coalesce of [1, 1024]) {
      const g = await guest({ coalesce, replay: true });
      g.clock.advance(5000 * FRAME_NS + 500_000);
      g.tablet.moveTo(100, 200);
      g.clock.advance(50 * FRAME_NS);
      g.hc.ioRead(0x06, 2);
      // The input came half-way through frame F (FRNUM then); the tablet's TD
      // sits in the 8 ms queue, reached by frames whose number is a multiple of 8.
      const f = (g.hc.frnum - 50) & 0x7ff;
      const expected = (f + ((8 - (f % 8)) % 8)) & 0x7ff;
      expect({ coalesce, acked: g.acked }).toEqual({ coalesce, acked: [expected] });
    }
  });

  test('a TD the guest arms by a memory write alone is run within idleCoalesce frames', async () => {
    const g = await guest({ coalesce: 128, replay: true });
    g.hc.ioWrite(0x02, 2, 0x3f);
    g.clock.advance(3000 * FRAME_NS + 300_000);
    expect(g.hc.engine.framesReplayed).toBeGreaterThan(2500);
    // Deactivated TD with IOC: the next walk of its slot must request the interrupt.
    w32(g, g.sched.tabletTd + 4, TD_CTRL.bit.IOC);
    let ms = 0;
    while (!(g.hc.status & 1) && ms < 1000) {
      g.clock.advance(FRAME_NS);
      ms++;
    }
    expect(g.hc.status & 1).toBe(1); // USBINT, seen without any guest I/O
    expect(ms).toBeLessThanOrEqual(128);
  });

  test('a device that does not declare a stable NAK is walked every frame', async () => {
    const g = await guest({ coalesce: 64, replay: true });
    Object.defineProperty(g.tablet, 'nakIsStable', { value: false });
    g.hc.ioWrite(0x02, 2, 0x3f); // a register write forgets what was remembered
    const r0 = g.hc.engine.framesReplayed;
    g.clock.advance(2000 * FRAME_NS);
    // Frames that do not reach the tablet's TD (7 of 8) touch no device and are still replayed.
    const replayed = g.hc.engine.framesReplayed - r0;
    expect(replayed).toBeGreaterThan(1000);
    expect(replayed).toBeLessThanOrEqual(2000 - 250);
  });
});

describe('remote wakeup from global suspend (UHCI DG §2.1.1, §2.1.2, §2.1.7; USB 2.0 §9.4.5)', () => {
  test('suspended as Linux does it: no timer at all, no frame; input wakes port and controller and raises the resume interrupt', async () => {
    const g = await guest({ coalesce: 128, replay: true });
    await suspendLikeLinux(g.bus, g.driver, g.dev, g.sched);
    expect(g.tablet.remoteWakeup).toBe(true);
    const hc = g.hc;
    expect(hc.running).toBe(false);
    expect(hc.ports[0]!.read() & 0x1000).toBe(0x1000);
    const frames = hc.framesProcessed;
    expect(g.clock.pendingTimers()).toBe(0);
    g.clock.advance(10_000 * FRAME_NS);
    expect(hc.framesProcessed).toBe(frames);
    expect(g.irq.level).toBe(false);
    g.tablet.moveTo(10, 10);
    expect(hc.ports[0]!.read() & 0x0040).toBe(0x0040); // port Resume Detect
    expect(hc.status & 0x0004).toBe(0x0004); // USBSTS Resume Detect
    expect(hc.cmd & 0x0010).toBe(0x0010); // Force Global Resume
    expect(g.irq.level).toBe(true); // USBINTR Resume enabled
    // The guest's resume (uhci-hcd wakeup_rh): FGR for 20 ms, then CF|RS; the report arrives.
    g.hc.ioWrite(0x02, 2, 0x0004);
    expect(g.irq.level).toBe(false);
    g.hc.ioWrite(0x00, 2, 0x0058);
    g.clock.advance(20 * FRAME_NS);
    g.hc.ioWrite(0x00, 2, 0x0040);
    g.hc.ioWrite(0x10, 2, (g.hc.ports[0]!.read() & ~0x104a) >>> 0); // end port resume (clear SUSP and RD)
    g.hc.ioWrite(0x00, 2, 0x00c1);
    w32(g, g.sched.intQh[3]! + 4, g.sched.tabletTd);
    g.clock.advance(20 * FRAME_NS);
    expect(g.acked.length).toBe(1);
  });

  test('without DEVICE_REMOTE_WAKEUP the input stays queued and nothing wakes', async () => {
    const g = await guest({ coalesce: 128, replay: true });
    // The same register writes as suspendLikeLinux, without SET_FEATURE(DEVICE_REMOTE_WAKEUP).
    const io = g.driver.ioBase;
    w32(g, g.sched.intQh[3]! + 4, LINK.bit.T);
    await g.bus.outw(io + 0x10, (g.hc.ports[0]!.read() & ~0xe00a) | 0x1000);
    await g.bus.outw(io + 0x04, 0x0002);
    await g.bus.outw(io + 0x00, 0x0048);
    expect(g.tablet.remoteWakeup).toBe(false);
    g.tablet.moveTo(10, 10);
    expect(g.hc.ports[0]!.read() & 0x0040).toBe(0);
    expect(g.hc.status & 0x0004).toBe(0);
    expect(g.irq.level).toBe(false);
    expect(g.tablet.queuedEvents).toBe(1);
  });

  test('selective suspend (controller running): input sets the port Resume Detect only, as the guide limits USBSTS RD to global suspend', async () => {
    const g = await guest({ coalesce: 128, replay: true });
    await suspendLikeLinux(g.bus, g.driver, g.dev, g.sched);
    // Back to running with port 1 still suspended (another device would keep the bus busy).
    await g.bus.outw(g.driver.ioBase + 0x00, 0x00c1);
    g.clock.advance(50 * FRAME_NS);
    g.tablet.moveTo(10, 10);
    expect(g.hc.ports[0]!.read() & 0x0040).toBe(0x0040);
    expect(g.hc.status & 0x0004).toBe(0);
    expect(g.hc.cmd & 0x0010).toBe(0);
    expect(g.irq.level).toBe(false);
  });

  test('with the resume interrupt disabled Resume Detect is set but the IRQ stays low', async () => {
    const g = await guest({ coalesce: 128, replay: true });
    await suspendLikeLinux(g.bus, g.driver, g.dev, g.sched);
    g.hc.ioWrite(0x04, 2, 0);
    g.tablet.moveTo(10, 10);
    expect(g.hc.status & 0x0004).toBe(0x0004);
    expect(g.irq.level).toBe(false);
  });
});
