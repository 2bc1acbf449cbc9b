/**
 * Xen lab: boot real Xen 4.17 (Debian xen-hypervisor-4.17-amd64) under
 * QEMU TCG from a GRUB rescue ISO, with a PV dom0 (the host's Debian
 * kernel, a busybox initramfs that chroots into the host's root exported
 * read-only over virtio-9p), and in dom0 run an HVM domU whose UHCI
 * function is served by uhci-dm as a real ioreq server (`uhci-dm xen
 * --domid N`). Optionally a reference domU first, with QEMU-xen's own
 * UHCI (`usb = 1`, `usbdevice = ["tablet"]`), to compare what Linux sees.
 *
 * Measured here (2-core machine, TCG): dom0 ready 1–2 min after start;
 * `xl create` of the HVM domU ~5 s; the reference domU's Linux enumerates
 * QEMU-xen's tablet at ~18 s of guest uptime.
 *
 * Apt packages: xen-hypervisor-4.17-amd64 xen-utils-4.17 qemu-system-xen
 * grub-pc-bin grub-common xorriso mtools linux-image-amd64 busybox-static.
 */
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, writeSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { buildCpio, type CpioEntry } from './cpio.js';
import { findKernel, prepareGuestImage, repoRoot, resolveModules } from './guest-image.js';
import { GuestReportParser, type GuestReport } from './lab-report.js';
import { DOM0_9P_MODULES, DOM0_INIT, DOM0_LABDIR, XEN_HOSTROOT_TAG, XEN_LABDIR_TAG, dom0Scenario, domUConfig } from './xen-dom0.js';

/** Something the Xen lab needs is missing on this host (user-facing). */
export class XenLabError extends Error {
  readonly userFacing = true;
  constructor(msg: string) {
    super(msg);
    this.name = 'XenLabError';
  }
}

export interface XenLabOptions {
  /** Run the reference domU with QEMU-xen's own UHCI + tablet first (default true). */
  reference?: boolean;
  /** Devices for uhci-dm (`-usbdevice` values), default tablet + keyboard. */
  devices?: readonly string[];
  /** Whole-run timeout in seconds (default 540). */
  timeout?: number;
  /** Seconds each domU may run before it is destroyed (default 150). */
  domUTimeout?: number;
  /** Run uhci-dm under gdb in dom0 (debugging crashes; output in uhci-dm.stdout). */
  gdb?: boolean;
  /** Run uhci-dm under strace in dom0 (output in uhci-dm.strace). */
  strace?: boolean;
  /** Progress lines (phase names with seconds since start). */
  progress?: (line: string) => void;
  /** Keep the work directory (default: kept; it holds the logs). */
  workDir?: string;
  cacheDir?: string;
  xenImage?: string;
  qemu?: string;
}

export interface XenLabResult {
  /** Seconds since start at which each `@@XEN:` marker was seen. */
  phases: Record<string, number>;
  reference: GuestReport | null;
  dm: GuestReport;
  /** Exit code of uhci-dm (null: never reported). */
  uhciDmExit: number | null;
  /** uhci-dm's JSON log records. */
  uhciDmLog: Record<string, unknown>[];
  /** Everything from the outer QEMU's serial (Xen + dom0 console). */
  serial: string;
  workDir: string;
  elapsed: number;
}

const XEN_CMDLINE = 'console=com1 com1=115200 dom0_mem=1024M smap=0 smep=0 noreboot loglvl=all guest_loglvl=all';

function stamp(path: string): string {
  const s = statSync(path);
  return `${path}:${s.size}:${s.mtimeMs}`;
}

function need(path: string, pkg: string): string {
  if (!existsSync(path)) throw new XenLabError(`${path} not found: apt-get install ${pkg}`);
  return path;
}

function decompressModule(path: string): Uint8Array {
  if (path.endsWith('.ko')) return readFileSync(path);
  if (path.endsWith('.gz')) return gunzipSync(readFileSync(path));
  const tool = path.endsWith('.xz') ? 'xz' : 'zstd';
  return execFileSync(tool, ['-dc', path], { maxBuffer: 64 << 20 });
}

/** The dom0 initramfs: busybox, /init (DOM0_INIT) and the virtio/9p modules. Cached. */
export function prepareDom0Initrd(cacheDir: string, kernelVersion: string): string {
  const modDir = join('/lib/modules', kernelVersion);
  const busybox = need('/bin/busybox', 'busybox-static');
  const modules = resolveModules(readFileSync(join(modDir, 'modules.dep'), 'utf8'), DOM0_9P_MODULES);
  const key = createHash('sha256')
    .update(['dom0-v1', stamp(busybox), ...modules.map((m) => stamp(join(modDir, m))), DOM0_INIT].join('\n'))
    .digest('hex')
    .slice(0, 16);
  const out = join(cacheDir, `dom0-initrd-${key}.cpio`);
  if (existsSync(out)) return out;
  const enc = new TextEncoder();
  const names = modules.map((m) => basename(m).replace(/\.ko(\.(xz|zst|gz))?$/, ''));
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys', 'tmp', 'lab', 'lib', 'lib/modules', 'host'].map((p) => ({ type: 'dir' as const, path: p })),
    { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    { type: 'file', path: 'bin/busybox', data: readFileSync(busybox), mode: 0o755 },
    { type: 'symlink', path: 'bin/sh', target: 'busybox' },
    { type: 'file', path: 'init', data: enc.encode(DOM0_INIT), mode: 0o755 },
    { type: 'file', path: 'lab/modules', data: enc.encode(names.join('\n') + '\n') },
    ...modules.map((m, i) => ({ type: 'file' as const, path: `lib/modules/${names[i]}.ko`, data: decompressModule(join(modDir, m)) })),
  ];
  mkdirSync(cacheDir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, buildCpio(entries));
  renameSync(tmp, out);
  return out;
}

/** The GRUB rescue ISO booting Xen with the dom0 kernel and initramfs. Cached. */
export function prepareXenIso(cacheDir: string, xenImage: string, kernel: string, dom0Initrd: string): string {
  need('/usr/bin/grub-mkrescue', 'grub-common grub-pc-bin');
  need('/usr/lib/grub/i386-pc', 'grub-pc-bin');
  need('/usr/bin/xorriso', 'xorriso');
  const grubCfg = [
    'set timeout=0',
    'set default=0',
    'serial --unit=0 --speed=115200',
    'terminal_input serial',
    'terminal_output serial',
    'menuentry "Xen lab" {',
    `  multiboot2 /boot/xen.gz ${XEN_CMDLINE}`,
    '  module2 /boot/vmlinuz console=hvc0 earlyprintk=xen',
    '  module2 /boot/dom0-initrd',
    '}',
    '',
  ].join('\n');
  const key = createHash('sha256')
    .update(['iso-v1', stamp(xenImage), stamp(kernel), dom0Initrd, grubCfg].join('\n'))
    .digest('hex')
    .slice(0, 16);
  const iso = join(cacheDir, `xen-${key}.iso`);
  if (existsSync(iso)) return iso;
  const dir = mkdtempSync(join(cacheDir, 'iso-'));
  try {
    mkdirSync(join(dir, 'boot', 'grub'), { recursive: true });
    writeFileSync(join(dir, 'boot', 'grub', 'grub.cfg'), grubCfg);
    copyFileSync(xenImage, join(dir, 'boot', 'xen.gz'));
    copyFileSync(kernel, join(dir, 'boot', 'vmlinuz'));
    copyFileSync(dom0Initrd, join(dir, 'boot', 'dom0-initrd'));
    const tmp = `${iso}.${process.pid}.tmp`;
    try {
      execFileSync('grub-mkrescue', ['-o', tmp, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const err = (e as { stderr?: Buffer }).stderr?.toString() ?? (e as Error).message;
      throw new XenLabError(`grub-mkrescue failed (needs grub-pc-bin, xorriso, mtools): ${err.slice(-500)}`);
    }
    renameSync(tmp, iso);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return iso;
}

/** The guest's report from its PV console log (xenconsoled) or, failing that, the serial capture. */
function parseConsole(workDir: string, name: string): GuestReport | null {
  for (const f of [`guest-${name}.log`, `${name}.console`]) {
    const path = join(workDir, f);
    if (!existsSync(path)) continue;
    const p = new GuestReportParser();
    for (const l of readFileSync(path, 'utf8').split('\n')) p.line(l);
    if (p.report.booted) return p.report;
  }
  return null;
}

/** Boot Xen under QEMU TCG and run the scenario (see xen-dom0.ts). */
export async function runXenLab(opts: XenLabOptions = {}): Promise<XenLabResult> {
  const t0 = Date.now();
  const since = () => Math.round((Date.now() - t0) / 100) / 10;
  const progress = opts.progress ?? (() => undefined);
  const root = repoRoot();
  const cacheDir = opts.cacheDir ?? join(root, '.cache', 'xen-lab');
  mkdirSync(cacheDir, { recursive: true });
  const xenImage = need(opts.xenImage ?? '/boot/xen-4.17-amd64.gz', 'xen-hypervisor-4.17-amd64');
  need('/usr/sbin/xl', 'xen-utils-4.17');
  need('/usr/lib/xen-4.17/boot/hvmloader', 'xen-utils-4.17');
  const qemu = opts.qemu ?? 'qemu-system-x86_64';
  const uhciDmBin = join(root, 'bin', 'uhci-dm.js');
  if (!existsSync(join(root, 'dist', 'src', 'cli', 'main.js'))) throw new XenLabError(`${root}/dist is not built: run npx tsc -p .`);

  const { kernel, version } = findKernel();
  const dom0Initrd = prepareDom0Initrd(cacheDir, version);
  const iso = prepareXenIso(cacheDir, xenImage, kernel, dom0Initrd);
  const domU = prepareGuestImage({ cacheDir, kernel });
  progress(`[${since()}s] images ready (iso ${basename(iso)}, domU initrd ${basename(domU.initrd)})`);

  const workDir = opts.workDir ?? mkdtempSync(join(cacheDir, 'run-'));
  mkdirSync(workDir, { recursive: true });
  const devices = opts.devices ?? ['tablet', 'keyboard'];
  const reference = opts.reference ?? true;
  const domUTimeout = opts.domUTimeout ?? 240;
  const extra = (n: number) => `lab.devices=${n} lab.inputs=${n} lab.wait=90 lab.evwait=1`;
  writeFileSync(join(workDir, 'ref.cfg'), domUConfig({ name: 'ref', kernel, ramdisk: domU.initrd, extra: extra(1), qemuUsbDevices: ['tablet'] }));
  writeFileSync(join(workDir, 'dm.cfg'), domUConfig({ name: 'dm', kernel, ramdisk: domU.initrd, extra: extra(devices.length) }));
  const dmArgs = [...devices.flatMap((d) => ['-usbdevice', d]), '--record', `${DOM0_LABDIR}/xen.uhcitrace.gz`, '--log-json', '--verbose'];
  writeFileSync(join(workDir, 'dom0.sh'), dom0Scenario({ gdb: opts.gdb, strace: opts.strace, reference, uhciDmArgs: dmArgs, uhciDmBin, controlClient: join(root, 'scripts', 'xen-lab', 'control.mjs'), domUTimeout, dmExitTimeout: 30 }));

  const args = [
    '-accel', 'tcg', '-cpu', 'max,avx=off,avx2=off', '-smp', '2', '-m', '3072', '-nodefaults', '-nographic', '-serial', 'stdio', '-no-reboot',
    '-cdrom', iso,
    '-virtfs', `local,path=/,mount_tag=${XEN_HOSTROOT_TAG},security_model=none,readonly=on,multidevs=remap`,
    '-virtfs', `local,path=${workDir},mount_tag=${XEN_LABDIR_TAG},security_model=none`,
  ];
  const phases: Record<string, number> = {};
  let serial = '';
  const timeout = (opts.timeout ?? 540) * 1000;
  await new Promise<void>((resolve, reject) => {
    const child = spawn(qemu, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let buf = '';
    let done = false;
    const live = openSync(join(workDir, 'serial.log'), 'w');
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => {
      progress(`[${since()}s] timeout: killing QEMU`);
      phases['timeout'] = since();
      finish();
    }, timeout);
    const onLine = (line: string) => {
      if (/^\(XEN\) Xen version|^\(XEN\) HVM: Hardware|virt_caps|Freed \d+kB init memory/.test(line)) progress(`[${since()}s] ${line.trim()}`);
      const m = /@@XEN:(\S+)(.*)$/.exec(line);
      if (!m) return;
      const kw = m[1]!;
      if (!(kw in phases)) phases[kw] = since();
      progress(`[${since()}s] ${kw}${m[2]}`);
      if (kw === 'done' || kw === 'hostroot-failed') setTimeout(finish, 500);
    };
    child.stdout.on('data', (d: Buffer) => {
      const s = d.toString('latin1');
      serial += s;
      writeSync(live, d);
      buf += s;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i).replace(/\r/g, ''));
        buf = buf.slice(i + 1);
      }
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new XenLabError(`cannot run ${qemu}: ${e.message}`));
    });
    child.on('exit', () => {
      done = true;
      clearTimeout(timer);
      closeSync(live);
      if (stderr.trim()) writeFileSync(join(workDir, 'qemu-stderr.log'), stderr);
      resolve();
    });
  });

  const uhciDmLog: Record<string, unknown>[] = [];
  const logPath = join(workDir, 'uhci-dm.log');
  if (existsSync(logPath)) {
    for (const l of readFileSync(logPath, 'utf8').split('\n')) {
      if (!l.trim()) continue;
      try {
        uhciDmLog.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        uhciDmLog.push({ raw: l });
      }
    }
  }
  const exitMatch = /@@XEN:uhci-dm-exit (\d+)/.exec(serial);
  const dm = parseConsole(workDir, 'dm') ?? new GuestReportParser().report;
  return {
    phases,
    reference: reference ? parseConsole(workDir, 'ref') : null,
    dm,
    uhciDmExit: exitMatch ? Number(exitMatch[1]) : null,
    uhciDmLog,
    serial,
    workDir,
    elapsed: since(),
  };
}
