/**
 * Guest-side bulk transfers for the in-process driver: a bulk QH hung
 * after the driver's control QH (frame list → interrupt QH → control QH →
 * bulk QH), and transfers built as depth-first TD chains of max-packet TDs
 * (what Linux uhci-q.c builds for a bulk URB), so the controller runs as
 * many of them per frame as the wire budget allows. The driver tracks the
 * data toggle per endpoint.
 */
import {
  ctrlActualLength,
  makeToken,
  LINK,
  TD_CTRL,
} from '../uhci/descriptors.js';
import { PID_IN, PID_OUT } from '../usb/packet.js';
import { readGuestU32, writeGuestU32, type GuestBus } from './uhci-driver.js';

export interface BulkResult {
  /** Bytes moved. */
  bytes: number;
  /** IN: the data. */
  data: Uint8Array;
  /** Frames (1 ms each) the transfer took in guest time. */
  frames: number;
  /** TDs retired (inactive) / TDs in the chain. */
  retired: number;
  tds: number;
  /** 'ok', 'short', 'stall', 'error' (CRC/timeout, babble, buffer), 'timeout' (still active), 'disconnected'. */
  outcome: 'ok' | 'short' | 'stall' | 'error' | 'timeout' | 'disconnected';
  /** Status bits of the TD that stopped the transfer. */
  status: number;
}

export interface BulkPipeLayout {
  /** 16-byte aligned QH. */
  qh: number;
  /** TD area (32 bytes per TD). */
  tds: number;
  /** Data area. */
  data: number;
  /** Largest transfer in TDs. */
  maxTds: number;
}

const le32 = (b: Uint8Array, o: number) => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;

export class GuestBulkPipe {
  private readonly toggles = new Map<string, number>();

  constructor(
    readonly bus: GuestBus,
    readonly frameList: number,
    readonly layout: BulkPipeLayout = { qh: 0x300000, tds: 0x310000, data: 0x400000, maxTds: 1024 },
  ) {}

  private w32(addr: number, v: number): Promise<void> {
    return writeGuestU32(this.bus, addr, v);
  }
  private r32(addr: number): Promise<number> {
    return readGuestU32(this.bus, addr);
  }

  /** Hang the bulk QH after the QH chain frame 0 starts with (its last QH). */
  async install(): Promise<void> {
    await this.w32(this.layout.qh, LINK.bit.T);
    await this.w32(this.layout.qh + 4, LINK.bit.T);
    let link = await this.r32(this.frameList);
    let last = -1;
    for (let i = 0; i < 16 && !(link & LINK.bit.T) && link & LINK.bit.Q; i++) {
      last = link & ~0xf;
      if (last === this.layout.qh) return;
      link = await this.r32(last);
    }
    if (last < 0) throw new Error('no QH in frame 0 to hang the bulk QH on');
    await this.w32(last, (this.layout.qh | LINK.bit.Q) >>> 0);
  }

  /** Reset the data toggle of an endpoint (after CLEAR_FEATURE(HALT) or SET_CONFIGURATION). */
  resetToggle(address: number, endpointAddress: number): void {
    this.toggles.delete(`${address}:${endpointAddress}`);
  }

  /**
   * One bulk transfer of `length` bytes (IN) or `out` (OUT) in max-packet
   * TDs; waits frame by frame until the QH is done, the transfer stops on
   * an error or short packet, `isDisconnected()` says the port lost the
   * device, or `maxFrames` pass.
   */
  async transfer(
    opts: { address: number; endpoint: number; in: boolean; length: number; out?: Uint8Array; maxPacket?: number; maxFrames?: number },
    isDisconnected: () => Promise<boolean> = async () => false,
  ): Promise<BulkResult> {
    const mps = opts.maxPacket ?? 64;
    const n = Math.max(1, Math.ceil(opts.length / mps));
    if (n > this.layout.maxTds) throw new RangeError(`transfer of ${n} TDs exceeds ${this.layout.maxTds}`);
    const key = `${opts.address}:${opts.endpoint | (opts.in ? 0x80 : 0)}`;
    let toggle = this.toggles.get(key) ?? 0;
    const { tds, data, qh } = this.layout;
    if (!opts.in && opts.out) await this.bus.writeMem(data, opts.out.subarray(0, opts.length));
    const chain = new Uint8Array(n * 32);
    const dv = new DataView(chain.buffer);
    for (let i = 0; i < n; i++) {
      const len = Math.min(mps, opts.length - i * mps);
      const td = tds + i * 32;
      dv.setUint32(i * 32, i + 1 < n ? (td + 32) | LINK.bit.VF : LINK.bit.T, true);
      dv.setUint32(i * 32 + 4, ((3 << TD_CTRL.lsb.CERR) | TD_CTRL.bit.ACTIVE | (opts.in ? TD_CTRL.bit.SPD : 0) | (i + 1 === n ? TD_CTRL.bit.IOC : 0)) >>> 0, true);
      dv.setUint32(i * 32 + 8, makeToken(opts.in ? PID_IN : PID_OUT, opts.address, opts.endpoint, toggle, Math.max(0, len)), true);
      dv.setUint32(i * 32 + 12, data + i * mps, true);
      toggle ^= 1;
    }
    await this.bus.writeMem(tds, chain);
    await this.w32(qh + 4, tds);
    let frames = 0;
    let outcome: BulkResult['outcome'] = 'timeout';
    let status = 0;
    const maxFrames = opts.maxFrames ?? n * 4 + 1000;
    while (frames < maxFrames) {
      await this.bus.wait(1);
      frames++;
      const element = await this.r32(qh + 4);
      if (element & LINK.bit.T) {
        outcome = 'ok';
        break;
      }
      const cur = (element & ~0xf) >>> 0;
      const ctrl = await this.r32(cur + 4);
      if (!(ctrl & TD_CTRL.bit.ACTIVE)) {
        status = ctrl;
        if (ctrl & TD_CTRL.bit.STALLED) outcome = 'stall';
        else if (ctrl & (TD_CTRL.bit.CRCTO | TD_CTRL.bit.BABBLE | TD_CTRL.bit.DBE)) outcome = 'error';
        else outcome = 'short';
        break;
      }
      if (await isDisconnected()) {
        outcome = 'disconnected';
        break;
      }
    }
    // Unlink whatever is left, then account for every TD.
    await this.w32(qh + 4, LINK.bit.T);
    const back = await this.bus.readMem(tds, n * 32);
    let bytes = 0;
    let retired = 0;
    let nextToggle = this.toggles.get(key) ?? 0;
    let stop = false;
    for (let i = 0; i < n; i++) {
      const ctrl = le32(back, i * 32 + 4);
      if (ctrl & TD_CTRL.bit.ACTIVE) continue;
      retired++;
      if (stop) continue;
      if (ctrl & (TD_CTRL.bit.STALLED | TD_CTRL.bit.CRCTO | TD_CTRL.bit.BABBLE | TD_CTRL.bit.DBE)) {
        stop = true;
        continue;
      }
      const got = ctrlActualLength(ctrl);
      bytes += got;
      nextToggle ^= 1;
      if (got < Math.min(mps, opts.length - i * mps)) stop = true;
    }
    this.toggles.set(key, nextToggle);
    const result = opts.in ? await this.bus.readMem(data, bytes) : new Uint8Array(0);
    return { bytes, data: result, frames, retired, tds: n, outcome, status };
  }
}
