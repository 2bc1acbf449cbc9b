/**
 * The node-usb adapter over a stand-in `usb` module whose Transfer keeps
 * references the way node-usb 2.18's native code does (src/transfer.cc):
 * the completion callback is held strongly by the native object and
 * released only when the Transfer's JS object is collected (~Transfer);
 * while submitted, the JS object itself is held strongly (ref/unref).
 * Finished transfers must become collectable: in the passthrough lab a
 * reference cycle through that callback leaked every transfer and its
 * buffers until the guest ran out of memory.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type * as UsbModule from 'usb';
import { nodeUsbHostFrom } from '../../../src/usb/host/node-usb.js';
import type { TransferResult } from '../../../src/usb/host/libusb.js';
import { HostUsbDevice } from '../../../src/usb/host/host-device.js';
import { PID_IN, PID_OUT, PID_SETUP, UsbPacket } from '../../../src/usb/packet.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

type Cb = (error: unknown, buf: Buffer, actual: number) => void;

/** Native side: callbacks (strong, until the JS object is finalized) and in-flight transfers (strong). */
const nativeCallbacks = new Map<number, Cb>();
const nativeInFlight = new Map<number, { t: FakeTransfer; buf: Buffer }>();
const finalizer = new FinalizationRegistry<number>((id) => { nativeCallbacks.delete(id); });
let nextId = 0;

class FakeTransfer {
  readonly id = ++nextId;
  constructor(
    readonly device: unknown,
    readonly endpoint: number,
    readonly type: number,
    readonly timeout: number,
    callback: Cb,
  ) {
    nativeCallbacks.set(this.id, callback);
    finalizer.register(this, this.id);
  }
  submit(buf: Buffer): this {
    nativeInFlight.set(this.id, { t: this, buf });
    return this;
  }
  cancel(): boolean {
    return nativeInFlight.has(this.id);
  }
}

/** libusb finishes transfer `id`: the native side drops its in-flight reference, then calls back. */
function completeNative(id: number, fill = 0xab): void {
  const f = nativeInFlight.get(id)!;
  nativeInFlight.delete(id);
  f.buf.fill(fill);
  nativeCallbacks.get(id)!(undefined, f.buf, f.buf.length);
}

const fakeDevice = {
  busNumber: 1,
  deviceAddress: 2,
  portNumbers: [1],
  deviceDescriptor: { idVendor: 0x0525, idProduct: 0xa4a0, bcdUSB: 0x200, bcdDevice: 0x100, bDeviceClass: 0, bMaxPacketSize0: 64, iManufacturer: 0, iProduct: 0, iSerialNumber: 0, bNumConfigurations: 1 },
  allConfigDescriptors: [],
  open() {},
  close() {},
};
const fakeUsb = { Transfer: FakeTransfer, getDeviceList: () => [fakeDevice], usb: { on() {}, off() {} } } as unknown as typeof UsbModule;

async function collect(): Promise<void> {
  for (let i = 0; i < 6; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 10)); // finalizers run between turns
  }
}

test('finished transfers are collectable: nothing the completion callback reaches keeps the Transfer alive', async () => {
  const dev = nodeUsbHostFrom(fakeUsb).list()[0]!;
  const results: TransferResult[] = [];
  const refs: WeakRef<object>[] = [];
  // The caller keeps its handle, and its callback closes over that handle (HostUsbDevice keeps it in its pending record).
  const held: { handle: unknown }[] = [];
  for (let i = 0; i < 50; i++) {
    const rec: { handle: unknown } = { handle: null };
    rec.handle = dev.transfer(0x81, 'bulk', 64, 0, (r) => {
      results.push(r);
      void rec;
    });
    held.push(rec);
  }
  const ids = [...nativeInFlight.keys()];
  for (const id of ids) refs.push(new WeakRef(nativeInFlight.get(id)!.t));
  for (const id of ids) completeNative(id);
  expect(results).toHaveLength(50);
  expect(results[0]).toMatchObject({ status: 'completed', actualLength: 64 });
  expect(results[0]!.data).toEqual(new Uint8Array(64).fill(0xab));
  await collect();
  expect(refs.filter((r) => r.deref() !== undefined)).toHaveLength(0);
  expect(ids.filter((id) => nativeCallbacks.has(id))).toHaveLength(0);
  expect(held).toHaveLength(50); // the callers' records were alive throughout
});

test('a transfer in flight stays cancellable through its handle; cancel after completion is a no-op', async () => {
  const dev = nodeUsbHostFrom(fakeUsb).list()[0]!;
  let done = 0;
  const h = dev.transfer(0x02, 'bulk', new Uint8Array([1, 2, 3]), 0, () => done++);
  const id = [...nativeInFlight.keys()].pop()!;
  const calls: number[] = [];
  const orig = FakeTransfer.prototype.cancel;
  FakeTransfer.prototype.cancel = function (this: FakeTransfer) {
    calls.push(this.id);
    return orig.call(this);
  };
  h.cancel();
  expect(calls).toEqual([id]);
  completeNative(id);
  expect(done).toBe(1);
  h.cancel(); // the Transfer is no longer referenced: nothing to cancel
  expect(calls).toEqual([id]);
  FakeTransfer.prototype.cancel = orig;
});

test('through HostUsbDevice (the tracker keeps a record per transfer): finished transfers are collectable too', async () => {
  const hd = new HostUsbDevice(nodeUsbHostFrom(fakeUsb).list()[0]!, { log: () => {} });
  const done: UsbPacket[] = [];
  hd.attach({ complete: (p) => done.push(p), wakeup: () => {} });
  hd.reset();
  const refs: WeakRef<object>[] = [];
  for (let i = 0; i < 50; i++) {
    // GET_DESCRIPTOR(DEVICE): one libusb control transfer per request.
    const setup = new UsbPacket(PID_SETUP, 0, 0, Uint8Array.of(0x80, 6, 0, 1, 0, 0, 18, 0));
    hd.handlePacket(setup);
    expect(setup.status).toBe('async');
    const id = [...nativeInFlight.keys()].pop()!;
    refs.push(new WeakRef(nativeInFlight.get(id)!.t));
    completeNative(id, 0x12);
    expect(done.at(-1)).toBe(setup);
    hd.handlePacket(new UsbPacket(PID_IN, 0, 0, new Uint8Array(18)));
    hd.handlePacket(new UsbPacket(PID_OUT, 0, 0, new Uint8Array(0)));
  }
  expect(done).toHaveLength(50);
  expect(hd.transfersInFlight).toBe(0);
  await collect();
  expect(refs.filter((r) => r.deref() !== undefined)).toHaveLength(0);
});
