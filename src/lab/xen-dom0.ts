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
 * - node (the host's v20, over 9p) segfaults in dom0 after a minute or so
 *   (gdb: inside V8's Sparkplug code generation; `--jitless` did not help)
 *   when the outer QEMU offers AVX/AVX2 (`-cpu max` on QEMU 7.2 TCG), so the
 *   lab runs `-cpu max,avx=off,avx2=off` (see xen-lab.ts).
 *
 * Lines the scripts print for the host start with `@@XEN:`.
 */

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
for d in run tmp var/lib/xen var/log; do mount -t tmpfs tmpfs $R/$d; done
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
  /** Kernel command line (console=ttyS0 console=hvc0 are added: /dev/console is the PV console, which xenconsoled logs). */
  extra: string;
  memoryMiB?: number;
  /** QEMU-xen's own UHCI with these devices (reference run); omit for none. */
  qemuUsbDevices?: readonly string[];
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
    `extra = "console=ttyS0 console=hvc0 ${c.extra}"`,
    'serial = "pty"',
    'vnc = 0',
    'sdl = 0',
    'tsc_mode = "native"',
    'cpuid = "host,rdtscp=0"',
    'on_poweroff = "destroy"',
    'on_reboot = "destroy"',
    'on_crash = "destroy"',
  ];
  if (c.qemuUsbDevices?.length) {
    lines.push('usb = 1', `usbdevice = [${c.qemuUsbDevices.map((d) => `"${d}"`).join(', ')}]`);
  }
  return lines.join('\n') + '\n';
}

export interface Dom0ScenarioOptions {
  /** Run the reference domU (QEMU-xen's UHCI with a tablet) first. */
  reference: boolean;
  /** The uhci-dm command line (without --domid), run with node. */
  uhciDmArgs: readonly string[];
  /** Path of bin/uhci-dm.js as dom0 sees it (the host root). */
  uhciDmBin: string;
  /** Path of scripts/xen-lab/control.mjs as dom0 sees it (status polling over --control). */
  controlClient: string;
  /** Run uhci-dm under gdb (batch: backtrace on a crash into uhci-dm.stdout). */
  gdb?: boolean;
  /** Run uhci-dm under strace (system calls into uhci-dm.strace). */
  strace?: boolean;
  /** Seconds to wait for each domU to power off by itself. */
  domUTimeout: number;
  /** Seconds to wait for uhci-dm to exit after the domain is gone. */
  dmExitTimeout: number;
}

/**
 * The scenario (run chrooted in the host root inside dom0): start the Xen
 * daemons, run the reference domU, then the domU served by uhci-dm.
 * Guest serial output goes to DOM0_LABDIR/<name>.console, uhci-dm's stderr
 * to DOM0_LABDIR/uhci-dm.log.
 */
export function dom0Scenario(o: Dom0ScenarioOptions): string {
  const L = DOM0_LABDIR;
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
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

# Capture domain $1's serial console into $L/$2.console: \`xl console\` under a
# pty (script), its stdin a fifo that stays open (fd 7) until stopcap.
capture() {
  t=0; tty=""
  while [ -z "$tty" ] && [ $t -lt 100 ]; do
    tty=$(xenstore-read /local/domain/$1/serial/0/tty 2>/dev/null); [ -n "$tty" ] || { sleep 0.1; t=$((t+1)); }
  done
  xenstore-ls -f /local/domain/$1 > $L/$2.xenstore.txt 2>&1
  rm -f /tmp/$2.in; mkfifo /tmp/$2.in
  script -q -f -c "xl console $1" $L/$2.console < /tmp/$2.in > /dev/null 2>&1 &
  CAP=$!
  exec 7> /tmp/$2.in
  say capture $2 $tty
}
stopcap() {
  sleep 0.5; kill $CAP 2>/dev/null; exec 7>&-
}
# Wait up to $2 s (dom0 uptime; each xl call takes a while under TCG) for domain $1 to be gone.
waitgone() {
  end=$(( $(cut -d. -f1 /proc/uptime) + $2 )); next=0
  while xl domid $1 >/dev/null 2>&1; do
    now=$(cut -d. -f1 /proc/uptime)
    [ $now -ge $end ] && return 1
    [ $now -ge $next ] && {
      echo "@@XEN:waiting $1 $(up) console-bytes $(wc -c < $L/$1.console 2>/dev/null) pv-console-bytes $(wc -c < $L/guest-$1.log 2>/dev/null)"; next=$((now+15))
      [ -n "$3" ] && echo "@@XEN:status $1 $($3 2>&1 | tr '\\n' ' ')"
    }
    sleep 1
  done
  return 0
}

${
  o.reference
    ? `say ref-create
if xl create $L/ref.cfg > $L/ref.xl.log 2>&1; then
  d=$(xl domid ref); say ref-created $d
  capture $d ref
  if waitgone ref ${o.domUTimeout}; then say ref-gone; else say ref-timeout; xl destroy ref; fi
  stopcap
else
  say ref-create-failed
fi
`
    : ''
}
say dm-create
if xl create -p $L/dm.cfg > $L/dm.xl.log 2>&1; then
  d=$(xl domid dm); say dm-created $d
  capture $d dm
  ${o.gdb ? `gdb -q -batch -ex 'set pagination off' -ex 'handle SIGPIPE nostop noprint' -ex run -ex bt -ex 'info registers' -ex 'x/8i $pc' --args ` : o.strace ? `strace -f -tt -o $L/uhci-dm.strace -e trace=ioctl,mmap,munmap,mprotect,read,write,poll,openat,close -e signal=all ` : ''}node ${q(o.uhciDmBin)} xen --domid $d --control /run/uhci-dm.sock ${o.uhciDmArgs.map(q).join(' ')} 2> $L/uhci-dm.log > $L/uhci-dm.stdout &
  DM=$!
  t=0
  while ! grep -q '"serving"\\|serving' $L/uhci-dm.log 2>/dev/null; do
    kill -0 $DM 2>/dev/null || break
    [ $t -ge 600 ] && break
    sleep 0.1; t=$((t+1))
  done
  say dm-serving
  xl pci-list dm > $L/dm-pci-list.txt 2>&1
  xl unpause dm; say dm-unpaused
  st() { node ${q(o.controlClient)} /run/uhci-dm.sock '{"execute":"query-status"}'; }
  if waitgone dm ${o.domUTimeout} st; then say dm-gone; else say dm-timeout; xl destroy dm; say dm-destroyed; fi
  t=0
  while kill -0 $DM 2>/dev/null; do
    [ $t -ge $((${o.dmExitTimeout}*10)) ] && { say uhci-dm-hung; kill -TERM $DM; sleep 2; kill -KILL $DM 2>/dev/null; break; }
    sleep 0.1; t=$((t+1))
  done
  wait $DM; say uhci-dm-exit $?
  stopcap
else
  say dm-create-failed
fi
xl list > $L/xl-list-end.txt 2>&1
xl dmesg > $L/xl-dmesg.txt 2>&1
cp /var/log/xen/* $L/ 2>/dev/null
dmesg > $L/dom0-dmesg.txt 2>&1
say scenario-done
`;
}
