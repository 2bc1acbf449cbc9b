/**
 * Transactions per frame under saturation, measured through the controller
 * (one frame, a queue of TDs to a device that always answers), next to the
 * USB 2.0 full-speed transaction-limit tables: max per frame =
 * floor(1500 / (overhead + payload)) with overhead 45 bytes for control
 * (Table 5-2), 9 for isochronous (Table 5-4), 13 for interrupt (Table 5-7) and
 * bulk (Table 5-9); the tables assume no bit stuffing (zero payloads here).
 */
import { ManualClock } from '../src/platform/clock.js';
import { LatchedIrq } from '../src/platform/irq.js';
import { FlatMemory } from '../src/platform/memory.js';
import { UhciController, FRAME_NS } from '../src/uhci/controller.js';
import { makeToken, LINK, TD_CTRL } from '../src/uhci/descriptors.js';
import { PID_IN, PID_OUT, PID_SETUP, type UsbDevice, type UsbPacket, type UsbPortHooks } from '../src/usb/packet.js';

/** A device that accepts everything and answers IN with `length` zero bytes. */
class SinkDevice implements UsbDevice {
  readonly speed = 'full' as const;
  readonly productName = 'sink';
  readonly vendorId = 0;
  readonly productId = 0;
  address = 1;
  attach(_h: UsbPortHooks): void {}
  detach(): void {}
  reset(): void {}
  handlePacket(p: UsbPacket): void {
    p.status = 'ack';
    p.actualLength = p.data.length;
  }
  cancelPacket(): void {}
  saveState(): unknown {
    return {};
  }
  loadState(): void {}
}

export type TransferType = 'control' | 'interrupt' | 'bulk' | 'isochronous';
export const OVERHEAD: Record<TransferType, number> = { control: 45, interrupt: 13, bulk: 13, isochronous: 9 };

export function specLimit(type: TransferType, payload: number): number {
  return Math.floor(1500 / (OVERHEAD[type] + payload));
}

/** Transfers completed in one saturated frame. */
export function measureSaturation(type: TransferType, payload: number): number {
  const mem = new FlatMemory(8 << 20);
  const clock = new ManualClock();
  const hc = new UhciController({ mem, irq: new LatchedIrq(), clock });
  hc.attach(0, new SinkDevice());
  hc.ioWrite(0x10, 2, 0x000e);
  const fl = 0x10000;
  let next = 0x20000;
  const alloc = (n: number) => {
    const a = next;
    next += (n + 15) & ~15;
    return a;
  };
  const buf = alloc(Math.max(payload, 8));
  const tdCount = type === 'control' ? 3 * 200 : 400;
  const tds: number[] = [];
  for (let i = 0; i < tdCount; i++) tds.push(alloc(32));
  const ctrl = (iso: boolean) => ((3 << TD_CTRL.lsb.CERR) | TD_CTRL.bit.ACTIVE | (iso ? TD_CTRL.bit.IOS : 0) | 0x7ff) >>> 0;
  for (let i = 0; i < tdCount; i++) {
    let token: number;
    if (type === 'control') {
      const stage = i % 3;
      token = stage === 0 ? makeToken(PID_SETUP, 1, 0, 0, 8) : stage === 1 ? makeToken(PID_IN, 1, 0, 1, payload) : makeToken(PID_OUT, 1, 0, 1, 0);
    } else token = makeToken(PID_OUT, 1, 1, i & 1, payload);
    const iso = type === 'isochronous';
    const link = i + 1 < tdCount ? (iso ? tds[i + 1]! : (tds[i + 1]! | LINK.bit.VF) >>> 0) : LINK.bit.T;
    mem.writeU32(tds[i]!, link);
    mem.writeU32(tds[i]! + 4, ctrl(iso));
    mem.writeU32(tds[i]! + 8, token);
    mem.writeU32(tds[i]! + 12, buf);
  }
  const first = type === 'isochronous' ? tds[0]! : (() => {
    const qh = alloc(16);
    mem.writeU32(qh, LINK.bit.T);
    mem.writeU32(qh + 4, tds[0]!);
    return (qh | LINK.bit.Q) >>> 0;
  })();
  for (let i = 0; i < 1024; i++) mem.writeU32(fl + i * 4, i === 0 ? first : LINK.bit.T);
  hc.ioWrite(0x08, 4, fl);
  hc.ioWrite(0x00, 2, 0x00c1);
  clock.advance(FRAME_NS);
  const done = tds.filter((td) => (mem.readU32(td + 4) & TD_CTRL.bit.ACTIVE) === 0).length;
  return type === 'control' ? Math.floor(done / 3) : done;
}
