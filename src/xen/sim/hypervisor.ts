/**
 * A simulated Xen hypervisor for one HVM domain, implementing XenPlatform in
 * memory: ioreq servers with a shared ioreq page (one struct ioreq per vCPU)
 * and a buffered-ioreq page, event channels as asynchronous notifications
 * with Linux evtchn-driver semantics (a delivered port stays masked until
 * unmasked), guest RAM (FlatMemory) that foreign mappings alias, and Xen's
 * routing of guest I/O to the server that claimed it (I/O ranges, PCI BDFs
 * through the CF8/CFC latch). Every control-plane call is recorded in
 * `calls` so tests can observe the life cycle.
 *
 * The guest side (what a vCPU does on an I/O exit) lives in vcpu.ts.
 */
import { FlatMemory } from '../../platform/memory.js';
import { BUF_IOREQ_SLOT_NUM, IOREQ_OFF, IOREQ_SIZE, PAGE_SHIFT, PAGE_SIZE } from '../ioreq.js';
import {
  XENMEM_RESOURCE_IOREQ_SERVER,
  XenCallError,
  type DeviceModelHandle,
  type EventChannelHandle,
  type ForeignMapping,
  type ForeignMemoryHandle,
  type XenPlatform,
} from '../platform.js';
import { SimVcpu } from './vcpu.js';

const EINVAL = 22;
const ENOENT = 2;
const ESRCH = 3;
const EFAULT = 14;
const EPERM = 1;

/** One recorded control-plane call. */
export type SimCall =
  | { op: 'create'; id: number; bufioreq: number }
  | { op: 'destroy'; id: number }
  | { op: 'state'; id: number; enabled: boolean }
  | { op: 'mapIoRange'; id: number; isMmio: boolean; start: number; end: number }
  | { op: 'unmapIoRange'; id: number; isMmio: boolean; start: number; end: number }
  | { op: 'mapPcidev'; id: number; segment: number; bus: number; device: number; fn: number }
  | { op: 'unmapPcidev'; id: number; segment: number; bus: number; device: number; fn: number }
  | { op: 'intx'; segment: number; bus: number; device: number; intx: number; level: boolean }
  | { op: 'modifiedMemory'; firstPfn: number; nr: number }
  | { op: 'restrict'; lib: 'devicemodel' | 'evtchn' | 'foreignmemory'; domid: number }
  | { op: 'bind'; remote: number; local: number }
  | { op: 'unbind'; local: number }
  | { op: 'mapResource'; id: number; frame: number; nrFrames: number };

export interface SimIoRange {
  isMmio: boolean;
  start: number;
  end: number;
}

/** Hypervisor-side state of one ioreq server. */
export interface SimServer {
  id: number;
  bufioreq: number;
  /** [buffered page | ioreq page]: frame 0 and frame 1 of the resource. */
  readonly frames: Uint8Array;
  readonly ioreqPage: Uint8Array;
  readonly bufPage: Uint8Array | null;
  /** Xen-side (guest domain) event channel port of each vCPU. */
  readonly vcpuPorts: number[];
  readonly bufPort: number | null;
  enabled: boolean;
  ranges: SimIoRange[];
  pcidevs: { segment: number; bus: number; device: number; fn: number }[];
}

export interface SimHypervisorOptions {
  domid?: number;
  vcpus?: number;
  ramBytes?: number;
  /** How notifications are delivered: 'microtask' (fast, default) or 'immediate' (setImmediate, lets I/O run). */
  delivery?: 'microtask' | 'immediate';
}

type PortOwner = { kind: 'xen'; vcpu: number | 'buf'; server: number } | { kind: 'handle'; handle: SimEventChannel };

interface SimPort {
  port: number;
  owner: PortOwner;
  peer: number | null;
  pending: boolean;
  masked: boolean;
}

export class SimHypervisor {
  readonly domid: number;
  readonly nrVcpus: number;
  readonly ram: FlatMemory;
  readonly calls: SimCall[] = [];
  readonly vcpus: SimVcpu[];
  /** Foreign-mapping counters (data path: not in `calls`). */
  readonly mappings = { maps: 0, unmaps: 0, live: 0, pagesMapped: 0 };
  /** Current INTx levels by "bus:dev.intx". */
  readonly intx = new Map<string, boolean>();
  /** The guest's PCI config address latch (port 0xCF8), kept by Xen for the domain. */
  cf8 = 0;
  alive = true;
  /** Synchronous ioreqs in flight now, and the most seen at once (concurrency evidence for tests). */
  inFlight = 0;
  maxInFlight = 0;
  private readonly servers = new Map<number, SimServer>();
  private readonly ports = new Map<number, SimPort>();
  private nextPort = 5;
  private nextServer = 1;
  readonly schedule: (fn: () => void) => void;
  /** Called on Xen-side ports (the vCPUs' and the buffered ring's) when the device model notifies them. */
  private readonly xenListeners = new Map<number, () => void>();

  constructor(opts: SimHypervisorOptions = {}) {
    this.domid = opts.domid ?? 1;
    this.nrVcpus = opts.vcpus ?? 1;
    if (this.nrVcpus < 1 || this.nrVcpus > PAGE_SIZE / IOREQ_SIZE) throw new RangeError('1..128 vCPUs');
    this.ram = new FlatMemory(opts.ramBytes ?? 32 << 20);
    this.schedule = opts.delivery === 'immediate' ? (fn) => void setImmediate(fn) : (fn) => queueMicrotask(fn);
    this.vcpus = Array.from({ length: this.nrVcpus }, (_, i) => new SimVcpu(this, i));
  }

  /** The XenPlatform a server uses to reach this hypervisor. */
  readonly platform: XenPlatform = {
    kind: 'simulated',
    openDeviceModel: () => new SimDeviceModel(this),
    openEventChannel: () => new SimEventChannel(this),
    openForeignMemory: () => new SimForeignMemory(this),
    domainAlive: (domid) => domid === this.domid && this.alive,
  };

  // ------------------------------------------------------------ servers

  checkDomain(call: string, domid: number): void {
    if (domid !== this.domid || !this.alive) throw new XenCallError(call, ESRCH, `no domain ${domid}`);
  }

  server(call: string, domid: number, id: number): SimServer {
    this.checkDomain(call, domid);
    const s = this.servers.get(id);
    if (!s) throw new XenCallError(call, ENOENT, `no ioreq server ${id}`);
    return s;
  }

  get serverList(): SimServer[] {
    return [...this.servers.values()];
  }

  createServer(bufioreq: number): SimServer {
    const id = this.nextServer++;
    const frames = new Uint8Array(2 * PAGE_SIZE);
    const ioreqPage = frames.subarray(PAGE_SIZE);
    const vcpuPorts: number[] = [];
    for (let v = 0; v < this.nrVcpus; v++) {
      const p = this.allocPort({ kind: 'xen', vcpu: v, server: id });
      vcpuPorts.push(p);
      new DataView(ioreqPage.buffer, ioreqPage.byteOffset).setUint32(v * IOREQ_SIZE + IOREQ_OFF.vpEport, p, true);
    }
    const s: SimServer = {
      id,
      bufioreq,
      frames,
      ioreqPage,
      bufPage: bufioreq ? frames.subarray(0, PAGE_SIZE) : null,
      vcpuPorts,
      bufPort: bufioreq ? this.allocPort({ kind: 'xen', vcpu: 'buf', server: id }) : null,
      enabled: false,
      ranges: [],
      pcidevs: [],
    };
    this.servers.set(id, s);
    this.calls.push({ op: 'create', id, bufioreq });
    return s;
  }

  destroyServer(id: number): void {
    const s = this.servers.get(id)!;
    this.servers.delete(id);
    for (const p of [...s.vcpuPorts, ...(s.bufPort !== null ? [s.bufPort] : [])]) {
      const port = this.ports.get(p);
      if (port?.peer !== null && port?.peer !== undefined) {
        const peer = this.ports.get(port.peer);
        if (peer) peer.peer = null;
      }
      this.ports.delete(p);
    }
    this.calls.push({ op: 'destroy', id });
  }

  /**
   * The enabled server that claims a port-I/O (or MMIO) access of `size`
   * bytes at `addr`, as Xen's ioreq server selection: only a server one of
   * whose ranges contains the whole access (rangeset_contains_range); an
   * access straddling a range's edge goes to the default device model.
   */
  serverForIo(isMmio: boolean, addr: number, size: number): SimServer | null {
    const last = addr + size - 1;
    for (const s of this.servers.values()) {
      if (!s.enabled) continue;
      if (s.ranges.some((r) => r.isMmio === isMmio && addr >= r.start && last <= r.end)) return s;
    }
    return null;
  }

  serverForPci(bus: number, device: number, fn: number): SimServer | null {
    for (const s of this.servers.values()) {
      if (!s.enabled) continue;
      if (s.pcidevs.some((d) => d.segment === 0 && d.bus === bus && d.device === device && d.fn === fn)) return s;
    }
    return null;
  }

  enabledServers(): SimServer[] {
    return [...this.servers.values()].filter((s) => s.enabled);
  }

  /** Guest frames the device model reported as modified (union of modified_memory calls). */
  modifiedPages(): Set<number> {
    const out = new Set<number>();
    for (const c of this.calls) if (c.op === 'modifiedMemory') for (let i = 0; i < c.nr; i++) out.add(c.firstPfn + i);
    return out;
  }

  /** The domain goes away (shutdown / destroy): every later call for it fails with ESRCH. */
  destroyDomain(): void {
    this.alive = false;
  }

  // ------------------------------------------------------------ event channels

  private allocPort(owner: PortOwner): number {
    const port = this.nextPort++;
    this.ports.set(port, { port, owner, peer: null, pending: false, masked: false });
    return port;
  }

  bindInterdomain(handle: SimEventChannel, domid: number, remote: number): number {
    this.checkDomain('xenevtchn_bind_interdomain', domid);
    const r = this.ports.get(remote);
    if (!r || r.owner.kind !== 'xen' || r.peer !== null) throw new XenCallError('xenevtchn_bind_interdomain', EINVAL, `port ${remote} is not an unbound Xen port`);
    const local = this.allocPort({ kind: 'handle', handle });
    this.ports.get(local)!.peer = remote;
    r.peer = local;
    this.calls.push({ op: 'bind', remote, local });
    return local;
  }

  unbind(handle: SimEventChannel, local: number): void {
    const p = this.ports.get(local);
    if (!p || p.owner.kind !== 'handle' || p.owner.handle !== handle) throw new XenCallError('xenevtchn_unbind', EINVAL);
    if (p.peer !== null) {
      const r = this.ports.get(p.peer);
      if (r) r.peer = null;
    }
    this.ports.delete(local);
    this.calls.push({ op: 'unbind', local });
  }

  /** The device model notifies its local port: the Xen side (a vCPU waiting for RESP_READY) hears it. */
  notifyFromHandle(handle: SimEventChannel, local: number): void {
    const p = this.ports.get(local);
    if (!p || p.owner.kind !== 'handle' || p.owner.handle !== handle) throw new XenCallError('xenevtchn_notify', EINVAL);
    if (p.peer === null) return;
    const listener = this.xenListeners.get(p.peer);
    if (listener) this.schedule(listener);
  }

  /** Xen notifies a Xen-side port (vCPU or buffered ring): the bound device-model port becomes pending. */
  notifyFromXen(xenPort: number): void {
    const x = this.ports.get(xenPort);
    if (!x || x.peer === null) return; // nobody bound yet: the event is lost, as with an unbound port
    this.raise(x.peer);
  }

  private raise(local: number): void {
    const p = this.ports.get(local);
    if (!p || p.owner.kind !== 'handle') return;
    if (p.pending) return;
    p.pending = true;
    if (!p.masked) this.deliver(p);
  }

  private deliver(p: SimPort): void {
    p.masked = true; // the Linux evtchn driver masks a port when it reports it
    const h = (p.owner as { handle: SimEventChannel }).handle;
    this.schedule(() => {
      p.pending = false;
      h.deliver(p.port);
    });
  }

  unmask(handle: SimEventChannel, local: number): void {
    const p = this.ports.get(local);
    if (!p || p.owner.kind !== 'handle' || p.owner.handle !== handle) return;
    p.masked = false;
    if (p.pending) this.deliver(p);
  }

  onXenPort(xenPort: number, listener: (() => void) | null): void {
    if (listener) this.xenListeners.set(xenPort, listener);
    else this.xenListeners.delete(xenPort);
  }

  // ------------------------------------------------------------ memory

  mapGuestPages(domid: number, pfns: readonly number[]): ForeignMapping {
    this.checkDomain('xenforeignmemory_map', domid);
    if (pfns.length === 0) throw new XenCallError('xenforeignmemory_map', EINVAL);
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i]!;
      if (!Number.isInteger(pfn) || pfn < 0 || (pfn + 1) * PAGE_SIZE > this.ram.size) {
        throw new XenCallError('xenforeignmemory_map', EFAULT, `pfn 0x${pfn.toString(16)} is not guest RAM`);
      }
      if (i > 0 && pfn !== pfns[0]! + i) throw new XenCallError('xenforeignmemory_map', EINVAL, 'the simulation maps contiguous frames only');
    }
    const start = pfns[0]! << PAGE_SHIFT;
    return this.mapping(this.ram.bytes.subarray(start, start + pfns.length * PAGE_SIZE), pfns.length);
  }

  mapping(bytes: Uint8Array, pages: number): ForeignMapping {
    const m = this.mappings;
    m.maps++;
    m.live++;
    m.pagesMapped += pages;
    let mapped = true;
    return {
      bytes,
      pages,
      unmap: () => {
        if (!mapped) return;
        mapped = false;
        m.unmaps++;
        m.live--;
      },
    };
  }

  /** Buffered ring capacity check used by the vCPU side. */
  static bufFree(read: number, write: number): number {
    return BUF_IOREQ_SLOT_NUM - ((write - read) >>> 0);
  }
}

class SimDeviceModel implements DeviceModelHandle {
  private restrictedTo: number | null = null;
  private closed = false;
  constructor(private readonly hv: SimHypervisor) {}

  private check(call: string, domid: number): void {
    if (this.closed) throw new XenCallError(call, EINVAL, 'handle closed');
    if (this.restrictedTo !== null && domid !== this.restrictedTo) throw new XenCallError(call, EPERM, `handle restricted to domain ${this.restrictedTo}`);
    this.hv.checkDomain(call, domid);
  }

  createIoreqServer(domid: number, handleBufioreq: number): number {
    this.check('xendevicemodel_create_ioreq_server', domid);
    if (handleBufioreq < 0 || handleBufioreq > 2) throw new XenCallError('xendevicemodel_create_ioreq_server', EINVAL);
    return this.hv.createServer(handleBufioreq).id;
  }
  getBufioreqPort(domid: number, id: number): number {
    this.check('xendevicemodel_get_ioreq_server_info', domid);
    const s = this.hv.server('xendevicemodel_get_ioreq_server_info', domid, id);
    if (s.bufPort === null) throw new XenCallError('xendevicemodel_get_ioreq_server_info', ENOENT, 'no buffered ioreq page');
    return s.bufPort;
  }
  getIoreqServerGfns(domid: number): { ioreqGfn: number; bufioreqGfn: number } {
    this.check('xendevicemodel_get_ioreq_server_info', domid);
    // The simulation only offers the resource-mapping path (Xen >= 4.12).
    throw new XenCallError('xendevicemodel_get_ioreq_server_info', EINVAL, 'legacy ioreq gfns are not simulated');
  }
  mapIoRange(domid: number, id: number, isMmio: boolean, start: number, end: number): void {
    this.check('xendevicemodel_map_io_range_to_ioreq_server', domid);
    const s = this.hv.server('xendevicemodel_map_io_range_to_ioreq_server', domid, id);
    if (end < start) throw new XenCallError('xendevicemodel_map_io_range_to_ioreq_server', EINVAL);
    s.ranges.push({ isMmio, start, end });
    this.hv.calls.push({ op: 'mapIoRange', id, isMmio, start, end });
  }
  unmapIoRange(domid: number, id: number, isMmio: boolean, start: number, end: number): void {
    this.check('xendevicemodel_unmap_io_range_from_ioreq_server', domid);
    const s = this.hv.server('xendevicemodel_unmap_io_range_from_ioreq_server', domid, id);
    const i = s.ranges.findIndex((r) => r.isMmio === isMmio && r.start === start && r.end === end);
    if (i < 0) throw new XenCallError('xendevicemodel_unmap_io_range_from_ioreq_server', ENOENT);
    s.ranges.splice(i, 1);
    this.hv.calls.push({ op: 'unmapIoRange', id, isMmio, start, end });
  }
  mapPcidev(domid: number, id: number, segment: number, bus: number, device: number, fn: number): void {
    this.check('xendevicemodel_map_pcidev_to_ioreq_server', domid);
    this.hv.server('xendevicemodel_map_pcidev_to_ioreq_server', domid, id).pcidevs.push({ segment, bus, device, fn });
    this.hv.calls.push({ op: 'mapPcidev', id, segment, bus, device, fn });
  }
  unmapPcidev(domid: number, id: number, segment: number, bus: number, device: number, fn: number): void {
    this.check('xendevicemodel_unmap_pcidev_from_ioreq_server', domid);
    const s = this.hv.server('xendevicemodel_unmap_pcidev_from_ioreq_server', domid, id);
    s.pcidevs = s.pcidevs.filter((d) => !(d.segment === segment && d.bus === bus && d.device === device && d.fn === fn));
    this.hv.calls.push({ op: 'unmapPcidev', id, segment, bus, device, fn });
  }
  setIoreqServerState(domid: number, id: number, enabled: boolean): void {
    this.check('xendevicemodel_set_ioreq_server_state', domid);
    this.hv.server('xendevicemodel_set_ioreq_server_state', domid, id).enabled = enabled;
    this.hv.calls.push({ op: 'state', id, enabled });
  }
  destroyIoreqServer(domid: number, id: number): void {
    this.check('xendevicemodel_destroy_ioreq_server', domid);
    this.hv.server('xendevicemodel_destroy_ioreq_server', domid, id);
    this.hv.destroyServer(id);
  }
  setPciIntxLevel(domid: number, segment: number, bus: number, device: number, intx: number, level: boolean): void {
    this.check('xendevicemodel_set_pci_intx_level', domid);
    if (intx < 0 || intx > 3) throw new XenCallError('xendevicemodel_set_pci_intx_level', EINVAL);
    this.hv.intx.set(`${bus}:${device}.${intx}`, level);
    this.hv.calls.push({ op: 'intx', segment, bus, device, intx, level });
  }
  modifiedMemory(domid: number, firstPfn: number, nr: number): void {
    this.check('xendevicemodel_modified_memory', domid);
    if (nr <= 0 || (firstPfn + nr) * PAGE_SIZE > this.hv.ram.size) throw new XenCallError('xendevicemodel_modified_memory', EINVAL);
    this.hv.calls.push({ op: 'modifiedMemory', firstPfn, nr });
  }
  nrVcpus(domid: number): number {
    this.check('xendevicemodel_nr_vcpus', domid);
    return this.hv.nrVcpus;
  }
  restrict(domid: number): void {
    this.restrictedTo = domid;
    this.hv.calls.push({ op: 'restrict', lib: 'devicemodel', domid });
  }
  close(): void {
    this.closed = true;
  }
}

export class SimEventChannel implements EventChannelHandle {
  private onPort: ((port: number) => void) | null = null;
  private readonly bound = new Set<number>();
  private closed = false;
  constructor(private readonly hv: SimHypervisor) {}

  bindInterdomain(domid: number, remotePort: number): number {
    const local = this.hv.bindInterdomain(this, domid, remotePort);
    this.bound.add(local);
    return local;
  }
  unbind(localPort: number): void {
    this.hv.unbind(this, localPort);
    this.bound.delete(localPort);
  }
  notify(localPort: number): void {
    this.hv.notifyFromHandle(this, localPort);
  }
  unmask(localPort: number): void {
    this.hv.unmask(this, localPort);
  }
  watch(onPort: (localPort: number) => void): void {
    this.onPort = onPort;
  }
  async unwatch(): Promise<void> {
    this.onPort = null;
  }
  /** Called by the hypervisor when a bound port fires. */
  deliver(port: number): void {
    if (this.closed || !this.bound.has(port)) return;
    this.onPort?.(port);
  }
  restrict(domid: number): void {
    this.hv.calls.push({ op: 'restrict', lib: 'evtchn', domid });
  }
  close(): void {
    if (this.closed) return;
    for (const p of [...this.bound]) {
      try {
        this.unbind(p);
      } catch {
        // the server (and its Xen-side ports) may already be gone
      }
    }
    this.closed = true;
  }
}

class SimForeignMemory implements ForeignMemoryHandle {
  constructor(private readonly hv: SimHypervisor) {}
  map(domid: number, _prot: number, pfns: readonly number[]): ForeignMapping {
    return this.hv.mapGuestPages(domid, pfns);
  }
  mapResource(domid: number, type: number, id: number, frame: number, nrFrames: number): ForeignMapping {
    const call = 'xenforeignmemory_map_resource';
    const s = this.hv.server(call, domid, id);
    if (type !== XENMEM_RESOURCE_IOREQ_SERVER) throw new XenCallError(call, EINVAL, `resource type ${type} is not simulated`);
    if (frame < 0 || nrFrames < 1 || frame + nrFrames > 2 || (frame === 0 && !s.bufPage)) throw new XenCallError(call, EINVAL);
    this.hv.calls.push({ op: 'mapResource', id, frame, nrFrames });
    // Not counted in `mappings` (those count guest-RAM mappings, the DMA path).
    return { bytes: s.frames.subarray(frame * PAGE_SIZE, (frame + nrFrames) * PAGE_SIZE), pages: nrFrames, unmap: () => {} };
  }
  restrict(domid: number): void {
    this.hv.calls.push({ op: 'restrict', lib: 'foreignmemory', domid });
  }
  close(): void {}
}
