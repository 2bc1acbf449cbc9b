/**
 * The model side of a proxy lab: our UHCI function (recorded to a trace
 * when asked) with emulated devices on its root ports, served to QEMU's
 * x-pci-proxy-dev over one end of a socket pair; QEMU inherits the other end
 * as fd 3. The model and its devices run on a counting RealClock.
 */
import { UhciPciFunction } from '../device/uhci-pci-function.js';
import { RealClock } from '../platform/clock.js';
import { closeFd, socketPair } from '../qemu/libc.js';
import { QemuProxyTransport, type ProxyEnd } from '../qemu/proxy-transport.js';
import { createRecordedFunction } from '../trace/recorded-function.js';
import { Recorder, type RecordingSummary } from '../trace/recorder.js';
import type { Logger } from '../platform/logger.js';
import { createUsbDevice } from '../usb/devices.js';
import { HidUsbDevice } from '../usb/hid/hid-device.js';
import type { UsbDevice } from '../usb/packet.js';
import { CountingClock } from './counting-clock.js';
import type { LabDeviceKind } from './input-plan.js';

/** The PCI slot of the UHCI function in every lab (model or QEMU's own), so device serials match. */
export const LAB_PCI_ADDR = '05.0';
const HCD_PATH = '0000:00:05.0';
/** After QEMU is gone, how long to wait for the socket's end before stopping the transport. */
const SERVE_END_GRACE_MS = 2000;

/**
 * What sits on a root port. 'gadget-zero' (Linux's gadget zero, model mode
 * only) has no input; the guest loads `usbtest` for it.
 */
export type LabPort = LabDeviceKind | 'gadget-zero' | 'none';

export interface ProxyModelOptions {
  /** Device per root port ('none': empty). */
  ports: readonly LabPort[];
  logger?: Logger;
  /** Record everything crossing the model's boundary to this trace file. */
  record?: { path: string; notes: string };
}

/** Model registers at one moment, read from the controller's fields (no catch-up, nothing a trace would miss). */
export interface ModelRegisters {
  usbcmd: number;
  usbsts: number;
  usbintr: number;
  portsc: number[];
  running: boolean;
  framesProcessed: number;
}

export interface ProxyModelEnd {
  /** How serving ended (null: it never started). */
  proxyEnd: ProxyEnd | null;
  trace: RecordingSummary | null;
}

export class ProxyModel {
  private qemuFd: number;
  private served: Promise<ProxyEnd> | null = null;

  private constructor(
    readonly transport: QemuProxyTransport,
    qemuFd: number,
    readonly clock: CountingClock,
    readonly fn: UhciPciFunction,
    private readonly recorder: Recorder | null,
    private readonly devices: (UsbDevice | null)[],
  ) {
    this.qemuFd = qemuFd;
  }

  /** Build the model; if anything fails, what was opened is closed again. */
  static async open(opts: ProxyModelOptions): Promise<ProxyModel> {
    const [ours, theirs] = socketPair();
    const transport = new QemuProxyTransport({ fd: ours, logger: opts.logger });
    let recorder: Recorder | null = null;
    try {
      const clock = new CountingClock(new RealClock());
      const base = { mem: transport.mem, irq: transport.irq, clock, logger: opts.logger };
      recorder = opts.record ? Recorder.toFile(opts.record.path, { notes: opts.record.notes }) : null;
      const fn = recorder ? createRecordedFunction({ ...base, recorder }) : new UhciPciFunction(base);
      const model = new ProxyModel(transport, theirs, clock, fn, recorder, opts.ports.map(() => null));
      opts.ports.forEach((spec, i) => {
        if (spec !== 'none') model.plug(i, spec);
      });
      return model;
    } catch (e) {
      transport.stop();
      closeFd(theirs);
      await recorder?.close().catch(() => undefined);
      throw e;
    }
  }

  /** QEMU's proxy device, talking to us on its fd 3. */
  qemuArgs(): string[] {
    return ['-device', `x-pci-proxy-dev,id=uhci0,addr=${LAB_PCI_ADDR},fd=3`];
  }

  /** QEMU's end of the socket pair, for the child's fd 3 (-1 once handed over). */
  get qemuEnd(): number {
    return this.qemuFd;
  }

  /** QEMU has been started with qemuEnd: close our copy of it and serve. */
  serve(): void {
    this.releaseQemuEnd();
    this.served = this.transport.serve(this.fn);
  }

  /** The device on root port `port` (0-based). */
  device(port: number): UsbDevice | null {
    return this.devices[port] ?? null;
  }

  /** Plug a new device of `spec` into root port `port` (0-based). */
  plug(port: number, spec: Exclude<LabPort, 'none'>): UsbDevice {
    const dev = createUsbDevice(spec, { clock: this.clock, hcdPath: HCD_PATH, portPath: String(port + 1) });
    this.fn.attach(port, dev);
    this.devices[port] = dev;
    return dev;
  }

  /** Disconnect the device on root port `port` (0-based) while the guest runs. */
  unplug(port: number): void {
    const old = this.fn.detach(port);
    if (old instanceof HidUsbDevice) old.dispose();
    this.devices[port] = null;
  }

  registers(): ModelRegisters {
    const hc = this.fn.controller;
    return {
      usbcmd: hc.cmd,
      usbsts: hc.status,
      usbintr: hc.intr,
      portsc: hc.ports.map((p) => p.read()),
      running: hc.running,
      framesProcessed: hc.framesProcessed,
    };
  }

  /**
   * After QEMU has exited: wait for the socket's end (stop() covers a peer
   * that never connected), PCI-reset the function if `reset` (the Linux
   * lab's traces end with it), stop the devices and close the trace.
   */
  async close(reset: boolean): Promise<ProxyModelEnd> {
    this.releaseQemuEnd();
    let proxyEnd: ProxyEnd | null = null;
    if (this.served) {
      const t = setTimeout(() => this.transport.stop(), SERVE_END_GRACE_MS);
      proxyEnd = await this.served;
      clearTimeout(t);
    } else {
      this.transport.stop();
    }
    let trace: RecordingSummary | null = null;
    try {
      if (reset) this.fn.reset();
      this.devices.forEach((d) => {
        if (d instanceof HidUsbDevice) d.dispose();
      });
    } finally {
      trace = this.recorder ? await this.recorder.close() : null;
    }
    return { proxyEnd, trace };
  }

  private releaseQemuEnd(): void {
    if (this.qemuFd >= 0) closeFd(this.qemuFd);
    this.qemuFd = -1;
  }
}
