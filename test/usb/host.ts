/**
 * A minimal USB host for tests: runs control and interrupt transfers against
 * one device the way a UHCI driver splits them into packets (SETUP, DATA
 * packets of at most bMaxPacketSize0, STATUS).
 */
import { PID_IN, PID_OUT, PID_SETUP, UsbPacket, type UsbDevice, type UsbPacket as Pkt } from '../../src/usb/packet.js';

export class TransferStall extends Error {
  constructor(public stage: 'setup' | 'data' | 'status') {
    super(`stalled in ${stage} stage`);
  }
}

export function setupBytes(rt: number, rq: number, value: number, index: number, length: number): Uint8Array {
  return Uint8Array.of(rt, rq, value & 0xff, value >> 8, index & 0xff, index >> 8, length & 0xff, length >> 8);
}

export class TestHost {
  constructor(public dev: UsbDevice, public addr = 0, public mps0 = 8) {}

  packet(pid: Pkt['pid'], ep: number, data: Uint8Array): UsbPacket {
    const p = new UsbPacket(pid, this.addr, ep, data);
    this.dev.handlePacket(p);
    return p;
  }

  setup(rt: number, rq: number, value: number, index: number, length: number): UsbPacket {
    return this.packet(PID_SETUP, 0, setupBytes(rt, rq, value, index, length));
  }

  in(ep: number, size: number): UsbPacket {
    return this.packet(PID_IN, ep, new Uint8Array(size));
  }

  out(ep: number, data: Uint8Array): UsbPacket {
    return this.packet(PID_OUT, ep, data);
  }

  /** A full control transfer; throws TransferStall. Returns the IN data (empty for OUT). */
  control(rt: number, rq: number, value: number, index: number, length: number, outData?: Uint8Array): Uint8Array {
    const s = this.setup(rt, rq, value, index, length);
    if (s.status === 'stall') throw new TransferStall('setup');
    if (s.status !== 'ack') throw new Error(`setup: ${s.status}`);
    const got: number[] = [];
    if (rt & 0x80) {
      while (got.length < length) {
        const p = this.in(0, Math.min(this.mps0, length - got.length));
        if (p.status === 'stall') throw new TransferStall('data');
        if (p.status !== 'ack') throw new Error(`data: ${p.status}`);
        got.push(...p.data.subarray(0, p.actualLength));
        if (p.actualLength < this.mps0) break;
      }
      const st = this.out(0, new Uint8Array(0));
      if (st.status === 'stall') throw new TransferStall('status');
    } else {
      const d = outData ?? new Uint8Array(length);
      for (let o = 0; o < length; o += this.mps0) {
        const p = this.out(0, d.subarray(o, Math.min(length, o + this.mps0)));
        if (p.status === 'stall') throw new TransferStall('data');
      }
      const st = this.in(0, 0);
      if (st.status === 'stall') throw new TransferStall('status');
      if (st.status !== 'ack') throw new Error(`status: ${st.status}`);
    }
    return Uint8Array.from(got);
  }

  /** Control transfer returning 'EPIPE' on a stall (as usbfs reports it). */
  tryControl(rt: number, rq: number, value: number, index: number, length: number, outData?: Uint8Array): Uint8Array | 'EPIPE' {
    try {
      return this.control(rt, rq, value, index, length, outData);
    } catch (e) {
      if (e instanceof TransferStall) return 'EPIPE';
      throw e;
    }
  }

  /** Reset, SET_ADDRESS and SET_CONFIGURATION(1), as Linux enumerates. */
  enumerate(address: number): void {
    this.dev.reset();
    this.addr = 0;
    this.control(0x00, 0x05, address, 0, 0);
    this.addr = address;
    this.control(0x00, 0x09, 1, 0, 0);
  }
}
