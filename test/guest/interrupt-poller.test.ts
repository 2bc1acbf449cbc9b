/**
 * InterruptInPoller (the passthrough proof's interrupt schedule) through
 * the in-process model: guest schedule → UHCI → HostUsbDevice → emulated
 * libusb → our usb-kbd model. The TD stays active while the keyboard has
 * nothing (NAK), each key event arrives as one report with alternating
 * toggles, and removing the QH makes the controller give the waiting
 * packet back exactly once.
 */
import { UhciPciFunction } from '../../src/device/uhci-pci-function.js';
import { InProcessBus } from '../../src/guest/model-bus.js';
import { InterruptInPoller } from '../../src/guest/passthrough-proof-hid.js';
import { UhciGuestDriver } from '../../src/guest/uhci-driver.js';
import { ManualClock } from '../../src/platform/clock.js';
import { LatchedIrq } from '../../src/platform/irq.js';
import { FlatMemory } from '../../src/platform/memory.js';
import { UsbKeyboard } from '../../src/usb/hid/keyboard.js';
import { qemuHidDescriptorSet } from '../../src/usb/hid/qemu-hid-descriptors.js';
import { ExactlyOnceProbe } from '../../src/usb/host/exactly-once-probe.js';
import { HostUsbDevice } from '../../src/usb/host/host-device.js';
import { EmulatedLibusbDevice } from '../usb/host/emulated-libusb.js';
import { TD_CTRL } from '../../src/uhci/descriptors.js';

const turn = () => new Promise<void>((r) => setImmediate(r));

async function rig() {
  const clock = new ManualClock();
  const mem = new FlatMemory(16 << 20);
  const fn = new UhciPciFunction({ mem, irq: new LatchedIrq(), clock });
  const kbd = new UsbKeyboard({ clock });
  const set = qemuHidDescriptorSet('keyboard');
  const raw = new EmulatedLibusbDevice(kbd, set.device, new Map());
  const host = new HostUsbDevice(raw);
  const probe = new ExactlyOnceProbe(host);
  fn.attach(0, probe);
  const bus = new InProcessBus(fn, mem, clock, 5);
  const drv = new UhciGuestDriver(bus);
  await drv.probe();
  await drv.start();
  const dev = await drv.enumerate(0);
  const poller = new InterruptInPoller(bus, drv.layout.frameList, { address: dev.address, endpoint: dev.interruptIn!.endpoint, maxPacket: dev.interruptIn!.maxPacket, lowSpeed: dev.lowSpeed });
  return { kbd, host, probe, poller, mem, dev };
}

test('NAK while idle, one report per key event in order, exactly-once after removal', async () => {
  const { kbd, host, probe, poller, mem } = await rig();
  await poller.install();
  // Drain whatever the keyboard reports right after configuration.
  while (await poller.next(5)) await turn();
  expect(await poller.next(50)).toBeNull();
  // The TD is still active and the packet waits at "libusb".
  const td = new Uint8Array(4);
  mem.read(poller.layout.td + 4, td);
  expect(new DataView(td.buffer).getUint32(0, true) & TD_CTRL.bit.ACTIVE).toBe(TD_CTRL.bit.ACTIVE);
  expect(host.packetsInFlight).toBe(1);

  const reports: string[] = [];
  for (const [down, usage] of [[true, 0x04], [false, 0x04], [true, 0x05], [false, 0x05]] as const) {
    if (down) kbd.keyDown(usage);
    else kbd.keyUp(usage);
    for (let i = 0; i < 10; i++) {
      await turn(); // the emulated libusb retries the NAKed transfer on the event loop
      const r = await poller.next(3);
      if (r) {
        reports.push(Buffer.from(r.data!).toString('hex'));
        break;
      }
    }
  }
  expect(reports).toEqual(['0000040000000000', '0000000000000000', '0000050000000000', '0000000000000000']);
  expect(await poller.next(50)).toBeNull();

  await poller.remove(64);
  expect(probe.report).toMatchObject({ outstanding: 0, duplicateOrLate: 0, unknownCompletions: 0 });
  expect(probe.report.cancelled).toBeGreaterThanOrEqual(1);
  await host.close(); // stops the emulated libusb's NAK retries
});
