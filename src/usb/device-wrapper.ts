/**
 * A UsbDevice that stands in front of another one and forwards everything
 * to it. Wrappers (the trace recorder, test probes) extend it and override
 * only the calls they observe.
 */
import type { UsbDevice, UsbPacket, UsbPortHooks, UsbSpeed } from './packet.js';

export class DeviceWrapper implements UsbDevice {
  constructor(readonly inner: UsbDevice) {}

  get speed(): UsbSpeed {
    return this.inner.speed;
  }
  get productName(): string {
    return this.inner.productName;
  }
  get vendorId(): number {
    return this.inner.vendorId;
  }
  get productId(): number {
    return this.inner.productId;
  }
  get address(): number {
    return this.inner.address;
  }
  attach(hooks: UsbPortHooks): void {
    this.inner.attach(hooks);
  }
  detach(): void {
    this.inner.detach();
  }
  reset(): void {
    this.inner.reset();
  }
  handlePacket(p: UsbPacket): void {
    this.inner.handlePacket(p);
  }
  cancelPacket(p: UsbPacket): void {
    this.inner.cancelPacket(p);
  }
  saveState(): unknown {
    return this.inner.saveState();
  }
  loadState(state: unknown): void {
    this.inner.loadState(state);
  }
}
