/**
 * Whether a domain's vCPUs have ever run, from the hypervisor's domain info
 * (libxenctrl xc_domain_getinfolist, XEN_DOMCTL_getdomaininfo). The wrapper
 * asks it before adding a controller: libxl adds usbctrl controllers while a
 * new domain is still paused and has not run, which needs no PCI hot plug.
 *
 * Layout (Xen 4.17 xen/include/public/domctl.h, struct
 * xen_domctl_getdomaininfo, x86-64): domid_t domain @0, uint32_t flags @4
 * (XEN_DOMINF_dying = bit 0), then uint64_aligned_t tot_pages, max_pages,
 * outstanding_pages, shr_pages, paged_pages, shared_info_frame @8..@48, and
 * uint64_aligned_t cpu_time (ns of vCPU time consumed) @56.
 */
import { bindXenLibraries } from './xen-libs.js';
import { XenUnavailableError } from './platform.js';

const INFO_BYTES = 512; // > sizeof(xc_domaininfo_t) in 4.17 (~ 200 bytes with the arch config)
const OFF_FLAGS = 4;
const OFF_CPU_TIME = 56;
const XEN_DOMINF_DYING = 1 << 0;

export interface DomainRunInfo {
  exists: boolean;
  dying: boolean;
  /** ns of vCPU time the domain consumed: 0 until it first runs. */
  cpuTimeNs: bigint;
}

interface KoffiLike {
  load(path: string): { func(decl: string): (...a: unknown[]) => unknown };
}

export class DomainInfoReader {
  private constructor(
    private readonly xch: unknown,
    private readonly getinfolist: (...a: unknown[]) => unknown,
  ) {}

  /** Open libxenctrl (Debian: libxenctrl.so.4.17, package libxen-dev / libxenmisc). */
  static open(): DomainInfoReader {
    const k = bindXenLibraries().k as unknown as KoffiLike;
    let lib: ReturnType<KoffiLike['load']>;
    try {
      lib = k.load('libxenctrl.so.4.17');
    } catch (e) {
      throw new XenUnavailableError(`cannot load libxenctrl.so.4.17: ${(e as Error).message.split('\n')[0]}`);
    }
    const open = lib.func('void *xc_interface_open(void *logger, void *dombuild_logger, unsigned int open_flags)');
    const getinfolist = lib.func('int xc_domain_getinfolist(void *xch, uint32_t first_domain, unsigned int max_domains, _Out_ uint8_t *info)');
    const xch = open(null, null, 0);
    if (!xch) throw new XenUnavailableError('xc_interface_open failed: cannot reach the hypervisor');
    return new DomainInfoReader(xch, getinfolist);
  }

  read(domid: number): DomainRunInfo {
    const buf = new Uint8Array(INFO_BYTES);
    const n = Number(this.getinfolist(this.xch, domid, 1, buf));
    const dv = new DataView(buf.buffer);
    if (n < 1 || dv.getUint16(0, true) !== domid) return { exists: false, dying: false, cpuTimeNs: 0n };
    return { exists: true, dying: (dv.getUint32(OFF_FLAGS, true) & XEN_DOMINF_DYING) !== 0, cpuTimeNs: dv.getBigUint64(OFF_CPU_TIME, true) };
  }
}
