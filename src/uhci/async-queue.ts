/**
 * Packets in flight (QEMU's UHCIQueue/UHCIAsync): a device that answers
 * `async` keeps its TD's packet, and the TD stays Active in guest memory.
 * One packet at a time per endpoint (token queue key), so a queue's TDs
 * run in order. Life cycle of an entry:
 *
 *   submit → in-flight → completed (device finished) → retired (written back
 *   when the walk reaches the TD again)
 *   in-flight or completed → cancelled, when the guest rewrites or
 *   deactivates the TD, leaves it unseen for INFLIGHT_UNSEEN_FRAMES (it was
 *   unlinked), the device is unplugged or the controller stops.
 *
 * A cancelled packet the device had not finished is cancelled at the device.
 */
import type { UsbDevice, UsbPacket } from '../usb/packet.js';
import { tokenQueueKey } from './descriptors.js';

/** Frames an in-flight TD may go unseen before it counts as unlinked and is cancelled. */
export const INFLIGHT_UNSEEN_FRAMES = 32;

export type InFlightState = 'in-flight' | 'completed' | 'retired' | 'cancelled';

/** A TD whose packet the device has not finished (or finished but not yet written back). */
export interface InFlight {
  readonly tdAddr: number;
  /** The TD's token and buffer at submission: a TD that no longer has them is not this packet's. */
  readonly token: number;
  readonly buffer: number;
  readonly device: UsbDevice;
  readonly packet: UsbPacket;
  state: InFlightState;
  /** Frame counter value when the walk last reached the TD. */
  lastSeenFrame: number;
}

export class AsyncQueue {
  /** In-flight packets by TD address. */
  private readonly byTd = new Map<number, InFlight>();
  /** Endpoints (token queue keys) with a packet in flight. */
  private readonly busyEndpoints = new Map<number, InFlight>();
  /** Frame counter (walked and replayed frames; monotonic, not FRNUM). */
  private frame = 0;

  constructor(private readonly log: (msg: string) => void) {}

  /** Packets in flight or completed but not yet written back. */
  get size(): number {
    return this.byTd.size;
  }

  /** A frame starts. */
  nextFrame(): void {
    this.frame++;
  }

  /** The entry for the TD at `tdAddr`, if its packet is in flight or completed. */
  get(tdAddr: number): InFlight | undefined {
    return this.byTd.get(tdAddr);
  }

  /** Does the endpoint of `token` have a packet in flight? */
  endpointBusy(token: number): boolean {
    return this.busyEndpoints.has(tokenQueueKey(token));
  }

  /** The device kept `packet` for the TD at `tdAddr`. */
  submit(tdAddr: number, token: number, buffer: number, device: UsbDevice, packet: UsbPacket): void {
    const entry: InFlight = { tdAddr, token, buffer, device, packet, state: 'in-flight', lastSeenFrame: this.frame };
    this.byTd.set(tdAddr, entry);
    this.busyEndpoints.set(tokenQueueKey(token), entry);
  }

  /** The walk reached the entry's TD unchanged. */
  seen(entry: InFlight): void {
    entry.lastSeenFrame = this.frame;
  }

  /** A device finished an async packet. */
  complete(packet: UsbPacket): void {
    for (const entry of this.byTd.values()) {
      if (entry.packet === packet) {
        entry.state = 'completed';
        return;
      }
    }
  }

  /** The completed entry's result is being written back: it leaves the queue. */
  retire(entry: InFlight): void {
    this.remove(entry);
    entry.state = 'retired';
  }

  cancel(entry: InFlight, why: string): void {
    this.remove(entry);
    if (entry.state === 'in-flight') entry.device.cancelPacket(entry.packet);
    entry.state = 'cancelled';
    this.log(`cancel TD@0x${entry.tdAddr.toString(16)}: ${why}`);
  }

  /** Cancel the entries the walk has not seen for a while (guest unlinked their TDs). */
  expireUnseen(): void {
    if (this.byTd.size === 0) return;
    for (const entry of [...this.byTd.values()]) {
      if (this.frame - entry.lastSeenFrame > INFLIGHT_UNSEEN_FRAMES) this.cancel(entry, 'TD unlinked');
    }
  }

  /** Cancel every entry (controller stop/reset). */
  cancelAll(): void {
    for (const entry of [...this.byTd.values()]) this.cancel(entry, 'controller stopped');
  }

  /** Cancel the entries of one device (unplug). */
  cancelDevice(dev: UsbDevice): void {
    for (const entry of [...this.byTd.values()]) if (entry.device === dev) this.cancel(entry, 'device detached');
  }

  private remove(entry: InFlight): void {
    this.byTd.delete(entry.tdAddr);
    const key = tokenQueueKey(entry.token);
    if (this.busyEndpoints.get(key) === entry) this.busyEndpoints.delete(key);
  }
}
