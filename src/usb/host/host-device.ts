/**
 * Host USB passthrough: a real device on the host, reached through libusb,
 * presented to the guest as a UsbDevice on a root port.
 *
 * The behaviour follows QEMU 7.2 hw/usb/host-libusb.c (with the control
 * pipe of hw/usb/core.c in front of it):
 *  - Control transfers: the SETUP (and, for host-to-device requests, the OUT
 *    data stage) are collected here and become one libusb control transfer.
 *    A device-to-host request is sent when its SETUP arrives (the SETUP
 *    packet answers `async` and completes when libusb does; the IN data
 *    stage is then served from the result); a host-to-device request is sent
 *    at its status stage (the status IN answers `async`). Control timeout
 *    10 s (QEMU CONTROL_TIMEOUT).
 *  - Requests carried out here rather than forwarded:
 *    SET_ADDRESS only changes the address the guest uses (the device keeps
 *    its host address); SET_CONFIGURATION releases the claimed interfaces,
 *    calls libusb_set_configuration (skipped for single-configuration
 *    devices, as QEMU does since 2.x) and claims the new configuration's
 *    interfaces (detaching kernel drivers first); SET_INTERFACE calls
 *    libusb_set_interface_alt_setting; CLEAR_FEATURE(ENDPOINT_HALT) calls
 *    libusb_clear_halt and always succeeds. Failures of the first two
 *    stall the request.
 *  - Bulk and interrupt: one libusb transfer per packet, no timeout (QEMU
 *    BULK_TIMEOUT / INTR_TIMEOUT 0). IN: at most one transfer per endpoint;
 *    if the guest gives up on the packet (cancelPacket) the transfer keeps
 *    running and what it returns is handed to the next IN packet on that
 *    endpoint, so no data the device already sent is lost (QEMU cancels
 *    instead). OUT: up to `maxOutInFlight` transfers per endpoint, more are
 *    NAKed; a cancelled OUT transfer is cancelled at libusb.
 *  - Pipelining (opt-in, off by default; QEMU's UHCI gets the same effect
 *    from queue filling, which our schedule engine does not do):
 *    `bulkInReadAhead` keeps a libusb transfer of that many bytes in flight
 *    on each bulk IN endpoint and serves the guest's IN packets from what
 *    it returned, one max-packet chunk per packet, synchronously. The
 *    chunks are exactly the device's packets: a transfer that ends early
 *    ended with a short packet (served as is) or, when its length is a
 *    multiple of the max packet, with a zero-length packet (served as an
 *    empty packet); a transfer that failed after some data serves the data
 *    first, then its error (stall, ...) on the next packet; nothing more is
 *    read ahead until the guest clears the halt. Data read ahead and not yet
 *    served is dropped by CLEAR_FEATURE(HALT), SET_CONFIGURATION,
 *    SET_INTERFACE and resets, as a device FIFO flush would.
 *    `bulkOutWriteBehind` acknowledges bulk OUT packets at once and sends
 *    them in coalesced libusb transfers (a short or empty packet ends a
 *    transfer; full packets are sent after the frame walk when no
 *    write-behind transfer is running or half the window (at most 4 KiB)
 *    has gathered, else when the running one completes), with at
 *    most that many bytes not yet confirmed by the device; beyond it the
 *    guest is NAKed. A write-behind transfer that fails makes the next OUT
 *    packet on that endpoint answer the failure (for a stall: the guest sees
 *    the halt one packet later than the wire would show it).
 *  - Isochronous (UHCI retires an isochronous TD after one attempt, so these
 *    never answer `async`): IN hands over the last completed transfer or an
 *    empty packet, keeping one transfer in flight; OUT is sent without
 *    waiting, up to `maxOutInFlight` in flight, extra packets are dropped.
 *    The `usb` 2.x backend cannot do isochronous transfers; such packets
 *    then answer `ioerror`.
 *  - Results: see status-map.ts (QEMU's status_map). A NO_DEVICE result or
 *    error means the host device is gone: every packet still in flight is
 *    completed with `nodev`, the handle is closed and `onDisconnect` runs
 *    (after the current call returns) so the owner can unplug the port.
 *  - Port reset: in-flight packets complete with `nodev`; the host device is
 *    reset with libusb_reset_device when the guest had given it an address
 *    (QEMU guest-reset=on, guest-resets-all=off: the reset that starts every
 *    enumeration is not passed on). Tokens are NAKed while the reset runs.
 *  - Speed: low and full speed devices pass through. A high- or super-speed
 *    device runs on a UHCI port only at full speed; it is accepted (as
 *    full speed) when QEMU's compatibility rule allows it — no isochronous
 *    endpoint and no interrupt endpoint above 64 bytes in any setting
 *    (usb_host_speed_compat) — and refused with HostDeviceSpeedError
 *    otherwise, or always with fullSpeedCompat: false.
 *
 * Exactly-once rule: every packet answered `async` is later either passed
 * to hooks.complete once, or given back by the controller through
 * cancelPacket (after which it is never completed).
 */
import { UserFacingError } from '../../platform/user-facing-error.js';
import { PID_IN, PID_OUT, PID_SETUP, type UsbDevice, type UsbPacket, type UsbPortHooks, type UsbSpeed, type UsbStatus } from '../packet.js';
import { ControlPipe } from '../control-pipe.js';
import {
  LIBUSB_ERROR_NOT_SUPPORTED,
  LIBUSB_ERROR_OTHER,
  LibusbError,
  endpointTransferType,
  portPath,
  type HostConfigInfo,
  type HostDeviceInfo,
  type LibusbDevice,
  type TransferHandle,
  type TransferResult,
  type TransferType,
} from './libusb.js';
import { isNoDevice, packetStatusForRequestError, packetStatusForSubmitError, packetStatusForTransfer } from './status-map.js';

/** QEMU include/hw/usb.h data_buf / core.c: wLength above this stalls the SETUP. */
export const HOST_CONTROL_BUFFER_SIZE = 4096;
/** QEMU host-libusb.c CONTROL_TIMEOUT. */
export const CONTROL_TIMEOUT_MS = 10_000;
/** QEMU host-libusb.c BULK_TIMEOUT / INTR_TIMEOUT: unlimited. */
export const DATA_TIMEOUT_MS = 0;
/** Configuration bmAttributes remote wakeup bit (USB 2.0 Table 9-10). */
const CFG_ATT_REMOTE_WAKEUP = 0x20;

export class HostDeviceSpeedError extends UserFacingError {}

export class HostDeviceOpenError extends UserFacingError {
  constructor(
    msg: string,
    readonly errno: number,
  ) {
    super(msg);
  }
}

export interface HostUsbDeviceOptions {
  /** Detach host kernel drivers from interfaces before claiming them (default true). */
  detachKernelDriver?: boolean;
  /** QEMU `guest-reset` (default true): pass guest port resets on once the device has an address. */
  guestReset?: boolean;
  /** QEMU `guest-resets-all` (default false): pass every guest port reset on. */
  guestResetsAll?: boolean;
  /** QEMU `suppress-remote-wake` (default true): clear the remote wakeup bit in configuration descriptors. */
  suppressRemoteWake?: boolean;
  /** Accept a high/super-speed device at full speed when QEMU's rule allows it (default true). */
  fullSpeedCompat?: boolean;
  /** Speed to use when the host cannot tell (default 'full'). */
  unknownSpeed?: UsbSpeed;
  /** OUT (and isochronous) transfers in flight per endpoint (default 4, minimum 1). */
  maxOutInFlight?: number;
  /** Bulk IN read-ahead: bytes per libusb transfer kept in flight (0 = off, the default). */
  bulkInReadAhead?: number;
  /** Bulk OUT write-behind: bytes acknowledged but not yet confirmed by the device (0 = off, the default). */
  bulkOutWriteBehind?: number;
  controlTimeoutMs?: number;
  dataTimeoutMs?: number;
  /** The host device went away (unplugged, or NO_DEVICE from libusb). Called once, asynchronously. */
  onDisconnect?: (dev: HostUsbDevice, reason: string) => void;
  log?: (level: 'debug' | 'info' | 'warn', msg: string) => void;
}

type PendingKind = 'control-setup' | 'control-status' | 'request' | 'data' | 'iso';

interface Pending {
  kind: PendingKind;
  /** The guest packet waiting for this, or null once cancelled / orphaned. */
  packet: UsbPacket | null;
  handle: TransferHandle | null;
  queue: EndpointQueue | null;
}

interface EndpointQueue {
  address: number;
  type: Exclude<TransferType, 'control'>;
  maxPacketSize: number;
  interfaceNumber: number;
  pending: Pending[];
  /** IN: a finished transfer nobody was waiting for. */
  buffered: TransferResult | null;
  /** Isochronous transfers refused by the backend. */
  unsupported: boolean;
  /** Bulk IN read-ahead: finished transfers being served packet by packet, oldest first. */
  streams: InStream[];
  /** Bulk OUT write-behind: acknowledged bytes not yet submitted. */
  outChunks: Uint8Array[];
  outChunkBytes: number;
  /** Bulk OUT write-behind: submitted bytes not yet confirmed. */
  outInFlightBytes: number;
  /** Bulk OUT write-behind: a failed transfer, answered to the next OUT packet. */
  outError: UsbStatus | null;
  outFlushQueued: boolean;
  /** Bulk IN read-ahead: an error was served; read ahead again only after a flush (CLEAR_HALT). */
  inHalted: boolean;
}

/** A read-ahead transfer's result, served as the device's packets. */
interface InStream {
  data: Uint8Array;
  offset: number;
  /** The device ended the transfer with a zero-length packet not yet served. */
  zlp: boolean;
  /** 'ack', or the transfer's error, served after the data. */
  end: UsbStatus;
}

/** QEMU usb_host_speed_compat: can this high/super-speed device work at full speed? */
export function fullSpeedCompatible(info: Pick<HostDeviceInfo, 'configs'>): boolean {
  for (const c of info.configs) {
    for (const i of c.interfaces) {
      for (const e of i.endpoints) {
        const t = endpointTransferType(e.attributes);
        if (t === 'isochronous') return false;
        if (t === 'interrupt' && e.maxPacketSize > 64) return false;
      }
    }
  }
  return true;
}

/** Decide the speed the guest sees, or explain why the device cannot be used. */
export function guestSpeedFor(info: HostDeviceInfo, opts: Pick<HostUsbDeviceOptions, 'fullSpeedCompat' | 'unknownSpeed'> = {}): UsbSpeed {
  const name = `${hex4(info.vendorId)}:${hex4(info.productId)} (bus ${info.busNumber} addr ${info.deviceAddress})`;
  switch (info.speed) {
    case 'low':
    case 'full':
      return info.speed;
    case 'unknown':
      return opts.unknownSpeed ?? 'full';
    case 'high':
    case 'super': {
      if (opts.fullSpeedCompat === false) {
        throw new HostDeviceSpeedError(
          `host device ${name} runs at ${info.speed} speed; a UHCI port carries only low/full speed (full-speed fallback disabled)`,
        );
      }
      if (!fullSpeedCompatible(info)) {
        throw new HostDeviceSpeedError(
          `host device ${name} runs at ${info.speed} speed and cannot be used at full speed on a UHCI (USB 1.1) port: it has isochronous endpoints or interrupt endpoints larger than 64 bytes; plug it into a USB 1.1 hub on the host or give the guest an EHCI/xHCI controller`,
        );
      }
      return 'full';
    }
  }
}

const hex4 = (n: number) => n.toString(16).padStart(4, '0');

export interface HostUsbDeviceState {
  version: 1;
  kind: 'host';
  address: number;
  configuration: number;
}

export class HostUsbDevice implements UsbDevice {
  readonly speed: UsbSpeed;
  readonly vendorId: number;
  readonly productId: number;
  productName: string;
  readonly info: HostDeviceInfo;

  private hooks: UsbPortHooks | null = null;
  private attached = false;
  private gone = false;
  private closed = false;
  private resetting = false;
  private guestAddress = 0;
  private guestConfig = 0;
  private readonly altSettings = new Map<number, number>();
  private readonly claimed = new Set<number>();
  private readonly kernelDetached = new Set<number>();
  private readonly endpoints = new Map<number, EndpointQueue>();
  private readonly inflight = new Set<Pending>();

  private readonly pipe = new ControlPipe(HOST_CONTROL_BUFFER_SIZE);
  private control: Pending | null = null;
  /** Bumped by reset/detach: a libusb request still running from before must not change our state. */
  private epoch = 0;

  private readonly opts: Required<Omit<HostUsbDeviceOptions, 'onDisconnect' | 'log'>> & Pick<HostUsbDeviceOptions, 'onDisconnect' | 'log'>;

  /** Statistics, for tests and `info usb`. */
  readonly stats = { completed: 0, cancelled: 0, isoDropped: 0, hostResets: 0 };

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
      guestReset: opts.guestReset ?? true,
      guestResetsAll: opts.guestResetsAll ?? false,
      suppressRemoteWake: opts.suppressRemoteWake ?? true,
      fullSpeedCompat: opts.fullSpeedCompat ?? true,
      unknownSpeed: opts.unknownSpeed ?? 'full',
      maxOutInFlight: Math.max(1, opts.maxOutInFlight ?? 4),
      bulkInReadAhead: Math.max(0, opts.bulkInReadAhead ?? 0),
      bulkOutWriteBehind: Math.max(0, opts.bulkOutWriteBehind ?? 0),
      controlTimeoutMs: opts.controlTimeoutMs ?? CONTROL_TIMEOUT_MS,
      dataTimeoutMs: opts.dataTimeoutMs ?? DATA_TIMEOUT_MS,
      onDisconnect: opts.onDisconnect,
      log: opts.log,
    };
    this.info = dev.info;
    this.speed = guestSpeedFor(dev.info, this.opts);
    if (dev.info.speed === 'high' || dev.info.speed === 'super') {
      this.log('warn', `${this.hostName}: ${dev.info.speed}-speed device presented at full speed (QEMU speed compat rule)`);
    }
    this.vendorId = dev.info.vendorId;
    this.productId = dev.info.productId;
    this.productName = `host:${dev.info.busNumber}.${dev.info.deviceAddress}`;
    try {
      dev.open();
    } catch (e) {
      const errno = e instanceof LibusbError ? e.errno : LIBUSB_ERROR_OTHER;
      throw new HostDeviceOpenError(`cannot open host device ${this.hostName}: ${(e as Error).message}`, errno);
    }
    // QEMU reads the product string on open; ours arrives asynchronously.
    void dev.getString(dev.info.iProduct).then((s) => {
      if (s) this.productName = s;
    });
  }

  /** "bus.addr vid:pid port" for messages. */
  get hostName(): string {
    const i = this.info;
    return `${i.busNumber}.${i.deviceAddress} ${hex4(i.vendorId)}:${hex4(i.productId)} (port ${portPath(i)})`;
  }

  get address(): number {
    return this.guestAddress;
  }

  /** bConfigurationValue the guest selected (0 = unconfigured). */
  get configurationValue(): number {
    return this.guestConfig;
  }

  /** The host device has gone away. */
  get disconnected(): boolean {
    return this.gone;
  }

  /** Packets currently answered `async` and not yet completed or cancelled. */
  get packetsInFlight(): number {
    let n = 0;
    for (const p of this.inflight) if (p.packet) n++;
    return n;
  }

  /** libusb transfers or requests not yet finished (including orphaned IN transfers). */
  get transfersInFlight(): number {
    return this.inflight.size;
  }

  private log(level: 'debug' | 'info' | 'warn', msg: string): void {
    this.opts.log?.(level, msg);
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
    this.epoch++;
    this.dropAll(null);
    this.hooks = null;
    this.attached = false;
  }

  reset(): void {
    if (!this.attached) return;
    this.epoch++;
    this.dropAll('nodev');
    const hadAddress = this.guestAddress !== 0;
    this.guestAddress = 0;
    this.guestConfig = 0;
    this.altSettings.clear();
    this.endpoints.clear();
    this.pipe.stage = 'idle';
    if (this.gone || this.closed) return;
    if (this.opts.guestResetsAll || (this.opts.guestReset && hadAddress)) {
      this.resetting = true;
      this.stats.hostResets++;
      this.dev.reset().then(
        () => {
          this.resetting = false;
          this.hooks?.activity?.();
        },
        (e: unknown) => {
          this.resetting = false;
          // QEMU: a failed libusb_reset_device means the device is gone.
          this.hostGone(`reset failed: ${(e as Error).message}`);
        },
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
      this.handleControl(p);
      return;
    }
    if (p.pid === PID_SETUP) {
      p.status = 'stall';
      return;
    }
    this.handleData(p);
  }

  cancelPacket(p: UsbPacket): void {
    for (const pend of this.inflight) {
      if (pend.packet !== p) continue;
      pend.packet = null;
      this.stats.cancelled++;
      if (pend.kind === 'data' && pend.queue && pend.queue.address & 0x80) {
        // IN: keep the transfer; its data goes to the next IN packet.
        return;
      }
      pend.handle?.cancel();
      return;
    }
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
    if (!this.gone) {
      await this.releaseInterfaces();
      try {
        await this.dev.reset();
      } catch {
        // best effort
      }
      for (const i of this.kernelDetached) {
        try {
          this.dev.attachKernelDriver(i);
        } catch {
          // best effort
        }
      }
      this.kernelDetached.clear();
    }
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
  /* Completion bookkeeping                                              */

  private track(kind: PendingKind, packet: UsbPacket | null, queue: EndpointQueue | null): Pending {
    const pend: Pending = { kind, packet, handle: null, queue };
    this.inflight.add(pend);
    queue?.pending.push(pend);
    return pend;
  }

  private untrack(pend: Pending): void {
    this.inflight.delete(pend);
    if (pend.queue) {
      const k = pend.queue.pending.indexOf(pend);
      if (k >= 0) pend.queue.pending.splice(k, 1);
    }
    if (this.control === pend) this.control = null;
  }

  /** Complete the packet waiting on `pend`, if any (exactly once). */
  private finish(pend: Pending, status: UsbStatus, actualLength = 0): void {
    const p = pend.packet;
    if (!p) return;
    pend.packet = null;
    p.status = status;
    p.actualLength = status === 'ack' ? actualLength : 0;
    this.stats.completed++;
    this.hooks?.complete(p);
  }

  /**
   * Stop everything in flight: cancel libusb transfers; complete waiting
   * packets with `status`, or forget them (null: the controller cancelled
   * them already, or is going away).
   */
  private dropAll(status: UsbStatus | null): void {
    for (const pend of [...this.inflight]) {
      this.untrack(pend);
      if (status) this.finish(pend, status);
      else pend.packet = null;
      pend.handle?.cancel();
    }
    for (const q of this.endpoints.values()) HostUsbDevice.clearQueue(q);
    this.control = null;
  }

  private hostGone(reason: string): void {
    if (this.gone) return;
    this.gone = true;
    this.log('warn', `${this.hostName}: ${reason}`);
    // Deferred: we may be inside the controller's schedule walk.
    queueMicrotask(() => {
      this.dropAll('nodev');
      try {
        this.dev.close();
      } catch {
        // the handle is already unusable
      }
      this.closed = true;
      this.opts.onDisconnect?.(this, reason);
    });
  }

  /** libusb refused to start the transfer of `pend`: forget it and answer its packet (if any). */
  private abandonSubmit(pend: Pending, p: UsbPacket | null, e: unknown): void {
    this.untrack(pend);
    pend.packet = null;
    if (p) this.submitFailed(p, e);
  }

  private submitFailed(p: UsbPacket, e: unknown): void {
    const errno = e instanceof LibusbError ? e.errno : LIBUSB_ERROR_OTHER;
    p.status = packetStatusForSubmitError(errno);
    if (isNoDevice(errno)) this.hostGone(`submit failed: ${(e as Error).message}`);
  }

  /* ------------------------------------------------------------------ */
  /* Control pipe (QEMU core.c do_token_* + host-libusb.c handle_control) */

  private handleControl(p: UsbPacket): void {
    if (this.control) {
      // A request is still running at the host: try again later.
      p.status = 'nak';
      return;
    }
    switch (p.pid) {
      case PID_SETUP:
        this.tokenSetup(p);
        return;
      case PID_IN:
        if (this.pipe.inToken(p)) this.runOutRequest(p);
        return;
      case PID_OUT:
        this.pipe.outToken(p);
        return;
      default:
        p.status = 'stall';
    }
  }

  private tokenSetup(p: UsbPacket): void {
    const pipe = this.pipe;
    if (!pipe.setupToken(p)) {
      p.status = 'stall';
      return;
    }
    if (!pipe.dirIn) {
      pipe.stage = pipe.length === 0 ? 'status' : 'data';
      p.actualLength = 8;
      return;
    }
    // Device-to-host: ask the device now; the SETUP completes with its answer.
    pipe.stage = 'idle';
    const pend = this.track('control-setup', p, null);
    this.control = pend;
    const setup = Uint8Array.from(pipe.setup);
    try {
      pend.handle = this.dev.controlTransfer(setup, new Uint8Array(0), this.opts.controlTimeoutMs, (r) => {
        const live = this.inflight.has(pend);
        this.untrack(pend);
        if (isNoDevice(r.status)) this.hostGone('NO_DEVICE on a control transfer');
        if (!live) return; // dropped (reset, detach, configuration change)
        if (!pend.packet) return; // cancelled
        const status = packetStatusForTransfer(r.status);
        if (status === 'ack') {
          const n = Math.min(r.data.length, pipe.length, pipe.buffer.length);
          pipe.buffer.set(r.data.subarray(0, n));
          this.fixupDescriptor(setup, n);
          pipe.answered(n);
          this.finish(pend, 'ack', 8);
        } else {
          pipe.stage = 'idle';
          this.finish(pend, status);
        }
      });
    } catch (e) {
      this.abandonSubmit(pend, p, e);
      return;
    }
    p.status = 'async';
  }

  /** QEMU suppress-remote-wake: hide remote wakeup in GET_DESCRIPTOR(CONFIGURATION, 0). */
  private fixupDescriptor(setup: Uint8Array, n: number): void {
    if (!this.opts.suppressRemoteWake) return;
    if (setup[0] === 0x80 && setup[1] === 6 && setup[3] === 2 && setup[2] === 0 && n > 7) {
      if (this.pipe.buffer[7]! & CFG_ATT_REMOTE_WAKEUP) {
        this.pipe.buffer[7]! &= ~CFG_ATT_REMOTE_WAKEUP;
        this.log('debug', `${this.hostName}: remote wakeup hidden from the guest`);
      }
    }
  }

  /** Status stage of a host-to-device request: carry it out. */
  private runOutRequest(p: UsbPacket): void {
    const s = this.pipe.setup;
    const type = s[0]!;
    const request = s[1]!;
    const value = s[2]! | (s[3]! << 8);
    const index = s[4]! | (s[5]! << 8);
    if (type === 0x00 && request === 0x05) {
      // SET_ADDRESS: the device keeps its host address (QEMU usb_host_set_address).
      this.guestAddress = value & 0xff;
      return;
    }
    if (type === 0x00 && request === 0x09) {
      this.runRequest(p, () => this.setConfiguration(value & 0xff));
      return;
    }
    if (type === 0x01 && request === 0x0b) {
      this.runRequest(p, () => this.setInterface(index, value));
      return;
    }
    if (type === 0x02 && request === 0x01 && value === 0) {
      // CLEAR_FEATURE(ENDPOINT_HALT): libusb_clear_halt, result ignored (QEMU).
      this.runRequest(p, async () => {
        this.flushEndpoint(index & 0x8f);
        try {
          await this.dev.clearHalt(index & 0x8f);
        } catch (e) {
          if (e instanceof LibusbError && isNoDevice(e.errno)) throw e;
        }
      });
      return;
    }
    if (type === 0x02 && request === 0x03 && value === 0) this.dropReadAhead(index & 0x8f);
    const pend = this.track('control-status', p, null);
    this.control = pend;
    try {
      pend.handle = this.dev.controlTransfer(Uint8Array.from(s), this.pipe.data().slice(), this.opts.controlTimeoutMs, (r) => {
        const live = this.inflight.has(pend);
        this.untrack(pend);
        if (isNoDevice(r.status)) this.hostGone('NO_DEVICE on a control transfer');
        if (!live) return; // dropped (reset, detach, configuration change)
        this.finish(pend, packetStatusForTransfer(r.status));
      });
    } catch (e) {
      this.abandonSubmit(pend, p, e);
      return;
    }
    p.status = 'async';
  }

  /** A request done with libusb calls; the status IN completes when it ends. */
  private runRequest(p: UsbPacket, op: () => Promise<void>): void {
    const pend = this.track('request', p, null);
    this.control = pend;
    p.status = 'async';
    op().then(
      () => {
        this.untrack(pend);
        this.finish(pend, 'ack');
      },
      (e: unknown) => {
        this.untrack(pend);
        const errno = e instanceof LibusbError ? e.errno : LIBUSB_ERROR_OTHER;
        this.log('warn', `${this.hostName}: ${(e as Error).message}`);
        if (isNoDevice(errno)) this.hostGone((e as Error).message);
        this.finish(pend, isNoDevice(errno) ? 'nodev' : packetStatusForRequestError(errno));
      },
    );
  }

  private async releaseInterfaces(): Promise<void> {
    for (const i of [...this.claimed]) {
      this.claimed.delete(i);
      try {
        await this.dev.releaseInterface(i);
      } catch (e) {
        if (e instanceof LibusbError && isNoDevice(e.errno)) throw e;
      }
    }
  }

  private configInfo(value: number): HostConfigInfo | undefined {
    return this.info.configs.find((c) => c.value === value);
  }

  /** QEMU usb_host_set_config + usb_host_claim_interfaces. */
  private async setConfiguration(value: number): Promise<void> {
    const epoch = this.epoch;
    this.dropData();
    await this.releaseInterfaces();
    if (this.info.numConfigurations !== 1) await this.dev.setConfiguration(value);
    if (epoch !== this.epoch) return; // reset or unplugged meanwhile
    this.guestConfig = 0;
    this.altSettings.clear();
    this.endpoints.clear();
    if (value === 0) return;
    const cfg = this.configInfo(value);
    if (!cfg) throw new LibusbError(LIBUSB_ERROR_OTHER, `no configuration ${value}`);
    const numbers = [...new Set(cfg.interfaces.map((i) => i.number))];
    for (const n of numbers) {
      if (this.opts.detachKernelDriver) {
        let active = false;
        try {
          active = this.dev.kernelDriverActive(n);
        } catch {
          active = false; // not supported on this platform
        }
        if (active) {
          this.dev.detachKernelDriver(n);
          this.kernelDetached.add(n);
        }
      }
      this.dev.claimInterface(n);
      this.claimed.add(n);
      this.altSettings.set(n, 0);
    }
    this.guestConfig = value;
    this.updateEndpoints();
  }

  private async setInterface(iface: number, alternate: number): Promise<void> {
    const epoch = this.epoch;
    this.dropData();
    await this.dev.setInterface(iface, alternate);
    if (epoch !== this.epoch) return;
    this.altSettings.set(iface, alternate);
    this.updateEndpoints();
  }

  /** Endpoint table of the current configuration and alternate settings (QEMU usb_host_ep_update). */
  private updateEndpoints(): void {
    this.endpoints.clear();
    const cfg = this.configInfo(this.guestConfig);
    if (!cfg) return;
    for (const [n, alt] of this.altSettings) {
      const intf = cfg.interfaces.find((i) => i.number === n && i.alternate === alt);
      if (!intf) continue;
      for (const e of intf.endpoints) {
        const type = endpointTransferType(e.attributes);
        if (type === 'control' || (e.address & 0x0f) === 0 || this.endpoints.has(e.address)) continue;
        this.endpoints.set(e.address, {
          address: e.address,
          type,
          maxPacketSize: e.maxPacketSize & 0x7ff,
          interfaceNumber: n,
          pending: [],
          buffered: null,
          unsupported: false,
          streams: [],
          outChunks: [],
          outChunkBytes: 0,
          outInFlightBytes: 0,
          outError: null,
          outFlushQueued: false,
          inHalted: false,
        });
      }
    }
  }

  /** Cancel data transfers (configuration/interface change): waiting packets get ioerror. */
  private dropData(): void {
    for (const pend of [...this.inflight]) {
      if (!pend.queue) continue;
      this.untrack(pend);
      this.finish(pend, 'ioerror');
      pend.handle?.cancel();
    }
    for (const q of this.endpoints.values()) HostUsbDevice.clearQueue(q);
  }

  private static clearQueue(q: EndpointQueue): void {
    q.buffered = null;
    q.streams = [];
    q.outChunks = [];
    q.outChunkBytes = 0;
    q.outInFlightBytes = 0;
    q.outError = null;
    q.inHalted = false;
  }

  /** CLEAR_HALT: forget what the endpoint had in flight or buffered. */
  private flushEndpoint(address: number): void {
    const q = this.endpoints.get(address);
    if (!q) return;
    for (const pend of [...q.pending]) {
      this.untrack(pend);
      this.finish(pend, 'ioerror');
      pend.handle?.cancel();
    }
    HostUsbDevice.clearQueue(q);
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
      if (isIn) this.isoIn(p, q);
      else this.isoOut(p, q);
      return;
    }
    if (q.type === 'bulk' && isIn && this.opts.bulkInReadAhead > 0) this.readAheadIn(p, q);
    else if (q.type === 'bulk' && !isIn && this.opts.bulkOutWriteBehind > 0) this.writeBehindOut(p, q);
    else if (isIn) this.dataIn(p, q);
    else this.dataOut(p, q);
  }

  /** Bytes read ahead and not yet served on a bulk IN endpoint (for pacing and tests). */
  readAheadBytes(address: number): number {
    const q = this.endpoints.get(address);
    if (!q) return 0;
    let n = 0;
    for (const st of q.streams) n += st.data.length - st.offset;
    return n;
  }

  /** Bulk OUT bytes acknowledged to the guest and not yet confirmed by the device. */
  writeBehindBytes(address: number): number {
    const q = this.endpoints.get(address);
    return q ? q.outChunkBytes + q.outInFlightBytes : 0;
  }

  /* Bulk IN read-ahead ------------------------------------------------- */

  /**
   * SET_FEATURE(ENDPOINT_HALT) from the guest: what was read ahead must not
   * be served after the halt, so it is dropped, and a prefetch nobody waits
   * for is cancelled (its data, if it still arrives, is discarded).
   */
  private dropReadAhead(address: number): void {
    const q = this.endpoints.get(address);
    if (!q || !(address & 0x80)) return;
    q.streams = [];
    for (const pend of [...q.pending]) {
      if (pend.packet) continue;
      this.untrack(pend);
      pend.handle?.cancel();
    }
  }

  private static streamOf(r: TransferResult, requested: number, maxPacket: number): InStream {
    const status = packetStatusForTransfer(r.status);
    const n = r.data.length;
    // Ended early on a packet boundary without error: the device sent a zero-length packet.
    const zlp = status === 'ack' && n < requested && n % maxPacket === 0;
    return { data: r.data, offset: 0, zlp, end: status };
  }

  /** Serve the next device packet from the read-ahead streams into `p`. */
  private serveStream(p: UsbPacket, q: EndpointQueue): void {
    const st = q.streams[0]!;
    const remain = st.data.length - st.offset;
    if (remain > 0) {
      const n = Math.min(q.maxPacketSize, remain);
      const chunk = st.data.subarray(st.offset, st.offset + n);
      st.offset += n;
      if (n > p.data.length) {
        p.status = 'babble';
        p.actualLength = 0;
      } else {
        p.data.set(chunk);
        p.status = 'ack';
        p.actualLength = n;
      }
    } else if (st.zlp) {
      st.zlp = false;
      p.status = 'ack';
      p.actualLength = 0;
    } else {
      p.status = st.end;
      p.actualLength = 0;
      q.streams.shift();
      q.inHalted = true;
      return;
    }
    if (st.offset >= st.data.length && !st.zlp && st.end === 'ack') q.streams.shift();
  }

  /**
   * A transfer is already in flight on this endpoint: the packet NAKs while
   * another packet waits for it, or else (a read-ahead, or an orphan whose
   * packet was cancelled) takes it over and goes async. False: nothing runs.
   */
  private joinRunning(p: UsbPacket, q: EndpointQueue): boolean {
    const running = q.pending[0];
    if (!running) return false;
    if (running.packet) {
      p.status = 'nak';
    } else {
      running.packet = p;
      p.status = 'async';
    }
    return true;
  }

  private readAheadIn(p: UsbPacket, q: EndpointQueue): void {
    if (q.streams.length) {
      this.serveStream(p, q);
      this.prefetch(q);
      return;
    }
    if (this.joinRunning(p, q)) return;
    if (this.submitReadAhead(q, p)) p.status = 'async';
  }

  /** Keep one read-ahead transfer in flight while little is buffered and the endpoint is not halted. */
  private prefetch(q: EndpointQueue): void {
    if (q.pending.length || q.inHalted || this.gone || this.closed) return;
    let buffered = 0;
    for (const st of q.streams) {
      if (st.end !== 'ack') return;
      buffered += st.data.length - st.offset;
    }
    if (buffered < this.opts.bulkInReadAhead) this.submitReadAhead(q, null);
  }

  private submitReadAhead(q: EndpointQueue, p: UsbPacket | null): boolean {
    const mps = q.maxPacketSize || 64;
    const want = Math.max(mps, Math.floor(this.opts.bulkInReadAhead / mps) * mps, p ? Math.ceil(p.data.length / mps) * mps : 0);
    const pend = this.track('data', p, q);
    try {
      pend.handle = this.dev.transfer(q.address, 'bulk', want, this.opts.dataTimeoutMs, (r) => {
        const live = this.inflight.has(pend);
        this.untrack(pend);
        if (isNoDevice(r.status)) this.hostGone(`NO_DEVICE on endpoint 0x${q.address.toString(16)}`);
        if (!live || r.status === 'cancelled' || this.gone || this.endpoints.get(q.address) !== q) {
          if (live) this.finish(pend, packetStatusForTransfer(r.status));
          return;
        }
        q.streams.push(HostUsbDevice.streamOf(r, want, mps));
        const waiting = pend.packet;
        if (waiting) {
          pend.packet = null;
          this.serveStream(waiting, q);
          this.stats.completed++;
          this.hooks?.complete(waiting);
        } else {
          this.hooks?.activity?.();
        }
        this.prefetch(q);
      });
    } catch (e) {
      this.abandonSubmit(pend, p, e);
      return false;
    }
    return true;
  }

  /* Bulk OUT write-behind ---------------------------------------------- */

  private writeBehindOut(p: UsbPacket, q: EndpointQueue): void {
    if (q.outError) {
      p.status = q.outError;
      q.outError = null;
      return;
    }
    const len = p.data.length;
    if (q.outChunkBytes + q.outInFlightBytes + len > this.opts.bulkOutWriteBehind && q.outChunkBytes + q.outInFlightBytes > 0) {
      p.status = 'nak';
      return;
    }
    q.outChunks.push(Uint8Array.from(p.data));
    q.outChunkBytes += len;
    p.status = 'ack';
    p.actualLength = len;
    if (len < q.maxPacketSize) {
      this.flushOut(q); // a short or empty packet ends the device's transfer
    } else if (!q.outFlushQueued) {
      q.outFlushQueued = true;
      queueMicrotask(() => {
        q.outFlushQueued = false;
        // After the walk: send now if the device would otherwise idle, or enough has gathered;
        // else the running transfer's completion sends it (fewer, larger transfers).
        if (this.endpoints.get(q.address) === q && (q.outInFlightBytes === 0 || q.outChunkBytes >= this.outCoalesceBytes)) this.flushOut(q);
      });
    }
  }

  /** Write-behind transfers are sent early once this much has gathered (half the window, at most 4 KiB). */
  private get outCoalesceBytes(): number {
    return Math.min(4096, Math.max(1, this.opts.bulkOutWriteBehind >> 1));
  }

  /** Send the acknowledged OUT bytes as one libusb transfer. */
  private flushOut(q: EndpointQueue): void {
    if (!q.outChunks.length || this.gone || this.closed) return;
    const data = new Uint8Array(q.outChunkBytes);
    let o = 0;
    for (const c of q.outChunks) {
      data.set(c, o);
      o += c.length;
    }
    q.outChunks = [];
    q.outChunkBytes = 0;
    q.outInFlightBytes += data.length;
    const pend = this.track('data', null, q);
    try {
      pend.handle = this.dev.transfer(q.address, 'bulk', data, this.opts.dataTimeoutMs, (r) => {
        const live = this.inflight.has(pend);
        this.untrack(pend);
        if (isNoDevice(r.status)) this.hostGone(`NO_DEVICE on endpoint 0x${q.address.toString(16)}`);
        if (!live || this.endpoints.get(q.address) !== q) return;
        q.outInFlightBytes = Math.max(0, q.outInFlightBytes - data.length);
        const status = packetStatusForTransfer(r.status);
        if (status !== 'ack' && r.status !== 'cancelled') q.outError = status;
        else if (q.outInFlightBytes === 0) this.flushOut(q); // what gathered meanwhile
        this.hooks?.activity?.();
      });
    } catch (e) {
      this.untrack(pend);
      q.outInFlightBytes = Math.max(0, q.outInFlightBytes - data.length);
      const errno = e instanceof LibusbError ? e.errno : LIBUSB_ERROR_OTHER;
      q.outError = packetStatusForSubmitError(errno);
      if (isNoDevice(errno)) this.hostGone(`submit failed: ${(e as Error).message}`);
    }
  }

  /** Put a finished IN transfer's result into a packet. */
  private static deliver(p: UsbPacket, r: TransferResult): { status: UsbStatus; length: number } {
    const status = packetStatusForTransfer(r.status);
    if (status !== 'ack') return { status, length: 0 };
    if (r.data.length > p.data.length) return { status: 'babble', length: 0 };
    p.data.set(r.data);
    return { status: 'ack', length: r.data.length };
  }

  private dataIn(p: UsbPacket, q: EndpointQueue): void {
    if (q.buffered) {
      const r = q.buffered;
      q.buffered = null;
      const { status, length } = HostUsbDevice.deliver(p, r);
      p.status = status;
      p.actualLength = length;
      return;
    }
    if (this.joinRunning(p, q)) return;
    const pend = this.track('data', p, q);
    try {
      pend.handle = this.dev.transfer(q.address, q.type, p.data.length, this.opts.dataTimeoutMs, (r) => {
        const live = this.inflight.has(pend);
        this.untrack(pend);
        if (isNoDevice(r.status)) this.hostGone(`NO_DEVICE on endpoint 0x${q.address.toString(16)}`);
        if (!live) return; // dropped (reset, detach, configuration change)
        const waiting = pend.packet;
        if (waiting) {
          const { status, length } = HostUsbDevice.deliver(waiting, r);
          this.finish(pend, status, length);
        } else if (r.status !== 'cancelled' && !this.gone && this.endpoints.get(q.address) === q) {
          q.buffered = r;
          this.hooks?.activity?.();
        }
      });
    } catch (e) {
      this.abandonSubmit(pend, p, e);
      return;
    }
    p.status = 'async';
  }

  private dataOut(p: UsbPacket, q: EndpointQueue): void {
    if (q.pending.length >= this.opts.maxOutInFlight) {
      p.status = 'nak';
      return;
    }
    const pend = this.track('data', p, q);
    const len = p.data.length;
    try {
      pend.handle = this.dev.transfer(q.address, q.type, Uint8Array.from(p.data), this.opts.dataTimeoutMs, (r) => {
        const live = this.inflight.has(pend);
        this.untrack(pend);
        if (isNoDevice(r.status)) this.hostGone(`NO_DEVICE on endpoint 0x${q.address.toString(16)}`);
        if (!live) return; // dropped (reset, detach, configuration change)
        this.finish(pend, packetStatusForTransfer(r.status), Math.min(len, r.actualLength));
      });
    } catch (e) {
      this.abandonSubmit(pend, p, e);
      return;
    }
    p.status = 'async';
  }

  private isoSubmit(q: EndpointQueue, lengthOrData: number | Uint8Array): boolean {
    if (q.unsupported) return false;
    const pend = this.track('iso', null, q);
    try {
      pend.handle = this.dev.transfer(q.address, 'isochronous', lengthOrData, this.opts.dataTimeoutMs, (r) => {
        const live = this.inflight.has(pend);
        this.untrack(pend);
        if (isNoDevice(r.status)) this.hostGone(`NO_DEVICE on endpoint 0x${q.address.toString(16)}`);
        if (!live) return; // dropped (reset, detach, configuration change)
        if (q.address & 0x80 && r.status !== 'cancelled' && !this.gone && this.endpoints.get(q.address) === q) {
          q.buffered = r;
        }
      });
      return true;
    } catch (e) {
      this.untrack(pend);
      const errno = e instanceof LibusbError ? e.errno : LIBUSB_ERROR_OTHER;
      if (errno === LIBUSB_ERROR_NOT_SUPPORTED) {
        q.unsupported = true;
        this.log('warn', `${this.hostName}: isochronous endpoint 0x${q.address.toString(16)} not supported by the libusb backend`);
      } else if (isNoDevice(errno)) {
        this.hostGone(`submit failed: ${(e as Error).message}`);
      }
      return false;
    }
  }

  private isoIn(p: UsbPacket, q: EndpointQueue): void {
    if (q.buffered) {
      const r = q.buffered;
      q.buffered = null;
      const { status, length } = HostUsbDevice.deliver(p, r);
      // Isochronous data has no handshake: a failed transfer is a damaged packet.
      p.status = status === 'ack' || status === 'babble' ? status : 'ioerror';
      p.actualLength = length;
    } else {
      p.actualLength = 0; // nothing this frame: an empty packet
    }
    if (q.pending.length === 0 && !this.isoSubmit(q, Math.max(q.maxPacketSize, p.data.length)) && q.unsupported) {
      p.status = 'ioerror';
      p.actualLength = 0;
    }
  }

  private isoOut(p: UsbPacket, q: EndpointQueue): void {
    if (q.unsupported) {
      p.status = 'ioerror';
      return;
    }
    if (q.pending.length >= this.opts.maxOutInFlight) {
      this.stats.isoDropped++;
      p.actualLength = p.data.length;
      return;
    }
    if (!this.isoSubmit(q, Uint8Array.from(p.data))) {
      p.status = 'ioerror';
      return;
    }
    p.actualLength = p.data.length;
  }
}
