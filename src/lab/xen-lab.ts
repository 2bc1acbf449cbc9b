/**
 * Xen lab: boot real Xen 4.17 (Debian xen-hypervisor-4.17-amd64) under
 * QEMU TCG from a GRUB rescue ISO, with a PV dom0 (the host's Debian
 * kernel, a busybox initramfs that chroots into the host's root exported
 * read-only over virtio-9p), and in dom0 run an HVM domU whose UHCI
 * function is served by uhci-dm as a real ioreq server (`uhci-dm xen
 * --domid N`). Optionally a reference domU first, with QEMU-xen's own
 * UHCI (`usb = 1`, `usbdevice = ["tablet"]`), to compare what Linux sees.
 *
 * Measured here (2-core machine shared with other QEMU jobs, load 4-8):
 * dom0 ready 30-100 s after start; `xl create` 5-50 s; SeaBIOS's linuxboot
 * ROM loads kernel + initramfs over fw_cfg in ~2 min per domU; Linux then
 * reports its USB devices at 5-10 s of guest uptime (60 s when dom0 was
 * busy); uhci-dm starts in ~40 s (node over 9p); whole run 330-560 s.
 * The domUs report over port 0xE9 (xen-domu.ts); each phase's time since
 * start is in XenLabResult.phases.
 *
 * Apt packages: xen-hypervisor-4.17-amd64 xen-utils-4.17 qemu-system-xen
 * qemu-system-x86 grub-pc-bin grub-common xorriso mtools linux-image-amd64
 * busybox-static cpio.
 */
import { UserFacingError } from '../platform/user-facing-error.js';
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, writeSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { buildCpio, type CpioEntry } from './cpio.js';
import { findKernel, prepareGuestImage, repoRoot, resolveModules } from './guest-image.js';
import { GuestReportParser, type GuestReport } from './lab-report.js';
import { DOM0_9P_MODULES, DOM0_INIT, DOM0_LABDIR, XEN_HOSTROOT_TAG, XEN_LABDIR_TAG, dom0Scenario, domUConfig } from './xen-dom0.js';
import { XenGuestChannel, prepareXenDomUInitrd } from './xen-domu.js';
import { dom0DropInScenario, dropInConfigLines } from './xen-dropin.js';
import { afterRestorePlan, defaultPlan, qmpInputEvents, type InputAction, type LabDeviceKind } from './input-plan.js';
import { parseDeviceSpec } from '../xen/usb-ports.js';
import { SOURCESINK_GADGET, sourceSinkGadgetScript } from './passthrough-lab.js';

/** Something the Xen lab needs is missing on this host (user-facing). */
export class XenLabError extends UserFacingError {}

export interface XenLabOptions {
  /** Run the reference domU with QEMU-xen's own UHCI + tablet first (default true). */
  reference?: boolean;
  /**
   * Devices for uhci-dm: `-usbdevice` values, or `-device` values (names
   * starting with usb-). Default: a tablet with QEMU-xen's serial "42" (the
   * reference's tablet, so the guest sees the same device) and a keyboard.
   */
  devices?: readonly string[];
  /** Whole-run timeout in seconds (default 540). */
  timeout?: number;
  /** Seconds each domU may run before it is destroyed (default 300). */
  domUTimeout?: number;
  /** After the input, xl save / xl restore the domU with uhci-dm following, then input again (default true). */
  saveRestore?: boolean;
  /**
   * Host passthrough under Xen (needs saveRestore): dom0 gets a USB gadget
   * (dummy_hcd + the configfs SourceSink gadget, 0525:a4a0); after the input
   * that follows the restore, the keyboard is hot-removed and the gadget
   * hot-added in its place through libusb (default true).
   */
  hostPassthrough?: boolean;
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
  /** Extra Xen command-line options (appended to XEN_CMDLINE). */
  xenArgs?: string;
  /** Outer QEMU `-cpu` model (default OUTER_CPU). */
  cpu?: string;
  /** Outer QEMU vCPUs (default 2). */
  smp?: number;
  /** Outer QEMU `-accel` value (default `tcg`). */
  accel?: string;
  /**
   * The drop-in scenario instead of the hand procedure (xen-dropin.ts): the
   * domU's config is an ordinary one plus device_model_override, driven by xl
   * commands only. Implies no reference domU, save/restore and an
   * xl usbdev-attach of dom0's gadget.
   */
  dropIn?: boolean;
  /** Replace the scenario: this script runs chrooted in dom0 instead (e.g. dom0StressScript). */
  dom0Script?: string;
}

export interface XenLabResult {
  /** Seconds since start at which each `@@XEN:` marker was seen. */
  phases: Record<string, number>;
  reference: GuestReport | null;
  dm: GuestReport;
  /** Report lines of each domU that never arrived over port 0xE9 (line numbers). */
  lost: { ref: number[]; dm: number[] };
  /** Exit code of uhci-dm (with saveRestore: of the one serving the restored domain; null: never reported). */
  uhciDmExit: number | null;
  /** uhci-dm's JSON log records. */
  uhciDmLog: Record<string, unknown>[];
  /** With saveRestore: the restored domain's id, the first uhci-dm's exit code after the save, the second one's log. */
  restored: { domid: number | null; uhciDmExitAfterSave: number | null; uhciDmLog: Record<string, unknown>[] } | null;
  /** With hostPassthrough: the control-socket replies to usb_del + usb_add, and the USB address the guest gave the gadget (0: none). */
  hotplug: { replies: number; address: number; waitedMs: number } | null;
  /** Everything from the outer QEMU's serial (Xen + dom0 console). */
  serial: string;
  workDir: string;
  elapsed: number;
}

/**
 * Xen's command line. `smap=0 smep=0`: a PV dom0 faults at its first
 * instruction under TCG otherwise. `spec-ctrl=eager-fpu`: QEMU's TCG
 * XSAVE/XRSTOR ignore CR0.TS (no #NM; FXSAVE does check it), so Xen's lazy
 * FPU switching (its default on AMD, which `-cpu max` is) hands a vCPU
 * another vCPU's vector registers. Measured with the stress reproducer
 * (scripts/xen-lab/stress-run.mjs, 2 node processes in dom0 while an HVM
 * domU runs): without it both processes segfaulted within 150 s (as did
 * `xl`); with it both ran 175 s clean, with no FP or memory mismatch.
 * Without a domU dom0 ran clean either way (no vCPU switches on a pCPU).
 * `guest_loglvl=all`: the domUs' port-0xE9 output (their report) is printed;
 * `conring_size=256k`: dom0 finds a domU's @@LAB:ready in `xl dmesg`.
 */
const XEN_CMDLINE = 'console=com1 com1=115200 dom0_mem=1024M smap=0 smep=0 spec-ctrl=eager-fpu noreboot loglvl=all guest_loglvl=all conring_size=256k';

/**
 * The outer QEMU's CPU model: TCG's `max` offers SVM with NPT (Xen:
 * `virt_caps: pv hvm hap`). AVX is off from an earlier attempt at the dom0
 * crashes (it did not fix them; eager FPU did, see XEN_CMDLINE); the
 * measured runs use this model.
 */
export const OUTER_CPU = 'max,avx=off,avx2=off';

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
export function prepareXenIso(cacheDir: string, xenImage: string, kernel: string, dom0Initrd: string, xenArgs = '', keep = repoRoot()): string {
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
    `  multiboot2 /boot/xen.gz ${XEN_CMDLINE}${xenArgs ? ` ${xenArgs}` : ''}`,
    `  module2 /boot/vmlinuz console=hvc0 earlyprintk=xen lab.keep=${keep}`,
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

/** The emulated HID devices among uhci-dm device specs, by kind. */
function hidKinds(devices: readonly string[]): LabDeviceKind[] {
  return devices.map((d) => parseDeviceSpec(d).kind).filter((k): k is LabDeviceKind => k !== 'host');
}

/** uhci-dm command-line arguments for the device specs (-device for QEMU -device names, else -usbdevice). */
function deviceArgs(devices: readonly string[]): string[] {
  return devices.flatMap((d) => [d.startsWith('usb-') ? '-device' : '-usbdevice', d]);
}

/** One control-socket `input-send-event` command per action of the lab's input plan (input-plan.ts; afterRestorePlan when `plan` says so). */
export function inputCommands(devices: readonly string[], plan: (k: LabDeviceKind) => InputAction[] = defaultPlan): string[] {
  const kinds = hidKinds(devices);
  return kinds.flatMap((k) => plan(k).map((a) => JSON.stringify({ execute: 'input-send-event', arguments: { device: k, events: qmpInputEvents(a) } })));
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
  const iso = prepareXenIso(cacheDir, xenImage, kernel, dom0Initrd, opts.xenArgs);
  const domU = prepareGuestImage({ cacheDir, kernel });
  const domUInitrd = prepareXenDomUInitrd(cacheDir, domU.initrd);
  progress(`[${since()}s] images ready (iso ${basename(iso)}, domU initrd ${basename(domUInitrd)})`);

  const workDir = opts.workDir ?? mkdtempSync(join(cacheDir, 'run-'));
  mkdirSync(workDir, { recursive: true });
  const devices = opts.devices ?? ['usb-tablet,serial=42', 'keyboard'];
  const withSaveRestore = opts.saveRestore ?? true;
  const withPassthrough = opts.hostPassthrough ?? true;
  const kbdPort = devices.findIndex((d) => parseDeviceSpec(d).kind === 'keyboard') + 1;
  if (withPassthrough && (!withSaveRestore || kbdPort === 0)) throw new XenLabError('host passthrough in the Xen lab replaces the keyboard after the restore: it needs save/restore and a keyboard');
  const reference = opts.dropIn ? false : (opts.reference ?? true);
  const domUTimeout = opts.domUTimeout ?? 300;
  // The reference domU gets no input (evwait 1); the uhci-dm one reads input
  // events for 25 s after its @@LAB:ready, which dom0 sees by polling
  // `xl dmesg` (measured: input sent 2-3 s after ready); with save/restore
  // for 75 s of guest time (its clock stands still while it is saved; measured:
  // ~5 s before the save, input ~6 s and the hot-plug ~10 s after the unpause),
  // after which it reports its kernel log (the hot-plug) and powers off.
  const extra = (n: number, evwait: number) => `lab.devices=${n} lab.inputs=${n} lab.wait=120 lab.evwait=${evwait}`;
  writeFileSync(join(workDir, 'ref.cfg'), domUConfig({ name: 'ref', kernel, ramdisk: domUInitrd, extra: extra(1, 1), qemuUsbDevices: ['tablet'] }));
  writeFileSync(join(workDir, 'dm.cfg'), domUConfig({ name: 'dm', kernel, ramdisk: domUInitrd, extra: extra(devices.length, withSaveRestore ? 75 : 25) }));
  const dmArgs = [...deviceArgs(devices), '--record', `${DOM0_LABDIR}/xen.uhcitrace.gz`, '--log-json', '--verbose'];
  // After restore: the same devices (the snapshot re-creates them anyway), its own trace.
  const restoredArgs = [...deviceArgs(devices), ...(withPassthrough ? ['--host-usb'] : []), '--record', `${DOM0_LABDIR}/xen-restored.uhcitrace.gz`, '--log-json', '--verbose'];
  const G = SOURCESINK_GADGET;
  const hex4 = (n: number) => n.toString(16).padStart(4, '0');
  const hostPassthrough = withPassthrough
    ? { gadgetScript: sourceSinkGadgetScript('say gadget-bind-failed'), remove: 'keyboard', devname: `host:${hex4(G.vendorId)}:${hex4(G.productId)}`, port: kbdPort }
    : undefined;
  const hidDevices = hidKinds(devices).length;
  const saveRestore = withSaveRestore ? { uhciDmArgs: restoredArgs, inputCommands: inputCommands(devices, afterRestorePlan), hidDevices } : undefined;
  if (opts.dropIn) {
    const usbdevice = ['tablet', 'keyboard'];
    writeFileSync(join(workDir, 'dropin.cfg'), domUConfig({ name: 'dm', kernel, ramdisk: domUInitrd, extra: extra(usbdevice.length, 75), lines: dropInConfigLines(join(root, 'bin', 'uhci-dm-qemu.js'), usbdevice) }));
  }
  const dropInScript = () =>
    dom0DropInScenario({
      controlClient: join(root, 'scripts', 'xen-lab', 'control.mjs'),
      inputCommands: inputCommands(['tablet', 'keyboard']),
      restoredInputCommands: inputCommands(['tablet', 'keyboard'], afterRestorePlan),
      hidDevices: 2,
      gadgetScript: sourceSinkGadgetScript('say gadget-bind-failed'),
      gadgetVendor: hex4(G.vendorId),
      domUTimeout,
    });
  writeFileSync(join(workDir, 'dom0.sh'), opts.dom0Script ?? (opts.dropIn ? dropInScript() : null) ?? dom0Scenario({ gdb: opts.gdb, strace: opts.strace, reference, uhciDmArgs: dmArgs, uhciDmBin, controlClient: join(root, 'scripts', 'xen-lab', 'control.mjs'), inputCommands: inputCommands(devices), saveRestore, hostPassthrough, domUTimeout, dmExitTimeout: 30 }));

  const args = [
    '-accel', opts.accel ?? 'tcg', '-cpu', opts.cpu ?? OUTER_CPU, '-smp', String(opts.smp ?? 2), '-m', '3072', '-nodefaults', '-nographic', '-serial', 'stdio', '-no-reboot',
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
    const serialLog = openSync(join(workDir, 'serial.log'), 'w');
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
    const live = new XenGuestChannel();
    const onLine = (line: string) => {
      const g = live.line(line);
      if (g && /^@@LAB:(boot|settled|ready|done|insmod-failed)/.test(g[1])) {
        const kw = `d${g[0]}-${g[1].slice(6).split(' ')[0]}`;
        if (!(kw in phases)) phases[kw] = since();
        progress(`[${since()}s] (d${g[0]}) ${g[1]}`);
      }
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
      writeSync(serialLog, d);
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
      closeSync(serialLog);
      if (stderr.trim()) writeFileSync(join(workDir, 'qemu-stderr.log'), stderr);
      resolve();
    });
  });

  const readLog = (name: string): Record<string, unknown>[] => {
    const out: Record<string, unknown>[] = [];
    const path = join(workDir, name);
    if (!existsSync(path)) return out;
    for (const l of readFileSync(path, 'utf8').split('\n')) {
      if (!l.trim()) continue;
      try {
        out.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        out.push({ raw: l });
      }
    }
    return out;
  };
  // Drop-in: the controllers log into libxl's device-model log (rotated when the restore starts a new one).
  const uhciDmLog = readLog(opts.dropIn ? (withSaveRestore ? 'qemu-dm-dm.log.1' : 'qemu-dm-dm.log') : 'uhci-dm.log');
  // A domU retried after an emulator fault (xen-dom0.ts emulatorfault) reports again: the last attempt counts.
  const last = (re: RegExp): RegExpExecArray | null => {
    let m: RegExpExecArray | null = null;
    for (const x of serial.matchAll(new RegExp(re.source, 'g'))) m = x as RegExpExecArray;
    return m;
  };
  const exitMatch = last(/@@XEN:uhci-dm-exit (\d+)/);
  const channel = new XenGuestChannel();
  for (const l of serial.split('\n')) channel.line(l);
  const domid = (name: string) => {
    const m = last(new RegExp(`@@XEN:${name}-created (\\d+)`));
    return m ? Number(m[1]) : null;
  };
  const refId = domid('ref');
  const dmId = domid('dm');
  // The restored domain is the same guest under a new domid: one report.
  const restoredMatch = withSaveRestore ? last(/@@XEN:dm-restored (\d+)/) : null;
  const dmIds = dmId === null ? [] : restoredMatch ? [dmId, Number(restoredMatch[1])] : [dmId];
  const exitAfterSave = last(/@@XEN:uhci-dm-exit-save (\d+)/);
  const hotplugResult = () => {
    const replies = last(/@@XEN:dm-hotplug (\d+)/);
    const addressed = last(/@@XEN:dm-hotplug-addressed (\{[^}]*\})/);
    let a: { address?: unknown; waitedMs?: unknown } = {};
    try {
      if (addressed) a = JSON.parse(addressed[1]!) as typeof a;
    } catch {
      // not JSON: no address
    }
    return { replies: replies ? Number(replies[1]) : 0, address: typeof a.address === 'number' ? a.address : 0, waitedMs: typeof a.waitedMs === 'number' ? a.waitedMs : 0 };
  };
  return {
    phases,
    reference: reference && refId !== null ? channel.report(refId) : null,
    dm: dmIds.length ? channel.report(...dmIds) : new GuestReportParser().report,
    lost: { ref: refId !== null ? channel.lost(refId) : [], dm: dmIds.length ? channel.lost(...dmIds) : [] },
    uhciDmExit: exitMatch ? Number(exitMatch[1]) : null,
    uhciDmLog,
    hotplug: withPassthrough ? hotplugResult() : null,
    restored: withSaveRestore
      ? { domid: restoredMatch ? Number(restoredMatch[1]) : null, uhciDmExitAfterSave: exitAfterSave ? Number(exitAfterSave[1]) : null, uhciDmLog: readLog(opts.dropIn ? 'qemu-dm-dm.log' : 'uhci-dm-restored.log') }
      : null,
    serial,
    workDir,
    elapsed: since(),
  };
}

/** A Xen lab run for people: each domU's USB view, uhci-dm's exit and log, the phase timings. */
export function formatXenLabResult(r: XenLabResult): string {
  const out: string[] = [];
  const hex4 = (n: number) => n.toString(16).padStart(4, '0');
  const show = (name: string, rep: GuestReport | null, lost: number[]) => {
    if (!rep) {
      out.push(`${name}: no report`);
      return;
    }
    out.push(`${name}: booted=${rep.booted} settled=${JSON.stringify(rep.settled)} done=${rep.done} lost-lines=${JSON.stringify(lost)}`);
    for (const d of rep.devices) {
      out.push(`  ${d.path} ${hex4(d.vendorId)}:${hex4(d.productId)} ${d.manufacturer ?? ''} / ${d.product ?? ''} speed ${d.speed} drivers ${d.interfaces.map((i) => i.driver).join(',')}`);
    }
    for (const i of rep.inputs) {
      const evs = i.events.filter((e) => e.type !== 0 && e.type !== 4).map((e) => `${e.type}/${e.code}/${e.value}`);
      out.push(`  ${i.event} ${i.name} ${i.phys}: ${evs.join(' ')}`);
    }
    for (const k of rep.kernelLog.filter((l) => /uhci|usb 1-/i.test(l)).slice(0, 12)) out.push(`  klog: ${k}`);
  };
  show('reference (QEMU-xen UHCI)', r.reference, r.lost.ref);
  show('uhci-dm', r.dm, r.lost.dm);
  const log = r.uhciDmLog.filter((l) => l.level !== 'debug').map((l) => String(l.msg));
  out.push(`uhci-dm exit: ${r.uhciDmExit}; log: ${log.join(' | ')}`);
  if (r.restored) {
    const rlog = r.restored.uhciDmLog.filter((l) => l.level !== 'debug').map((l) => String(l.msg));
    out.push(`save/restore: restored as domain ${r.restored.domid}; first uhci-dm exit after the save: ${r.restored.uhciDmExitAfterSave}; restored uhci-dm log: ${rlog.join(' | ')}`);
  }
  if (r.hotplug) out.push(`passthrough: usb_del + usb_add replies ${r.hotplug.replies}/2; dom0's gadget got USB address ${r.hotplug.address} in the domU after ${r.hotplug.waitedMs} ms`);
  out.push(`phases (s since start): ${JSON.stringify(r.phases)}`);
  out.push(`elapsed ${r.elapsed} s; work dir (logs): ${r.workDir}`);
  return out.join('\n');
}
