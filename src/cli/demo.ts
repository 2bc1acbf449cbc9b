/**
 * `uhci-dm demo`: the controller with an emulated tablet on port 1 and a
 * keyboard on port 2, driven by the built-in guest driver (PCI probe,
 * controller start, port reset, enumeration, interrupt polling) on a virtual
 * clock. Shows what a guest would see, then injects input and reads the
 * reports. Needs nothing but Node.
 */
import { InProcessBus } from '../guest/model-bus.js';
import { UhciGuestDriver, type EnumeratedDevice } from '../guest/uhci-driver.js';
import { StreamLogger } from '../platform/logger.js';
import { ManualClock } from '../platform/clock.js';
import { LatchedIrq } from '../platform/irq.js';
import { FlatMemory } from '../platform/memory.js';
import { createUsbDevice, isEmulatedDeviceSpec, DEVICE_SPECS } from '../usb/devices.js';
import { createUhciFunction } from '../trace/recorded-function.js';
import { Recorder } from '../trace/recorder.js';
import { parseArgs, optionHelp, UsageError, type OptionSpec } from './args.js';

const OPTIONS: Record<string, OptionSpec> = {
  port1: { value: true, help: 'device on port 1 (tablet|mouse|keyboard|gadget-zero|none), default tablet' },
  port2: { value: true, help: 'device on port 2 (tablet|mouse|keyboard|gadget-zero|none), default keyboard' },
  json: { value: false, help: 'print the result as JSON' },
  verbose: { value: false, help: 'log controller events' },
  record: { value: true, help: 'record everything that crosses the model boundary to FILE (.uhcitrace.gz)' },
  help: { value: false, help: 'this text' },
};

const hex4 = (n: number) => n.toString(16).padStart(4, '0');

export function formatDevice(d: EnumeratedDevice): string {
  return `Bus 001 Device ${String(d.address).padStart(3, '0')}: ID ${hex4(d.vendorId)}:${hex4(d.productId)} ${d.manufacturer} ${d.product} (serial ${d.serial}, port ${d.port + 1}, ${d.lowSpeed ? 'low' : 'full'} speed)`;
}

export async function demoCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, OPTIONS);
  if (p.options.has('help')) {
    process.stdout.write(`usage: uhci-dm demo [options]\n${optionHelp(OPTIONS)}\n`);
    return 0;
  }
  if (p.positionals.length) throw new UsageError(`demo takes no arguments (got '${p.positionals[0]}')`);
  const json = p.options.has('json');
  const say = (s: string) => {
    if (!json) process.stdout.write(s + '\n');
  };
  const portSpecs = [p.options.get('port1')?.[0] ?? 'tablet', p.options.get('port2')?.[0] ?? 'keyboard'];
  portSpecs.forEach((spec, i) => {
    if (spec !== 'none' && !isEmulatedDeviceSpec(spec)) {
      throw new UsageError(`--port${i + 1}: unknown device '${spec}' (expected ${DEVICE_SPECS.join(', ')} or none)`);
    }
  });

  const clock = new ManualClock();
  const mem = new FlatMemory(16 << 20);
  const irq = new LatchedIrq();
  const logger = p.options.has('verbose') ? new StreamLogger({ level: 'debug' }) : undefined;
  const recordPath = p.options.get('record')?.[0];
  const recorder = recordPath ? Recorder.toFile(recordPath, { notes: `uhci-dm demo ${portSpecs.join(' ')}` }) : null;
  const fn = createUhciFunction({ mem, irq, clock, logger, recorder });
  const devices = portSpecs.map((spec, i) => {
    if (spec === 'none') return null;
    const dev = createUsbDevice(spec, { clock, hcdPath: '0000:00:05.0', portPath: String(i + 1) });
    fn.attach(i, dev);
    return dev;
  });

  const bus = new InProcessBus(fn, mem, clock, 5);
  const driver = new UhciGuestDriver(bus);
  const found = await driver.probe();
  say(`PCI 00:${found.slot.toString(16).padStart(2, '0')}.0 UHCI controller ${hex4(found.id & 0xffff)}:${hex4(found.id >>> 16)} at I/O 0x${driver.ioBase.toString(16)}`);
  await driver.start();
  const enumerated: EnumeratedDevice[] = [];
  for (let port = 0; port < 2; port++) {
    if (!devices[port]) continue;
    const d = await driver.enumerate(port);
    enumerated.push(d);
    say(formatDevice(d));
  }

  // Inject input and read it back through interrupt IN polling.
  const events: { port: number; report: number[] }[] = [];
  const toggles = [0, 0];
  for (const d of enumerated) {
    const dev = devices[d.port]!;
    if (!d.interruptIn) continue;
    if ('moveTo' in dev) (dev as { moveTo(x: number, y: number): boolean }).moveTo(0x4000, 0x2000);
    if ('type' in dev) (dev as { type(t: string): void }).type('hi');
    if ('move' in dev && !('moveTo' in dev)) (dev as { move(dx: number, dy: number): boolean }).move(5, -3);
    for (let i = 0; i < 8; i++) {
      const r = await driver.pollInterrupt(d, toggles[d.port]!, 30);
      if (!r) break;
      toggles[d.port]! ^= 1;
      events.push({ port: d.port, report: [...r] });
      say(`port ${d.port + 1} ${d.product}: report ${[...r].map((b) => b.toString(16).padStart(2, '0')).join(' ')}`);
    }
  }
  if (recorder) {
    const summary = await recorder.close();
    say(`recorded ${summary.events} events, ${summary.frames} frames to ${recordPath}`);
  }
  say(`${enumerated.length} device(s) enumerated, ${events.length} input report(s), ${fn.controller.framesProcessed} frames run, FRNUM=0x${fn.controller.frnum.toString(16)}`);
  if (json) {
    process.stdout.write(
      JSON.stringify(
        {
          devices: enumerated.map((d) => ({ port: d.port + 1, address: d.address, vendorId: d.vendorId, productId: d.productId, manufacturer: d.manufacturer, product: d.product, serial: d.serial })),
          events,
        },
        null,
        2,
      ) + '\n',
    );
  }
  return enumerated.length === devices.filter(Boolean).length ? 0 : 1;
}
