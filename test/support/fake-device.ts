import { PID_IN, type UsbDevice, type UsbPacket, type UsbPortHooks, type UsbSpeed, type UsbStatus } from '../../src/usb/packet.js';

/** A scriptable device for schedule-engine tests: answers from a queue of responses. */
export interface FakeResponse {
  status: UsbStatus;
  data?: number[];
}

export class FakeDevice implements UsbDevice {
  readonly productName = 'fake';
  readonly vendorId = 0x1234;
  readonly productId = 0x5678;
  address = 0;
  hooks: UsbPortHooks | null = null;
  readonly seen: { pid: number; devaddr: number; endpoint: number; data: number[] }[] = [];
  readonly cancelled: UsbPacket[] = [];
  readonly pending: UsbPacket[] = [];
  resets = 0;
  /** Responses consumed in order; when empty, `fallback` answers. */
  script: FakeResponse[] = [];
  fallback: FakeResponse = { status: 'nak' };

  constructor(readonly speed: UsbSpeed = 'full') {}

  attach(hooks: UsbPortHooks): void {
    this.hooks = hooks;
  }
  detach(): void {
    this.hooks = null;
  }
  reset(): void {
    this.resets++;
    this.address = 0;
  }
  handlePacket(p: UsbPacket): void {
    this.seen.push({ pid: p.pid, devaddr: p.devaddr, endpoint: p.endpoint, data: p.pid === PID_IN ? [] : [...p.data] });
    const r = this.script.shift() ?? this.fallback;
    p.status = r.status;
    if (r.status === 'async') {
      this.pending.push(p);
      return;
    }
    if (p.pid === PID_IN && r.data) {
      if (r.data.length > p.data.length) {
        p.status = 'babble';
        p.actualLength = p.data.length;
        return;
      }
      p.data.set(r.data);
      p.actualLength = r.data.length;
    } else {
      p.actualLength = p.data.length;
    }
  }
  /** Finish the oldest async packet. */
  completeAsync(status: UsbStatus, data: number[] = []): void {
    const p = this.pending.shift();
    if (!p) throw new Error('no pending packet');
    p.status = status;
    if (p.pid === PID_IN) {
      p.data.set(data);
      p.actualLength = data.length;
    } else p.actualLength = p.data.length;
    this.hooks?.complete(p);
  }
  cancelPacket(p: UsbPacket): void {
    this.cancelled.push(p);
    const i = this.pending.indexOf(p);
    if (i >= 0) this.pending.splice(i, 1);
  }
  saveState(): unknown {
    return { address: this.address };
  }
  loadState(s: unknown): void {
    this.address = (s as { address: number }).address;
  }
}
