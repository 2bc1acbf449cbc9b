/**
 * A fuzz-local device whose NAK is stable (frame-replay.ts StableNak), so
 * that the fuzzer's frames are replayed and not only walked: IN NAKs until
 * the harness offers an answer, and an offer is announced through
 * UsbPortHooks.activity() as the StableNak contract requires; OUT and SETUP
 * are acknowledged. The test fakes do not claim stable NAKs, and frame
 * replay only remembers walks whose NAKs all came from such devices.
 */
import type { StableNak } from '../../src/uhci/frame-replay.js';
import { PID_IN, type UsbDevice, type UsbPacket, type UsbPortHooks, type UsbSpeed } from '../../src/usb/packet.js';

export class StableNakDevice implements UsbDevice, StableNak {
  readonly nakIsStable = true as const;
  readonly speed: UsbSpeed = 'full';
  readonly productName = 'fuzz-stable-nak';
  readonly vendorId = 0x1234;
  readonly productId = 0x5679;
  address = 0;
  private hooks: UsbPortHooks | null = null;
  /** The next IN answers this many bytes fewer than the host asks for (null: NAK). */
  private offered: number | null = null;

  attach(hooks: UsbPortHooks): void {
    this.hooks = hooks;
  }
  detach(): void {
    this.hooks = null;
  }
  reset(): void {
    this.address = 0;
    this.offered = null;
  }
  handlePacket(p: UsbPacket): void {
    if (p.pid !== PID_IN) {
      p.status = 'ack';
      p.actualLength = p.data.length;
      return;
    }
    const shortBy = this.offered;
    if (shortBy === null) {
      p.status = 'nak';
      return;
    }
    this.offered = null;
    const n = Math.max(0, p.data.length - shortBy);
    p.data.fill(0xa5, 0, n);
    p.actualLength = n;
    p.status = 'ack';
  }
  /**
   * Answer the next IN with `shortBy` bytes fewer than asked (0: a full
   * packet; 1: the short-packet edge), announced as activity.
   */
  offer(shortBy: number): void {
    this.offered = shortBy;
    this.hooks?.activity?.();
  }
  cancelPacket(): void {}
  saveState(): unknown {
    return { address: this.address };
  }
  loadState(s: unknown): void {
    this.address = (s as { address: number }).address;
  }
}
