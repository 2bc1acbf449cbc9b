/**
 * The complete PCI function a guest sees: PIIX3/PIIX4 UHCI config space
 * plus the controller behind BAR4. Transports (Xen ioreq server, QEMU proxy,
 * replay, tests) drive this object: config cycles, I/O accesses relative to
 * BAR4, and device hot plug.
 */
import type { Clock } from '../platform/clock.js';
import type { IrqLine } from '../platform/irq.js';
import type { GuestMemory } from '../platform/memory.js';
import { UHCI_IO_SIZE, UhciConfigSpace, type UhciVariant } from '../pci/config-space.js';
import type { Logger } from '../platform/logger.js';
import { UhciController } from '../uhci/controller.js';
import type { UhciControllerState } from '../uhci/controller-state.js';
import type { WireTimer } from '../uhci/wire-timer.js';
import type { UsbDevice } from '../usb/packet.js';
import { windowRead, windowWrite } from './io-window.js';
import type { AccessSize, IoWindow, PciFunction, PciFunctionStats } from './pci-function.js';

export interface UhciPciFunctionOptions {
  mem: GuestMemory;
  irq: IrqLine;
  clock: Clock;
  variant?: UhciVariant;
  logger?: Logger;
  timer?: WireTimer;
  maxBatch?: number;
  idleCoalesce?: number;
}

export interface UhciPciFunctionState {
  version: 1;
  config: object;
  controller: UhciControllerState;
  devices: ({ port: number; state: unknown } | null)[];
}

export class UhciPciFunction implements PciFunction {
  readonly config: UhciConfigSpace;
  readonly controller: UhciController;
  onIoWindowChange?: (window: IoWindow | null) => void;
  /** The last window handed out (reused while the BAR stays put: port I/O allocates nothing). */
  private window: IoWindow | null = null;

  constructor(opts: UhciPciFunctionOptions) {
    this.config = new UhciConfigSpace(opts.variant ?? 'piix3');
    this.config.onBarChange = () => this.onIoWindowChange?.(this.ioWindow);
    // The controller's interrupt goes through the config space (COMMAND.INTX_DISABLE,
    // STATUS.INTERRUPT) before it reaches the transport's INTx line.
    this.config.onIntxChange = (asserted) => opts.irq.set(asserted);
    const config = this.config;
    this.controller = new UhciController({
      mem: opts.mem,
      irq: { set: (level) => config.setIntxLevel(level) },
      clock: opts.clock,
      busMaster: () => this.config.busMaster,
      logger: opts.logger,
      timer: opts.timer,
      maxBatch: opts.maxBatch,
      idleCoalesce: opts.idleCoalesce,
    });
  }

  configRead(offset: number, size: 1 | 2 | 4): number {
    return this.config.read(offset, size);
  }
  configWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    this.config.write(offset, size, value);
  }

  /** I/O base of BAR4 while I/O decoding is enabled, else null. */
  get ioBase(): number | null {
    return this.config.ioBase;
  }

  get ioWindow(): IoWindow | null {
    const base = this.config.ioBase;
    if (base === null) return null;
    if (this.window?.base !== base) this.window = { base, size: UHCI_IO_SIZE };
    return this.window;
  }

  /** Access at `offset` inside the 32-byte I/O BAR. */
  ioRead(offset: number, size: 1 | 2 | 4): number {
    return this.controller.ioRead(offset, size);
  }
  ioWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    this.controller.ioWrite(offset, size, value);
  }

  portRead(port: number, size: AccessSize): number | undefined {
    return windowRead(this.ioWindow, port, size, (o, s) => this.ioRead(o, s));
  }
  portWrite(port: number, size: AccessSize, value: number): boolean {
    return windowWrite(this.ioWindow, port, size, value, (o, s, v) => this.ioWrite(o, s, v));
  }

  get interruptPin(): number {
    return this.config.interruptPin;
  }

  get portCount(): number {
    return this.controller.ports.length;
  }
  deviceAt(port: number): UsbDevice | null {
    return this.controller.ports[port]?.device ?? null;
  }
  attach(port: number, dev: UsbDevice): void {
    this.controller.attach(port, dev);
  }
  detach(port: number): UsbDevice | null {
    return this.controller.detach(port);
  }

  stats(): PciFunctionStats {
    const c = this.controller;
    return { framesProcessed: c.framesProcessed, framesSkipped: c.framesSkipped, irqAsserted: c.irqAsserted };
  }

  hostSystemError(where: string, error: unknown): void {
    this.controller.hostSystemError(where, error);
  }

  /** PCI reset (RST#, or QEMU DEVICE_RESET): config space and controller to defaults. */
  reset(): void {
    this.config.reset();
    this.controller.reset();
  }

  saveState(): UhciPciFunctionState {
    return {
      version: 1,
      config: this.config.saveState(),
      controller: this.controller.saveState(),
      devices: this.controller.ports.map((p, i) => (p.device ? { port: i, state: p.device.saveState() } : null)),
    };
  }

  /** Restore a snapshot onto a function whose devices are already attached on the same ports. */
  loadState(s: UhciPciFunctionState): void {
    if (!s || s.version !== 1) throw new Error('unsupported UHCI function state version');
    this.config.loadState(s.config);
    s.devices.forEach((d) => {
      if (!d) return;
      const dev = this.controller.ports[d.port]?.device;
      if (!dev) throw new Error(`snapshot has a device on port ${d.port + 1} but none is attached`);
      dev.loadState(d.state);
    });
    this.controller.loadState(s.controller);
  }
}
