/**
 * QMP device_add / device_del for what uhci-dm serves, answered as QEMU 7.2
 * answers them (messages checked against qemu-system-x86_64 7.2 on this
 * machine: duplicate ids, unknown buses, busy or missing ports, unknown
 * devices, DEVICE_DELETED after the reply). libxl's usbctrl of type
 * devicemodel version 1 sends `device_add {"driver":"piix3-usb-uhci",
 * "id":"xenusb-<devid>"}`; its usbdev sends `device_add {"driver":
 * "usb-host","id":...,"bus":"xenusb-<ctrl>.0","port":"<p>","hostbus":"B",
 * "hostaddr":"A"}` (libxl_usb.c). Everything else goes to QEMU.
 */
import type { Logger } from '../platform/logger.js';
import { ControllerProcess, type ProcessOptions } from './controller-processes.js';
import { OUR_USB_DRIVERS, USBCTRL_BDFS } from './dm-plan.js';
import { formatKeyValues } from './qemu-argv.js';
import type { FdSets, QmpAnswer, QmpErrorBody, QmpHandler } from './qmp-interposer.js';
import type { QmpMessage } from './qmp-framing.js';
import { appendTrailer, appendTrailerFd, isSavedController, type SavedController } from './saved-state.js';

/** Root ports of a PIIX3 UHCI (Intel 82371SB datasheet, 2.x: two ports). */
const UHCI_PORTS = 2;
/** The bus QEMU names for the `-usb` controller. */
export const USB1_BUS = 'usb-bus.0';
/** Internal id of the `-usb` controller (it has no qdev id under QEMU). */
export const USB1_ID = '';

/** Product strings QEMU uses in "no free ports" errors. */
const PRODUCT: Record<string, string> = { 'usb-tablet': 'QEMU USB Tablet', 'usb-mouse': 'QEMU USB Mouse', 'usb-kbd': 'QEMU USB Keyboard', 'usb-host': 'USB Host Device' };

interface Controller {
  id: string;
  bus: string;
  bdf: string;
  proc: ControllerProcess;
  /** qdev id (or a generated key) → 1-based port. */
  devices: Map<string, number>;
}

const fail = (desc: string, cls: QmpErrorBody['class'] = 'GenericError'): QmpAnswer => ({ error: { class: cls, desc } });

function qmpTimestamp(): { seconds: number; microseconds: number } {
  const us = BigInt(Date.now()) * 1000n;
  return { seconds: Number(us / 1_000_000n), microseconds: Number(us % 1_000_000n) };
}

export interface UsbQmpOptions extends ProcessOptions {
  /** True once the guest has run (a controller then needs PCI hot plug, which is QEMU's). */
  guestStarted(): boolean;
  /** Controllers a restore brings back (saved by xen-save-devices-state), by id. */
  restored?: readonly SavedController[];
}

export class UsbQmpHandler implements QmpHandler {
  private readonly controllers = new Map<string, Controller>();
  private readonly listeners = new Set<(ev: QmpMessage) => void>();
  private readonly restored: Map<string, SavedController>;
  private anon = 0;
  /** One device_add/device_del at a time, whatever the connection. */
  private lock: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: UsbQmpOptions) {
    this.restored = new Map((o.restored ?? []).map((c) => [c.id, c]));
  }

  private get logger(): Logger {
    return this.o.logger;
  }

  /** Start a controller (the `-usb` one at start-up, or one libxl adds), restoring its saved state when a restore brings one. */
  async startController(id: string, bus: string, bdf: string, devices: readonly string[]): Promise<void> {
    const saved = this.restored.get(id);
    const proc = await ControllerProcess.start({ id: id || 'usb', bdf: saved?.bdf ?? bdf, devices }, this.o);
    const c: Controller = { id, bus, bdf: saved?.bdf ?? bdf, proc, devices: new Map() };
    if (saved) {
      await proc.control.execute('restore', { snapshot: saved.snapshot });
      for (const d of saved.devices) c.devices.set(d.id, d.port);
      this.restored.delete(id);
      this.logger.log('info', 'xl', 'controller state restored', { id: id || 'usb', bdf: c.bdf, devices: saved.devices.length });
    } else {
      devices.forEach((_, i) => c.devices.set(`#${++this.anon}`, i + 1));
    }
    this.controllers.set(id, c);
    void proc.ended.then((code) => {
      // Stopped on purpose: removed from the table first.
      if (this.controllers.get(id) === c) this.logger.log('error', 'xl', 'a controller process ended while the domain runs', { controller: id || 'usb', bdf: c.bdf, code });
    });
  }

  intercept(command: string, args: Record<string, unknown>): Promise<QmpAnswer> | null {
    if (command === 'device_add') {
      const driver = args.driver;
      if (driver === 'piix3-usb-uhci') return this.serial(() => this.addController(args));
      if (typeof driver === 'string' && OUR_USB_DRIVERS.has(driver) && this.ownsBus(args.bus)) return this.serial(() => this.addDevice(driver, args));
      return null;
    }
    if (command === 'device_del' && typeof args.id === 'string' && this.owns(args.id)) {
      const id = args.id;
      return this.serial(() => this.del(id));
    }
    return null;
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const p = this.lock.then(f, f);
    this.lock = p.catch(() => undefined);
    return p;
  }

  private ownsBus(bus: unknown): boolean {
    if (bus === undefined) return this.controllers.size > 0;
    return typeof bus === 'string' && [...this.controllers.values()].some((c) => c.bus === bus);
  }

  private owns(id: string): boolean {
    return this.controllers.has(id) || [...this.controllers.values()].some((c) => c.devices.has(id));
  }

  private async addController(args: Record<string, unknown>): Promise<QmpAnswer> {
    const id = args.id;
    if (typeof id !== 'string' || !id) return fail('uhci-dm: piix3-usb-uhci needs an id (libxl gives xenusb-<devid>)');
    if (this.owns(id)) return fail(`Duplicate device ID '${id}'`);
    const extra = Object.keys(args).filter((k) => !['driver', 'id', 'bus'].includes(k));
    if (extra.length) return fail(`uhci-dm: piix3-usb-uhci property '${extra[0]}' is not supported (uhci-dm places its controllers itself)`);
    if (this.o.guestStarted()) {
      return fail('uhci-dm: adding a UHCI controller to a running guest needs PCI hot plug, which uhci-dm does not do; add it to the domain config (usbctrl=) and restart the domain');
    }
    const used = new Set([...this.controllers.values()].map((c) => c.bdf));
    const bdf = this.restored.get(id)?.bdf ?? USBCTRL_BDFS.find((b) => !used.has(b));
    if (!bdf) return fail(`uhci-dm: no free PIIX3 function for another UHCI (at most ${USBCTRL_BDFS.length} usbctrl controllers)`);
    try {
      await this.startController(id, `${id}.0`, bdf, []);
    } catch (e) {
      return fail(`uhci-dm: ${(e as Error).message}`);
    }
    return { return: {} };
  }

  private async addDevice(driver: string, args: Record<string, unknown>): Promise<QmpAnswer> {
    const id = typeof args.id === 'string' ? args.id : undefined;
    if (id !== undefined && this.owns(id)) {
      // A restore re-adds what the saved state already brought back: the same device on the same port is there.
      return this.restoredDevice(id, args) ? { return: {} } : fail(`Duplicate device ID '${id}'`);
    }
    const c = typeof args.bus === 'string' ? [...this.controllers.values()].find((x) => x.bus === args.bus)! : this.firstWithFreePort();
    if (!c) return fail(`tried to attach usb device ${PRODUCT[driver]} to a bus with no free ports`);
    const used = new Set(c.devices.values());
    let port: number;
    if (args.port === undefined) {
      const free = Array.from({ length: UHCI_PORTS }, (_, i) => i + 1).find((p) => !used.has(p));
      if (free === undefined) return fail(`tried to attach usb device ${PRODUCT[driver]} to a bus with no free ports`);
      port = free;
    } else {
      const text = String(args.port);
      port = /^\d+$/.test(text) ? Number(text) : NaN;
      if (!(port >= 1 && port <= UHCI_PORTS) || used.has(port)) return fail(`usb port ${text} (bus ${c.bus}) not found (in use?)`);
    }
    const props = new Map<string, string>();
    for (const [k, v] of Object.entries(args)) {
      if (['driver', 'id', 'bus', 'port'].includes(k)) continue;
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return fail(`Parameter '${k}' expects a scalar`);
      props.set(k, typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v));
    }
    const spec = formatKeyValues({ implied: driver, props });
    try {
      await c.proc.control.execute('usb_add', { devname: spec, port });
    } catch (e) {
      const msg = (e as Error).message;
      if (driver === 'usb-host' && props.has('hostbus') && props.has('hostaddr') && /not found|no such|cannot find|no device/i.test(msg)) {
        return fail(`failed to find host usb device ${props.get('hostbus')}:${props.get('hostaddr')}`);
      }
      return fail(`uhci-dm: ${msg}`);
    }
    c.devices.set(id ?? `#${++this.anon}`, port);
    this.logger.log('info', 'xl', 'device added', { id, driver, controller: c.id || 'usb', port });
    return { return: {} };
  }

  private restoredDevice(id: string, args: Record<string, unknown>): boolean {
    for (const c of this.controllers.values()) {
      const port = c.devices.get(id);
      if (port !== undefined) return (args.bus === undefined || args.bus === c.bus) && (args.port === undefined || String(args.port) === String(port));
    }
    return false;
  }

  private firstWithFreePort(): Controller | undefined {
    return [...this.controllers.values()].find((c) => c.devices.size < UHCI_PORTS);
  }

  private async del(id: string): Promise<QmpAnswer> {
    const ctrl = this.controllers.get(id);
    if (ctrl) {
      if (this.o.guestStarted()) return fail('uhci-dm: removing a UHCI controller from a running guest needs PCI hot unplug, which uhci-dm does not do');
      this.controllers.delete(id);
      await ctrl.proc.stop();
      this.deleted(id);
      return { return: {} };
    }
    for (const c of this.controllers.values()) {
      const port = c.devices.get(id);
      if (port === undefined) continue;
      try {
        await c.proc.control.execute('usb_del', { port });
      } catch (e) {
        return fail(`uhci-dm: ${(e as Error).message}`);
      }
      c.devices.delete(id);
      this.logger.log('info', 'xl', 'device removed', { id, controller: c.id || 'usb', port });
      this.deleted(id);
      return { return: {} };
    }
    return fail(`Device '${id}' not found`, 'DeviceNotFound');
  }

  /** QEMU emits DEVICE_DELETED once a device is gone (after device_del's reply). */
  private deleted(id: string): void {
    const ev = { timestamp: qmpTimestamp(), event: 'DEVICE_DELETED', data: { device: id, path: `/machine/peripheral/${id}` } };
    setImmediate(() => this.listeners.forEach((l) => l(ev)));
  }

  onEvent(send: (event: QmpMessage) => void): () => void {
    this.listeners.add(send);
    return () => this.listeners.delete(send);
  }

  /** Every controller's saved state (xen-save-devices-state). */
  async save(): Promise<SavedController[]> {
    const out: SavedController[] = [];
    for (const c of this.controllers.values()) {
      const snapshot = await c.proc.control.execute('save');
      const saved = { id: c.id, bdf: c.bdf, devices: [...c.devices].map(([id, port]) => ({ id, port })), snapshot };
      if (!isSavedController(saved)) throw new Error(`controller ${c.id || 'usb'} returned a bad snapshot`);
      out.push(saved);
    }
    return out;
  }

  /**
   * xen-save-devices-state: once QEMU has written its part into the file
   * (libxl's `/dev/fdset/N`, or a path), uhci-dm's controllers are appended
   * as the trailer (saved-state.ts). If that fails the save fails: an image
   * without the USB state would restore a guest whose controllers lost it.
   */
  async afterQemu(command: string, args: Record<string, unknown>, reply: QmpMessage, fdsets: FdSets): Promise<QmpMessage> {
    if (command !== 'xen-save-devices-state' || !('return' in reply) || this.controllers.size === 0) return reply;
    const file = args.filename;
    if (typeof file !== 'string') return reply;
    const state = { format: 'uhci-dm-xl-state' as const, version: 1 as const, controllers: await this.serial(() => this.save()) };
    const m = /^\/dev\/fdset\/(\d+)$/.exec(file);
    if (m) {
      const fd = fdsets.fd(Number(m[1]));
      if (fd === undefined) return { error: { class: 'GenericError', desc: `uhci-dm: no fd for ${file} (add-fd did not pass through uhci-dm)` } };
      appendTrailerFd(fd, state);
    } else {
      appendTrailer(file, state);
    }
    this.logger.log('info', 'xl', 'USB state saved with the device-model state', { controllers: state.controllers.length });
    return reply;
  }

  async stopAll(): Promise<void> {
    const all = [...this.controllers.values()];
    this.controllers.clear();
    await Promise.all(all.map((c) => c.proc.stop()));
  }
}
