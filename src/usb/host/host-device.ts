/**
 * Host USB passthrough: a real device on the host, reached through libusb,
 * presented to the guest as a UsbDevice on a root port. The behaviour
 * follows QEMU 7.2 hw/usb/host-libusb.c (with the control pipe of
 * hw/usb/core.c in front of it), in pieces, one concept each:
 *  - host-device.ts (this file): the UsbDevice face and the device's life
 *    cycle — open, attach/detach, port reset, unplug, failure, close —
 *    and packet dispatch to the pieces below;
 *  - transfer-tracker.ts: the one submit-and-complete path (in-flight
 *    accounting, exactly-once completion, cancel, device gone, libusb
 *    status → packet status through status-map.ts, containment of errors);
 *  - host-control.ts: endpoint 0 (control transfers, locally run requests);
 *  - host-configuration.ts: SET_CONFIGURATION / SET_INTERFACE at the host;
 *  - endpoint-queues.ts: the data endpoints and their queues;
 *  - packet-transfers.ts: interrupt (and plain bulk): a transfer per packet;
 *  - bulk-stream.ts: bulk read-ahead and write-behind (opt-in pipelining);
 *  - isochronous.ts: isochronous endpoints;
 *  - host-speed.ts: which speed the guest sees.
 *
 * Life cycle:
 *  - Unplug: a NO_DEVICE result or error, a hotplug detach, or a failed
 *    libusb_reset_device means the host device is gone. The packet whose
 *    transfer reported NO_DEVICE completes with `nodev` at once; every
 *    other packet still in flight completes with `nodev` right after the
 *    current call returns, the handle is closed and `onDisconnect` runs, so
 *    the owner unplugs the port (QEMU: status_map[NO_DEVICE] = NODEV,
 *    usb_host_nodev → usb_host_close → usb_host_abort_xfers, detach). UHCI
 *    shows `nodev` as a CRC/timeout error on the TD, what a host
 *    controller sees when no device answers (QEMU hcd-uhci.c handles NODEV
 *    as IOERROR: TD_CTRL_TIMEOUT), and the port shows CCS=0, CSC=1.
 *  - Failure: an exception in our own code while a libusb result, a
 *    request's outcome or an unplug is handled is contained: the packet it
 *    concerned completes with `ioerror`, one error line is logged (to
 *    stderr when no `log` is given), and the device is then handled as
 *    unplugged (above), so the guest sees a disconnect rather than a
 *    device in an unknown state.
 *  - Port reset: in-flight packets complete with `nodev`; the host device is
 *    reset with libusb_reset_device when the guest had given it an address
 *    (QEMU guest-reset=on, guest-resets-all=off: the reset that starts every
 *    enumeration is not passed on). Tokens are NAKed while the reset runs.
 *
 * Exactly-once rule: every packet answered `async` is later either passed
 * to hooks.complete once, or given back by the controller through
 * cancelPacket (after which it is never completed).
 */
import { UserFacingError } from '../../platform/user-facing-error.js';
import type { LogLimiter } from '../../platform/logger.js';
import { PID_IN, PID_SETUP, type UsbDevice, type UsbPacket, type UsbPortHooks, type UsbSpeed, type UsbStatus } from '../packet.js';
import { ControlPipe } from '../control-pipe.js';
import { BulkStreams } from './bulk-stream.js';
import { EndpointQueues } from './endpoint-queues.js';
import { hostLogLimiter, stderrErrors, type HostContext, type HostLogLevel, type HostTransferOptions } from './host-context.js';
import { HostConfiguration } from './host-configuration.js';
import { HostControl } from './host-control.js';
import { guestSpeedFor, hex4, type HostSpeedOptions } from './host-speed.js';
import { IsochronousTransfers } from './isochronous.js';
import { portPath, type HostDeviceInfo, type LibusbDevice } from './libusb.js';
import { PacketTransfers } from './packet-transfers.js';
import { TransferTracker, errnoOf, messageOf } from './transfer-tracker.js';

/** QEMU include/hw/usb.h data_buf / core.c: wLength above this stalls the SETUP. */
const HOST_CONTROL_BUFFER_SIZE = 4096;
/** QEMU host-libusb.c CONTROL_TIMEOUT. */
const CONTROL_TIMEOUT_MS = 10_000;
/** QEMU host-libusb.c BULK_TIMEOUT / INTR_TIMEOUT: unlimited. */
const DATA_TIMEOUT_MS = 0;

export class HostDeviceOpenError extends UserFacingError {
  constructor(
    msg: string,
    readonly errno: number,
  ) {
    super(msg);
  }
}

export interface HostUsbDeviceOptions extends HostSpeedOptions {
  /** Detach host kernel drivers from interfaces before claiming them (default true). */
  detachKernelDriver?: boolean;
  /** QEMU `guest-reset` (default true): pass guest port resets on once the device has an address. */
  guestReset?: boolean;
  /** QEMU `guest-resets-all` (default false): pass every guest port reset on. */
  guestResetsAll?: boolean;
  /** QEMU `suppress-remote-wake` (default true): clear the remote wakeup bit in configuration descriptors. */
  suppressRemoteWake?: boolean;
  /** OUT (and isochronous) transfers in flight per endpoint (default 4, minimum 1). */
  maxOutInFlight?: number;
  /** Bulk IN read-ahead: bytes per libusb transfer kept in flight (0 = off, the default). See bulk-stream.ts. */
  bulkInReadAhead?: number;
  /** Bulk OUT write-behind: bytes acknowledged but not yet confirmed by the device (0 = off, the default). See bulk-stream.ts. */
  bulkOutWriteBehind?: number;
  controlTimeoutMs?: number;
  dataTimeoutMs?: number;
  /** The host device went away (unplugged, NO_DEVICE from libusb, or failed). Called once, asynchronously. */
  onDisconnect?: (dev: HostUsbDevice, reason: string) => void;
  /** Where messages go; without it, only errors are written (to stderr). */
  log?: (level: HostLogLevel, msg: string) => void;
  /** Rate limits for repeatable warnings (default: a limiter of this device's own in front of `log`). */
  logLimiter?: LogLimiter;
}

export interface HostUsbDeviceState {
  version: 1;
  kind: 'host';
  address: number;
  configuration: number;
}

export class HostUsbDevice implements UsbDevice, HostContext {
  readonly speed: UsbSpeed;
  readonly vendorId: number;
  readonly productId: number;
  productName: string;
  readonly info: HostDeviceInfo;
  readonly opts: HostTransferOptions & Pick<HostUsbDeviceOptions, 'onDisconnect'>;
  /** Statistics, for tests and `info usb`. */
  readonly stats = { completed: 0, cancelled: 0, isoDropped: 0, hostResets: 0 };
  readonly tracker: TransferTracker;

  private hooks: UsbPortHooks | null = null;
  private attached = false;
  private gone = false;
  private closed = false;
  private resetting = false;
  private guestAddress = 0;
  private readonly guestResetOpts: { guestReset: boolean; guestResetsAll: boolean };
  private readonly logTo: (level: HostLogLevel, msg: string) => void;
  private readonly logs: LogLimiter;

  private readonly pipe = new ControlPipe(HOST_CONTROL_BUFFER_SIZE);
  private readonly endpoints: EndpointQueues;
  private readonly config: HostConfiguration;
  private readonly control: HostControl;
  private readonly perPacket: PacketTransfers;
  private readonly streams: BulkStreams;
  private readonly iso: IsochronousTransfers;

  /**
   * Open `dev` for passthrough. Throws HostDeviceSpeedError when the device
   * cannot run on a UHCI port, HostDeviceOpenError when libusb refuses to
   * open it (typically LIBUSB_ERROR_ACCESS: no permission on /dev/bus/usb).
   */
  constructor(
    readonly dev: LibusbDevice,
    opts: HostUsbDeviceOptions = {},
  ) {
    this.opts = {
      detachKernelDriver: opts.detachKernelDriver ?? true,
      suppressRemoteWake: opts.suppressRemoteWake ?? true,
      maxOutInFlight: Math.max(1, opts.maxOutInFlight ?? 4),
      bulkInReadAhead: Math.max(0, opts.bulkInReadAhead ?? 0),
      bulkOutWriteBehind: Math.max(0, opts.bulkOutWriteBehind ?? 0),
      controlTimeoutMs: opts.controlTimeoutMs ?? CONTROL_TIMEOUT_MS,
      dataTimeoutMs: opts.dataTimeoutMs ?? DATA_TIMEOUT_MS,
      onDisconnect: opts.onDisconnect,
    };
    this.guestResetOpts = { guestReset: opts.guestReset ?? true, guestResetsAll: opts.guestResetsAll ?? false };
    this.logTo = opts.log ?? stderrErrors;
    this.logs = opts.logLimiter ?? hostLogLimiter(this.logTo);
    this.info = dev.info;
    this.speed = guestSpeedFor(dev.info, opts);
    if (dev.info.speed === 'high' || dev.info.speed === 'super') {
      this.warn('speed-compat', `${this.hostName}: ${dev.info.speed}-speed device presented at full speed (QEMU speed compat rule)`);
    }
    this.vendorId = dev.info.vendorId;
    this.productId = dev.info.productId;
    this.productName = `host:${dev.info.busNumber}.${dev.info.deviceAddress}`;
    this.tracker = new TransferTracker(
      {
        complete: (p) => this.hooks?.complete(p),
        gone: (reason) => this.hostGone(reason),
        failed: (reason) => this.fail(reason),
      },
      this.stats,
    );
    this.endpoints = new EndpointQueues(this.tracker);
    this.config = new HostConfiguration(this, dev.info, this.endpoints);
    this.control = new HostControl(this, this.pipe, this.config, this.endpoints, (address) => {
      this.guestAddress = address;
    });
    this.perPacket = new PacketTransfers(this, this.endpoints);
    this.streams = new BulkStreams(this, this.endpoints);
    this.iso = new IsochronousTransfers(this, this.endpoints, this.stats);
    try {
      dev.open();
    } catch (e) {
      throw new HostDeviceOpenError(`cannot open host device ${this.hostName}: ${messageOf(e)}`, errnoOf(e));
    }
    // QEMU reads the product string on open; ours arrives asynchronously.
    dev.getString(dev.info.iProduct).then(
      (s) => {
        if (s) this.productName = s;
      },
      () => undefined, // no product string: the name stays host:BUS.ADDR
    );
  }

  /** "bus.addr vid:pid (port ...)" for messages. */
  get hostName(): string {
    const i = this.info;
    return `${i.busNumber}.${i.deviceAddress} ${hex4(i.vendorId)}:${hex4(i.productId)} (port ${portPath(i)})`;
  }

  get address(): number {
    return this.guestAddress;
  }

  /** bConfigurationValue the guest selected (0 = unconfigured). */
  get configurationValue(): number {
    return this.config.value;
  }

  private get guestConfig(): number {
    return this.config.value;
  }
  private set guestConfig(value: number) {
    this.config.value = value;
  }

  /** The host device has gone away. */
  get disconnected(): boolean {
    return this.gone;
  }

  /** HostContext: false once the host device is gone or closed. */
  get usable(): boolean {
    return !this.gone && !this.closed;
  }

  /** Packets currently answered `async` and not yet completed or cancelled. */
  get packetsInFlight(): number {
    return this.tracker.packetsWaiting;
  }

  /** libusb transfers or requests not yet finished (including orphaned IN transfers). */
  get transfersInFlight(): number {
    return this.tracker.size;
  }

  /** Bytes read ahead and not yet served on a bulk IN endpoint (for pacing and tests). */
  readAheadBytes(address: number): number {
    return this.streams.readAheadBytes(address);
  }

  /** Bulk OUT bytes acknowledged to the guest and not yet confirmed by the device. */
  writeBehindBytes(address: number): number {
    return this.streams.writeBehindBytes(address);
  }

  log(level: HostLogLevel, msg: string): void {
    this.logTo(level, msg);
  }

  warn(key: string, msg: string): void {
    this.logs.log(key, 'warn', 'usb-host', msg);
  }

  activity(): void {
    this.hooks?.activity?.();
  }

  /* ------------------------------------------------------------------ */
  /* UsbDevice                                                           */

  attach(hooks: UsbPortHooks): void {
    this.hooks = hooks;
    this.attached = true;
    this.guestAddress = 0;
  }

  detach(): void {
    // The controller has already cancelled our packets; forget the rest.
    this.config.invalidate();
    this.dropAll(null);
    this.hooks = null;
    this.attached = false;
  }

  reset(): void {
    if (!this.attached) return;
    this.config.invalidate();
    this.dropAll('nodev');
    const hadAddress = this.guestAddress !== 0;
    this.guestAddress = 0;
    this.config.forget();
    this.pipe.stage = 'idle';
    if (this.gone || this.closed) return;
    const { guestReset, guestResetsAll } = this.guestResetOpts;
    if (guestResetsAll || (guestReset && hadAddress)) {
      this.resetting = true;
      this.stats.hostResets++;
      this.dev.reset().then(
        () => this.contain('the end of a port reset', () => {
          this.resetting = false;
          this.activity();
        }),
        (e: unknown) => this.contain('a failed port reset', () => {
          this.resetting = false;
          // QEMU: a failed libusb_reset_device means the device is gone.
          this.hostGone(`reset failed: ${messageOf(e)}`);
        }),
      );
    }
  }

  handlePacket(p: UsbPacket): void {
    p.status = 'ack';
    p.actualLength = 0;
    if (!this.attached || this.gone || this.closed || p.devaddr !== this.guestAddress) {
      p.status = 'nodev';
      return;
    }
    if (this.resetting) {
      p.status = 'nak';
      return;
    }
    if (p.endpoint === 0) {
      this.control.handle(p);
      return;
    }
    if (p.pid === PID_SETUP) {
      p.status = 'stall';
      return;
    }
    this.handleData(p);
  }

  cancelPacket(p: UsbPacket): void {
    this.tracker.cancelPacket(p);
  }

  saveState(): HostUsbDeviceState {
    return { version: 1, kind: 'host', address: this.guestAddress, configuration: this.guestConfig };
  }

  /**
   * The real device's state cannot be restored. As QEMU does
   * (usb_host_post_load), a restored host device is reported as unplugged
   * so the owner re-plugs it and the guest enumerates it again.
   */
  loadState(state: unknown): void {
    const s = state as HostUsbDeviceState;
    if (!s || s.kind !== 'host' || s.version !== 1) throw new TypeError('not a host USB device state');
    this.dropAll(null);
    this.guestAddress = 0;
    this.guestConfig = 0;
    this.pipe.stage = 'idle';
    queueMicrotask(() => this.opts.onDisconnect?.(this, 'restored from a snapshot: re-plug'));
  }

  /**
   * Give the device back to the host: release interfaces, reset it,
   * re-attach kernel drivers, close the handle (QEMU usb_host_close).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.dropAll('nodev');
    this.closed = true;
    if (!this.gone) await this.config.giveBack();
    try {
      this.dev.close();
    } catch {
      // already closed
    }
  }

  /**
   * The host reports the device unplugged (hotplug detach). Same handling
   * as a NO_DEVICE result.
   */
  hostUnplugged(): void {
    this.hostGone('unplugged from the host');
  }

  /* ------------------------------------------------------------------ */
  /* Life cycle                                                          */

  /**
   * Stop everything in flight: cancel libusb transfers; complete waiting
   * packets with `status`, or forget them (null: the controller cancelled
   * them already, or is going away).
   */
  private dropAll(status: UsbStatus | null): void {
    try {
      this.tracker.drop(status);
    } finally {
      this.endpoints.clearAll();
    }
  }

  /** The host device is gone (`logged`: the reason was logged as an error already). */
  private hostGone(reason: string, logged = false): void {
    if (this.gone) return;
    this.gone = true;
    if (!logged) this.warn('device-gone', `${this.hostName}: ${reason}`);
    // Deferred: we may be inside the controller's schedule walk.
    queueMicrotask(() => this.contain('the disconnect', () => {
      try {
        this.dropAll('nodev');
      } finally {
        try {
          this.dev.close();
        } catch {
          // the handle is already unusable
        }
        this.closed = true;
        this.opts.onDisconnect?.(this, reason);
      }
    }));
  }

  /** Our own code failed: one error line, then the device is handled as unplugged. */
  private fail(reason: string): void {
    this.log('error', `${this.hostName}: ${reason}`);
    this.hostGone(reason, true);
  }

  /** Run a callback that nothing above us would catch (a promise outcome, a microtask), containing any exception. */
  private contain(what: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.fail(`error in ${what}: ${messageOf(e)}`);
    }
  }

  /* ------------------------------------------------------------------ */
  /* Data endpoints                                                      */

  private handleData(p: UsbPacket): void {
    const isIn = p.pid === PID_IN;
    const q = this.endpoints.get(p.endpoint | (isIn ? 0x80 : 0));
    if (!q) {
      p.status = 'stall';
      return;
    }
    if (q.type === 'isochronous') {
      if (isIn) this.iso.in(p, q);
      else this.iso.out(p, q);
      return;
    }
    if (q.type === 'bulk' && isIn && this.opts.bulkInReadAhead > 0) this.streams.in(p, q);
    else if (q.type === 'bulk' && !isIn && this.opts.bulkOutWriteBehind > 0) this.streams.out(p, q);
    else if (isIn) this.perPacket.in(p, q);
    else this.perPacket.out(p, q);
  }
}
