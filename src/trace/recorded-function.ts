/**
 * The UHCI PCI function with a recorder on every boundary: transports build
 * this instead of `new UhciPciFunction` and use it the same way (it is one).
 * Config and I/O accesses, port I/O, hot plug, PCI reset and save/restore
 * are recorded as input events with the values they return; the model's
 * clock, guest memory, IRQ line and devices are recorded through the
 * wrappers in recorder.ts and recording-device.ts.
 *
 * Only the calls listed here are recorded: a transport that reaches into
 * `controller` directly (e.g. `controller.kick()`) makes a trace that does
 * not replay.
 */
import type { Clock } from '../platform/clock.js';
import type { IrqLine } from '../platform/irq.js';
import type { GuestMemory } from '../platform/memory.js';
import type { UhciVariant } from '../pci/config-space.js';
import type { Logger } from '../platform/logger.js';
import type { UsbDevice } from '../usb/packet.js';
import { windowRead, windowWrite } from '../device/io-window.js';
import { UhciPciFunction, type UhciPciFunctionOptions, type UhciPciFunctionState } from '../device/uhci-pci-function.js';
import { INPUT_KINDS, OUTPUT_KINDS, type TraceModelOptions } from './format.js';
import { Recorder, RecordingClock, RecordingIrq, RecordingMemory } from './recorder.js';
import { RecordingDevice, deviceIdentity } from './recording-device.js';

export interface RecordedFunctionOptions {
  variant?: UhciVariant;
  mem: GuestMemory;
  irq: IrqLine;
  clock: Clock;
  recorder: Recorder;
  logger?: Logger;
  maxBatch?: number;
  idleCoalesce?: number;
}

/** What a snapshot event records and replay compares: everything but the devices' own state. */
export function snapshotDigest(s: UhciPciFunctionState): unknown {
  return { config: s.config, controller: s.controller, ports: s.devices.map((d) => (d ? d.port : null)) };
}

export class RecordedUhciFunction extends UhciPciFunction {
  readonly recorder: Recorder;
  /** The caller's devices by port (the controller holds recording proxies). */
  private readonly originals = new Map<number, UsbDevice>();

  constructor(opts: RecordedFunctionOptions) {
    super(RecordedUhciFunction.begin(opts));
    const rec = opts.recorder;
    this.recorder = rec;
    rec.setCounters(this.controller);
    this.config.onBarChange = (base) => {
      rec.output([OUTPUT_KINDS.ioWindow, base]);
      this.onIoWindowChange?.(this.ioWindow);
    };
    // Close the construction event opened in begin().
    rec.closeConstruction();
  }

  /** Header, wrappers, and an open construction event (the constructor's outputs belong to it). */
  private static begin(opts: RecordedFunctionOptions): UhciPciFunctionOptions {
    const rec = opts.recorder;
    const model: TraceModelOptions = { variant: opts.variant ?? 'piix3' };
    if (opts.maxBatch !== undefined) model.maxBatch = opts.maxBatch;
    if (opts.idleCoalesce !== undefined) model.idleCoalesce = opts.idleCoalesce;
    rec.start(opts.clock, model);
    const wrapped: UhciPciFunctionOptions = {
      mem: new RecordingMemory(opts.mem, rec),
      irq: new RecordingIrq(opts.irq, rec),
      clock: new RecordingClock(opts.clock, rec),
      variant: model.variant,
      logger: opts.logger,
      maxBatch: opts.maxBatch,
      idleCoalesce: opts.idleCoalesce,
    };
    // The construction event stays open until the constructor has run.
    rec.openConstruction();
    return wrapped;
  }

  override configRead(offset: number, size: 1 | 2 | 4): number {
    return this.recorder.input([INPUT_KINDS.configRead, 0, offset, size], () => super.configRead(offset, size));
  }
  override configWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    this.recorder.input([INPUT_KINDS.configWrite, 0, offset, size, value], () => super.configWrite(offset, size, value));
  }
  override ioRead(offset: number, size: 1 | 2 | 4): number {
    return this.recorder.input([INPUT_KINDS.ioRead, 0, offset, size], () => super.ioRead(offset, size));
  }
  override ioWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    this.recorder.input([INPUT_KINDS.ioWrite, 0, offset, size, value], () => super.ioWrite(offset, size, value));
  }

  /** Recorded as one port event (not as the I/O access it turns into). */
  override portRead(port: number, size: 1 | 2 | 4): number | undefined {
    return this.recorder.input(
      [INPUT_KINDS.portRead, 0, port, size],
      () => windowRead(this.ioWindow, port, size, (o, s) => super.ioRead(o, s)),
      (r) => (r === undefined ? null : r),
    );
  }
  override portWrite(port: number, size: 1 | 2 | 4, value: number): boolean {
    return this.recorder.input([INPUT_KINDS.portWrite, 0, port, size, value], () =>
      windowWrite(this.ioWindow, port, size, value, (o, s, v) => super.ioWrite(o, s, v)),
    );
  }

  override attach(port: number, dev: UsbDevice): void {
    const proxy = new RecordingDevice(dev, port, this.recorder);
    this.recorder.input([INPUT_KINDS.attach, 0, port, deviceIdentity(dev)], () => {
      super.attach(port, proxy);
      this.originals.set(port, dev);
    });
  }
  override detach(port: number): UsbDevice | null {
    const r = this.recorder.input([INPUT_KINDS.detach, 0, port], () => super.detach(port), (d) => d !== null);
    const original = this.originals.get(port) ?? null;
    this.originals.delete(port);
    return r ? original : null;
  }

  override reset(): void {
    this.recorder.input([INPUT_KINDS.reset, 0], () => super.reset());
  }

  override saveState(): UhciPciFunctionState {
    return this.recorder.input([INPUT_KINDS.save, 0], () => super.saveState(), snapshotDigest);
  }
  override loadState(s: UhciPciFunctionState): void {
    this.recorder.input(
      [INPUT_KINDS.load, 0, s],
      () => super.loadState(s),
      () => this.controller.ports.map((p) => (p.device ? p.device.address : null)),
    );
  }
}

/** Build a recorded UHCI function (the same API as `new UhciPciFunction`). */
export function createRecordedFunction(opts: RecordedFunctionOptions): RecordedUhciFunction {
  return new RecordedUhciFunction(opts);
}

/**
 * The UHCI function a transport serves: recorded to `recorder` when there is
 * one, the plain model otherwise (one place decides, for every transport).
 */
export function createUhciFunction(opts: UhciPciFunctionOptions & { recorder: Recorder | null }): UhciPciFunction {
  const { recorder, ...fo } = opts;
  return recorder ? new RecordedUhciFunction({ ...fo, recorder }) : new UhciPciFunction(fo);
}
