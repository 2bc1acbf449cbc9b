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
  /** The next IN answer (null: NAK). */
  private offered: number[] | null = null;

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
    const d = this.offered;
    if (!d) {
      p.status = 'nak';
      return;
    }
    this.offered = null;
    if (d.length > p.data.length) {
      p.status = 'babble';
      p.actualLength = p.data.length;
      return;
    }
    p.data.set(d);
    p.actualLength = d.length;
    p.status = 'ack';
  }
  /** Answer the next IN with `data` (the device's answer changes: activity). */
  offer(data: number[]): void {
    this.offered = data;
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
