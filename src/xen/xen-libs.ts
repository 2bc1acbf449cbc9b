/**
 * The real XenPlatform: the Xen 4.17 tool libraries bound by FFI (koffi).
 * Prototypes from Debian's libxen-dev 4.17 headers (xendevicemodel.h,
 * xenevtchn.h, xenforeignmemory.h, xenstore.h); x86-64 types: domid_t and
 * ioservid_t are uint16_t, evtchn_port_t uint32_t, xen_pfn_t unsigned long
 * (64-bit), xenevtchn_port_or_error_t int.
 *
 * Event delivery: the evtchn device fd is polled with poll(2) run as a koffi
 * async call, i.e. on a libuv thread-pool thread, so the event loop never
 * blocks; when the fd is readable, one xenevtchn_pending (a read that then
 * cannot block) yields the port, which is handed to the server on the main
 * thread, and the poll is re-armed. Cost: one thread-pool thread permanently
 * (libuv has 4 by default) and one thread hop per event. A 100 ms poll
 * timeout bounds how long `unwatch()` waits. (A busy non-blocking check on a
 * timer would add up to a timer tick of latency to every guest I/O access, or
 * burn CPU; a worker_thread would need the handle in another isolate.)
 */
import { createRequire } from 'node:module';
import { PAGE_SIZE } from './ioreq.js';
import {
  XenCallError,
  XenUnavailableError,
  type DeviceModelHandle,
  type EventChannelHandle,
  type ForeignMapping,
  type ForeignMemoryHandle,
  type XenPlatform,
} from './platform.js';

/** The subset of koffi's API used here (its .d.ts types functions loosely). */
interface KoffiFn {
  (...args: unknown[]): unknown;
  async(...args: unknown[]): void;
}
interface KoffiLib {
  func(decl: string): KoffiFn;
  unload?(): void;
}
interface KoffiModule {
  load(path: string): KoffiLib;
  view(p: object, len: number): ArrayBuffer;
  decode(p: object, type: string): unknown;
  address(p: object): bigint;
  alloc(type: string, len: number): object;
  free(p: object): void;
  errno(): number;
}

/** Sonames bound (Debian 12: libxendevicemodel1, libxenevtchn1, libxenforeignmemory1, libxenstore4). */
export const XEN_LIBRARIES = {
  devicemodel: 'libxendevicemodel.so.1',
  evtchn: 'libxenevtchn.so.1',
  foreignmemory: 'libxenforeignmemory.so.1',
  store: 'libxenstore.so.4',
  toollog: 'libxentoollog.so.1',
  libc: 'libc.so.6',
} as const;

/** Every prototype bound, by library. */
export const XEN_PROTOTYPES: Record<keyof typeof XEN_LIBRARIES, Record<string, string>> = {
  devicemodel: {
    xendevicemodel_open: 'void *xendevicemodel_open(void *logger, unsigned int open_flags)',
    xendevicemodel_close: 'int xendevicemodel_close(void *dmod)',
    xendevicemodel_create_ioreq_server: 'int xendevicemodel_create_ioreq_server(void *dmod, uint16_t domid, int handle_bufioreq, _Out_ uint16_t *id)',
    xendevicemodel_get_ioreq_server_info:
      'int xendevicemodel_get_ioreq_server_info(void *dmod, uint16_t domid, uint16_t id, _Out_ uint64_t *ioreq_gfn, _Out_ uint64_t *bufioreq_gfn, _Out_ uint32_t *bufioreq_port)',
    xendevicemodel_map_io_range_to_ioreq_server:
      'int xendevicemodel_map_io_range_to_ioreq_server(void *dmod, uint16_t domid, uint16_t id, int is_mmio, uint64_t start, uint64_t end)',
    xendevicemodel_unmap_io_range_from_ioreq_server:
      'int xendevicemodel_unmap_io_range_from_ioreq_server(void *dmod, uint16_t domid, uint16_t id, int is_mmio, uint64_t start, uint64_t end)',
    xendevicemodel_map_pcidev_to_ioreq_server:
      'int xendevicemodel_map_pcidev_to_ioreq_server(void *dmod, uint16_t domid, uint16_t id, uint16_t segment, uint8_t bus, uint8_t device, uint8_t function)',
    xendevicemodel_unmap_pcidev_from_ioreq_server:
      'int xendevicemodel_unmap_pcidev_from_ioreq_server(void *dmod, uint16_t domid, uint16_t id, uint16_t segment, uint8_t bus, uint8_t device, uint8_t function)',
    xendevicemodel_set_ioreq_server_state: 'int xendevicemodel_set_ioreq_server_state(void *dmod, uint16_t domid, uint16_t id, int enabled)',
    xendevicemodel_destroy_ioreq_server: 'int xendevicemodel_destroy_ioreq_server(void *dmod, uint16_t domid, uint16_t id)',
    xendevicemodel_set_pci_intx_level:
      'int xendevicemodel_set_pci_intx_level(void *dmod, uint16_t domid, uint16_t segment, uint8_t bus, uint8_t device, uint8_t intx, unsigned int level)',
    xendevicemodel_modified_memory: 'int xendevicemodel_modified_memory(void *dmod, uint16_t domid, uint64_t first_pfn, uint32_t nr)',
    xendevicemodel_nr_vcpus: 'int xendevicemodel_nr_vcpus(void *dmod, uint16_t domid, _Out_ unsigned int *vcpus)',
    xendevicemodel_restrict: 'int xendevicemodel_restrict(void *dmod, uint16_t domid)',
  },
  evtchn: {
    xenevtchn_open: 'void *xenevtchn_open(void *logger, unsigned int open_flags)',
    xenevtchn_close: 'int xenevtchn_close(void *xce)',
    xenevtchn_fd: 'int xenevtchn_fd(void *xce)',
    xenevtchn_notify: 'int xenevtchn_notify(void *xce, uint32_t port)',
    xenevtchn_bind_interdomain: 'int xenevtchn_bind_interdomain(void *xce, uint32_t domid, uint32_t remote_port)',
    xenevtchn_unbind: 'int xenevtchn_unbind(void *xce, uint32_t port)',
    xenevtchn_pending: 'int xenevtchn_pending(void *xce)',
    xenevtchn_unmask: 'int xenevtchn_unmask(void *xce, uint32_t port)',
    xenevtchn_restrict: 'int xenevtchn_restrict(void *xce, uint16_t domid)',
  },
  foreignmemory: {
    xenforeignmemory_open: 'void *xenforeignmemory_open(void *logger, unsigned int open_flags)',
    xenforeignmemory_close: 'int xenforeignmemory_close(void *fmem)',
    xenforeignmemory_map: 'void *xenforeignmemory_map(void *fmem, uint32_t dom, int prot, size_t pages, const uint64_t *arr, _Out_ int *err)',
    xenforeignmemory_unmap: 'int xenforeignmemory_unmap(void *fmem, void *addr, size_t pages)',
    xenforeignmemory_restrict: 'int xenforeignmemory_restrict(void *fmem, uint16_t domid)',
    xenforeignmemory_map_resource:
      'void *xenforeignmemory_map_resource(void *fmem, uint16_t domid, unsigned int type, unsigned int id, unsigned long frame, unsigned long nr_frames, _Inout_ void **paddr, int prot, int flags)',
    xenforeignmemory_unmap_resource: 'int xenforeignmemory_unmap_resource(void *fmem, void *fres)',
  },
  store: {
    xs_open: 'void *xs_open(unsigned long flags)',
    xs_close: 'void xs_close(void *xsh)',
    xs_read: 'void *xs_read(void *h, uint32_t t, const char *path, _Out_ unsigned int *len)',
  },
  toollog: {
    xtl_createlogger_stdiostream: 'void *xtl_createlogger_stdiostream(void *f, int min_level, unsigned int flags)',
  },
  libc: {
    poll: 'int poll(void *fds, unsigned long nfds, int timeout)',
    free: 'void free(void *ptr)',
    open_memstream: 'void *open_memstream(void *ptr, void *sizeloc)',
    fflush: 'int fflush(void *stream)',
  },
};

export type XenFunctions = Record<string, KoffiFn>;

interface Bound {
  k: KoffiModule;
  fns: XenFunctions;
  /** The xentoollog logger every handle is opened with (messages land in `libraryMessages`). */
  logger: object | null;
  libraryMessages: () => string;
}

/** xentoollog levels (xentoollog.h): XTL_WARN = 7. */
const XTL_WARN = 7;

/**
 * A xentoollog stdio logger writing into an open_memstream buffer, so that
 * the libraries' own messages (e.g. libxencall's "Could not obtain handle on
 * privileged command interface") end up in our error messages and structured
 * log instead of as stray lines on stderr.
 */
function captureLibraryLog(k: KoffiModule, fns: XenFunctions): Pick<Bound, 'logger' | 'libraryMessages'> {
  // char *buf and size_t len, written by the stream on fflush (separate native cells).
  const bufCell = k.alloc('uint64_t', 1);
  const lenCell = k.alloc('uint64_t', 1);
  const file = fns.open_memstream!(bufCell, lenCell) as object | null;
  if (!file) return { logger: null, libraryMessages: () => '' };
  const logger = (fns.xtl_createlogger_stdiostream!(file, XTL_WARN, 0) as object | null) ?? null;
  let consumed = 0;
  return {
    logger,
    libraryMessages: () => {
      fns.fflush!(file);
      const len = Number(new DataView(k.view(lenCell, 8)).getBigUint64(0, true));
      const buf = k.decode(bufCell, 'void *') as object | null;
      if (!buf || len <= consumed) return '';
      const text = Buffer.from(k.view(buf, len)).subarray(consumed).toString('utf8');
      consumed = len;
      return text;
    },
  };
}

let bound: Bound | null = null;

/**
 * Load the Xen libraries and resolve every prototype in XEN_PROTOTYPES.
 * Throws XenUnavailableError naming the missing library or symbol.
 */
export function bindXenLibraries(): Bound {
  if (bound) return bound;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new XenUnavailableError(`the Xen backend needs Linux on x86-64 (this is ${process.platform}/${process.arch})`);
  }
  let k: KoffiModule;
  try {
    k = createRequire(import.meta.url)('koffi') as KoffiModule;
  } catch (e) {
    throw new XenUnavailableError(`the Xen backend needs the 'koffi' package (npm install koffi): ${(e as Error).message}`);
  }
  const fns: XenFunctions = {};
  for (const [lib, soname] of Object.entries(XEN_LIBRARIES) as [keyof typeof XEN_LIBRARIES, string][]) {
    let l: KoffiLib;
    try {
      l = k.load(soname);
    } catch (e) {
      throw new XenUnavailableError(`cannot load ${soname} (install the Xen 4.17 tool libraries, e.g. Debian's libxen-dev or xen-utils): ${(e as Error).message.split('\n')[0]}`);
    }
    for (const [name, proto] of Object.entries(XEN_PROTOTYPES[lib])) {
      try {
        fns[name] = l.func(proto);
      } catch (e) {
        throw new XenUnavailableError(`${soname} has no usable ${name}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }
  bound = { k, fns, ...captureLibraryLog(k, fns) };
  return bound;
}

function fail(call: string, k: KoffiModule): never {
  const errno = k.errno();
  const lib = bound?.libraryMessages().trim().split('\n').filter(Boolean).pop() ?? '';
  throw new XenCallError(call, errno, lib);
}

function checkRc(call: string, k: KoffiModule, rc: unknown): number {
  const n = Number(rc);
  if (n < 0) fail(call, k);
  return n;
}

function openHandle(name: string, open: () => unknown, b: Bound): object {
  const h = open();
  if (h === null || h === undefined) {
    const errno = b.k.errno();
    const lib = b.libraryMessages().trim().split('\n').filter(Boolean).pop();
    throw new XenUnavailableError(
      `${name} failed (errno ${errno}${lib ? `; ${lib}` : ''}): cannot reach the Xen hypervisor — run 'uhci-dm xen' as root in dom0 with Xen running`,
    );
  }
  return h as object;
}

class NativeDeviceModel implements DeviceModelHandle {
  private h: object | null;
  constructor(private readonly b: Bound) {
    this.h = openHandle('xendevicemodel_open', () => b.fns.xendevicemodel_open!(b.logger, 0), b);
  }
  private call(name: string, ...args: unknown[]): number {
    if (!this.h) throw new XenCallError(name, 0, 'handle closed');
    return checkRc(name, this.b.k, this.b.fns[name]!(this.h, ...args));
  }
  createIoreqServer(domid: number, handleBufioreq: number): number {
    const id = new Uint16Array(1);
    this.call('xendevicemodel_create_ioreq_server', domid, handleBufioreq, id);
    return id[0]!;
  }
  getBufioreqPort(domid: number, id: number): number {
    const port = new Uint32Array(1);
    this.call('xendevicemodel_get_ioreq_server_info', domid, id, null, null, port);
    return port[0]!;
  }
  getIoreqServerGfns(domid: number, id: number): { ioreqGfn: number; bufioreqGfn: number } {
    const a = new BigUint64Array(1);
    const b = new BigUint64Array(1);
    this.call('xendevicemodel_get_ioreq_server_info', domid, id, a, b, null);
    return { ioreqGfn: Number(a[0]!), bufioreqGfn: Number(b[0]!) };
  }
  mapIoRange(domid: number, id: number, isMmio: boolean, start: number, end: number): void {
    this.call('xendevicemodel_map_io_range_to_ioreq_server', domid, id, isMmio ? 1 : 0, start, end);
  }
  unmapIoRange(domid: number, id: number, isMmio: boolean, start: number, end: number): void {
    this.call('xendevicemodel_unmap_io_range_from_ioreq_server', domid, id, isMmio ? 1 : 0, start, end);
  }
  mapPcidev(domid: number, id: number, segment: number, bus: number, device: number, fn: number): void {
    this.call('xendevicemodel_map_pcidev_to_ioreq_server', domid, id, segment, bus, device, fn);
  }
  unmapPcidev(domid: number, id: number, segment: number, bus: number, device: number, fn: number): void {
    this.call('xendevicemodel_unmap_pcidev_from_ioreq_server', domid, id, segment, bus, device, fn);
  }
  setIoreqServerState(domid: number, id: number, enabled: boolean): void {
    this.call('xendevicemodel_set_ioreq_server_state', domid, id, enabled ? 1 : 0);
  }
  destroyIoreqServer(domid: number, id: number): void {
    this.call('xendevicemodel_destroy_ioreq_server', domid, id);
  }
  setPciIntxLevel(domid: number, segment: number, bus: number, device: number, intx: number, level: boolean): void {
    this.call('xendevicemodel_set_pci_intx_level', domid, segment, bus, device, intx, level ? 1 : 0);
  }
  modifiedMemory(domid: number, firstPfn: number, nr: number): void {
    this.call('xendevicemodel_modified_memory', domid, firstPfn, nr);
  }
  nrVcpus(domid: number): number {
    const n = new Uint32Array(1);
    this.call('xendevicemodel_nr_vcpus', domid, n);
    return n[0]!;
  }
  restrict(domid: number): void {
    this.call('xendevicemodel_restrict', domid);
  }
  close(): void {
    if (this.h) this.b.fns.xendevicemodel_close!(this.h);
    this.h = null;
  }
}

const POLLIN = 1;
const POLL_TIMEOUT_MS = 100;

class NativeEventChannel implements EventChannelHandle {
  private h: object | null;
  private readonly fd: number;
  private onPort: ((port: number) => void) | null = null;
  private inflight: Promise<void> | null = null;
  private readonly pollBuf: object;
  private readonly pollView: DataView;

  constructor(private readonly b: Bound) {
    this.h = openHandle('xenevtchn_open', () => b.fns.xenevtchn_open!(b.logger, 0), b);
    this.fd = checkRc('xenevtchn_fd', b.k, b.fns.xenevtchn_fd!(this.h));
    // struct pollfd { int fd; short events; short revents; } in native memory: the
    // async poll reads it on another thread.
    this.pollBuf = b.k.alloc('uint8_t', 8);
    this.pollView = new DataView(b.k.view(this.pollBuf, 8));
  }
  private call(name: string, ...args: unknown[]): number {
    if (!this.h) throw new XenCallError(name, 0, 'handle closed');
    return checkRc(name, this.b.k, this.b.fns[name]!(this.h, ...args));
  }
  bindInterdomain(domid: number, remotePort: number): number {
    return this.call('xenevtchn_bind_interdomain', domid, remotePort);
  }
  unbind(localPort: number): void {
    this.call('xenevtchn_unbind', localPort);
  }
  notify(localPort: number): void {
    this.call('xenevtchn_notify', localPort);
  }
  unmask(localPort: number): void {
    this.call('xenevtchn_unmask', localPort);
  }
  watch(onPort: (localPort: number) => void): void {
    this.onPort = onPort;
    this.arm();
  }
  private arm(): void {
    if (!this.onPort || this.inflight || !this.h) return;
    this.pollView.setInt32(0, this.fd, true);
    this.pollView.setInt16(4, POLLIN, true);
    this.pollView.setInt16(6, 0, true);
    this.inflight = new Promise<void>((resolve) => {
      // Nothing runs inside koffi's completion callback but a hand-off to a
      // fresh macrotask: serving an event there (more FFI calls, re-arming
      // the next async poll from within the completion) corrupted Node's
      // async-hook stack on real Xen ("async hook stack has become
      // corrupted", then SIGSEGV) after a few dozen events (Xen lab).
      this.b.fns.poll!.async(this.pollBuf, 1, POLL_TIMEOUT_MS, (err: Error | null, r: number) => {
        setImmediate(() => {
          this.inflight = null;
          resolve();
          if (!this.onPort || !this.h) return;
          if (!err && r > 0 && this.pollView.getInt16(6, true) & POLLIN) {
            const port = Number(this.b.fns.xenevtchn_pending!(this.h));
            if (port >= 0) this.onPort(port);
          }
          this.arm();
        });
      });
    });
  }
  async unwatch(): Promise<void> {
    this.onPort = null;
    while (this.inflight) await this.inflight;
  }
  restrict(domid: number): void {
    this.call('xenevtchn_restrict', domid);
  }
  close(): void {
    if (this.inflight) throw new Error('xenevtchn handle closed while a poll is in flight (await unwatch() first)');
    if (this.h) this.b.fns.xenevtchn_close!(this.h);
    this.h = null;
    this.b.k.free(this.pollBuf);
  }
}

class NativeForeignMemory implements ForeignMemoryHandle {
  private h: object | null;
  constructor(private readonly b: Bound) {
    this.h = openHandle('xenforeignmemory_open', () => b.fns.xenforeignmemory_open!(b.logger, 0), b);
  }
  map(domid: number, prot: number, pfns: readonly number[]): ForeignMapping {
    if (!this.h) throw new XenCallError('xenforeignmemory_map', 0, 'handle closed');
    const arr = BigUint64Array.from(pfns, (p) => BigInt(p));
    const err = new Int32Array(pfns.length);
    const p = this.b.fns.xenforeignmemory_map!(this.h, domid, prot, pfns.length, arr, err) as object | null;
    if (!p) fail('xenforeignmemory_map', this.b.k);
    const bad = err.findIndex((e) => e !== 0);
    const h = this.h;
    const unmap = () => this.b.fns.xenforeignmemory_unmap!(h, p, pfns.length);
    if (bad >= 0) {
      unmap();
      throw new XenCallError('xenforeignmemory_map', -err[bad]!, `frame 0x${pfns[bad]!.toString(16)}`);
    }
    return nativeMapping(this.b.k, p, pfns.length, unmap);
  }
  mapResource(domid: number, type: number, id: number, frame: number, nrFrames: number, prot: number): ForeignMapping {
    if (!this.h) throw new XenCallError('xenforeignmemory_map_resource', 0, 'handle closed');
    const addr: (object | null)[] = [null];
    const fres = this.b.fns.xenforeignmemory_map_resource!(this.h, domid, type, id, frame, nrFrames, addr, prot, 0) as object | null;
    if (!fres || !addr[0]) fail('xenforeignmemory_map_resource', this.b.k);
    const h = this.h;
    return nativeMapping(this.b.k, addr[0], nrFrames, () => this.b.fns.xenforeignmemory_unmap_resource!(h, fres));
  }
  restrict(domid: number): void {
    if (this.h) checkRc('xenforeignmemory_restrict', this.b.k, this.b.fns.xenforeignmemory_restrict!(this.h, domid));
  }
  close(): void {
    if (this.h) this.b.fns.xenforeignmemory_close!(this.h);
    this.h = null;
  }
}

function nativeMapping(k: KoffiModule, p: object, pages: number, unmap: () => unknown): ForeignMapping {
  let mapped = true;
  return {
    bytes: new Uint8Array(k.view(p, pages * PAGE_SIZE)),
    pages,
    unmap() {
      if (!mapped) return;
      mapped = false;
      unmap();
    },
  };
}

/** The Xen platform over the real libraries. Binding happens on first use. */
export class NativeXenPlatform implements XenPlatform {
  readonly kind = 'xen' as const;
  private xs: object | null = null;
  private b(): Bound {
    return bindXenLibraries();
  }
  openDeviceModel(): DeviceModelHandle {
    return new NativeDeviceModel(this.b());
  }
  openEventChannel(): EventChannelHandle {
    return new NativeEventChannel(this.b());
  }
  openForeignMemory(): ForeignMemoryHandle {
    return new NativeForeignMemory(this.b());
  }
  /** /local/domain/<domid> disappears from xenstore when the tool stack destroys the domain. */
  domainAlive(domid: number): boolean {
    const b = this.b();
    if (!this.xs) {
      this.xs = (b.fns.xs_open!(0) as object | null) ?? null;
      if (!this.xs) return true; // no xenstore access: cannot tell, assume alive
    }
    const len = new Uint32Array(1);
    const v = b.fns.xs_read!(this.xs, 0, `/local/domain/${domid}/domid`, len) as object | null;
    if (!v) return false;
    b.fns.free!(v);
    return true;
  }
}
