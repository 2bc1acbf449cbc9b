/**
 * The USB side shared by the three QEMU-compatible HID devices
 * (hw/usb/dev-hid.c): HID class requests, the interrupt IN endpoint 1, the
 * idle timer, MS OS descriptors, and save/restore.
 *
 * Facts (QEMU 7.2 dev-hid.c / hid.c, checked from a Linux guest):
 * - Interrupt IN on endpoint 1 answers NAK unless an event is queued or the
 *   idle period expired; otherwise it re-arms the idle timer and sends one
 *   report cut to the host's buffer size. Endpoint 1 answers whatever the
 *   configuration; OUT tokens and other endpoints stall.
 * - GET_REPORT returns (and consumes) the same report as the interrupt pipe.
 *   The keyboard returns nothing for wLength < 2.
 * - SET_REPORT: keyboard only (LEDs from the first byte); others stall.
 * - GET/SET_PROTOCOL: keyboard and mouse; the tablet stalls them. The value
 *   is stored (reset: 1 = report protocol) but the report format does not
 *   change with it.
 * - GET/SET_IDLE: the upper byte of wValue, in 4 ms units; report ID is
 *   ignored. A non-zero idle rate sends the current state again when the
 *   period expires (and asks for remote wakeup, like new input does).
 * - GET_DESCRIPTOR(REPORT) with interface recipient returns the report
 *   descriptor; any other class descriptor type stalls.
 */
import { PID_IN, type UsbPacket, type UsbSpeed } from '../packet.js';
import type { Clock, TimerHandle } from '../../platform/clock.js';
import {
  EmulatedUsbDevice,
  type ControlReply,
  type ControlRequest,
  type DeviceBaseState,
  type StandardRequestProfile,
} from '../device-base.js';
import { DT_REPORT, encodeMsosCompatId, encodeMsosDwordProperty } from '../descriptors.js';
import {
  checkHidState,
  createHidState,
  hidHasEvents,
  hidReset,
  keyboardPoll,
  pointerPoll,
  type HidCoreState,
} from './hid-core.js';
import { usageForScancodeIndex } from './keymap.js';
import {
  QEMU_HID_PRODUCT,
  QEMU_HID_VENDOR,
  qemuHidDescriptorSet,
  qemuSerial,
  serialStringIndex,
  type HidKind,
  type UsbDescriptorSet,
} from './qemu-hid-descriptors.js';

/** HID class requests as (bmRequestType << 8) | bRequest (HID 1.11 §7.2). */
export const HID_GET_REPORT = 0xa101;
export const HID_GET_IDLE = 0xa102;
export const HID_GET_PROTOCOL = 0xa103;
export const HID_SET_REPORT = 0x2109;
export const HID_SET_IDLE = 0x210a;
export const HID_SET_PROTOCOL = 0x210b;
const GET_INTERFACE_DESCRIPTOR = 0x8106;

/** Idle rate unit: 4 ms (HID 1.11 §7.2.4). */
export const IDLE_UNIT_NS = 4_000_000;

export interface HidDeviceOptions {
  /** Time source for the idle rate. */
  clock: Clock;
  /** QEMU `usb_version` (default 2). */
  usbVersion?: 1 | 2;
  /** QEMU `msos-desc` (default true). */
  msosDesc?: boolean;
  /** QEMU `serial` property: replaces the generated serial number. */
  serial?: string;
  /** Host controller path for the generated serial, e.g. "0000:00:02.0". */
  hcdPath?: string;
  /** Port path for the generated serial, e.g. "1" or "2.1" (default "1"). */
  portPath?: string;
  /** Standard request rules (default 'qemu-7.2'). */
  profile?: StandardRequestProfile;
}

export interface HidDeviceState {
  base: DeviceBaseState;
  hid: HidCoreState;
  /** Time left until the idle timer fires, or null if not armed. */
  idleRemainingNs: number | null;
  extra?: unknown;
}

const PRODUCT_NAMES: Record<HidKind, string> = {
  tablet: 'QEMU USB Tablet',
  mouse: 'QEMU USB Mouse',
  keyboard: 'QEMU USB Keyboard',
};

export abstract class HidUsbDevice extends EmulatedUsbDevice {
  readonly speed: UsbSpeed = 'full';
  readonly vendorId = QEMU_HID_VENDOR;
  readonly productId = QEMU_HID_PRODUCT;
  readonly productName: string;
  readonly descriptorSet: UsbDescriptorSet;
  /**
   * NAK is stable (the controller's StableNak capability): endpoint 1 NAKs
   * exactly while no event is queued and no idle period expired, without
   * side effects, and both of those changes go through changed(), which
   * reports activity to the port.
   */
  readonly nakIsStable = true as const;

  protected hid: HidCoreState;
  protected readonly clock: Clock;
  private idleTimer: TimerHandle | null = null;
  private idleDeadlineNs: number | null = null;
  private polled = false;

  protected constructor(readonly kind: HidKind, opts: HidDeviceOptions) {
    const set = qemuHidDescriptorSet(kind, opts);
    set.strings[serialStringIndex(kind)] = qemuSerial(kind, opts);
    super(
      {
        device: set.device,
        otherSpeed: set.otherSpeed,
        bcdUSB: set.bcdUSB,
        strings: set.strings,
        langIds: set.langIds,
        bosUsb2Ext: set.otherSpeed !== undefined,
      },
      opts.profile ?? 'qemu-7.2',
    );
    this.descriptorSet = set;
    this.productName = PRODUCT_NAMES[kind];
    this.clock = opts.clock;
    this.hid = createHidState(kind);
  }

  /** Serial number string as the guest reads it. */
  get serialNumber(): string {
    return this.descriptorSet.strings[serialStringIndex(this.kind)]!;
  }

  get protocol(): number {
    return this.hid.protocol;
  }

  /** Idle rate in 4 ms units. */
  get idleRate(): number {
    return this.hid.idle;
  }

  /**
   * The guest has sent an IN token to the interrupt endpoint since the last
   * port reset (or since this process loaded the device's state): its HID
   * driver is listening, so input queued now reaches it. A port reset
   * empties the queue (hidReset), so input injected between a reset and the
   * driver's first poll after it is lost on real hardware too. Not part of
   * the saved state.
   */
  get interruptPolled(): boolean {
    return this.polled;
  }

  /** Events queued and not yet read by the guest. */
  get queuedEvents(): number {
    return this.hid.n;
  }

  /* ---------------------------- reports ---------------------------- */

  /** Build one report of at most `len` bytes, consuming queued input. */
  protected poll(len: number): Uint8Array {
    const r =
      this.kind === 'keyboard' ? keyboardPoll(this.hid, len, usageForScancodeIndex) : pointerPoll(this.hid, len);
    this.afterPoll();
    return r;
  }

  /** Keyboard: refill the queue from the host-side backlog. */
  protected afterPoll(): void {}

  /** New input became visible to the guest (QEMU usb_hid_changed). */
  protected changed(): void {
    this.requestWakeup();
  }

  protected handleData(p: UsbPacket): void {
    if (p.pid !== PID_IN || p.endpoint !== 1) {
      p.status = 'stall';
      return;
    }
    this.polled = true;
    if (!hidHasEvents(this.hid)) {
      p.status = 'nak';
      return;
    }
    this.setNextIdle();
    const r = this.poll(p.data.length);
    p.data.set(r);
    p.actualLength = r.length;
  }

  protected handleOtherControl(req: ControlRequest, data: Uint8Array): ControlReply {
    const code = (req.requestType << 8) | req.request;
    const pointerOrKbdProtocol = this.kind === 'keyboard' || this.kind === 'mouse';
    switch (code) {
      case GET_INTERFACE_DESCRIPTOR:
        return req.value >> 8 === DT_REPORT ? this.descriptorSet.reportDescriptor : 'stall';
      case HID_GET_REPORT:
        return this.poll(req.length);
      case HID_SET_REPORT:
        if (this.kind !== 'keyboard') return 'stall';
        this.setReport(data);
        return 'ack';
      case HID_GET_PROTOCOL:
        return pointerOrKbdProtocol ? Uint8Array.of(this.hid.protocol & 0xff) : 'stall';
      case HID_SET_PROTOCOL:
        if (!pointerOrKbdProtocol) return 'stall';
        this.hid.protocol = req.value;
        return 'ack';
      case HID_GET_IDLE:
        return Uint8Array.of(this.hid.idle);
      case HID_SET_IDLE:
        this.hid.idle = (req.value >> 8) & 0xff;
        this.setNextIdle();
        return 'ack';
      default:
        return 'stall';
    }
  }

  /** Output report from SET_REPORT (keyboard overrides). */
  protected setReport(_data: Uint8Array): void {}

  protected override msosControl(index: number, _length: number): ControlReply {
    if (!this.descriptorSet.msos) return null;
    // desc-msos.c: index 4 = extended compat ID, 5 = extended properties
    // (SelectiveSuspendEnabled = 1 for the HID devices), others: no data.
    if (index === 4) return encodeMsosCompatId();
    if (index === 5) return encodeMsosDwordProperty('SelectiveSuspendEnabled', 1, 6);
    return 'ack';
  }

  protected onReset(): void {
    this.polled = false;
    hidReset(this.hid);
    this.armIdle(null);
  }

  /* ------------------------------ idle ------------------------------ */

  /** hid.c hid_set_next_idle: (re)arm the idle timer from now, or stop it. */
  private setNextIdle(): void {
    this.armIdle(this.hid.idle ? this.clock.nowNs() + this.hid.idle * IDLE_UNIT_NS : null);
  }

  private armIdle(deadline: number | null): void {
    if (this.idleTimer) this.clock.clearTimer(this.idleTimer);
    this.idleTimer = null;
    this.idleDeadlineNs = deadline;
    if (deadline !== null) {
      this.idleTimer = this.clock.setTimer(deadline, () => {
        this.idleTimer = null;
        this.idleDeadlineNs = null;
        this.hid.idlePending = true;
        this.changed();
      });
    }
  }

  /** Stop the idle timer (device removed for good). */
  dispose(): void {
    this.armIdle(null);
  }

  /* --------------------------- save/restore -------------------------- */

  saveState(): HidDeviceState {
    return {
      base: this.saveBase(),
      hid: JSON.parse(JSON.stringify(this.hid)) as HidCoreState,
      idleRemainingNs: this.idleDeadlineNs === null ? null : Math.max(0, this.idleDeadlineNs - this.clock.nowNs()),
      extra: this.saveExtra(),
    };
  }

  loadState(state: unknown): void {
    const s = state as HidDeviceState;
    if (!s || typeof s !== 'object') throw new TypeError('HID device state must be an object');
    const hid = checkHidState(s.hid, this.kind);
    this.loadBase(s.base);
    this.hid = hid;
    this.polled = false;
    this.loadExtra(s.extra);
    this.armIdle(s.idleRemainingNs === null ? null : this.clock.nowNs() + s.idleRemainingNs);
  }

  protected saveExtra(): unknown {
    return undefined;
  }
  protected loadExtra(_x: unknown): void {}
}
