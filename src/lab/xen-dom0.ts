/**
 * Xen lab, the dom0 side: the shell scripts that run inside the PV dom0
 * (busybox /init in the dom0 initramfs; the scenario script, run chrooted
 * in the host's root exported over virtio-9p) and the xl.cfg of the HVM
 * domUs. Facts measured in the Xen lab (Xen 4.17.7 nested under QEMU 7.2
 * TCG, Debian 6.1 kernel):
 * - a PV dom0 needs `smap=0 smep=0` on the Xen command line under TCG
 *   (it faults at its first instruction otherwise);
 * - an HVM domU stalls on RDTSCP under TCG unless `tsc_mode = "native"` and
 *   `cpuid = "host,rdtscp=0"`;
 * - `serial = "file:..."` makes libxl time out; `serial = "pty"` works and
 *   QEMU-xen publishes the pty at /local/domain/N/serial/0/tty.
 *
 * - processes in dom0 (node, xl) segfaulted after a minute or two while an
 *   HVM domU ran: QEMU TCG's XSAVE/XRSTOR ignore CR0.TS, which breaks Xen's
 *   lazy FPU switching; Xen runs with `spec-ctrl=eager-fpu` (xen-lab.ts).
 *
 * Lines the scripts print for the host start with `@@XEN:`.
 */

import { DOMU_E9_CMDLINE } from './xen-domu.js';

/** 9p mount tags of the outer QEMU. */
export const XEN_HOSTROOT_TAG = 'hostroot';
export const XEN_LABDIR_TAG = 'labdir';
/** Where the lab directory is mounted inside the dom0 chroot (a tmpfs on /run, the host root is read-only). */
export const DOM0_LABDIR = '/run/lab';

/** Modules dom0 needs before it can mount the host root (dependencies first). */
export const DOM0_9P_MODULES: readonly string[] = [
  'virtio_ring',
  'virtio',
  'virtio_pci_modern_dev',
  'virtio_pci_legacy_dev',
  'virtio_pci',
  'netfs',
  'fscache',
  '9pnet',
  '9pnet_virtio',
  '9p',
];

/** /init of the dom0 initramfs: mount the host root and the lab dir, chroot, run the scenario. */
export const DOM0_INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "@@XEN:dom0-init $(cut -d' ' -f1 /proc/uptime)"
for m in $(cat /lab/modules); do
  insmod /lib/modules/$m.ko || echo "@@XEN:insmod-failed $m"
done
R=/host
mkdir -p $R
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose ${XEN_HOSTROOT_TAG} $R; then
  echo "@@XEN:hostroot-failed"; sleep 2; poweroff -f
fi
mount --bind /proc $R/proc && mount --bind /sys $R/sys && mount --bind /dev $R/dev
# The repository may live under /tmp (CI clones anywhere): lab.keep=PATH on
# the dom0 command line keeps it visible through the tmpfs mounts below.
keep=$(sed -n 's/.*lab\\.keep=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
[ -n "$keep" ] && mkdir -p /keep && mount --bind $R$keep /keep
for d in run tmp var/lib/xen var/log; do mount -t tmpfs tmpfs $R/$d; done
[ -n "$keep" ] && [ ! -d $R$keep ] && mkdir -p $R$keep && mount --bind /keep $R$keep
mkdir -p $R${DOM0_LABDIR}
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 ${XEN_LABDIR_TAG} $R${DOM0_LABDIR} || echo "@@XEN:labdir-failed"
echo "@@XEN:chroot $(cut -d' ' -f1 /proc/uptime)"
chroot $R /bin/sh ${DOM0_LABDIR}/dom0.sh
echo "@@XEN:scenario-exit $?"
sync
echo "@@XEN:done"
sleep 1
poweroff -f
`;

export interface DomUConfig {
  name: string;
  kernel: string;
  ramdisk: string;
  /** Kernel command line, after `quiet` and the port-0xE9 report options (DOMU_E9_CMDLINE, xen-domu.ts). */
  extra: string;
  memoryMiB?: number;
  /** QEMU-xen's own UHCI with these devices (reference run); omit for none. */
  qemuUsbDevices?: readonly string[];
  /** More xl.cfg lines (the drop-in's device_model_override and USB lines). */
  lines?: readonly string[];
}

/** xl.cfg of a lab domU: HVM, direct kernel boot through hvmloader + SeaBIOS. */
export function domUConfig(c: DomUConfig): string {
  const lines = [
    `name = "${c.name}"`,
    'type = "hvm"',
    `memory = ${c.memoryMiB ?? 256}`,
    'vcpus = 1',
    `kernel = "${c.kernel}"`,
    `ramdisk = "${c.ramdisk}"`,
    // No kernel console output: each character to the emulated UART (or VGA)
    // is an ioreq to QEMU-xen in dom0, minutes of boot under nested TCG
    // (xenctx showed the vCPU blocked at one kernel RIP). The report goes to
    // port 0xE9, which Xen itself handles. pci=noearly: the early-quirks
    // scan of all 256 buses (two config-space ioreqs to QEMU-xen per slot)
    // took over 5 minutes (xenctx: vCPU at `in eax, dx` on 0xcfc, bus 0x9f).
    `extra = "quiet loglevel=1 pci=noearly ${DOMU_E9_CMDLINE} ${c.extra}"`,
    'serial = "pty"',
    'vnc = 0',
    'sdl = 0',
    // No emulated VGA: with one, the domU spent minutes in the VGA BIOS
    // (xenctx: cs:eip c000:xxxx, rep movsb into a000) before Linux started,
    // every write to legacy VGA memory being an ioreq to QEMU-xen in dom0.
    'vga = "none"',
    'tsc_mode = "native"',
    'cpuid = "host,rdtscp=0"',
    'on_poweroff = "destroy"',
    'on_reboot = "destroy"',
    'on_crash = "destroy"',
  ];
  if (c.qemuUsbDevices?.length) {
    lines.push('usb = 1', `usbdevice = [${c.qemuUsbDevices.map((d) => `"${d}"`).join(', ')}]`);
  }
  lines.push(...(c.lines ?? []));
  return lines.join('\n') + '\n';
}

export interface Dom0ScenarioOptions {
  /** Run the reference domU (QEMU-xen's UHCI with a tablet) first. */
  reference: boolean;
  /** The uhci-dm command line (without --domid), run with node. */
  uhciDmArgs: readonly string[];
  /** Path of bin/uhci-dm.js as dom0 sees it (the host root). */
  uhciDmBin: string;
  /** Path of scripts/xen-lab/control.mjs as dom0 sees it (control-socket client). */
  controlClient: string;
  /** Control-socket commands (JSON lines) sent once the domU's init reports @@LAB:ready (input injection). */
  inputCommands: readonly string[];
  /**
   * After the input: `xl save -p` the domU, save the function (control
   * socket `save`), destroy the domain (uhci-dm exits), `xl restore -p` it,
   * start a second uhci-dm with these arguments for the new domid,
   * `restore` the function, unpause, wait until the guest's HID driver polls
   * every emulated HID device again and send `restoredInputCommands` (logs in
   * uhci-dm-restored.log).
   */
  saveRestore?: { uhciDmArgs: readonly string[]; inputCommands: readonly string[]; hidDevices: number };
  /**
   * Host passthrough under Xen: dom0 gets a USB device of its own (dummy_hcd
   * and `gadgetScript`, a configfs gadget); after the input that follows the
   * restore, the keyboard on port `port` is hot-removed and the gadget
   * (`devname`, e.g. host:0525:a4a0) hot-added in its place through the
   * control socket, and the script waits until the guest addressed it. The
   * uhci-dm serving the restored domain needs --host-usb.
   */
  hostPassthrough?: { gadgetScript: string; remove: string; devname: string; port: number };
  /** Run uhci-dm under gdb (batch: backtrace on a crash into uhci-dm.stdout). */
  gdb?: boolean;
  /** Run uhci-dm under strace (system calls into uhci-dm.strace). */
  strace?: boolean;
  /** Seconds to wait for each domU to power off by itself. */
  domUTimeout: number;
  /** Seconds to wait for uhci-dm to exit after the domain is gone. */
  dmExitTimeout: number;
}

/** Start of every dom0 script: PATH, helpers (up, say), the Xen modules and daemons; prints @@XEN:dom0-ready. */
export function dom0Prelude(): string {
  const L = DOM0_LABDIR;
  return `export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/xen-4.17/bin
export HOME=/tmp
L=${L}
up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "@@XEN:$* $(up)"; }
say scenario
modprobe -a xen-evtchn xen-privcmd xen-gntdev xen-gntalloc xenfs || say modprobe-failed
mount -t xenfs xenfs /proc/xen || say xenfs-failed
mkdir -p /dev/pts /run/lock /run/xen /run/xenstored /var/lib/xen/dump /var/log/xen
mount -t devpts devpts /dev/pts
/usr/lib/xen-4.17/bin/xenstored --pid-file /run/xenstored.pid || say xenstored-failed
/usr/lib/xen-4.17/bin/xen-init-dom0 > $L/xen-init-dom0.log 2>&1 || say xen-init-dom0-failed
# --log=guest: each domU's PV console (hvc0) lands in $L/guest-<name>.log.
/usr/lib/xen-4.17/bin/xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=$L || say xenconsoled-failed
xl info > $L/xl-info.txt 2>&1
say dom0-ready
`;
}

export interface Dom0StressOptions {
  /** Path of scripts/xen-lab/stress.mjs as dom0 sees it. */
  stressJs: string;
  /** Seconds of stress without a domU, then with an HVM domU running (0: skip that phase). */
  soloSeconds: number;
  withDomUSeconds: number;
  /** Parallel node stress processes. */
  processes: number;
}

/**
 * Crash reproducer (dom0): node allocation/GC/JIT stress (stress.mjs, which
 * also checks FP results and a memory pattern) in N processes, plus an
 * `xl list` loop (a C program), first alone, then while an HVM domU
 * (ref.cfg, kept busy) runs. Prints @@XEN:stress-* lines and the segfault
 * lines of dom0's kernel log.
 */
export function dom0StressScript(o: Dom0StressOptions): string {
  const L = DOM0_LABDIR;
  return `${dom0Prelude()}
L=${L}
phase() {
  say stress-phase $1
  pids=""
  for i in $(seq 1 ${o.processes}); do node ${"'"}${o.stressJs}${"'"} $1-$i $2 & pids="$pids $!"; done
  xlseg=0; xln=0; end=$(( $(cut -d. -f1 /proc/uptime) + $2 ))
  while [ $(cut -d. -f1 /proc/uptime) -lt $end ]; do
    xl list > /dev/null 2>&1; rc=$?; xln=$((xln+1)); [ $rc -ge 128 ] && { xlseg=$((xlseg+1)); say stress-xl-signal $rc; }
    sleep 2
  done
  for p in $pids; do wait $p; say stress-exit $1 $?; done
  say stress-xl $1 runs=$xln signals=$xlseg
}
${o.soloSeconds > 0 ? `phase solo ${o.soloSeconds}` : ''}
${
  o.withDomUSeconds > 0
    ? `sed 's/lab\\.wait=[0-9]*/lab.wait=900/; s/lab\\.devices=[0-9]*/lab.devices=9/' $L/ref.cfg > /tmp/busy.cfg
xl create /tmp/busy.cfg > $L/ref.xl.log 2>&1 && say stress-domU $(xl domid ref) || say stress-domU-failed
phase domU ${o.withDomUSeconds}
xl list >> $L/xl-list-end.txt 2>&1
xl destroy ref 2>/dev/null`
    : ''
}
dmesg | grep -iE 'segfault|trap|general protection' | head -20 | while IFS= read -r l; do echo "@@XEN:stress-klog $l"; done
xl dmesg > $L/xl-dmesg.txt 2>&1
dmesg > $L/dom0-dmesg.txt 2>&1
say scenario-done
`;
}

/**
 * The scenario (run chrooted in the host root inside dom0): start the Xen
 * daemons, run the reference domU, then the domU served by uhci-dm. The
 * domUs report through port 0xE9 (see xen-domu.ts), which dom0 can read
 * back with `xl dmesg` (Xen's console ring) to know when to inject input.
 * uhci-dm's stderr goes to DOM0_LABDIR/uhci-dm.log.
 */
/**
 * Shell functions of the domU scenarios: waitgone (a domain to be gone),
 * emulatorfault (a triple fault before boot), waitsock (uhci-dm's control
 * socket), waitready (@@LAB:ready over port 0xE9, giving up when the device
 * model, pid $DM, is gone). They use $L (the lab dir).
 */
export function dom0WaitHelpers(): string {
  return `# Wait up to $2 s (dom0 uptime) for domain $1 to be gone; $3: a status command run every minute.
waitgone() {
  end=$(( $(cut -d. -f1 /proc/uptime) + $2 )); next=0
  while xl domid $1 >/dev/null 2>&1; do
    now=$(cut -d. -f1 /proc/uptime)
    [ $now -ge $end ] && return 1
    [ $now -ge $next ] && {
      echo "@@XEN:waiting $1 $(up) $(xl list $1 2>/dev/null | tail -1 | tr -s ' ' | cut -d' ' -f3-6)"; next=$((now+15))
      # The status command is a node process (seconds of dom0 CPU): every 4th time.
      wgn=$((\${wgn:-0}+1)); [ -n "$3" ] && [ $((wgn % 4)) = 1 ] && echo "@@XEN:status $1 $($3 2>&1 | tr '\\n' ' ')"
      # A live run can be poked: the host drops debug.sh into the lab dir
      # (e.g. \`xenctx $(xl domid ref) 0\` shows where a domU's vCPU is).
      [ -f $L/debug.sh ] && { mv $L/debug.sh $L/debug.run; sh $L/debug.run > $L/debug.out 2>&1; say debug-done; }
    }
    sleep 1
  done
  return 0
}
# True when domain id $1 died of a triple fault before its Linux reported boot: under
# nested TCG, SeaBIOS's linuxboot option ROM (QEMU-xen's) occasionally triple-faults
# right after "Booting from c000:003c" (seen in the reference domU, alone and with
# another domU running); that is the emulator, not the device model, so the domU is
# created again (at most DOMU_ATTEMPTS times, each retry announced on the console).
emulatorfault() {
  xl dmesg 2>/dev/null | grep -F "(d$1) " | grep -q '=@@LAB:boot' && return 1
  xl dmesg 2>/dev/null | grep -q "d$1v0 Triple fault"
}
# Wait (at most 120 s) for uhci-dm (pid $DM) to open its control socket, or to exit.
waitsock() {
  t=0
  while ! [ -S /run/uhci-dm.sock ]; do
    kill -0 $DM 2>/dev/null || break
    [ $t -ge 1200 ] && break
    sleep 0.1; t=$((t+1))
  done
}
# Wait up to $2 s for domain id $1 (named $3) to report @@LAB:ready on port 0xE9 (Xen's console ring).
# Gives up at once if uhci-dm (pid $DM) is gone: the guest then waits forever for its port I/O.
# A minute without ready: one line saying whether uhci-dm still runs and how the domain is.
waitready() {
  end=$(( $(cut -d. -f1 /proc/uptime) + $2 )); next=$(( $(cut -d. -f1 /proc/uptime) + 60 ))
  while [ $(cut -d. -f1 /proc/uptime) -lt $end ]; do
    xl dmesg 2>/dev/null | grep -F "(d$1) " | grep -q '=@@LAB:ready' && return 0
    xl domid $3 >/dev/null 2>&1 || return 1
    if ! kill -0 $DM 2>/dev/null; then
      say uhci-dm-gone-before-ready
      dmesg | grep -iE 'segfault|trap|general protection|killed process' | tail -5 | while IFS= read -r l; do echo "@@XEN:klog $l"; done
      return 1
    fi
    [ $(cut -d. -f1 /proc/uptime) -ge $next ] && {
      next=$((next+60))
      echo "@@XEN:not-ready $3 $(up) uhci-dm $(cat /proc/$DM/stat 2>/dev/null | cut -d' ' -f3,14,15) $(xl list $3 2>/dev/null | tail -1 | tr -s ' ' | cut -d' ' -f5-6)"
    }
    sleep 2
  done
  return 1
}
`;
}

/** A USB device in dom0 for passthrough: dummy_hcd (full speed) and a configfs gadget (`gadgetScript`) on its UDC. */
export function dom0GadgetSetup(gadgetScript: string): string {
  return `modprobe dummy_hcd is_high_speed=0 is_super_speed=0 && modprobe -a libcomposite usb_f_ss_lb || say gadget-modules-failed
mount -t configfs none /sys/kernel/config 2>/dev/null
${gadgetScript}
sleep 1
say gadget $(cat /sys/bus/usb/devices/*/idVendor 2>/dev/null | tr '\\n' ' ')
`;
}

/** How often a domU that died of an emulator triple fault before booting is created (see emulatorfault). */
export const DOMU_ATTEMPTS = 3;

export function dom0Scenario(o: Dom0ScenarioOptions): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return `${dom0Prelude()}
${dom0WaitHelpers()}
${
  o.hostPassthrough
    ? dom0GadgetSetup(o.hostPassthrough.gadgetScript)
    : ''
}${
  o.reference
    ? `# One HVM domU at a time: with both running at once, one triple-faulted in
# SeaBIOS's linuxboot ROM under nested TCG; creating the second (paused) and
# starting uhci-dm while the first ran made the first boot twice as slow.
say ref-create
ra=0
while [ $ra -lt ${DOMU_ATTEMPTS} ]; do
  ra=$((ra+1))
  if xl create $L/ref.cfg > $L/ref.xl.log 2>&1; then
    rid=$(xl domid ref); say ref-created $rid
    if waitgone ref ${o.domUTimeout}; then say ref-gone; else say ref-timeout; xl destroy ref; fi
    emulatorfault $rid || break
    say ref-retry $ra
  else
    say ref-create-failed; break
  fi
done
`
    : ''
}da=0
while [ $da -lt ${DOMU_ATTEMPTS} ]; do
da=$((da+1))
say dm-create
if xl create -p $L/dm.cfg > $L/dm.xl.log 2>&1; then
  d=$(xl domid dm); say dm-created $d
  ${o.gdb ? `gdb -q -batch -ex 'set pagination off' -ex 'handle SIGPIPE nostop noprint' -ex run -ex bt -ex 'info registers' -ex 'x/8i $pc' --args ` : o.strace ? `strace -f -tt -o $L/uhci-dm.strace -e trace=ioctl,mmap,munmap,mprotect,read,write,poll,openat,close -e signal=all ` : ''}node ${q(o.uhciDmBin)} xen --domid $d --control /run/uhci-dm.sock ${o.uhciDmArgs.map(q).join(' ')} 2> $L/uhci-dm.log > $L/uhci-dm.stdout &
  DM=$!; waitsock
  say dm-serving
  xl unpause dm; say dm-unpaused
  ctl() { node ${q(o.controlClient)} /run/uhci-dm.sock "$@"; }
  st() { ctl '{"execute":"query-status"}'; }
  if waitready $d ${o.domUTimeout + 180} dm; then
    say dm-ready
    ctl ${o.inputCommands.map(q).join(' ')} > $L/input-replies.txt 2>&1
    say dm-input-sent $(grep -c '"return"' $L/input-replies.txt)
    ctl '{"execute":"query-usb"}' > $L/query-usb.txt 2>&1
${o.saveRestore ? `    # The function is saved after the guest suspended itself (xl save asks it
    # to; Linux stops uhci_hcd and clears bus mastering then): xl save -p keeps
    # the domain, paused, until uhci-dm has saved. (Saved before xl save, the
    # restored controller ran while the resumed guest had bus mastering off.)
    if xl save -p dm /run/dm.save > $L/xl-save.log 2>&1; then say dm-saved; else say dm-save-failed; fi
    ctl '{"execute":"save","arguments":{"file":"/run/dm-usb.json"}}' > $L/sr-save.txt 2>&1
    say dm-usb-saved $(grep -c '"return"' $L/sr-save.txt)
    xl destroy dm
    wait $DM; say uhci-dm-exit-save $?
    if xl restore -p /run/dm.save > $L/xl-restore.log 2>&1; then
      d=$(xl domid dm); say dm-restored $d
      node ${q(o.uhciDmBin)} xen --domid $d --control /run/uhci-dm.sock ${o.saveRestore.uhciDmArgs.map(q).join(' ')} 2> $L/uhci-dm-restored.log > $L/uhci-dm-restored.stdout &
      DM=$!; waitsock
      ctl '{"execute":"restore","arguments":{"file":"/run/dm-usb.json"}}' > $L/sr-restore.txt 2>&1
      say dm-usb-restored $(grep -c '"return"' $L/sr-restore.txt)
      xl unpause dm; say dm-unpaused-restored
      # The resumed guest resets the ports (Linux reset-resume), which empties
      # the HID queues: input goes once its usbhid polls every device again.
      ctl --until-polled ${o.saveRestore.hidDevices} --within 120 ${o.saveRestore.inputCommands.map(q).join(' ')} > $L/input-replies-restored.txt 2>&1
      say dm-polled-restored $(head -1 $L/input-replies-restored.txt)
      say dm-input-sent-restored $(grep -c '"return"' $L/input-replies-restored.txt)
${
  o.hostPassthrough
    ? `      # Hot-unplug the keyboard, hot-plug dom0's gadget in its place (libusb passthrough).
      ctl '{"execute":"usb_del","arguments":{"devname":"${o.hostPassthrough.remove}"}}' '{"execute":"usb_add","arguments":{"devname":"${o.hostPassthrough.devname}","port":${o.hostPassthrough.port}}}' > $L/hotplug.txt 2>&1
      say dm-hotplug $(grep -c '"return"' $L/hotplug.txt)
      ctl --until-address ${o.hostPassthrough.port} --within 60 '{"execute":"query-usb"}' > $L/hotplug-usb.txt 2>&1
      say dm-hotplug-addressed $(head -1 $L/hotplug-usb.txt)
`
    : ''
}    else
      say dm-restore-failed
    fi
` : ''}  else
    say dm-not-ready
  fi
  if waitgone dm ${o.domUTimeout} st; then say dm-gone; else say dm-timeout; xl destroy dm; say dm-destroyed; fi
  t=0
  while kill -0 $DM 2>/dev/null; do
    [ $t -ge $((${o.dmExitTimeout}*10)) ] && { say uhci-dm-hung; kill -TERM $DM; sleep 2; kill -KILL $DM 2>/dev/null; break; }
    sleep 0.1; t=$((t+1))
  done
  wait $DM; say uhci-dm-exit $?
  emulatorfault $d || break
  say dm-retry $da
else
  say dm-create-failed; break
fi
done
xl list > $L/xl-list-end.txt 2>&1
xl dmesg > $L/xl-dmesg.txt 2>&1
cp /var/log/xen/* $L/ 2>/dev/null
dmesg > $L/dom0-dmesg.txt 2>&1
say scenario-done
`;
}
