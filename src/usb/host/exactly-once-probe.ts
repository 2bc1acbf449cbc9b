/**
 * A UsbDevice wrapper that checks the exactly-once rule between a device
 * and the controller: every packet the device answers `async` is later
 * either completed once through hooks.complete, or cancelled once by the
 * controller (and then never completed). Violations are counted, not
 * thrown, so a long run can report them all.
 */
import type { UsbPacket, UsbPortHooks } from '../packet.js';
import { DeviceWrapper } from '../device-wrapper.js';

export interface ExactlyOnceCounts {
  /** Packets answered `async`. */
  asyncPackets: number;
  /** Async packets completed through hooks.complete. */
  completed: number;
  /** Async packets the controller cancelled. */
  cancelled: number;
  /** Async packets neither completed nor cancelled yet. */
  outstanding: number;
  /** Completions of packets that were not outstanding (a second completion, or after a cancel). */
  duplicateOrLate: number;
  /** Completions of packets that never went async. */
  unknownCompletions: number;
  /** Packets answered synchronously (ack/nak/stall/...). */
  synchronous: number;
}

export class ExactlyOnceProbe extends DeviceWrapper {
  private readonly outstanding = new Set<UsbPacket>();
  private readonly retired = new WeakSet<UsbPacket>();
  private readonly counts = { asyncPackets: 0, completed: 0, cancelled: 0, duplicateOrLate: 0, unknownCompletions: 0, synchronous: 0 };


  get report(): ExactlyOnceCounts {
    return { ...this.counts, outstanding: this.outstanding.size };
  }

  override attach(hooks: UsbPortHooks): void {
    this.inner.attach({
      complete: (p) => {
        if (this.outstanding.delete(p)) {
          this.counts.completed++;
          this.retired.add(p);
          hooks.complete(p);
        } else if (this.retired.has(p)) {
          this.counts.duplicateOrLate++;
        } else {
          this.counts.unknownCompletions++;
        }
      },
      wakeup: () => hooks.wakeup(),
      activity: hooks.activity ? () => hooks.activity?.() : undefined,
    });
  }
  // detach: the controller cancels our packets before detaching (inherited forward).
  override handlePacket(p: UsbPacket): void {
    this.inner.handlePacket(p);
    if (p.status === 'async') {
      this.counts.asyncPackets++;
      this.outstanding.add(p);
    } else {
      this.counts.synchronous++;
    }
  }
  override cancelPacket(p: UsbPacket): void {
    if (this.outstanding.delete(p)) {
      this.counts.cancelled++;
      this.retired.add(p);
    }
    this.inner.cancelPacket(p);
  }
}
