/**
 * One TD's transaction (QEMU's uhci_handle_td): match it against the
 * packets in flight, validate its token, find its device, check the wire
 * time left before EOF, run the packet, and apply the TD state transition
 * (td-status.ts) to guest memory. Also keeps the frame's end-of-frame
 * interrupt causes.
 */
import { PID_IN, type TokenPid, type UsbStatus } from '../usb/packet.js';
import { tokenDevAddr, tokenEndpoint, tokenMaxLen, tokenPid, tokenToggle, TD_CTRL } from './descriptors.js';
import type { AsyncQueue } from './async-queue.js';
import type { FrameMemory } from './frame-memory.js';
import { hasStableNak, type QuiescenceMemo } from './frame-replay.js';
import { PacketScratch } from './packet-scratch.js';
import { USBSTS } from './registers.js';
import { PENDING_IOC, PENDING_SPD, type FrameStats, type ScheduleHost } from './schedule-host.js';
import { newTdTransition, tdAfterError, tdAfterPacket, tokenProblem, type TdOutcome, type TdTransition } from './td-status.js';

export class TdExecution {
  /** Interrupt causes to report at the end of the current frame (PENDING_IOC | PENDING_SPD). */
  pendingInt = 0;
  /** Bit times available in the current frame. */
  private frameBits = 12000;
  private readonly transition: TdTransition = newTdTransition();
  private readonly scratch = new PacketScratch();

  constructor(
    private readonly host: ScheduleHost,
    private readonly mem: FrameMemory,
    private readonly memo: QuiescenceMemo,
    private readonly queue: AsyncQueue,
    /** stats.bits is the wire time used so far in the frame. */
    private readonly stats: FrameStats,
  ) {}

  /** A walked frame starts with `frameBits` bit times before EOF. */
  beginFrame(frameBits: number): void {
    this.frameBits = frameBits;
  }

  /** Execute the TD at `tdAddr` (its words as fetched). Writes its status back when it changed. */
  run(tdAddr: number, ctrl: number, token: number, buffer: number): TdOutcome {
    const host = this.host;
    const queue = this.queue;
    const stats = this.stats;
    const pending = queue.get(tdAddr);
    if (pending) {
      if (pending.token !== token || pending.buffer !== buffer || (ctrl & TD_CTRL.bit.ACTIVE) === 0) {
        // The guest rewrote or deactivated a TD we have in flight: cancel it.
        queue.cancel(pending, 'guest changed a pending TD');
      } else {
        queue.seen(pending);
        if (pending.state !== 'completed') return 'async';
        queue.retire(pending);
        const p = pending.packet;
        return this.apply(tdAddr, buffer, p.data, tdAfterPacket(this.transition, ctrl, token, p.status, p.actualLength));
      }
    }

    if ((ctrl & TD_CTRL.bit.ACTIVE) === 0) {
      // UHCI DG §3.2.2 / QEMU: an inactive TD with IOC set still requests the interrupt.
      if (ctrl & TD_CTRL.bit.IOC) this.pendingInt |= PENDING_IOC;
      return 'next-qh';
    }

    const problem = tokenProblem(token);
    if (problem !== null) {
      // HC Process Error (UHCI DG §2.1.2 HCPE): frame aborted, TD untouched.
      stats.effects++;
      host.fatal('hcpe', `${problem} in TD@0x${tdAddr.toString(16)}`);
      return 'stop-frame';
    }

    // Another TD of this endpoint is in flight: keep order, try again later.
    if (queue.endpointBusy(token)) return 'async';

    const pid = tokenPid(token);
    const maxLen = tokenMaxLen(token);
    const devaddr = tokenDevAddr(token);
    const endpoint = tokenEndpoint(token);
    const toggle = tokenToggle(token);
    const lowSpeed = (ctrl & TD_CTRL.bit.LS) !== 0;
    const iso = (ctrl & TD_CTRL.bit.IOS) !== 0;
    const dev = host.findDevice(devaddr);

    // Data phase bytes: OUT/SETUP read from guest memory; IN gets a zeroed
    // buffer. Views of one scratch buffer are reused (no allocation per frame).
    const data = this.scratch.view(maxLen);
    if (pid === PID_IN) data.fill(0);
    else if (maxLen > 0) {
      // The outcome depends on the data bytes (wire time, device): not remembered.
      this.memo.stopRecording();
      this.mem.readBytes(buffer, data);
    }

    const timer = host.timer;
    // A low-speed device does not see full-speed packets and vice versa: the
    // TD's LS bit must match the device (UHCI DG §3.2.2 LS); else no answer.
    const speedMismatch = dev !== null && (dev.speed === 'low') !== lowSpeed;
    if (!dev || speedMismatch) {
      const cost = timer.transactionBits(pid, lowSpeed, iso, devaddr, endpoint, toggle, data, maxLen, 'timeout');
      if (!timer.canStart(stats.bits, cost, this.frameBits, host.maxp64)) return 'stop-frame';
      stats.bits += cost;
      stats.transactions++;
      return this.apply(tdAddr, buffer, data, tdAfterError(this.transition, ctrl, 'timeout'));
    }

    // Estimate the wire time before starting: OUT/SETUP know their data; for IN
    // assume the full MaxLen arrives (a real HC reserves time for it too).
    const estimate = timer.transactionBits(pid, lowSpeed, iso, devaddr, endpoint, toggle, data, maxLen, 'data');
    if (!timer.canStart(stats.bits, estimate, this.frameBits, host.maxp64)) return 'stop-frame';

    const packet = this.scratch.packet;
    packet.pid = pid as TokenPid;
    packet.devaddr = devaddr;
    packet.endpoint = endpoint;
    packet.data = data;
    packet.iso = iso;
    packet.status = 'ack' as UsbStatus;
    packet.actualLength = 0;
    dev.handlePacket(packet);
    stats.transactions++;
    if (this.memo.recording && (packet.status !== 'nak' || !hasStableNak(dev))) this.memo.stopRecording();

    if (packet.status === 'async') {
      // The device keeps this packet and its buffer: give them up and start a new scratch.
      this.scratch.renew();
      queue.submit(tdAddr, token, buffer, dev, packet);
      stats.effects++;
      stats.bits += estimate;
      return 'async';
    }

    const moved = pid === PID_IN ? Math.min(packet.actualLength, maxLen) : maxLen;
    const outcome = packet.status === 'ack' ? 'data' : packet.status === 'nak' ? 'nak' : packet.status === 'stall' ? 'stall' : 'timeout';
    stats.bits += timer.transactionBits(pid, lowSpeed, iso, devaddr, endpoint, toggle, data, moved, outcome);
    return this.apply(tdAddr, buffer, data, tdAfterPacket(this.transition, ctrl, token, packet.status, packet.actualLength));
  }

  /** Carry out a transition: interrupt causes, USBERRINT, IN data, status write-back, in hardware order. */
  private apply(tdAddr: number, buffer: number, data: Uint8Array, t: TdTransition): TdOutcome {
    if (t.errorRetired) this.stats.effects++;
    this.pendingInt |= t.interrupt;
    if (t.errorRetired) this.host.raiseStatus(USBSTS.bit.USBERRINT);
    if (t.dataLength > 0) this.mem.writeBytes(buffer, data.subarray(0, t.dataLength));
    if (t.writeCtrl) this.mem.write32(tdAddr + 4, t.ctrl);
    if (t.shortPacket) this.pendingInt |= PENDING_SPD;
    return t.next;
  }
}
