/**
 * The guest side of the simulated hypervisor: what Xen does for a vCPU that
 * exits on an I/O access it cannot handle itself (hvm_send_ioreq): pick the
 * ioreq server that claimed the address, write the request into the vCPU's
 * slot of the shared page, set state READY, notify the vCPU's event channel,
 * wait until the device model sets RESP_READY and notifies back, take the
 * data, set the slot back to NONE. Accesses nobody claimed go to the
 * "default device model", which answers all-ones and drops writes.
 *
 * Xen keeps the CF8 latch of PCI configuration mechanism #1 itself and turns
 * CFC..CFF accesses to a mapped BDF into IOREQ_TYPE_PCI_CONFIG requests.
 */
import type { ManualClock } from '../../platform/clock.js';
import type { GuestBus } from '../../guest/uhci-driver.js';
import {
  BUF_IOREQ_SLOT_NUM,
  IOREQ_READ,
  IOREQ_TYPE_INVALIDATE,
  IOREQ_TYPE_PCI_CONFIG,
  IOREQ_TYPE_PIO,
  IOREQ_WRITE,
  STATE_IOREQ_NONE,
  STATE_IOREQ_READY,
  STATE_IORESP_READY,
  bufPointers,
  bufSlotOffset,
  decodeIoreq,
  encodeBufIoreq,
  encodePciConfigAddr,
  encodeIoreq,
  ioreqOffset,
  ioreqState,
  setBufWritePointer,
  setIoreqState,
  type Ioreq,
} from '../ioreq.js';
import type { SimHypervisor, SimServer } from './hypervisor.js';

/** The device model did not answer in time (a simulated vCPU would hang). */
export class SimTimeoutError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'SimTimeoutError';
  }
}

/** A vCPU already has a request in flight (Xen never issues two). */
export class SimVcpuBusyError extends Error {
  constructor(vcpu: number) {
    super(`vCPU ${vcpu} already has an ioreq in flight`);
    this.name = 'SimVcpuBusyError';
  }
}

export type SimRequest = Pick<Ioreq, 'addr' | 'data' | 'count' | 'size' | 'dataIsPtr' | 'dir' | 'df' | 'type'>;

const ones = (size: number) => (size >= 4 ? 0xffffffff : (1 << (size * 8)) - 1);

export class SimVcpu {
  /** Accesses no ioreq server claimed (answered by the default device model). */
  unclaimed = 0;
  /** Requests sent to an ioreq server and answered. */
  completed = 0;
  /** Real-time limit for one round trip (ms); 0 = wait forever. */
  timeoutMs = 5000;

  constructor(
    readonly hv: SimHypervisor,
    readonly index: number,
  ) {}

  /** Send one synchronous ioreq to `server` and wait for its response; returns the response data. */
  async send(server: SimServer, req: SimRequest): Promise<bigint> {
    const page = server.ioreqPage;
    const off = ioreqOffset(this.index);
    if (ioreqState(page, off) !== STATE_IOREQ_NONE) throw new SimVcpuBusyError(this.index);
    const xenPort = server.vcpuPorts[this.index]!;
    encodeIoreq(page, off, { ...req, vpEport: xenPort, state: STATE_IOREQ_READY });
    const hv = this.hv;
    hv.maxInFlight = Math.max(hv.maxInFlight, ++hv.inFlight);
    try {
      await this.wait(page, off, xenPort, req);
    } finally {
      hv.inFlight--;
    }
    const data = decodeIoreq(page, off).data;
    setIoreqState(page, off, STATE_IOREQ_NONE);
    this.completed++;
    return data;
  }

  private wait(page: Uint8Array, off: number, xenPort: number, req: SimRequest): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (err?: Error) => {
        this.hv.onXenPort(xenPort, null);
        if (timer) clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      this.hv.onXenPort(xenPort, () => {
        if (ioreqState(page, off) === STATE_IORESP_READY) done();
      });
      if (this.timeoutMs > 0) {
        timer = setTimeout(() => done(new SimTimeoutError(`vCPU ${this.index}: no response to ioreq type ${req.type} addr 0x${req.addr.toString(16)} within ${this.timeoutMs} ms`)), this.timeoutMs);
      }
      this.hv.notifyFromXen(xenPort);
    });
  }

  /** A port access (in or out) of 1, 2 or 4 bytes, routed as Xen routes it. */
  async pio(dir: 'in' | 'out', port: number, size: 1 | 2 | 4, value = 0): Promise<number> {
    const hv = this.hv;
    const isIn = dir === 'in';
    if (port === 0xcf8 && size === 4) {
      if (isIn) return hv.cf8 >>> 0;
      hv.cf8 = value >>> 0;
      return 0;
    }
    if (port >= 0xcfc && port <= 0xcff && hv.cf8 & 0x80000000) {
      const a = hv.cf8;
      const bus = (a >>> 16) & 0xff;
      const device = (a >>> 11) & 0x1f;
      const fn = (a >>> 8) & 7;
      const server = hv.serverForPci(bus, device, fn);
      if (server) {
        const addr = encodePciConfigAddr({ segment: 0, bus, device, fn }, (a & 0xfc) | (port & 3));
        const r = await this.send(server, { type: IOREQ_TYPE_PCI_CONFIG, addr, data: BigInt(isIn ? 0 : value >>> 0), count: 1, size, dataIsPtr: false, dir: isIn ? IOREQ_READ : IOREQ_WRITE, df: false });
        return isIn ? Number(r & BigInt(ones(size))) : 0;
      }
    } else {
      const server = hv.serverForIo(false, port, size);
      if (server) {
        const r = await this.send(server, { type: IOREQ_TYPE_PIO, addr: BigInt(port), data: BigInt(isIn ? 0 : value >>> 0), count: 1, size, dataIsPtr: false, dir: isIn ? IOREQ_READ : IOREQ_WRITE, df: false });
        return isIn ? Number(r & BigInt(ones(size))) : 0;
      }
    }
    this.unclaimed++;
    return isIn ? ones(size) : 0;
  }

  /**
   * `rep ins` / `rep outs`: `count` accesses of `size` bytes at one port, the
   * data in guest RAM at `gpa` (data_is_ptr), walking down when `df`.
   */
  async repPio(dir: 'in' | 'out', port: number, size: 1 | 2 | 4, count: number, gpa: number, df = false): Promise<boolean> {
    const server = this.hv.serverForIo(false, port, size);
    if (!server) {
      this.unclaimed++;
      return false;
    }
    await this.send(server, { type: IOREQ_TYPE_PIO, addr: BigInt(port), data: BigInt(gpa), count, size, dataIsPtr: true, dir: dir === 'in' ? IOREQ_READ : IOREQ_WRITE, df });
    return true;
  }

  /** Xen's send_invalidate_req: every enabled server drops its mapping cache. */
  async invalidate(): Promise<void> {
    for (const s of this.hv.enabledServers()) {
      await this.send(s, { type: IOREQ_TYPE_INVALIDATE, addr: 0n, data: 0n, count: 1, size: 4, dataIsPtr: false, dir: IOREQ_WRITE, df: false });
    }
  }

  /**
   * A write Xen may post without waiting (hvm_send_buffered_ioreq): into the
   * buffered ring of the server that claimed the port. Returns false (the
   * caller must fall back to a synchronous request) when no server with a
   * buffered ring claims it or the ring is full.
   */
  bufferedWrite(port: number, size: 1 | 2 | 4 | 8, value: bigint | number, type = IOREQ_TYPE_PIO): boolean {
    const server = type === IOREQ_TYPE_PIO ? this.hv.serverForIo(false, port, size) : this.hv.enabledServers()[0] ?? null;
    if (!server || !server.bufPage || server.bufPort === null) return false;
    const page = server.bufPage;
    const { read, write } = bufPointers(page);
    const used = (write - read) >>> 0;
    const need = size === 8 ? 2 : 1;
    if (BUF_IOREQ_SLOT_NUM - used < need) return false;
    const v = BigInt.asUintN(64, BigInt(value));
    encodeBufIoreq(page, bufSlotOffset(write), { type, dir: IOREQ_WRITE, size, addr: port, data: Number(v & 0xffffffffn) });
    if (size === 8) encodeBufIoreq(page, bufSlotOffset(write + 1), { type, dir: IOREQ_WRITE, size, addr: port, data: Number(v >> 32n) });
    setBufWritePointer(page, write + need);
    this.hv.notifyFromXen(server.bufPort);
    return true;
  }
}

/**
 * A GuestBus over one simulated vCPU: port I/O becomes ioreqs, memory is
 * the guest's RAM (the CPU's own loads and stores), and `wait` advances the
 * shared ManualClock (or sleeps in real time when there is none).
 */
export class SimGuestBus implements GuestBus {
  constructor(
    readonly vcpu: SimVcpu,
    readonly clock: ManualClock | null,
  ) {}
  outb(port: number, v: number): Promise<void> {
    return this.vcpu.pio('out', port, 1, v).then(() => undefined);
  }
  outw(port: number, v: number): Promise<void> {
    return this.vcpu.pio('out', port, 2, v).then(() => undefined);
  }
  outl(port: number, v: number): Promise<void> {
    return this.vcpu.pio('out', port, 4, v).then(() => undefined);
  }
  inb(port: number): Promise<number> {
    return this.vcpu.pio('in', port, 1);
  }
  inw(port: number): Promise<number> {
    return this.vcpu.pio('in', port, 2);
  }
  inl(port: number): Promise<number> {
    return this.vcpu.pio('in', port, 4);
  }
  async readMem(addr: number, len: number): Promise<Uint8Array> {
    const b = new Uint8Array(len);
    this.vcpu.hv.ram.read(addr, b);
    return b;
  }
  async writeMem(addr: number, bytes: Uint8Array): Promise<void> {
    this.vcpu.hv.ram.write(addr, bytes);
  }
  async wait(ms: number): Promise<void> {
    if (this.clock) this.clock.advance(ms * 1_000_000);
    else await new Promise((r) => setTimeout(r, ms));
  }
}
