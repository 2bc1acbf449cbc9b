/**
 * What an ioreq server needs from Xen, as three handles shaped like the Xen
 * 4.17 tool libraries it is built on (libxendevicemodel, libxenevtchn,
 * libxenforeignmemory) plus a liveness check (xenstore). Two
 * implementations: the real one binds the libraries by FFI (xen-libs.ts); the
 * simulated hypervisor (sim/) implements the same calls in memory for tests.
 *
 * Numbers follow the C API: domid_t/ioservid_t are u16, evtchn ports u32,
 * pfns are numbers (a 52-bit pfn fits a double exactly).
 */
import { UserFacingError } from '../platform/user-facing-error.js';

/** HVM_IOREQSRV_BUFIOREQ_* (xen/include/public/hvm/dm_op.h). */
export const HVM_IOREQSRV_BUFIOREQ_OFF = 0;
export const HVM_IOREQSRV_BUFIOREQ_LEGACY = 1;
export const HVM_IOREQSRV_BUFIOREQ_ATOMIC = 2;

/** XENMEM_resource_ioreq_server and its frame numbers (xen/include/public/memory.h). */
export const XENMEM_RESOURCE_IOREQ_SERVER = 0;
export const XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ = 0;
export const xenmemResourceIoreqServerFrameIoreq = (n: number): number => 1 + n;

/** mmap protections (sys/mman.h). */
export const PROT_READ = 1;
export const PROT_WRITE = 2;

/** A Xen library call failed. `errno` is the C errno after the call (0 if unknown). */
export class XenCallError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
    detail = '',
  ) {
    super(`${call} failed${errno ? ` (errno ${errno})` : ''}${detail ? `: ${detail}` : ''}`);
    this.name = 'XenCallError';
  }
}

/**
 * Xen cannot be used from this process: the libraries are missing, koffi is
 * missing, or a handle could not be opened (no /dev/xen/privcmd — not dom0,
 * or not root). User-facing: the CLI prints the message as one line.
 */
export class XenUnavailableError extends UserFacingError {}

/** Memory owned by the other side (foreign mapping, resource mapping). */
export interface ForeignMapping {
  /** The mapped bytes (aliases the guest's frames: writes are visible to it). */
  readonly bytes: Uint8Array;
  readonly pages: number;
  unmap(): void;
}

/** libxendevicemodel: device-model operations (DMOPs) on one domain. */
export interface DeviceModelHandle {
  createIoreqServer(domid: number, handleBufioreq: number): number;
  /** The buffered-ioreq event channel (remote port in the guest's domain), if the server has one. */
  getBufioreqPort(domid: number, id: number): number;
  /** Legacy path: guest frame numbers of the ioreq / buffered pages (maps them into the guest's physmap). */
  getIoreqServerGfns(domid: number, id: number): { ioreqGfn: number; bufioreqGfn: number };
  /** [start, end] inclusive, as xendevicemodel_map_io_range_to_ioreq_server. */
  mapIoRange(domid: number, id: number, isMmio: boolean, start: number, end: number): void;
  unmapIoRange(domid: number, id: number, isMmio: boolean, start: number, end: number): void;
  mapPcidev(domid: number, id: number, segment: number, bus: number, device: number, fn: number): void;
  unmapPcidev(domid: number, id: number, segment: number, bus: number, device: number, fn: number): void;
  setIoreqServerState(domid: number, id: number, enabled: boolean): void;
  destroyIoreqServer(domid: number, id: number): void;
  /** intx 0..3 = INTA..INTD. */
  setPciIntxLevel(domid: number, segment: number, bus: number, device: number, intx: number, level: boolean): void;
  /** Report `nr` guest frames from `firstPfn` as written by the device model (log-dirty / live migration). */
  modifiedMemory(domid: number, firstPfn: number, nr: number): void;
  nrVcpus(domid: number): number;
  /** Restrict this handle to operations on `domid` only (irreversible). */
  restrict(domid: number): void;
  close(): void;
}

/** libxenevtchn: one handle, any number of bound ports. */
export interface EventChannelHandle {
  /** Bind a local port to `remotePort` in `domid`; returns the local port. */
  bindInterdomain(domid: number, remotePort: number): number;
  unbind(localPort: number): void;
  notify(localPort: number): void;
  unmask(localPort: number): void;
  /**
   * Deliver pending ports to `onPort` as they fire, on the event loop (never
   * blocking it). A port stays masked after delivery until `unmask`.
   */
  watch(onPort: (localPort: number) => void): void;
  /** Stop delivering; resolves when no delivery is in flight (e.g. a poll on a worker thread). */
  unwatch(): Promise<void>;
  restrict(domid: number): void;
  close(): void;
}

/** libxenforeignmemory. */
export interface ForeignMemoryHandle {
  /** Map guest frames (4 KiB each); throws XenCallError if any frame fails. */
  map(domid: number, prot: number, pfns: readonly number[]): ForeignMapping;
  /** Map frames of a resource (e.g. XENMEM_resource_ioreq_server pages). */
  mapResource(domid: number, type: number, id: number, frame: number, nrFrames: number, prot: number): ForeignMapping;
  restrict(domid: number): void;
  close(): void;
}

export interface XenPlatform {
  readonly kind: 'xen' | 'simulated';
  openDeviceModel(): DeviceModelHandle;
  openEventChannel(): EventChannelHandle;
  openForeignMemory(): ForeignMemoryHandle;
  /** Whether the domain still exists (xenstore /local/domain/N). */
  domainAlive(domid: number): boolean;
}
