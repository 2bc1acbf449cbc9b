/**
 * Guest-side interrupt IN polling for the passthrough proof, the way a
 * host driver keeps an interrupt URB queued (Linux usbhid + uhci-q.c): one
 * QH at the head of every frame-list entry (polled every frame, interval
 * 1) holding one TD for the endpoint. The TD stays linked and active while
 * the device has nothing to send (it NAKs: the controller retries it every
 * frame); when it retires, its data is taken and the TD is armed again
 * with the other data toggle (USB 2.0 §8.6.4). Nothing is unlinked until
 * `remove()`, so the controller never has to give up a packet that the
 * device may still answer.
 */
import {
  ctrlActualLength,
  makeToken,
  LINK,
  TD_CTRL,
} from '../uhci/descriptors.js';
import { PID_IN } from '../usb/packet.js';
import { readGuestU32, writeGuestU32, type GuestBus } from './uhci-driver.js';
import { FRAME_LIST_ENTRIES } from '../uhci/registers.js';

/** UHCI frame list: 1024 entries (UHCI Design Guide 1.1 §3.1). */

export interface InterruptPollLayout {
  /** 16-byte aligned QH. */
  qh: number;
  /** 16-byte aligned TD. */
  td: number;
  /** Data buffer (max packet bytes). */
  data: number;
}

export interface InterruptReport {
  /** The report, or null: the TD stopped on an error. */
  data: Uint8Array | null;
  /** TD status bits when it retired. */
  status: number;
  /** Frames from arming (or the previous report) to this one. */
  frames: number;
}

export class InterruptInPoller {
  private toggle = 0;
  private armed = false;
  private previousHead = 0;

  constructor(
    readonly bus: GuestBus,
    readonly frameList: number,
    readonly target: { address: number; endpoint: number; maxPacket: number; lowSpeed: boolean },
    readonly layout: InterruptPollLayout = { qh: 0x320000, td: 0x320020, data: 0x320040 },
  ) {}

  private w32(addr: number, v: number): Promise<void> {
    return writeGuestU32(this.bus, addr, v);
  }
  private r32(addr: number): Promise<number> {
    return readGuestU32(this.bus, addr);
  }

  /** Put the QH in front of what every frame-list entry points to, with the TD armed. */
  async install(): Promise<void> {
    const { qh } = this.layout;
    this.previousHead = await this.r32(this.frameList);
    await this.w32(qh, this.previousHead);
    await this.arm();
    const fl = new Uint8Array(FRAME_LIST_ENTRIES * 4);
    const dv = new DataView(fl.buffer);
    for (let i = 0; i < FRAME_LIST_ENTRIES; i++) dv.setUint32(i * 4, (qh | LINK.bit.Q) >>> 0, true);
    await this.bus.writeMem(this.frameList, fl);
  }

  private async arm(): Promise<void> {
    const { td, data, qh } = this.layout;
    const { address, endpoint, maxPacket, lowSpeed } = this.target;
    await this.w32(td, LINK.bit.T);
    await this.w32(td + 4, ((3 << TD_CTRL.lsb.CERR) | TD_CTRL.bit.ACTIVE | TD_CTRL.bit.SPD | (lowSpeed ? TD_CTRL.bit.LS : 0)) >>> 0);
    await this.w32(td + 8, makeToken(PID_IN, address, endpoint, this.toggle, maxPacket));
    await this.w32(td + 12, data);
    await this.w32(qh + 4, td);
    this.armed = true;
  }

  /**
   * Let frames pass until the TD retires (a report, or an error) or
   * `maxFrames` pass with the TD still active (null: the device NAKed
   * every poll; the TD stays armed).
   */
  async next(maxFrames: number): Promise<InterruptReport | null> {
    if (!this.armed) throw new Error('interrupt TD not armed');
    const { td, data } = this.layout;
    for (let f = 1; f <= maxFrames; f++) {
      await this.bus.wait(1);
      const ctrl = await this.r32(td + 4);
      if (ctrl & TD_CTRL.bit.ACTIVE) continue;
      this.armed = false;
      if (ctrl & (TD_CTRL.bit.STALLED | TD_CTRL.bit.CRCTO | TD_CTRL.bit.BABBLE | TD_CTRL.bit.DBE)) return { data: null, status: ctrl, frames: f };
      const report = await this.bus.readMem(data, ctrlActualLength(ctrl));
      this.toggle ^= 1;
      await this.arm();
      return { data: report, status: ctrl, frames: f };
    }
    return null;
  }

  /** Unlink the QH again (frame list back to what it was) and let `settleFrames` pass. */
  async remove(settleFrames: number): Promise<void> {
    await this.w32(this.layout.qh + 4, LINK.bit.T);
    const fl = new Uint8Array(FRAME_LIST_ENTRIES * 4);
    const dv = new DataView(fl.buffer);
    for (let i = 0; i < FRAME_LIST_ENTRIES; i++) dv.setUint32(i * 4, this.previousHead, true);
    await this.bus.writeMem(this.frameList, fl);
    this.armed = false;
    await this.bus.wait(settleFrames);
  }
}
