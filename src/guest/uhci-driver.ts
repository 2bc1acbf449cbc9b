/**
 * A small guest-side UHCI driver: what a guest OS does to find the PCI
 * function, start the controller, reset ports and enumerate devices with
 * control transfers, then poll interrupt endpoints. It drives a controller
 * only through a `GuestBus` (port I/O, PCI config mechanism #1, guest RAM,
 * waiting), so the same code runs against the model in-process, through the
 * simulated Xen hypervisor, or against QEMU through qtest.
 */
import {
  ctrlActualLength,
  makeToken,
  LINK,
  TD_CTRL,
  TD_TOKEN,
} from '../uhci/descriptors.js';
import { PID_IN, PID_OUT, PID_SETUP } from '../usb/packet.js';

export interface GuestBus {
  outb(port: number, v: number): Promise<void>;
  outw(port: number, v: number): Promise<void>;
  outl(port: number, v: number): Promise<void>;
  inb(port: number): Promise<number>;
  inw(port: number): Promise<number>;
  inl(port: number): Promise<number>;
  readMem(addr: number, len: number): Promise<Uint8Array>;
  writeMem(addr: number, bytes: Uint8Array): Promise<void>;
  /** Let `ms` milliseconds of guest time pass. */
  wait(ms: number): Promise<void>;
}

/** Write a little-endian 32-bit word (a descriptor field) into guest memory. */
export async function writeGuestU32(bus: GuestBus, addr: number, v: number): Promise<void> {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  await bus.writeMem(addr, b);
}

/** Read a little-endian 32-bit word from guest memory. */
export async function readGuestU32(bus: GuestBus, addr: number): Promise<number> {
  const b = await bus.readMem(addr, 4);
  return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
}

export class UsbTransferError extends Error {
  constructor(
    msg: string,
    readonly status: number,
  ) {
    super(msg);
    this.name = 'UsbTransferError';
  }
}

export interface EnumeratedDevice {
  port: number;
  address: number;
  lowSpeed: boolean;
  vendorId: number;
  productId: number;
  bcdDevice: number;
  deviceClass: number;
  maxPacket0: number;
  manufacturer: string;
  product: string;
  serial: string;
  deviceDescriptor: Uint8Array;
  configDescriptor: Uint8Array;
  /** HID report descriptor of interface 0 when the device is HID. */
  hidReportDescriptor: Uint8Array | null;
  /** Interrupt IN endpoint (address, max packet) of interface 0, if any. */
  interruptIn: { endpoint: number; maxPacket: number } | null;
}

function cfgAddr(bus: number, dev: number, fn: number, reg: number): number {
  return (0x80000000 | (bus << 16) | (dev << 11) | (fn << 8) | (reg & 0xfc)) >>> 0;
}

const le16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);

/** Memory layout the driver uses inside guest RAM (all below 1 MiB + base). */
export interface DriverLayout {
  /** 4 KiB aligned frame list. */
  frameList: number;
  /** Scratch area for QHs, TDs and buffers (64 KiB). */
  heap: number;
}

export class UhciGuestDriver {
  ioBase = 0;
  private controlQh = 0;
  private interruptQh = 0;
  private heapNext = 0;
  private nextAddress = 1;

  constructor(
    readonly bus: GuestBus,
    readonly layout: DriverLayout = { frameList: 0x100000, heap: 0x110000 },
  ) {}

  // ------------------------------------------------------------------ PCI

  async configRead32(dev: number, reg: number): Promise<number> {
    await this.bus.outl(0xcf8, cfgAddr(0, dev, 0, reg));
    return (await this.bus.inl(0xcfc)) >>> 0;
  }
  async configWrite32(dev: number, reg: number, v: number): Promise<void> {
    await this.bus.outl(0xcf8, cfgAddr(0, dev, 0, reg));
    await this.bus.outl(0xcfc, v >>> 0);
  }

  /** Find the UHCI function (class 0c0300) on bus 0; program BAR4 and enable I/O + bus master. */
  async probe(ioBase = 0xc000, slots: number[] = [...Array(32).keys()]): Promise<{ slot: number; id: number }> {
    for (const slot of slots) {
      const id = await this.configRead32(slot, 0);
      if (id === 0xffffffff || id === 0) continue;
      const cls = (await this.configRead32(slot, 8)) >>> 8;
      if (cls !== 0x0c0300) continue;
      await this.configWrite32(slot, 0x20, ioBase | 1);
      const cmd = await this.configRead32(slot, 4);
      await this.configWrite32(slot, 4, (cmd & 0xffff) | 0x5);
      this.ioBase = ioBase;
      return { slot, id };
    }
    throw new Error('no UHCI controller (class 0c0300) found on PCI bus 0');
  }

  // --------------------------------------------------------------- memory

  private alloc(size: number, align = 16): number {
    const base = this.layout.heap;
    let a = this.heapNext === 0 ? base : this.heapNext;
    a = (a + align - 1) & ~(align - 1);
    if (a + size > base + 0x10000) {
      a = base; // simple ring reuse: transfers are synchronous
      a = (a + align - 1) & ~(align - 1);
    }
    this.heapNext = a + size;
    return a;
  }

  private w32(addr: number, v: number): Promise<void> {
    return writeGuestU32(this.bus, addr, v);
  }
  private r32(addr: number): Promise<number> {
    return readGuestU32(this.bus, addr);
  }

  // ----------------------------------------------------------- controller

  /** Reset the controller and start it with a two-QH skeleton (interrupt QH → control QH) in every frame. */
  async start(): Promise<void> {
    const io = this.ioBase;
    await this.bus.outw(io + 0x00, 0x0004); // GRESET
    await this.bus.wait(10);
    await this.bus.outw(io + 0x00, 0x0000);
    await this.bus.outw(io + 0x00, 0x0002); // HCRESET
    await this.bus.wait(1);
    this.heapNext = 0;
    this.controlQh = this.alloc(16);
    this.interruptQh = this.alloc(16);
    await this.w32(this.controlQh, LINK.bit.T);
    await this.w32(this.controlQh + 4, LINK.bit.T);
    await this.w32(this.interruptQh, (this.controlQh | LINK.bit.Q) >>> 0);
    await this.w32(this.interruptQh + 4, LINK.bit.T);
    const fl = new Uint8Array(4096);
    const dv = new DataView(fl.buffer);
    for (let i = 0; i < 1024; i++) dv.setUint32(i * 4, (this.interruptQh | LINK.bit.Q) >>> 0, true);
    await this.bus.writeMem(this.layout.frameList, fl);
    await this.bus.outl(io + 0x08, this.layout.frameList);
    await this.bus.outw(io + 0x06, 0);
    await this.bus.outb(io + 0x0c, 64);
    await this.bus.outw(io + 0x02, 0xffff);
    await this.bus.outw(io + 0x04, 0x000f);
    await this.bus.outw(io + 0x00, 0x00c1); // RS | CF | MAXP
  }

  async portStatus(port: number): Promise<number> {
    return this.bus.inw(this.ioBase + 0x10 + port * 2);
  }

  /** USB port reset as Linux uhci-hub does it: PR for 50 ms, then enable. Returns PORTSC. */
  async resetPort(port: number): Promise<number> {
    const reg = this.ioBase + 0x10 + port * 2;
    await this.bus.outw(reg, 0x0200);
    await this.bus.wait(50);
    await this.bus.outw(reg, 0x0000);
    await this.bus.wait(1);
    await this.bus.outw(reg, 0x000e); // PE, clear CSC and PEC
    await this.bus.wait(10);
    return this.bus.inw(reg);
  }

  // ------------------------------------------------------------- transfers

  /** Wait until the TD at `td` is inactive (or `timeoutMs` passes). */
  private async waitInactive(td: number, timeoutMs: number): Promise<number> {
    for (let t = 0; t <= timeoutMs; t++) {
      const ctrl = await this.r32(td + 4);
      if (!(ctrl & TD_CTRL.bit.ACTIVE)) return ctrl;
      await this.bus.wait(1);
    }
    throw new UsbTransferError(`transfer timed out after ${timeoutMs} ms`, await this.r32(td + 4));
  }

  /**
   * A control transfer on endpoint 0: SETUP, data stage in `maxPacket`
   * chunks with alternating toggles, status stage with DATA1.
   */
  async control(
    address: number,
    lowSpeed: boolean,
    maxPacket: number,
    setup: { bmRequestType: number; bRequest: number; wValue: number; wIndex: number; wLength: number },
    outData?: Uint8Array,
  ): Promise<Uint8Array> {
    const isIn = (setup.bmRequestType & 0x80) !== 0;
    const ls = lowSpeed ? TD_CTRL.bit.LS : 0;
    const base = ((3 << TD_CTRL.lsb.CERR) | TD_CTRL.bit.ACTIVE | ls) >>> 0;
    const setupBuf = this.alloc(8);
    const sb = new Uint8Array(8);
    const dv = new DataView(sb.buffer);
    sb[0] = setup.bmRequestType;
    sb[1] = setup.bRequest;
    dv.setUint16(2, setup.wValue, true);
    dv.setUint16(4, setup.wIndex, true);
    dv.setUint16(6, setup.wLength, true);
    await this.bus.writeMem(setupBuf, sb);
    const dataBuf = this.alloc(Math.max(setup.wLength, 1));
    if (!isIn && outData) await this.bus.writeMem(dataBuf, outData);

    const tds: { addr: number; ctrl: number; token: number; buffer: number }[] = [];
    tds.push({ addr: this.alloc(32), ctrl: base, token: makeToken(PID_SETUP, address, 0, 0, 8), buffer: setupBuf });
    let toggle = 1;
    for (let off = 0; off < setup.wLength; off += maxPacket) {
      const n = Math.min(maxPacket, setup.wLength - off);
      tds.push({
        addr: this.alloc(32),
        ctrl: (base | (isIn ? TD_CTRL.bit.SPD : 0)) >>> 0,
        token: makeToken(isIn ? PID_IN : PID_OUT, address, 0, toggle, n),
        buffer: dataBuf + off,
      });
      toggle ^= 1;
    }
    const statusTd = {
      addr: this.alloc(32),
      ctrl: (base | TD_CTRL.bit.IOC) >>> 0,
      token: makeToken(isIn && setup.wLength > 0 ? PID_OUT : PID_IN, address, 0, 1, 0),
      buffer: 0,
    };
    tds.push(statusTd);
    for (let i = 0; i < tds.length; i++) {
      const td = tds[i]!;
      const link = i + 1 < tds.length ? (tds[i + 1]!.addr | LINK.bit.VF) >>> 0 : LINK.bit.T;
      await this.w32(td.addr, link);
      await this.w32(td.addr + 4, td.ctrl);
      await this.w32(td.addr + 8, td.token);
      await this.w32(td.addr + 12, td.buffer);
    }
    await this.w32(this.controlQh + 4, tds[0]!.addr);

    // Wait for the status stage, or a data-stage short packet / error.
    let received = 0;
    for (let t = 0; t < 2000; t++) {
      const element = await this.r32(this.controlQh + 4);
      if (element & LINK.bit.T) break;
      const cur = tds.find((x) => x.addr === (element & ~0xf));
      if (cur) {
        const ctrl = await this.r32(cur.addr + 4);
        if (!(ctrl & TD_CTRL.bit.ACTIVE)) {
          if (ctrl & (TD_CTRL.bit.STALLED | TD_CTRL.bit.CRCTO | TD_CTRL.bit.BABBLE)) {
            await this.w32(this.controlQh + 4, LINK.bit.T);
            throw new UsbTransferError(`control transfer failed (TD status 0x${ctrl.toString(16)})`, ctrl);
          }
          if (cur !== statusTd && (ctrl & TD_CTRL.bit.SPD) !== 0) {
            // Short packet: skip to the status stage.
            await this.w32(this.controlQh + 4, statusTd.addr);
          }
        }
      }
      await this.bus.wait(1);
    }
    const final = await this.waitInactive(statusTd.addr, 100);
    if (final & (TD_CTRL.bit.STALLED | TD_CTRL.bit.CRCTO | TD_CTRL.bit.BABBLE)) {
      throw new UsbTransferError(`control status stage failed (TD status 0x${final.toString(16)})`, final);
    }
    if (!isIn) return new Uint8Array(0);
    for (const td of tds.slice(1, -1)) {
      const ctrl = await this.r32(td.addr + 4);
      if (ctrl & TD_CTRL.bit.ACTIVE) break;
      const n = ctrlActualLength(ctrl);
      received += n;
      if (n < TD_TOKEN.get(td.token, 'MAXLEN') + 1) break;
    }
    return this.bus.readMem(dataBuf, received);
  }

  async getDescriptor(addr: number, ls: boolean, mps: number, type: number, index: number, length: number, langId = 0): Promise<Uint8Array> {
    return this.control(addr, ls, mps, { bmRequestType: 0x80, bRequest: 6, wValue: (type << 8) | index, wIndex: langId, wLength: length });
  }

  async getString(addr: number, ls: boolean, mps: number, index: number): Promise<string> {
    if (!index) return '';
    const langs = await this.getDescriptor(addr, ls, mps, 3, 0, 255);
    const lang = langs.length >= 4 ? le16(langs, 2) : 0x0409;
    const s = await this.getDescriptor(addr, ls, mps, 3, index, 255, lang);
    let out = '';
    for (let i = 2; i + 1 < Math.min(s.length, s[0] ?? 0); i += 2) out += String.fromCharCode(le16(s, i));
    return out;
  }

  /** Reset the port, address and configure the device on it, read its descriptors. */
  async enumerate(port: number): Promise<EnumeratedDevice> {
    const sc = await this.resetPort(port);
    if (!(sc & 1)) throw new Error(`nothing connected to port ${port + 1}`);
    const ls = (sc & 0x100) !== 0;
    const head = await this.getDescriptor(0, ls, 8, 1, 0, 8);
    const mps = head[7] || 8;
    const address = this.nextAddress++;
    await this.control(0, ls, mps, { bmRequestType: 0, bRequest: 5, wValue: address, wIndex: 0, wLength: 0 });
    await this.bus.wait(2);
    const dd = await this.getDescriptor(address, ls, mps, 1, 0, 18);
    const c9 = await this.getDescriptor(address, ls, mps, 2, 0, 9);
    const total = le16(c9, 2);
    const cd = await this.getDescriptor(address, ls, mps, 2, 0, total);
    const manufacturer = await this.getString(address, ls, mps, dd[14]!);
    const product = await this.getString(address, ls, mps, dd[15]!);
    const serial = await this.getString(address, ls, mps, dd[16]!);
    await this.control(address, ls, mps, { bmRequestType: 0, bRequest: 9, wValue: cd[5]!, wIndex: 0, wLength: 0 });

    // Walk the configuration for a HID descriptor and the first interrupt IN endpoint.
    let hidLen = 0;
    let isHid = false;
    let interruptIn: EnumeratedDevice['interruptIn'] = null;
    for (let o = 0; o + 1 < cd.length && cd[o]! > 0; o += cd[o]!) {
      const type = cd[o + 1];
      if (type === 4 && cd[o + 5] === 3) isHid = true;
      if (type === 0x21) hidLen = le16(cd, o + 7);
      if (type === 5 && cd[o + 2]! & 0x80 && (cd[o + 3]! & 3) === 3 && !interruptIn) {
        interruptIn = { endpoint: cd[o + 2]! & 0xf, maxPacket: le16(cd, o + 4) };
      }
    }
    let hidReportDescriptor: Uint8Array | null = null;
    if (isHid) {
      // SET_IDLE(0) as Linux usbhid does, then the report descriptor.
      try {
        await this.control(address, ls, mps, { bmRequestType: 0x21, bRequest: 0x0a, wValue: 0, wIndex: 0, wLength: 0 });
      } catch (e) {
        if (!(e instanceof UsbTransferError)) throw e;
      }
      if (hidLen) hidReportDescriptor = await this.control(address, ls, mps, { bmRequestType: 0x81, bRequest: 6, wValue: 0x2200, wIndex: 0, wLength: hidLen });
    }
    return {
      port,
      address,
      lowSpeed: ls,
      vendorId: le16(dd, 8),
      productId: le16(dd, 10),
      bcdDevice: le16(dd, 12),
      deviceClass: dd[4]!,
      maxPacket0: mps,
      manufacturer,
      product,
      serial,
      deviceDescriptor: dd,
      configDescriptor: cd,
      hidReportDescriptor,
      interruptIn,
    };
  }

  /**
   * Poll an interrupt IN endpoint through the interrupt QH until a report
   * arrives or `timeoutMs` passes. Returns the report or null (device NAKed).
   */
  async pollInterrupt(dev: EnumeratedDevice, toggle: number, timeoutMs = 50): Promise<Uint8Array | null> {
    if (!dev.interruptIn) throw new Error('device has no interrupt IN endpoint');
    const { endpoint, maxPacket } = dev.interruptIn;
    const buf = this.alloc(maxPacket);
    const td = this.alloc(32);
    await this.w32(td, LINK.bit.T);
    await this.w32(td + 4, ((3 << TD_CTRL.lsb.CERR) | TD_CTRL.bit.ACTIVE | TD_CTRL.bit.IOC | TD_CTRL.bit.SPD | (dev.lowSpeed ? TD_CTRL.bit.LS : 0)) >>> 0);
    await this.w32(td + 8, makeToken(PID_IN, dev.address, endpoint, toggle, maxPacket));
    await this.w32(td + 12, buf);
    await this.w32(this.interruptQh + 4, td);
    for (let t = 0; t < timeoutMs; t++) {
      await this.bus.wait(1);
      const ctrl = await this.r32(td + 4);
      if (!(ctrl & TD_CTRL.bit.ACTIVE)) {
        await this.w32(this.interruptQh + 4, LINK.bit.T);
        if (ctrl & (TD_CTRL.bit.STALLED | TD_CTRL.bit.CRCTO | TD_CTRL.bit.BABBLE)) throw new UsbTransferError(`interrupt IN failed (0x${ctrl.toString(16)})`, ctrl);
        return this.bus.readMem(buf, ctrlActualLength(ctrl));
      }
    }
    await this.w32(this.interruptQh + 4, LINK.bit.T);
    await this.bus.wait(2);
    return null;
  }
}
