/**
 * A USB device as the recorded model sees it: every call the model makes
 * into the device (packet, cancel, USB reset) is recorded with the device's
 * answer, and every call the device makes back through its port hooks
 * (async completion, remote wakeup, activity) becomes an input event.
 */
import { PID_IN, type UsbDevice, type UsbPacket, type UsbPortHooks } from '../usb/packet.js';
import { INPUT_KINDS, OUTPUT_KINDS, toHex, type DeviceIdentity } from './format.js';
import type { Recorder } from './recorder.js';
import { DeviceWrapper } from '../usb/device-wrapper.js';

const EMPTY = new Uint8Array(0);

/** The IN data a finished packet carries (what the controller will copy). */
export function packetInData(p: UsbPacket): Uint8Array {
  if (p.pid !== PID_IN || p.status === 'async') return EMPTY;
  return p.data.subarray(0, Math.max(0, Math.min(p.actualLength, p.data.length)));
}

export function deviceIdentity(dev: UsbDevice): DeviceIdentity {
  return { speed: dev.speed, vendorId: dev.vendorId, productId: dev.productId, name: dev.productName, address: dev.address };
}

export class RecordingDevice extends DeviceWrapper {
  /** Async packets the device holds, by the id the trace gives them. */
  private readonly asyncIds = new Map<UsbPacket, number>();
  private nextAsyncId = 1;

  constructor(
    inner: UsbDevice,
    readonly port: number,
    private readonly rec: Recorder,
  ) {
    super(inner);
  }

  override attach(hooks: UsbPortHooks): void {
    const rec = this.rec;
    const port = this.port;
    const wrapped: UsbPortHooks = {
      complete: (p) => {
        const id = this.asyncIds.get(p) ?? 0;
        this.asyncIds.delete(p);
        rec.input(
          [INPUT_KINDS.complete, 0, port, id, p.status, p.actualLength, toHex(packetInData(p)), this.inner.address],
          () => hooks.complete(p),
        );
      },
      wakeup: () => rec.input([INPUT_KINDS.wakeup, 0, port], () => hooks.wakeup()),
    };
    if (hooks.activity) {
      const activity = hooks.activity.bind(hooks);
      wrapped.activity = () => rec.input([INPUT_KINDS.activity, 0, port], () => activity());
    }
    this.inner.attach(wrapped);
  }

  override detach(): void {
    this.asyncIds.clear();
    this.inner.detach();
  }

  override reset(): void {
    this.rec.deviceCall(
      [OUTPUT_KINDS.deviceReset, this.port],
      () => this.inner.reset(),
      () => [this.inner.address],
    );
  }

  override handlePacket(p: UsbPacket): void {
    const req = p.pid === PID_IN ? p.data.length : toHex(p.data);
    this.rec.deviceCall(
      [OUTPUT_KINDS.packet, this.port, p.pid, p.devaddr, p.endpoint, p.iso ? 1 : 0, req],
      () => this.inner.handlePacket(p),
      () => {
        let asyncId = 0;
        if (p.status === 'async') {
          asyncId = this.nextAsyncId++;
          this.asyncIds.set(p, asyncId);
        }
        return [p.status, p.actualLength, toHex(packetInData(p)), this.inner.address, asyncId];
      },
    );
  }

  override cancelPacket(p: UsbPacket): void {
    const id = this.asyncIds.get(p) ?? 0;
    this.asyncIds.delete(p);
    this.rec.deviceCall([OUTPUT_KINDS.cancel, this.port, id], () => this.inner.cancelPacket(p), () => []);
  }
}
