/**
 * The UHCI function served to a Xen HVM guest as a standalone ioreq server
 * (beside the domain's main device model, like Paul Durrant's demu).
 *
 * Life cycle (libxendevicemodel / libxenevtchn / libxenforeignmemory):
 *   create_ioreq_server → map the ioreq pages (map_resource, legacy gfns as
 *   fallback) → bind each vCPU's event channel (vp_eport in its ioreq slot) and
 *   the buffered ring's → map_pcidev (config cycles of our BDF come to us) →
 *   set_ioreq_server_state(1) → restrict the handles → serve; BAR4's 32 ports
 *   are mapped with map_io_range each time the guest programs/enables the BAR
 *   (the old range unmapped first) → stop: disable, destroy, unmap, close.
 *
 * Serving one vCPU slot (the device-model half of Xen's protocol): state READY
 * → INPROCESS, handle, write data for reads, state RESP_READY, notify the
 * vCPU's port. Anything unknown or malformed is answered safely (reads
 * all-ones, writes dropped) and logged under a per-kind rate limit; nothing a
 * guest sends can throw out of the event handler. An exception that is not
 * guest input (a bug, a device) is reported to the function as a Host System
 * Error and the request is still answered: the vCPU never waits forever.
 */
import type { Clock, TimerHandle } from '../platform/clock.js';
import type { IrqLine } from '../platform/irq.js';
import { GuestMemoryFault, type GuestMemory } from '../platform/memory.js';
import type { IoWindow, PciFunction } from '../device/pci-function.js';
import { UhciPciFunction } from '../device/uhci-pci-function.js';
import { LogLimiter, type Logger, type LogLevel } from '../platform/logger.js';
import { formatBdf, type PciBdf } from './bdf.js';
import {
  IOREQ_READ,
  IOREQ_SIZE,
  IOREQ_TYPE_COPY,
  IOREQ_TYPE_INVALIDATE,
  IOREQ_TYPE_PCI_CONFIG,
  IOREQ_TYPE_PIO,
  IOREQ_TYPE_TIMEOFFSET,
  IOREQ_WRITE,
  PAGE_SIZE,
  STATE_IOREQ_INPROCESS,
  STATE_IOREQ_NONE,
  STATE_IOREQ_READY,
  STATE_IORESP_READY,
  decodeIoreq,
  decodePciConfigAddr,
  drainBufRing,
  ioreqOffset,
  ioreqState,
  ioreqVpEport,
  setIoreqData,
  setIoreqState,
  type BufferedWrite,
  type Ioreq,
} from './ioreq.js';
import { MappedGuestMemory, pageRuns } from './mapped-memory.js';
import {
  HVM_IOREQSRV_BUFIOREQ_ATOMIC,
  HVM_IOREQSRV_BUFIOREQ_OFF,
  PROT_READ,
  PROT_WRITE,
  XENMEM_RESOURCE_IOREQ_SERVER,
  XenCallError,
  type DeviceModelHandle,
  type EventChannelHandle,
  type ForeignMapping,
  type ForeignMemoryHandle,
  type XenPlatform,
} from './platform.js';

/** What the transport hands the function it serves. */
export interface ServedFunctionIo {
  mem: GuestMemory;
  irq: IrqLine;
  clock: Clock;
  logger?: Logger;
}

export interface IoreqServerOptions<F extends PciFunction = UhciPciFunction> {
  platform: XenPlatform;
  domid: number;
  /** PCI address of our function on segment 0 (default 00:05.0). */
  bdf?: PciBdf;
  clock: Clock;
  logger?: Logger;
  /** Build the served function (default: a PIIX3 UhciPciFunction). Use it to add a recorder. */
  createFunction?: (io: ServedFunctionIo) => F;
  /** Ask Xen for a buffered-ioreq ring (HVM_IOREQSRV_BUFIOREQ_ATOMIC). Default true. */
  bufioreq?: boolean;
  /** Mapping-cache bound in 4 KiB frames (default 1024). */
  mapCachePages?: number;
  /** Number of vCPU slots to serve (default: xendevicemodel_nr_vcpus). */
  vcpus?: number;
  /** Restrict the Xen handles to this domain after setup (default true). */
  restrict?: boolean;
  /** Runs once setup (and restriction) is done, e.g. to drop privileges. */
  afterSetup?: () => void;
  /** Check that the domain still exists every N ms (default 1000; 0 = never). */
  livenessMs?: number;
}

export type StopReason = 'stop' | 'signal' | 'domain-gone' | 'error';

export interface IoreqServerStats {
  ioreqs: number;
  buffered: number;
  pio: number;
  config: number;
  invalidates: number;
  malformed: number;
  spurious: number;
  /** Requests, events and timers whose handling threw (a bug, not guest input): answered anyway, reported as a Host System Error. */
  internalErrors: number;
}

const ones = (size: number): number => (size >= 4 ? 0xffffffff : (1 << (size * 8)) - 1);
const isAccessSize = (n: number): n is 1 | 2 | 4 => n === 1 || n === 2 || n === 4;
/** Most repetitions honoured in one rep ins/outs request (Xen clips reps to a page, 4096 bytes). */
const MAX_REPS = 4096;

/**
 * A Clock gate: forwards to the real clock until closed, then drops every
 * timer (the model stops running). A timer callback that throws is handed to
 * `onError` instead of unwinding into the event loop (which would end the process).
 */
class GatedClock implements Clock {
  private readonly live = new Set<TimerHandle>();
  private open = true;
  constructor(
    private readonly inner: Clock,
    private readonly onError: (e: unknown) => void,
  ) {}
  nowNs(): number {
    return this.inner.nowNs();
  }
  setTimer(atNs: number, cb: () => void): TimerHandle {
    if (!this.open) return { id: -1 };
    const h: TimerHandle = this.inner.setTimer(atNs, () => {
      this.live.delete(h);
      if (!this.open) return;
      try {
        cb();
      } catch (e) {
        this.onError(e);
      }
    });
    this.live.add(h);
    return h;
  }
  clearTimer(handle: TimerHandle): void {
    if (this.live.delete(handle)) this.inner.clearTimer(handle);
  }
  close(): void {
    this.open = false;
    for (const h of this.live) this.inner.clearTimer(h);
    this.live.clear();
  }
}

export class IoreqServer<F extends PciFunction = UhciPciFunction> {
  readonly domid: number;
  readonly bdf: PciBdf;
  readonly stats: IoreqServerStats = { ioreqs: 0, buffered: 0, pio: 0, config: 0, invalidates: 0, malformed: 0, spurious: 0, internalErrors: 0 };
  /** Ioreq server id (ioservid_t) once created. */
  id = -1;
  /** The served function (set by start()). */
  fn!: F;
  mem!: MappedGuestMemory;
  /** BAR4 range currently mapped to us, inclusive. */
  mappedRange: { start: number; end: number } | null = null;
  /** Last INTx level sent to Xen. */
  intxLevel = false;
  /** Resolves with the reason once the server has stopped. */
  readonly stopped: Promise<StopReason>;

  private readonly opts: IoreqServerOptions<F>;
  private readonly clock: GatedClock;
  private dm: DeviceModelHandle | null = null;
  private evtchn: EventChannelHandle | null = null;
  private fmem: ForeignMemoryHandle | null = null;
  private pageMappings: ForeignMapping[] = [];
  private ioreqPage: Uint8Array | null = null;
  private bufPage: Uint8Array | null = null;
  private bufLocalPort = -1;
  private readonly vcpuByPort = new Map<number, number>();
  private readonly portByVcpu: number[] = [];
  private active = false;
  private stopping: Promise<void> | null = null;
  private resolveStopped!: (r: StopReason) => void;
  private liveness: NodeJS.Timeout | null = null;
  private flushQueued = false;
  /** Guest-triggerable lines (BAR moves, malformed requests, faults) go through per-key rate limits. */
  private readonly logs: LogLimiter;

  constructor(opts: IoreqServerOptions<F>) {
    this.opts = opts;
    this.domid = opts.domid;
    this.bdf = opts.bdf ?? { bus: 0, device: 5, fn: 0 };
    this.clock = new GatedClock(opts.clock, (e) => this.internalError('a timer', e));
    this.logs = new LogLimiter(opts.logger, { nowNs: () => opts.clock.nowNs() });
    this.stopped = new Promise((r) => (this.resolveStopped = r));
  }

  private log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    this.opts.logger?.log(level, 'xen', msg, { domid: this.domid, ...fields });
  }

  /** Log under the rate limit of `key`, a fixed name of the condition (never a guest value). */
  private limited(key: string, level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    this.logs.log(key, level, 'xen', msg, { domid: this.domid, ...fields });
  }

  /**
   * Something threw that is not guest input. The function turns it into its
   * internal-fault behaviour (UHCI: Host System Error, halted, IRQ) and logs
   * it; the caller still answers whatever request it was serving.
   */
  private internalError(where: string, e: unknown): void {
    this.stats.internalErrors++;
    try {
      if (this.fn) {
        this.fn.hostSystemError(where, e);
        return;
      }
    } catch (again) {
      e = again;
    }
    this.logs.error('internal-error', 'xen', `internal error in ${where}`, e, { domid: this.domid });
  }

  get running(): boolean {
    return this.active;
  }

  /** Vcpu slots served. */
  get vcpus(): number {
    return this.portByVcpu.length;
  }

  // ------------------------------------------------------------ life cycle

  async start(): Promise<void> {
    const { platform, domid } = this.opts;
    const dm = (this.dm = platform.openDeviceModel());
    const evtchn = (this.evtchn = platform.openEventChannel());
    const fmem = (this.fmem = platform.openForeignMemory());
    try {
      const vcpus = this.opts.vcpus ?? dm.nrVcpus(domid);
      if (vcpus < 1 || vcpus * IOREQ_SIZE > PAGE_SIZE) throw new XenCallError('xendevicemodel_nr_vcpus', 0, `unsupported vCPU count ${vcpus}`);
      const buffered = this.opts.bufioreq ?? true;
      this.id = dm.createIoreqServer(domid, buffered ? HVM_IOREQSRV_BUFIOREQ_ATOMIC : HVM_IOREQSRV_BUFIOREQ_OFF);
      this.log('info', 'ioreq server created', { id: this.id, vcpus, bufioreq: buffered });

      this.mapPages(dm, fmem, buffered);
      if (buffered) {
        const remote = dm.getBufioreqPort(domid, this.id);
        this.bufLocalPort = evtchn.bindInterdomain(domid, remote);
      }

      this.mem = new MappedGuestMemory(fmem, domid, { maxPages: this.opts.mapCachePages, onDirty: () => this.queueFlush() });
      const irq: IrqLine = { set: (level) => this.setIntx(level) };
      const io: ServedFunctionIo = { mem: this.mem, irq, clock: this.clock, logger: this.opts.logger };
      // Without a factory F is the default, UhciPciFunction.
      this.fn = this.opts.createFunction ? this.opts.createFunction(io) : (new UhciPciFunction(io) as PciFunction as F);
      this.fn.onIoWindowChange = (w) => this.onIoWindowChange(w);

      const { bus, device, fn } = this.bdf;
      dm.mapPcidev(domid, this.id, 0, bus, device, fn);
      this.onIoWindowChange(this.fn.ioWindow);

      dm.setIoreqServerState(domid, this.id, true);
      // Xen writes each vCPU's vp_eport into the ioreq page only once the page
      // exists and the server is enabled (ioreq_server_enable →
      // ioreq_update_evtchn in xen/common/ioreq.c, 4.17): pages mapped with
      // map_resource read 0 before that. QEMU also enables first, then binds.
      // Seen on real Xen 4.17 (Xen lab).
      for (let v = 0; v < vcpus; v++) {
        const remote = ioreqVpEport(this.ioreqPage!, ioreqOffset(v));
        const local = evtchn.bindInterdomain(domid, remote);
        this.vcpuByPort.set(local, v);
        this.portByVcpu.push(local);
      }
      this.active = true;
      evtchn.watch((port) => this.onPort(port));
      this.log('info', 'ioreq server enabled', { id: this.id, bdf: formatBdf(this.bdf), ports: this.portByVcpu.join(',') });
      // A request issued between enabling and binding raised no event we could see.
      for (let v = 0; v < vcpus; v++) {
        if (ioreqState(this.ioreqPage!, ioreqOffset(v)) === STATE_IOREQ_READY) this.serveVcpu(v, this.portByVcpu[v]!);
      }

      if (this.opts.restrict ?? true) {
        dm.restrict(domid);
        fmem.restrict(domid);
        evtchn.restrict(domid);
        this.log('info', 'Xen handles restricted to the domain');
      }
      this.opts.afterSetup?.();

      const every = this.opts.livenessMs ?? 1000;
      if (every > 0) {
        this.liveness = setInterval(() => {
          try {
            if (platform.domainAlive(domid)) return;
          } catch (e) {
            this.logs.error('liveness', 'xen', 'domain liveness check failed', e, { domid });
            return;
          }
          this.log('info', 'domain is gone');
          void this.stop('domain-gone');
        }, every);
        this.liveness.unref();
      }
    } catch (e) {
      this.active = false;
      await this.teardown();
      this.resolveStopped('error');
      throw e;
    }
  }

  private mapPages(dm: DeviceModelHandle, fmem: ForeignMemoryHandle, buffered: boolean): void {
    const { domid } = this.opts;
    const rw = PROT_READ | PROT_WRITE;
    try {
      // Frame 0 of the resource is the buffered page, frame 1 the (single) ioreq page.
      const first = buffered ? 0 : 1;
      const m = fmem.mapResource(domid, XENMEM_RESOURCE_IOREQ_SERVER, this.id, first, 2 - first, rw);
      this.pageMappings.push(m);
      if (buffered) {
        this.bufPage = m.bytes.subarray(0, PAGE_SIZE);
        this.ioreqPage = m.bytes.subarray(PAGE_SIZE, 2 * PAGE_SIZE);
      } else {
        this.ioreqPage = m.bytes.subarray(0, PAGE_SIZE);
      }
      return;
    } catch (e) {
      if (!(e instanceof XenCallError)) throw e;
      this.log('info', 'xenforeignmemory_map_resource failed; using the legacy ioreq gfns', { error: e.message });
    }
    const gfns = dm.getIoreqServerGfns(domid, this.id);
    const io = fmem.map(domid, rw, [gfns.ioreqGfn]);
    this.pageMappings.push(io);
    this.ioreqPage = io.bytes;
    if (buffered) {
      const b = fmem.map(domid, rw, [gfns.bufioreqGfn]);
      this.pageMappings.push(b);
      this.bufPage = b.bytes;
    }
  }

  /**
   * Stop serving: disable and destroy the ioreq server (the guest's accesses
   * to our BDF and ports go back to the default device model), report the
   * last dirty pages, unmap, close the handles, release the devices.
   */
  stop(reason: StopReason = 'stop'): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      this.active = false;
      this.log('info', 'stopping', { reason });
      await this.teardown();
      this.resolveStopped(reason);
    })();
    return this.stopping;
  }

  private async teardown(): Promise<void> {
    const { domid } = this.opts;
    if (this.liveness) clearInterval(this.liveness);
    this.liveness = null;
    this.clock.close();
    if (this.evtchn) await this.evtchn.unwatch();
    const dm = this.dm;
    if (this.mem) this.flushDirty();
    if (dm && this.id >= 0) {
      const attempt = (what: string, f: () => void) => {
        try {
          f();
        } catch (e) {
          // A dead domain makes these fail (ESRCH): the server died with it.
          this.log('debug', `${what} failed during teardown`, { error: (e as Error).message });
        }
      };
      attempt('set_ioreq_server_state(0)', () => dm.setIoreqServerState(domid, this.id, false));
      attempt('destroy_ioreq_server', () => dm.destroyIoreqServer(domid, this.id));
      this.log('info', 'ioreq server destroyed', { id: this.id });
      this.mappedRange = null;
    }
    if (this.fn) {
      for (let p = 0; p < this.fn.portCount; p++) this.fn.detach(p);
    }
    this.mem?.close();
    for (const m of this.pageMappings) m.unmap();
    this.pageMappings = [];
    this.ioreqPage = null;
    this.bufPage = null;
    this.evtchn?.close();
    this.fmem?.close();
    dm?.close();
  }

  // ------------------------------------------------------------ outputs

  private setIntx(level: boolean): void {
    if (!this.dm || this.id < 0 || (!this.active && this.stopping)) return;
    this.intxLevel = level;
    const { bus, device } = this.bdf;
    // INTx pin register 1 (INTA) → intx 0. Xen swizzles device+intx onto its PCI-ISA links.
    const intx = Math.max(0, (this.fn?.interruptPin ?? 1) - 1);
    try {
      this.dm.setPciIntxLevel(this.domid, 0, bus, device, intx, level);
    } catch (e) {
      this.limited('intx-failed', 'warn', 'set_pci_intx_level failed', { error: (e as Error).message });
    }
  }

  private onIoWindowChange(window: IoWindow | null): void {
    const dm = this.dm;
    if (!dm || this.id < 0 || this.stopping) return;
    if (this.mappedRange) {
      const { start, end } = this.mappedRange;
      try {
        dm.unmapIoRange(this.domid, this.id, false, start, end);
        this.limited('io-range-unmapped', 'info', 'I/O range unmapped', { start: hex(start), end: hex(end) });
      } catch (e) {
        this.limited('unmap-range', 'warn', 'unmap_io_range failed', { error: (e as Error).message });
      }
      this.mappedRange = null;
    }
    if (window === null) return;
    const { base } = window;
    const end = base + window.size - 1;
    if (end > 0xffff) {
      this.limited('bar-high', 'warn', 'BAR4 programmed above the 64 KiB port space; not mapped', { base: hex(base) });
      return;
    }
    try {
      dm.mapIoRange(this.domid, this.id, false, base, end);
      this.mappedRange = { start: base, end };
      this.limited('io-range-mapped', 'info', 'I/O range mapped', { start: hex(base), end: hex(end) });
    } catch (e) {
      this.limited('map-range', 'warn', 'map_io_range failed', { error: (e as Error).message, base: hex(base) });
    }
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.flushDirty();
    });
  }

  /** Report the frames the model wrote since the last flush (xendevicemodel_modified_memory, one call per run). */
  flushDirty(): void {
    const pfns = this.mem.takeDirty();
    if (!pfns.length || !this.dm) return;
    for (const [first, nr] of pageRuns(pfns)) {
      try {
        this.dm.modifiedMemory(this.domid, first, nr);
      } catch (e) {
        this.limited('modified-memory', 'warn', 'modified_memory failed', { error: (e as Error).message, pfn: hex(first), nr });
      }
    }
  }

  // ------------------------------------------------------------ serving

  private onPort(port: number): void {
    if (!this.active || !this.evtchn) return;
    try {
      this.evtchn.unmask(port);
      this.drainBuffered();
      const v = this.vcpuByPort.get(port);
      if (v !== undefined) this.serveVcpu(v, port);
      else if (port !== this.bufLocalPort) this.limited('unknown-port', 'warn', 'event on an unknown port', { port });
    } catch (e) {
      // Only a bug in our own code gets here; keep serving the other vCPUs.
      this.internalError('an event channel notification', e);
    }
  }

  private drainBuffered(): void {
    const page = this.bufPage;
    if (!page) return;
    drainBufRing(
      page,
      (b) => this.handleBuffered(b),
      (p) => {
        this.stats.malformed++;
        this.limited(`buf-${p.kind}`, 'warn', `malformed buffered ioreq ring (${p.kind}); resynchronised`, { read: p.read, write: p.write });
      },
    );
  }

  private handleBuffered(b: BufferedWrite): void {
    this.stats.buffered++;
    if (b.dir !== IOREQ_WRITE) {
      this.stats.malformed++;
      this.limited('buf-read', 'warn', 'buffered ioreq that is a read; ignored', { type: b.type, addr: hex(b.addr) });
      return;
    }
    this.handle({ type: b.type, addr: BigInt(b.addr), data: b.data, size: b.size, count: 1, dir: IOREQ_WRITE, dataIsPtr: false, df: false, vpEport: 0, state: STATE_IOREQ_READY });
  }

  private serveVcpu(v: number, port: number): void {
    const page = this.ioreqPage!;
    const off = ioreqOffset(v);
    const state = ioreqState(page, off);
    if (state !== STATE_IOREQ_READY) {
      // Spurious or repeated notification (we unmask before serving); nothing to do.
      this.stats.spurious++;
      if (state !== STATE_IOREQ_NONE && state !== STATE_IOREQ_INPROCESS && state !== STATE_IORESP_READY) {
        this.limited('slot-state', 'warn', 'ioreq slot in an unknown state', { vcpu: v, state });
      }
      return;
    }
    const req = decodeIoreq(page, off);
    setIoreqState(page, off, STATE_IOREQ_INPROCESS);
    this.stats.ioreqs++;
    const data = this.handle(req);
    if (req.dir === IOREQ_READ && !req.dataIsPtr) setIoreqData(page, off, data);
    setIoreqState(page, off, STATE_IORESP_READY);
    this.evtchn!.notify(port);
  }

  /** Handle one request; returns the data for a non-pointer read. Never throws on guest input. */
  private handle(req: Ioreq): bigint {
    try {
      switch (req.type) {
        case IOREQ_TYPE_PIO:
          return this.handlePio(req);
        case IOREQ_TYPE_PCI_CONFIG:
          return this.handleConfig(req);
        case IOREQ_TYPE_INVALIDATE:
          this.stats.invalidates++;
          this.mem.invalidate();
          this.limited('invalidate', 'debug', 'mapping cache invalidated');
          return req.data;
        case IOREQ_TYPE_TIMEOFFSET:
          // The guest's RTC offset changed: only the main device model keeps a clock.
          return req.data;
        case IOREQ_TYPE_COPY:
          return this.malformed(req, 'copy', 'MMIO request, but this function has no MMIO BAR');
        default:
          return this.malformed(req, 'type', `unknown ioreq type ${req.type}`);
      }
    } catch (e) {
      if (e instanceof GuestMemoryFault) {
        this.limited('guest-memory-fault', 'warn', 'guest memory fault while serving an ioreq', { type: req.type, error: e.message });
        return req.dir === IOREQ_READ ? BigInt(ones(isAccessSize(req.size) ? req.size : 4)) : req.data;
      }
      // Not guest input: still answer, or the guest's vCPU would wait forever for this
      // ioreq. Reads get all-ones as from an unclaimed bus.
      this.internalError('an ioreq', e);
      return req.dir === IOREQ_READ ? BigInt(ones(isAccessSize(req.size) ? req.size : 4)) : req.data;
    }
  }

  private malformed(req: Ioreq, key: string, why: string): bigint {
    this.stats.malformed++;
    this.limited(`malformed-${key}`, 'warn', `${why}; answered with all-ones / write dropped`, {
      type: req.type,
      addr: '0x' + req.addr.toString(16),
      size: req.size,
      count: req.count,
      dir: req.dir ? 'read' : 'write',
      ptr: req.dataIsPtr,
    });
    // A read answers all-ones (as an unclaimed bus does); a pointer read leaves guest memory alone.
    if (req.dir === IOREQ_READ) return isAccessSize(req.size) ? BigInt(ones(req.size)) : 0xffffffffffffffffn;
    return req.data;
  }

  private handlePio(req: Ioreq): bigint {
    const size = req.size;
    if (!isAccessSize(size)) return this.malformed(req, 'pio-size', `port I/O of size ${size}`);
    if (req.addr > 0xffffn) return this.malformed(req, 'pio-addr', 'port number above 0xFFFF');
    const port = Number(req.addr);
    this.stats.pio++;
    if (!req.dataIsPtr) {
      if (req.count !== 1) return this.malformed(req, 'pio-count', `port I/O with count ${req.count} and immediate data`);
      if (req.dir === IOREQ_READ) {
        const v = this.fn.portRead(port, size);
        if (v === undefined) {
          this.limited('pio-outside', 'warn', 'port read outside BAR4', { port: hex(port) });
          return BigInt(ones(size));
        }
        return BigInt(v >>> 0);
      }
      if (!this.fn.portWrite(port, size, Number(req.data & 0xffffffffn))) this.limited('pio-outside', 'warn', 'port write outside BAR4', { port: hex(port) });
      return req.data;
    }
    // rep ins / rep outs: `data` is the guest-physical address of the buffer.
    if (req.count < 1 || req.count > MAX_REPS) return this.malformed(req, 'rep-count', `rep port I/O with count ${req.count}`);
    const step = req.df ? -size : size;
    const buf = new Uint8Array(size);
    const dvb = new DataView(buf.buffer);
    const base = Number(req.data);
    if (!Number.isSafeInteger(base)) return this.malformed(req, 'rep-addr', 'rep buffer address out of range');
    for (let i = 0; i < req.count; i++) {
      const gpa = base + i * step;
      if (req.dir === IOREQ_READ) {
        const v = this.fn.portRead(port, size);
        const val = v === undefined ? ones(size) : v >>> 0;
        if (size === 1) buf[0] = val;
        else if (size === 2) dvb.setUint16(0, val, true);
        else dvb.setUint32(0, val, true);
        this.mem.write(gpa, buf);
      } else {
        this.mem.read(gpa, buf);
        const val = size === 1 ? buf[0]! : size === 2 ? dvb.getUint16(0, true) : dvb.getUint32(0, true);
        this.fn.portWrite(port, size, val);
      }
    }
    return req.data;
  }

  private handleConfig(req: Ioreq): bigint {
    const { sbdf, reg } = decodePciConfigAddr(req.addr);
    const size = req.size;
    const b = this.bdf;
    if (sbdf.segment !== 0 || sbdf.bus !== b.bus || sbdf.device !== b.device || sbdf.fn !== b.fn) {
      return this.malformed(req, 'cfg-bdf', 'config cycle for a BDF that is not ours');
    }
    if (!isAccessSize(size) || req.dataIsPtr || req.count !== 1) return this.malformed(req, 'cfg-shape', 'config cycle with a bad size/count/pointer');
    if (reg + size > 256 || reg % size !== 0) {
      // Extended config space (PCIe) does not exist on this conventional function; unaligned cycles do not occur on CFC..CFF.
      return this.malformed(req, 'cfg-reg', `config register 0x${reg.toString(16)} size ${size}`);
    }
    this.stats.config++;
    if (req.dir === IOREQ_READ) return BigInt(this.fn.configRead(reg, size) >>> 0);
    this.fn.configWrite(reg, size, Number(req.data & BigInt(ones(size))));
    return req.data;
  }
}

function hex(n: number): string {
  return '0x' + n.toString(16);
}
