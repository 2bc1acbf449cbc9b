/**
 * Serves a PCI function to QEMU over the multi-process protocol
 * (`-device x-pci-proxy-dev,fd=N`). QEMU is the client: its vCPU thread
 * blocks on every config cycle and BAR access until we answer with RET, so
 * requests are handled synchronously on the Node main thread (where the
 * model and its timers live) as soon as the socket is readable. Readiness
 * comes from poll(2) run on a libuv worker thread (koffi async call), so
 * the event loop, and with it the controller's frame timers, keeps running.
 *
 * Interrupts: SET_IRQFD hands us an eventfd that QEMU attaches to the
 * device's INTx route through KVM irqfd. We signal it on each rising edge
 * and again when QEMU signals the resample fd while the line is still
 * high. Under TCG QEMU registers no irqfd (KVM only), so the guest never
 * sees the interrupt: Linux guests must poll (boot with `irqpoll`, see
 * src/lab/). This is a limit of QEMU 7.2's proxy, not of the model.
 *
 * Faults: a request whose handling throws is still answered (reads all
 * ones) and reported to the function as an internal fault (UHCI: Host
 * System Error), so QEMU's vCPU never waits for a RET that does not come;
 * anything else that throws in the socket callback ends the transport with
 * one error instead of the process. Lines QEMU (and so a guest) can trigger
 * are rate limited.
 */
import { windowRead, windowWrite } from '../device/io-window.js';
import type { AccessSize, PciFunction } from '../device/pci-function.js';
import type { IrqLine } from '../platform/irq.js';
import { LogLimiter, type Logger } from '../platform/logger.js';
import {
  MessageAssembler,
  MpqemuProtocolError,
  encodeRet,
  type MpqemuMessage,
  type SysmemRegion,
} from './mpqemu-protocol.js';
import { RegionMemory } from './region-memory.js';
import {
  FdSocket,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  closeFd,
  eventFd,
  eventFdDrain,
  eventFdSignal,
  mapShared,
  type Mapping,
} from './libc.js';

export interface ProxyStats {
  configReads: number;
  configWrites: number;
  barReads: number;
  barWrites: number;
  /** BAR accesses outside the function's enabled I/O window (answered with all ones / dropped). */
  barMisses: number;
  resets: number;
  memoryMaps: number;
  irqRaises: number;
  /** Exceptions thrown by the function while handling a request (answered anyway, reported as a Host System Error). */
  functionErrors: number;
}

export type ProxyEndReason = 'peer-closed' | 'stopped' | 'protocol-error' | 'io-error';

export interface ProxyEnd {
  reason: ProxyEndReason;
  error?: Error;
  stats: ProxyStats;
}

export interface QemuProxyTransportOptions {
  /** Our end of the connected stream socket; the transport owns and closes it. */
  fd: number;
  logger?: Logger;
  /** Observe every decoded request (tracing, tests). */
  onMessage?: (m: MpqemuMessage) => void;
}

/** The INTx line as an eventfd signal towards QEMU. */
class EventFdIrq implements IrqLine {
  level = false;
  irqFd = -1;
  constructor(private readonly stats: ProxyStats) {}
  set(level: boolean): void {
    if (level && !this.level) {
      this.stats.irqRaises++;
      if (this.irqFd >= 0) eventFdSignal(this.irqFd);
    }
    this.level = level;
  }
}

const ALL_ONES = [0, 0xff, 0xffff, 0, 0xffffffff] as const;

function accessSize(n: number): AccessSize | null {
  return n === 1 || n === 2 || n === 4 ? n : null;
}

export class QemuProxyTransport {
  readonly mem = new RegionMemory();
  /** Live counters (also returned when serving ends). */
  readonly stats: ProxyStats = {
    configReads: 0,
    configWrites: 0,
    barReads: 0,
    barWrites: 0,
    barMisses: 0,
    resets: 0,
    memoryMaps: 0,
    irqRaises: 0,
    functionErrors: 0,
  };
  private readonly irqLine = new EventFdIrq(this.stats);
  readonly irq: IrqLine = this.irqLine;
  private readonly sock: FdSocket;
  private readonly asm = new MessageAssembler();
  private readonly wakeFd: number;
  private resampleFd = -1;
  private mappings: Mapping[] = [];
  private fn: PciFunction | null = null;
  private stopping = false;
  private ended: ProxyEnd | null = null;
  private resolveEnd: ((e: ProxyEnd) => void) | null = null;
  private readonly logger?: Logger;
  /** Rate limits for the lines the peer (and through it the guest) can trigger. */
  private readonly logs: LogLimiter;
  private readonly onMessage?: (m: MpqemuMessage) => void;

  constructor(opts: QemuProxyTransportOptions) {
    this.sock = new FdSocket(opts.fd);
    this.wakeFd = eventFd();
    this.logger = opts.logger;
    this.logs = new LogLimiter(opts.logger);
    this.onMessage = opts.onMessage;
  }

  /** Serve `fn` until QEMU closes the connection or stop() is called. */
  serve(fn: PciFunction): Promise<ProxyEnd> {
    if (this.fn) throw new Error('QemuProxyTransport.serve called twice');
    this.fn = fn;
    return new Promise((resolve) => {
      this.resolveEnd = resolve;
      this.arm();
    });
  }

  /** Stop serving; the promise from serve() resolves with reason 'stopped'. */
  stop(): void {
    if (this.stopping || this.ended) return;
    this.stopping = true;
    if (!this.resolveEnd) {
      this.finish({ reason: 'stopped' });
      return;
    }
    eventFdSignal(this.wakeFd);
  }

  private arm(): void {
    const fds = [this.sock.fd, this.wakeFd];
    if (this.resampleFd >= 0) fds.push(this.resampleFd);
    this.sock.pollAsync(fds, -1, (err, revents) => {
      if (err) return this.finish({ reason: 'io-error', error: err });
      if (this.stopping || (revents[1]! & POLLIN) !== 0) return this.finish({ reason: 'stopped' });
      try {
        if (this.resampleFd >= 0 && revents[2]! & POLLIN) this.onResample();
        const s = revents[0]!;
        if (s & POLLNVAL) return this.finish({ reason: 'io-error', error: new Error('socket fd is not open') });
        if (s & (POLLIN | POLLHUP | POLLERR)) {
          const end = this.drain();
          if (end) return this.finish(end);
        }
      } catch (e) {
        // Not the function (handle() contains that): the socket or the transport itself failed.
        return this.finish({ reason: 'io-error', error: e instanceof Error ? e : new Error(String(e)) });
      }
      this.arm();
    });
  }

  /** Read and handle every complete message available now. */
  private drain(): Omit<ProxyEnd, 'stats'> | null {
    for (;;) {
      let r;
      try {
        r = this.sock.recv(this.asm.wanted());
      } catch (e) {
        return { reason: 'io-error', error: e as Error };
      }
      if (!r) return null;
      if (r.eof) return { reason: 'peer-closed' };
      let msg: MpqemuMessage | null;
      try {
        msg = this.asm.push(r.data, r.fds);
      } catch (e) {
        this.asm.takeFds().forEach(closeFd);
        if (e instanceof MpqemuProtocolError) return { reason: 'protocol-error', error: e };
        throw e;
      }
      if (msg) this.handle(msg);
    }
  }

  private reply(value: number | bigint): void {
    this.sock.send(encodeRet(value));
  }

  /** Run a call into the function; if it throws, report the fault to the function and answer `fallback`. */
  private guard<T>(what: string, f: () => T, fallback: T): T {
    try {
      return f();
    } catch (e) {
      this.stats.functionErrors++;
      try {
        this.fn!.hostSystemError(`a proxied ${what}`, e);
      } catch (again) {
        this.logs.error('function-fault', 'qemu-proxy', `${what} threw, and so did the fault report`, again);
      }
      return fallback;
    }
  }

  private handle(m: MpqemuMessage): void {
    this.onMessage?.(m);
    const fn = this.fn!;
    switch (m.cmd) {
      case 'sync-sysmem':
        this.mapMemory(m.regions);
        return;
      case 'set-irqfd':
        if (this.irqLine.irqFd >= 0) closeFd(this.irqLine.irqFd);
        if (this.resampleFd >= 0) closeFd(this.resampleFd);
        this.irqLine.irqFd = m.irqFd;
        this.resampleFd = m.resampleFd;
        if (this.irqLine.level) eventFdSignal(m.irqFd);
        return;
      case 'config-read': {
        this.stats.configReads++;
        const size = accessSize(m.len);
        const v = size === null ? 0xffffffff : this.guard('config read', () => fn.configRead(m.addr, size), ALL_ONES[size]);
        this.reply(v >>> 0);
        return;
      }
      case 'config-write': {
        this.stats.configWrites++;
        const size = accessSize(m.len);
        if (size !== null) this.guard('config write', () => fn.configWrite(m.addr, size, m.value), undefined);
        this.reply(0);
        return;
      }
      case 'bar-read': {
        this.stats.barReads++;
        this.reply(this.barRead(fn, m.addr, m.size, m.memory));
        return;
      }
      case 'bar-write': {
        this.stats.barWrites++;
        this.barWrite(fn, m.addr, m.size, m.value, m.memory);
        this.reply(0);
        return;
      }
      case 'device-reset':
        this.stats.resets++;
        this.guard('reset', () => fn.reset(), undefined);
        this.reply(0);
        return;
      case 'unknown':
        m.fds.forEach(closeFd);
        this.logs.log('unknown-command', 'warn', 'qemu-proxy', `unknown command ${m.code} ignored`, { size: m.payload.length });
        return;
      case 'ret':
        this.logs.log('unexpected-ret', 'warn', 'qemu-proxy', 'unexpected RET from QEMU ignored', {});
        return;
    }
  }

  /** A BAR access none of whose bytes is in the function's I/O window (or one to a memory BAR, which it has none of). */
  private miss(fn: PciFunction, addr: number, size: number, memory: boolean): void {
    this.stats.barMisses++;
    const w = fn.ioWindow;
    this.logs.log('bar-miss', 'warn', 'qemu-proxy', 'BAR access outside the I/O window', {
      addr: `0x${addr.toString(16)}`,
      size,
      memory,
      ioBase: w === null ? 'off' : `0x${w.base.toString(16)}`,
    });
  }

  /**
   * Decoded against the window by the one rule (device/io-window.ts); an
   * 8-byte (or odd-sized) access as two dword halves, as a CPU splits it.
   */
  private barRead(fn: PciFunction, addr: number, size: number, memory: boolean): bigint {
    const s = accessSize(size);
    const read = (a: number, n: AccessSize): number | undefined =>
      memory ? undefined : this.guard('I/O read', () => windowRead(fn.ioWindow, a, n, (o, k) => fn.ioRead(o, k)), ALL_ONES[n]);
    if (s) {
      const v = read(addr, s);
      if (v === undefined) this.miss(fn, addr, size, memory);
      return BigInt((v ?? ALL_ONES[s]) >>> 0);
    }
    const lo = read(addr, 4);
    const hi = read(addr + 4, 4);
    if (lo === undefined && hi === undefined) this.miss(fn, addr, size, memory);
    return (BigInt((hi ?? 0xffffffff) >>> 0) << 32n) | BigInt((lo ?? 0xffffffff) >>> 0);
  }

  private barWrite(fn: PciFunction, addr: number, size: number, value: bigint, memory: boolean): void {
    const s = accessSize(size);
    const write = (a: number, n: AccessSize, v: number): boolean =>
      !memory && this.guard('I/O write', () => windowWrite(fn.ioWindow, a, n, v, (o, k, x) => fn.ioWrite(o, k, x)), true);
    let hit: boolean;
    if (s) hit = write(addr, s, Number(value & 0xffffffffn));
    else {
      const lo = write(addr, 4, Number(value & 0xffffffffn));
      hit = write(addr + 4, 4, Number((value >> 32n) & 0xffffffffn)) || lo;
    }
    if (!hit) this.miss(fn, addr, size, memory);
  }

  private mapMemory(regions: SysmemRegion[]): void {
    this.stats.memoryMaps++;
    const next: Mapping[] = [];
    try {
      for (const r of regions) next.push(mapShared(r.fd, r.size, r.offset));
      this.mem.setRegions(regions.map((r, i) => ({ gpa: r.gpa, bytes: next[i]!.bytes })));
    } catch (e) {
      next.forEach((m) => m.unmap());
      this.logs.log('map-failed', 'error', 'qemu-proxy', `cannot map guest RAM: ${(e as Error).message}`, {});
      this.mem.setRegions([]);
    } finally {
      // The mappings stay valid after the descriptors are closed.
      regions.forEach((r) => closeFd(r.fd));
    }
    this.mappings.forEach((m) => m.unmap());
    this.mappings = next;
    this.logs.log('ram-map', 'debug', 'qemu-proxy', 'guest RAM map', {
      regions: regions.map((r) => `0x${r.gpa.toString(16)}+0x${r.size.toString(16)}`).join(','),
    });
  }

  private onResample(): void {
    eventFdDrain(this.resampleFd);
    if (this.irqLine.level && this.irqLine.irqFd >= 0) eventFdSignal(this.irqLine.irqFd);
  }

  private finish(end: Omit<ProxyEnd, 'stats'>): void {
    if (this.ended) return;
    this.ended = { ...end, stats: this.stats };
    this.mem.setRegions([]);
    this.mappings.forEach((m) => m.unmap());
    this.mappings = [];
    this.asm.takeFds().forEach(closeFd);
    closeFd(this.irqLine.irqFd);
    this.irqLine.irqFd = -1;
    closeFd(this.resampleFd);
    this.resampleFd = -1;
    closeFd(this.wakeFd);
    this.sock.close();
    // No poll is pending once finish runs (it is only called from the poll callback or before arm()).
    this.sock.dispose();
    if (end.reason !== 'stopped' && end.reason !== 'peer-closed') {
      this.logger?.log('error', 'qemu-proxy', `transport ended: ${end.reason}${end.error ? ': ' + end.error.message : ''}`, {});
    }
    this.resolveEnd?.(this.ended);
  }
}
