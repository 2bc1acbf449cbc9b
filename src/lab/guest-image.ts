/**
 * The lab guest: the host's Debian kernel (/boot/vmlinuz-<ver>) and an
 * initramfs built here from busybox-static, the /init script and the
 * kernel modules the USB/HID stack needs (resolved with modules.dep,
 * stored uncompressed). The initramfs is cached under `.cache/lab/`
 * keyed by everything that goes into it.
 */
import { UserFacingError } from '../platform/user-facing-error.js';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { buildCpio, type CpioEntry } from './cpio.js';
import { GUEST_INIT } from './guest-init.js';

/** Modules loaded by default (the USB host + HID input stack, evdev for /dev/input). */
export const DEFAULT_MODULES = ['usb-common', 'usbcore', 'uhci-hcd', 'hid', 'usbhid', 'hid-generic', 'evdev'];

/** Something the guest image needs is missing on this host (user-facing). */
export class GuestImageError extends UserFacingError {}

export interface GuestImageOptions {
  /** Extra modules (names as modprobe takes them) on top of DEFAULT_MODULES. */
  modules?: readonly string[];
  /** Guest shell script run after the report (contents). */
  script?: string;
  /** Kernel image; default: the newest /boot/vmlinuz-* with a /lib/modules tree. */
  kernel?: string;
  busybox?: string;
  cacheDir?: string;
}

export interface GuestImage {
  kernel: string;
  kernelVersion: string;
  initrd: string;
  /** Module files in load order (paths relative to /lib/modules/<ver>). */
  modules: string[];
  cached: boolean;
}

/** The repository root (where package.json is), for the default cache dir. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

const normalize = (name: string) => name.replace(/-/g, '_');
const moduleName = (path: string) => normalize(basename(path).replace(/\.ko(\.(xz|zst|gz))?$/, ''));

/**
 * Parse modules.dep ("path: dep1 dep2 ...") and return the files for
 * `wanted` with their dependencies, each after everything it depends on.
 */
export function resolveModules(modulesDep: string, wanted: readonly string[]): string[] {
  const deps = new Map<string, { path: string; deps: string[] }>();
  for (const line of modulesDep.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon).trim();
    const list = line.slice(colon + 1).trim();
    deps.set(moduleName(path), { path, deps: list ? list.split(/\s+/) : [] });
  }
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string, chain: string[]) => {
    const m = deps.get(name);
    if (!m) throw new GuestImageError(`kernel module '${name}' not found in modules.dep${chain.length ? ` (needed by ${chain.join(' <- ')})` : ''}`);
    if (seen.has(m.path)) return;
    seen.add(m.path);
    // modules.dep lists the full closure, innermost dependencies last.
    for (const d of [...m.deps].reverse()) visit(moduleName(d), [name, ...chain]);
    order.push(m.path);
  };
  for (const w of wanted) visit(normalize(w), []);
  return order;
}

function decompress(path: string): Uint8Array {
  const raw = readFileSync(path);
  if (path.endsWith('.ko')) return raw;
  if (path.endsWith('.gz')) return gunzipSync(raw);
  const tool = path.endsWith('.xz') ? 'xz' : path.endsWith('.zst') ? 'zstd' : null;
  if (!tool) throw new GuestImageError(`unknown module format: ${path}`);
  try {
    return execFileSync(tool, ['-dc', path], { maxBuffer: 64 << 20 });
  } catch (e) {
    throw new GuestImageError(`cannot decompress ${path} with ${tool}: ${(e as Error).message}`);
  }
}

/** The newest kernel in /boot that has a matching /lib/modules directory. */
export function findKernel(): { kernel: string; version: string } {
  const candidates = existsSync('/boot') ? readdirSync('/boot').filter((f) => /^vmlinuz-.+/.test(f)) : [];
  const found = candidates
    .map((f) => ({ kernel: join('/boot', f), version: f.slice('vmlinuz-'.length) }))
    .filter((k) => existsSync(join('/lib/modules', k.version, 'modules.dep')))
    .sort((a, b) => b.version.localeCompare(a.version, undefined, { numeric: true }));
  if (!found.length) {
    throw new GuestImageError('no /boot/vmlinuz-* with /lib/modules/<version>/modules.dep: install a kernel (Debian: apt-get install linux-image-amd64)');
  }
  return found[0]!;
}

function fileStamp(path: string): string {
  const s = statSync(path);
  return `${path}:${s.size}:${s.mtimeMs}`;
}

/** Build (or reuse from the cache) the lab initramfs. */
export function prepareGuestImage(opts: GuestImageOptions = {}): GuestImage {
  const { kernel, version } = opts.kernel
    ? { kernel: opts.kernel, version: basename(opts.kernel).replace(/^vmlinuz-/, '') }
    : findKernel();
  if (!existsSync(kernel)) throw new GuestImageError(`kernel ${kernel} not found`);
  const modDir = join('/lib/modules', version);
  if (!existsSync(join(modDir, 'modules.dep'))) throw new GuestImageError(`${modDir}/modules.dep not found for kernel ${kernel}`);
  const busybox = opts.busybox ?? ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!busybox || !existsSync(busybox)) throw new GuestImageError('busybox not found: install busybox-static (apt-get install busybox-static)');
  const modules = resolveModules(readFileSync(join(modDir, 'modules.dep'), 'utf8'), [...DEFAULT_MODULES, ...(opts.modules ?? [])]);

  const key = createHash('sha256')
    .update(['v1', fileStamp(kernel), fileStamp(busybox), ...modules.map((m) => fileStamp(join(modDir, m))), GUEST_INIT, opts.script ?? ''].join('\n'))
    .digest('hex')
    .slice(0, 16);
  const cacheDir = opts.cacheDir ?? join(repoRoot(), '.cache', 'lab');
  const initrd = join(cacheDir, `initramfs-${key}.cpio`);
  if (existsSync(initrd)) return { kernel, kernelVersion: version, initrd, modules, cached: true };

  const bb = readFileSync(busybox);
  if (!isStaticElf(bb)) {
    throw new GuestImageError(`${busybox} is dynamically linked; the guest needs busybox-static (apt-get install busybox-static)`);
  }
  const enc = new TextEncoder();
  const names = modules.map((m) => basename(m).replace(/\.ko(\.(xz|zst|gz))?$/, ''));
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys', 'tmp', 'lab', 'lib', 'lib/modules'].map((p) => ({ type: 'dir' as const, path: p })),
    { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    { type: 'file', path: 'bin/busybox', data: bb, mode: 0o755 },
    { type: 'symlink', path: 'bin/sh', target: 'busybox' },
    { type: 'file', path: 'init', data: enc.encode(GUEST_INIT), mode: 0o755 },
    { type: 'file', path: 'lab/modules', data: enc.encode(names.join('\n') + '\n') },
    ...modules.map((m, i) => ({ type: 'file' as const, path: `lib/modules/${names[i]}.ko`, data: decompress(join(modDir, m)) })),
  ];
  if (opts.script !== undefined) entries.push({ type: 'file', path: 'lab/user.sh', data: enc.encode(opts.script), mode: 0o755 });
  mkdirSync(cacheDir, { recursive: true });
  const tmp = `${initrd}.${process.pid}.tmp`;
  writeFileSync(tmp, buildCpio(entries));
  renameSync(tmp, initrd);
  return { kernel, kernelVersion: version, initrd, modules, cached: false };
}

/** An ELF executable without a PT_INTERP program header (statically linked). */
function isStaticElf(b: Uint8Array): boolean {
  if (b.length < 64 || b[0] !== 0x7f || b[1] !== 0x45 || b[4] !== 2) return true; // not ELF64: let the guest decide
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const phoff = Number(dv.getBigUint64(32, true));
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  for (let i = 0; i < phnum; i++) {
    if (dv.getUint32(phoff + i * phentsize, true) === 3) return false; // PT_INTERP
  }
  return true;
}

/*
 * The host's files in the guest (virtio-9p). QEMU exports the host root
 * read-only (`-virtfs local,path=/,...,readonly=on`); the guest mounts it
 * and chroots into it with its own /dev, /proc and /sys bind-mounted, so
 * that the host's node (and this repository's dist/ and node_modules/)
 * run inside the guest against the guest's kernel.
 */

/** The 9p mount tag of the host root. */
export const HOST_ROOT_TAG = 'hostroot';

/** Modules the guest needs for the 9p mount (dependencies are resolved from modules.dep). */
export const HOST_ROOT_MODULES: readonly string[] = ['virtio_pci', '9pnet_virtio', '9p'];

/** QEMU arguments exporting the host root read-only to the guest. */
export function hostRootQemuArgs(path = '/'): string[] {
  return ['-virtfs', `local,path=${path},mount_tag=${HOST_ROOT_TAG},security_model=none,readonly=on,multidevs=remap`];
}

/**
 * Guest shell lines that mount the host root at `mnt` (with /dev, /proc,
 * /sys bind-mounted and a tmpfs on /tmp) so `chroot mnt cmd` runs the
 * host's programs. Prints `@@LAB:hostroot-failed` if the mount fails.
 */
export function hostRootMountScript(mnt = '/host', keep: string = repoRoot()): string {
  return [
    `mkdir -p ${mnt}`,
    `mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose ${HOST_ROOT_TAG} ${mnt} || echo "@@LAB:hostroot-failed"`,
    `mount --bind /dev ${mnt}/dev && mount --bind /proc ${mnt}/proc && mount --bind /sys ${mnt}/sys`,
    // The repository may live under /tmp (CI clones anywhere): keep it visible
    // through the tmpfs that covers the host's /tmp in the chroot.
    `mkdir -p /repo-keep && mount --bind ${mnt}${keep} /repo-keep`,
    `mount -t tmpfs tmpfs ${mnt}/tmp`,
    `[ -d ${mnt}${keep} ] || { mkdir -p ${mnt}${keep} && mount --bind /repo-keep ${mnt}${keep}; }`,
    `[ -d ${mnt}/dev/shm ] && mount -t tmpfs tmpfs ${mnt}/dev/shm`,
    '',
  ].join('\n');
}
