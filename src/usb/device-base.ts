/**
 * An emulated USB device: device states, address, the control pipe state
 * machine on endpoint 0, the standard requests, per-endpoint halt and
 * save/restore. Subclasses add class/vendor requests and data endpoints.
 *
 * The control pipe follows QEMU 7.2's generic handler (hw/usb/core.c
 * do_token_setup / do_token_in / do_token_out) so that a guest sees the same
 * answers, and the standard requests follow hw/usb/desc.c
 * usb_desc_handle_control. Behaviour checked against a real QEMU 7.2 from a
 * Linux guest is in test/fixtures/qemu-7.2/.
 *
 * Control transfer (USB 2.0 §8.5.3): SETUP (8 bytes) → optional DATA stage
 * (IN or OUT packets, the host chooses the packet sizes and owns the data
 * toggles) → STATUS stage (a zero-length packet in the other direction).
 *  - Device-to-host requests are answered when the SETUP arrives; an error
 *    stalls the SETUP itself. Host-to-device requests are carried out when
 *    the status-stage IN arrives (so SET_ADDRESS takes effect only after the
 *    status stage has been acknowledged at the old address); an error stalls
 *    the status stage.
 *  - A valid SETUP always replaces whatever transfer was in progress.
 *  - IN/OUT tokens with no transfer in progress, or in the wrong direction
 *    during the data stage, are stalled (and a data-stage stall ends the
 *    transfer). Extra IN tokens after the last IN data byte get zero-length
 *    packets; extra OUT tokens after the last OUT data byte are acknowledged
 *    and ignored.
 *  - A device-to-host request always has a data stage in this machine, even
 *    with wLength 0: a status OUT sent straight after such a SETUP is
 *    stalled (QEMU does the same; hosts do not issue such requests).
 *  - wLength above the 4096-byte control buffer (QEMU's data_buf): the SETUP
 *    is STALLED (QEMU ≥ 5.2, the CVE-2020-14364 fix), nothing is copied and
 *    the previous stage is left as it was, as in QEMU.
 */
import {
  PID_IN,
  PID_SETUP,
  type UsbDevice,
  type UsbPacket,
  type UsbPortHooks,
  type UsbSpeed,
} from './packet.js';
import { ControlPipe, type ControlStage } from './control-pipe.js';
import {
  CFG_ATT_SELF_POWERED,
  DT_BOS,
  DT_CONFIG,
  DT_DEVICE,
  DT_DEVICE_QUALIFIER,
  DT_OTHER_SPEED_CONFIG,
  DT_STRING,
  encodeBosUsb2Ext,
  encodeConfigDescriptor,
  encodeDeviceDescriptor,
  encodeDeviceQualifier,
  encodeLangIdTable,
  encodeStringDescriptor,
  type ConfigDescriptor,
  type DeviceDescriptor,
  type InterfaceDescriptor,
} from './descriptors.js';
import {
  REQ_GET_STATUS,
  REQ_CLEAR_FEATURE,
  REQ_SET_FEATURE,
  REQ_SET_ADDRESS,
  REQ_GET_DESCRIPTOR,
  REQ_GET_CONFIGURATION,
  REQ_SET_CONFIGURATION,
  REQ_GET_INTERFACE,
  REQ_SET_INTERFACE,
} from './requests.js';

/** Size of the control data buffer (QEMU include/hw/usb.h USBDevice.data_buf). */
export const CONTROL_BUFFER_SIZE = 4096;

/** bmRequestType bits (USB 2.0 Table 9-2). */
export const DIR_IN = 0x80;
export const TYPE_STANDARD = 0x00;
export const TYPE_CLASS = 0x20;
export const TYPE_VENDOR = 0x40;
export const RECIP_DEVICE = 0x00;
export const RECIP_INTERFACE = 0x01;
export const RECIP_ENDPOINT = 0x02;

/** Feature selectors (USB 2.0 Table 9-6). */
export const FEATURE_ENDPOINT_HALT = 0;
export const FEATURE_DEVICE_REMOTE_WAKEUP = 1;

/** One decoded SETUP packet (USB 2.0 Table 9-2). */
export interface ControlRequest {
  readonly requestType: number;
  readonly request: number;
  readonly value: number;
  readonly index: number;
  readonly length: number;
}

/**
 * What a request handler answers:
 * - a byte array: IN data (truncated to wLength by the pipe);
 * - 'ack': success without data;
 * - 'stall': request error;
 * - null: not handled here (the next handler is asked; the last one stalls).
 */
export type ControlReply = Uint8Array | 'ack' | 'stall' | null;

/**
 * Which rules the standard requests follow.
 * - 'qemu-7.2': exactly what QEMU 7.2's emulated devices answer. Interface
 *   and endpoint GET_STATUS, SET/CLEAR_FEATURE(ENDPOINT_HALT) and
 *   SYNCH_FRAME are stalled, as QEMU does (captured from a real guest).
 * - 'usb-2.0': the full chapter 9 set: interface/endpoint GET_STATUS and
 *   ENDPOINT_HALT are implemented, halted endpoints stall until cleared,
 *   and tokens to endpoints absent from the current configuration stall.
 */
export type StandardRequestProfile = 'qemu-7.2' | 'usb-2.0';

export type { ControlStage } from './control-pipe.js';

/** USB 2.0 §9.1.1 visible device states (Powered is folded into Attached). */
export type UsbDeviceState = 'detached' | 'attached' | 'default' | 'address' | 'configured';

/** Descriptor tables the standard requests answer from. */
export interface StandardDescriptors {
  /** Device tables for the running speed. */
  device: DeviceDescriptor;
  /** The other speed's tables (DEVICE_QUALIFIER / OTHER_SPEED_CONFIGURATION). */
  otherSpeed?: DeviceDescriptor;
  /** bcdUSB sent in the device descriptor. */
  bcdUSB: number;
  strings: readonly (string | undefined)[];
  langIds: readonly number[];
  /** Whether BOS is answered with a USB 2.0 extension (LPM), as QEMU does when a high-speed table exists. */
  bosUsb2Ext: boolean;
  /**
   * The device has no BOS descriptor: GET_DESCRIPTOR(BOS) stalls. Linux
   * gadgets (composite.c composite_setup) answer BOS only when the UDC is
   * super-speed or LPM capable or WebUSB is on; QEMU devices always answer.
   */
  noBos?: boolean;
}

export class DeviceStateError extends Error {
  override name = 'DeviceStateError';
}

/** The JSON-able state of the generic device layer. */
export interface DeviceBaseState {
  version: 1;
  attached: boolean;
  /** Reset seen since attach: the device answers on the bus. */
  enabled: boolean;
  address: number;
  configuration: number;
  altSettings: number[];
  remoteWakeup: boolean;
  suspended: boolean;
  haltedIn: number[];
  haltedOut: number[];
  control: {
    stage: ControlStage;
    setup: string; // hex, 8 bytes
    setupLen: number;
    setupIndex: number;
    buffer: string; // hex, the first max(setupLen, setupIndex) bytes of the buffer
  };
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));

export abstract class EmulatedUsbDevice implements UsbDevice {
  abstract readonly speed: UsbSpeed;
  abstract readonly productName: string;
  abstract readonly vendorId: number;
  abstract readonly productId: number;

  protected hooks: UsbPortHooks | null = null;
  private attached = false;
  private enabled = false;
  private addr = 0;
  private configuration = 0;
  private altSettings: number[] = [];
  private remoteWakeupEnabled = false;
  private isSuspended = false;
  private haltedIn = new Set<number>();
  private haltedOut = new Set<number>();

  private readonly pipe = new ControlPipe(CONTROL_BUFFER_SIZE);

  protected constructor(
    protected readonly descriptors: StandardDescriptors,
    readonly profile: StandardRequestProfile = 'qemu-7.2',
  ) {}

  /* ------------------------------------------------------------------ */
  /* UsbDevice                                                           */

  get address(): number {
    return this.addr;
  }

  get state(): UsbDeviceState {
    if (!this.attached) return 'detached';
    if (!this.enabled) return 'attached';
    if (this.configuration !== 0) return 'configured';
    return this.addr !== 0 ? 'address' : 'default';
  }

  get suspended(): boolean {
    return this.isSuspended;
  }

  /** DEVICE_REMOTE_WAKEUP feature as last set by the host. */
  get remoteWakeup(): boolean {
    return this.remoteWakeupEnabled;
  }

  /** bConfigurationValue of the current configuration, 0 if unconfigured. */
  get configurationValue(): number {
    return this.configuration;
  }

  get controlStage(): ControlStage {
    return this.pipe.stage;
  }

  attach(hooks: UsbPortHooks): void {
    this.hooks = hooks;
    this.attached = true;
    this.enabled = false;
    this.isSuspended = false;
    // desc.c usb_desc_attach: a newly attached device is unconfigured.
    this.setConfiguration(0);
  }

  detach(): void {
    this.hooks = null;
    this.attached = false;
    this.enabled = false;
  }

  /**
   * Port reset (QEMU usb_port_reset = detach + attach + usb_device_reset):
   * unconfigured, address 0, remote wakeup off, not suspended, class state
   * reset. Like QEMU, an unfinished control transfer is not forgotten here;
   * the next SETUP replaces it.
   */
  reset(): void {
    if (!this.attached) return;
    this.setConfiguration(0);
    this.haltedIn.clear();
    this.haltedOut.clear();
    this.onReset();
    this.remoteWakeupEnabled = false;
    this.addr = 0;
    this.enabled = true;
    this.isSuspended = false;
  }

  /**
   * Suspend/resume signalling from the port (USB 2.0 §7.1.7.6). Kept as
   * state; a suspended device still records input and asks for remote wakeup.
   */
  setSuspended(on: boolean): void {
    this.isSuspended = on;
  }

  handlePacket(p: UsbPacket): void {
    p.status = 'ack';
    p.actualLength = 0;
    if (!this.attached || !this.enabled || p.devaddr !== this.addr) {
      p.status = 'nodev';
      return;
    }
    if (p.endpoint === 0) {
      this.handleControlPipe(p);
      return;
    }
    if (p.pid === PID_SETUP) {
      p.status = 'stall';
      return;
    }
    const isIn = p.pid === PID_IN;
    if (this.profile === 'usb-2.0') {
      if (!this.endpointExists(isIn, p.endpoint)) {
        p.status = 'stall';
        return;
      }
      if ((isIn ? this.haltedIn : this.haltedOut).has(p.endpoint)) {
        p.status = 'stall';
        return;
      }
    }
    this.handleData(p);
  }

  cancelPacket(_p: UsbPacket): void {
    // Emulated devices complete every packet synchronously.
  }

  /* ------------------------------------------------------------------ */
  /* Hooks for subclasses                                                */

  /** Data endpoints (1..15). Set p.status / p.actualLength / p.data. */
  protected abstract handleData(p: UsbPacket): void;

  /** Requests the standard layer did not handle (class, vendor, ...). */
  protected abstract handleOtherControl(req: ControlRequest, data: Uint8Array): ControlReply;

  /** Class-specific state reset on a port reset. */
  protected abstract onReset(): void;

  /** Subclasses call this when they have new input (QEMU usb_wakeup). */
  protected requestWakeup(): void {
    // core.c usb_wakeup: the port is told only if the host enabled
    // DEVICE_REMOTE_WAKEUP; the port itself decides whether it is suspended
    // (hcd-uhci.c uhci_wakeup sets Resume Detect only on a suspended port).
    // Tell an idle controller to poll again at once (uhci-dm extension).
    this.hooks?.activity?.();
    if (this.remoteWakeupEnabled && this.hooks) this.hooks.wakeup();
  }

  /** Interfaces of the current configuration with their current alternate settings. */
  protected currentInterfaces(): InterfaceDescriptor[] {
    const cfg = this.currentConfig();
    if (!cfg) return [];
    const out: InterfaceDescriptor[] = [];
    this.altSettings.forEach((alt, n) => {
      const i = cfg.interfaces.find((x) => x.number === n && x.alternate === alt);
      if (i) out.push(i);
    });
    return out;
  }

  protected endpointExists(isIn: boolean, ep: number): boolean {
    return this.currentInterfaces().some((i) =>
      i.endpoints.some((e) => (e.address & 0x0f) === ep && ((e.address & 0x80) !== 0) === isIn),
    );
  }

  protected isHalted(isIn: boolean, ep: number): boolean {
    return (isIn ? this.haltedIn : this.haltedOut).has(ep);
  }

  /* ------------------------------------------------------------------ */
  /* Control pipe                                                        */

  private request(): ControlRequest {
    const s = this.pipe.setup;
    return {
      requestType: s[0]!,
      request: s[1]!,
      value: s[2]! | (s[3]! << 8),
      index: s[4]! | (s[5]! << 8),
      length: this.pipe.length,
    };
  }

  private handleControlPipe(p: UsbPacket): void {
    this.pipe.token(p, this.onSetup, this.onStatus);
  }

  /** A SETUP the pipe accepted: a device-to-host request is answered now, into the data stage. */
  private readonly onSetup = (p: UsbPacket): void => {
    const pipe = this.pipe;
    if (pipe.dirIn) {
      const reply = this.dispatch(this.request(), pipe.buffer.subarray(0, 0));
      if (reply === 'stall') {
        p.status = 'stall';
        return;
      }
      const n = reply === 'ack' ? 0 : Math.min(reply.length, pipe.buffer.length);
      if (reply !== 'ack') pipe.buffer.set(reply.subarray(0, n));
      pipe.answered(n);
    } else {
      pipe.stage = pipe.length === 0 ? 'status' : 'data';
    }
    p.actualLength = 8;
  };

  /** The status stage of a host-to-device request: carry it out now. */
  private readonly onStatus = (p: UsbPacket): void => {
    const reply = this.dispatch(this.request(), this.pipe.data());
    p.actualLength = 0;
    if (reply === 'stall') p.status = 'stall';
  };

  private dispatch(req: ControlRequest, data: Uint8Array): Uint8Array | 'ack' | 'stall' {
    const std = this.standardControl(req);
    if (std !== null) return std;
    const other = this.handleOtherControl(req, data);
    return other ?? 'stall';
  }

  /* ------------------------------------------------------------------ */
  /* Standard requests (USB 2.0 §9.4, as QEMU desc.c answers them)       */

  private currentConfig(): ConfigDescriptor | undefined {
    if (this.configuration === 0) return undefined;
    return this.descriptors.device.configs.find((c) => c.value === this.configuration);
  }

  private setConfiguration(value: number): void {
    if (value === 0) {
      this.configuration = 0;
    } else {
      const cfg = this.descriptors.device.configs.find((c) => c.value === value);
      // QEMU 7.2 desc.c usb_desc_set_config never reports an unknown value
      // as an error: it keeps the current configuration and acknowledges.
      if (cfg) this.configuration = value;
    }
    const cfg = this.currentConfig();
    const n = cfg ? new Set(cfg.interfaces.map((i) => i.number)).size : 0;
    this.altSettings = new Array<number>(n).fill(0);
  }

  private standardControl(req: ControlRequest): ControlReply {
    const { requestType, request, value, index, length } = req;
    const type = requestType & 0x60;
    if (type === TYPE_VENDOR && request === 0x51 && (requestType === 0xc0 || requestType === 0xc1)) {
      return this.msosControl(index, length);
    }
    if (type !== TYPE_STANDARD) return null;
    switch ((requestType << 8) | request) {
      case (RECIP_DEVICE << 8) | REQ_SET_ADDRESS:
        // QEMU stores wValue in a uint8_t.
        this.addr = value & 0xff;
        return 'ack';
      case ((DIR_IN | RECIP_DEVICE) << 8) | REQ_GET_DESCRIPTOR:
        return this.getDescriptor(value >> 8, value & 0xff);
      case ((DIR_IN | RECIP_DEVICE) << 8) | REQ_GET_CONFIGURATION:
        return Uint8Array.of(this.configuration);
      case (RECIP_DEVICE << 8) | REQ_SET_CONFIGURATION:
        this.setConfiguration(value);
        this.haltedIn.clear();
        this.haltedOut.clear();
        return 'ack';
      case ((DIR_IN | RECIP_DEVICE) << 8) | REQ_GET_STATUS: {
        // Unconfigured: answer as the first configuration would (QEMU).
        const cfg = this.currentConfig() ?? this.descriptors.device.configs[0];
        let b = 0;
        if (cfg && cfg.attributes & CFG_ATT_SELF_POWERED) b |= 1 << 0;
        if (this.remoteWakeupEnabled) b |= 1 << 1;
        return Uint8Array.of(b, 0);
      }
      case (RECIP_DEVICE << 8) | REQ_CLEAR_FEATURE:
        if (value === FEATURE_DEVICE_REMOTE_WAKEUP) {
          this.remoteWakeupEnabled = false;
          return 'ack';
        }
        return null;
      case (RECIP_DEVICE << 8) | REQ_SET_FEATURE:
        if (value === FEATURE_DEVICE_REMOTE_WAKEUP) {
          this.remoteWakeupEnabled = true;
          return 'ack';
        }
        return null;
      case ((DIR_IN | RECIP_INTERFACE) << 8) | REQ_GET_INTERFACE:
        if (index >= this.altSettings.length) return null;
        return Uint8Array.of(this.altSettings[index]!);
      case (RECIP_INTERFACE << 8) | REQ_SET_INTERFACE: {
        const cfg = this.currentConfig();
        const found = cfg?.interfaces.find((i) => i.number === index && i.alternate === value);
        if (!found || index >= this.altSettings.length) return null;
        this.altSettings[index] = value;
        return 'ack';
      }
    }
    if (this.profile === 'usb-2.0') return this.usb2OnlyControl(req);
    return null;
  }

  /** Interface/endpoint status and ENDPOINT_HALT (USB 2.0 §9.4.1, §9.4.5, §9.4.9). */
  private usb2OnlyControl(req: ControlRequest): ControlReply {
    const { requestType, request, value, index } = req;
    const configured = this.configuration !== 0;
    const epNum = index & 0x0f;
    const epIn = (index & 0x80) !== 0;
    const epOk = epNum === 0 ? (index & 0x70) === 0 : configured && this.endpointExists(epIn, epNum);
    switch ((requestType << 8) | request) {
      case ((DIR_IN | RECIP_INTERFACE) << 8) | REQ_GET_STATUS:
        if (!configured || index >= this.altSettings.length) return 'stall';
        return Uint8Array.of(0, 0);
      case ((DIR_IN | RECIP_ENDPOINT) << 8) | REQ_GET_STATUS:
        if (!epOk) return 'stall';
        return Uint8Array.of(epNum !== 0 && this.isHalted(epIn, epNum) ? 1 : 0, 0);
      case (RECIP_ENDPOINT << 8) | REQ_SET_FEATURE:
      case (RECIP_ENDPOINT << 8) | REQ_CLEAR_FEATURE:
        if (value !== FEATURE_ENDPOINT_HALT || !epOk) return 'stall';
        if (epNum !== 0) {
          const set = epIn ? this.haltedIn : this.haltedOut;
          if (request === REQ_SET_FEATURE) set.add(epNum);
          else {
            set.delete(epNum);
            this.onEndpointHaltCleared(epIn, epNum);
          }
        }
        return 'ack';
    }
    return null;
  }

  /** Called when the host clears ENDPOINT_HALT (data toggle reset point). */
  protected onEndpointHaltCleared(_isIn: boolean, _ep: number): void {}

  private getDescriptor(type: number, idx: number): ControlReply {
    const d = this.descriptors;
    switch (type) {
      case DT_DEVICE: {
        const b = encodeDeviceDescriptor(d.device);
        b[2] = d.bcdUSB & 0xff;
        b[3] = d.bcdUSB >> 8;
        return b;
      }
      case DT_CONFIG: {
        const c = d.device.configs[idx];
        return c ? encodeConfigDescriptor(c) : null;
      }
      case DT_STRING: {
        if (idx === 0) return encodeLangIdTable(d.langIds);
        const s = d.strings[idx];
        // QEMU answers an unknown string index with a zero-length data stage.
        return s === undefined ? 'ack' : encodeStringDescriptor(s);
      }
      case DT_DEVICE_QUALIFIER:
        return d.otherSpeed ? encodeDeviceQualifier(d.otherSpeed) : null;
      case DT_OTHER_SPEED_CONFIG: {
        const c = d.otherSpeed?.configs[idx];
        return c ? encodeConfigDescriptor(c, DT_OTHER_SPEED_CONFIG) : null;
      }
      case DT_BOS:
        if (d.noBos) return null;
        // desc.c usb_desc_bos: a USB 2.0 extension (LPM) when a high-speed table exists.
        return d.bosUsb2Ext ? encodeBosUsb2Ext(true) : Uint8Array.of(5, DT_BOS, 5, 0, 0);
      default:
        return null;
    }
  }

  /** Microsoft OS 1.0 feature descriptors; subclasses that have them override. */
  protected msosControl(_index: number, _length: number): ControlReply {
    return null;
  }

  /* ------------------------------------------------------------------ */
  /* Save / restore                                                      */

  protected saveBase(): DeviceBaseState {
    const pipe = this.pipe;
    const bufLen = Math.max(pipe.length, pipe.index);
    return {
      version: 1,
      attached: this.attached,
      enabled: this.enabled,
      address: this.addr,
      configuration: this.configuration,
      altSettings: [...this.altSettings],
      remoteWakeup: this.remoteWakeupEnabled,
      suspended: this.isSuspended,
      haltedIn: [...this.haltedIn].sort((a, b) => a - b),
      haltedOut: [...this.haltedOut].sort((a, b) => a - b),
      control: {
        stage: pipe.stage,
        setup: hex(pipe.setup),
        setupLen: pipe.length,
        setupIndex: pipe.index,
        buffer: hex(pipe.buffer.subarray(0, bufLen)),
      },
    };
  }

  protected loadBase(s: DeviceBaseState): void {
    if (!s || s.version !== 1) throw new DeviceStateError('unsupported device state version');
    const setup = unhex(s.control.setup);
    const buffer = unhex(s.control.buffer);
    const lenOk = (n: number) => Number.isInteger(n) && n >= 0 && n <= CONTROL_BUFFER_SIZE;
    if (setup.length !== 8 || !lenOk(s.control.setupLen) || !lenOk(s.control.setupIndex) || buffer.length > CONTROL_BUFFER_SIZE) {
      throw new DeviceStateError('corrupt control pipe state');
    }
    if (!['idle', 'data', 'status'].includes(s.control.stage)) throw new DeviceStateError('bad control stage');
    this.attached = s.attached;
    this.enabled = s.enabled;
    this.addr = s.address & 0xff;
    this.configuration = s.configuration;
    this.altSettings = [...s.altSettings];
    this.remoteWakeupEnabled = s.remoteWakeup;
    this.isSuspended = s.suspended;
    this.haltedIn = new Set(s.haltedIn);
    this.haltedOut = new Set(s.haltedOut);
    const pipe = this.pipe;
    pipe.stage = s.control.stage;
    pipe.setup.set(setup);
    pipe.length = s.control.setupLen;
    pipe.index = s.control.setupIndex;
    pipe.buffer.fill(0);
    pipe.buffer.set(buffer);
  }

  abstract saveState(): unknown;
  abstract loadState(state: unknown): void;
}
