/**
 * Passthrough lab: real kernel USB devices, real libusb. A plain lab guest
 * (QEMU TCG, no proxy) loads dummy_hcd at full speed (is_high_speed=0)
 * with two UDC/HCD pairs and creates two configfs gadgets: 0525:a4a0 with
 * a SourceSink function (pattern 1) on dummy_udc.0, and 0525:a4ac with a
 * boot-keyboard HID function (usb_f_hid, /dev/hidg0) on dummy_udc.1. It
 * mounts the host's root over virtio-9p and runs the host's node on
 * dist/src/guest/passthrough-proof.js (compiled from
 * src/guest/passthrough-proof.ts): libusb in the guest opens a gadget,
 * HostUsbDevice plugs it into an in-process UHCI model driven by the
 * built-in guest driver. Phases, one process each: main (enumeration,
 * bulk IN/OUT of `bytes` with checksums and throughput, stall/clear-halt),
 * hid (interrupt IN: NAK while idle, reports written to /dev/hidg0 arrive
 * byte-exact) and `unplugRounds` removals mid-transfer. The proof's
 * results come back as `@@PT` lines.
 *
 * CLI: `uhci-dm lab --passthrough [--bytes N] [--rounds N] [--timeout S]`.
 * The full proof is `--bytes 104857600 --timeout 3600` (progress records
 * every 10 MiB). Its wall time is set by the gadget side, not the model:
 * dummy_hcd moves at most 64 × 19 bytes per run of its jiffy timer (Linux
 * 6.1 dummy_timer; the Debian kernel has HZ=250), under TCG. Measured on
 * the 2-core dev machine (2026-11-26): 100 MiB OUT 270 s, 100 MiB IN 536 s
 * (the machine busy with other guests meanwhile), about 20 min in all.
 *
 * Needs the compiled dist/ (npm run build) and the repository visible at
 * the same path in the guest (it is: the host root is exported).
 */
import { UserFacingError } from '../platform/user-facing-error.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { HID_GADGET } from '../guest/passthrough-proof-facts.js';
import { reportDescriptor } from '../usb/hid/qemu-hid-descriptors.js';
import { HOST_ROOT_MODULES, hostRootMountScript, hostRootQemuArgs, repoRoot } from './guest-image.js';
import { runLab, type LabResult } from './lab.js';

export class PassthroughLabError extends UserFacingError {}

export interface PassthroughLabOptions {
  /** Bytes per direction for the bulk IN/OUT runs (default 1 MiB). */
  bytes?: number;
  /** Gadget removals mid-transfer (default 5). */
  unplugRounds?: number;
  /** Interrupt IN through the HID keyboard gadget (default true). */
  hid?: boolean;
  /** Print a `progress` record every this many bytes of a bulk run (default: every 10 MiB from 20 MiB up, else none). */
  progressBytes?: number;
  timeoutMs?: number;
  onProgress?: (msg: string) => void;
}

export interface PassthroughLabResult {
  /** `@@PT <name> <json>` records by name, in order (host-device/enumerated: one per process; unplug: one per round). */
  records: Map<string, unknown[]>;
  lab: LabResult;
}

export const GADGET_MODULES: readonly string[] = ['dummy_hcd', 'libcomposite', 'usb_f_ss_lb', 'usb_f_hid'];

/** Bytes as a printf format of octal escapes (POSIX printf; busybox's as well). */
export function printfOctal(bytes: Uint8Array): string {
  return [...bytes].map((b) => '\\' + b.toString(8).padStart(3, '0')).join('');
}

/** Guest shell: the boot-keyboard HID gadget (configfs usb_f_hid) on the second dummy UDC. */
export function hidGadgetScript(udc = 'dummy_udc.1'): string {
  const g = '/sys/kernel/config/usb_gadget/g2';
  const hex = (n: number) => '0x' + n.toString(16).padStart(4, '0');
  return [
    `mkdir -p ${g} && cd ${g}`,
    `echo ${hex(HID_GADGET.vendorId)} > idVendor; echo ${hex(HID_GADGET.productId)} > idProduct; echo 0x0200 > bcdUSB`,
    `mkdir -p strings/0x409; echo uhci-dm > strings/0x409/manufacturer; echo "${HID_GADGET.product}" > strings/0x409/product; echo ${HID_GADGET.serial} > strings/0x409/serialnumber`,
    // Boot keyboard (HID 1.11 §4.2, §4.3): subclass 1, protocol 1; the report descriptor our usb-kbd model uses.
    'mkdir -p functions/hid.usb0; echo 1 > functions/hid.usb0/subclass; echo 1 > functions/hid.usb0/protocol',
    `echo ${HID_GADGET.reportLength} > functions/hid.usb0/report_length`,
    `printf '${printfOctal(reportDescriptor('keyboard'))}' > functions/hid.usb0/report_desc`,
    'mkdir -p configs/c.1/strings/0x409; echo keyboard > configs/c.1/strings/0x409/configuration',
    'ln -s functions/hid.usb0 configs/c.1/',
    'echo full-speed > max_speed',
    `echo ${udc} > UDC || echo "@@PT error {\\"message\\":\\"bind HID UDC\\"}"`,
    'cd /',
  ].join('\n');
}

/** The configfs SourceSink gadget the passthrough labs use (0525:a4a0, Linux gadget zero's ids). */
export const SOURCESINK_GADGET = { vendorId: 0x0525, productId: 0xa4a0, manufacturer: 'uhci-dm', product: 'SourceSink gadget', serial: '4242' } as const;

/**
 * Shell: create the SourceSink gadget (configfs must be mounted, libcomposite and usb_f_ss_lb loaded)
 * at full speed and bind it to `udc`; `onBindError` runs if binding fails. Ends in /.
 */
export function sourceSinkGadgetScript(onBindError: string, udc = 'dummy_udc.0'): string {
  const g = '/sys/kernel/config/usb_gadget/g1';
  const G = SOURCESINK_GADGET;
  const hex = (n: number) => '0x' + n.toString(16).padStart(4, '0');
  return [
    `mkdir -p ${g} && cd ${g}`,
    `echo ${hex(G.vendorId)} > idVendor; echo ${hex(G.productId)} > idProduct; echo 0x0200 > bcdUSB`,
    `mkdir -p strings/0x409; echo ${G.manufacturer} > strings/0x409/manufacturer; echo "${G.product}" > strings/0x409/product; echo ${G.serial} > strings/0x409/serialnumber`,
    'mkdir -p functions/SourceSink.0; echo 1 > functions/SourceSink.0/pattern',
    'mkdir -p configs/c.1/strings/0x409; echo "source and sink" > configs/c.1/strings/0x409/configuration',
    'ln -s functions/SourceSink.0 configs/c.1/',
    'echo full-speed > max_speed',
    `echo ${udc} > UDC || ${onBindError}`,
    'cd /',
  ].join('\n');
}

/** Guest shell: dummy_hcd at full speed, the configfs SourceSink gadget, host root, the proof. */
export function passthroughGuestScript(opts: PassthroughLabOptions, root = repoRoot(), node = process.execPath): string {
  const hid = opts.hid ?? true;
  const bytes = opts.bytes ?? 1 << 20;
  const progress = opts.progressBytes ?? (bytes >= 20 << 20 ? 10 << 20 : 0);
  return [
    '#!/bin/sh',
    'mount -t configfs none /sys/kernel/config',
    // Reload dummy_hcd full speed only (insmod at boot used the high-speed default), two UDC/HCD pairs:
    // dummy_udc.0 for the SourceSink gadget, dummy_udc.1 for the HID gadget.
    'rmmod dummy_hcd; insmod /lib/modules/dummy_hcd.ko is_high_speed=0 is_super_speed=0 num=2 || echo "@@PT error {\\"message\\":\\"dummy_hcd\\"}"',
    sourceSinkGadgetScript('echo "@@PT error {\\"message\\":\\"bind UDC\\"}"'),
    ...(hid ? [hidGadgetScript()] : []),
    'sleep 2',
    'cat /sys/bus/usb/devices/*/speed 2>/dev/null | tr "\\n" " "; echo',
    hostRootMountScript('/host'),
    'mount -t configfs none /host/sys/kernel/config',
    `proof="chroot /host ${node} ${join(root, 'dist/src/guest/passthrough-proof.js')}"`,
    `$proof --phase main --bytes ${bytes}${progress ? ` --progress-bytes ${progress}` : ''}`,
    'rc=$?',
    ...(hid ? ['$proof --phase hid || rc=$?'] : []),
    // One process per removal (see passthrough-proof.ts); the proof binds the UDC again after each.
    `for i in $(seq 1 ${opts.unplugRounds ?? 5}); do`,
    '  [ -n "$(cat /sys/kernel/config/usb_gadget/g1/UDC)" ] || echo dummy_udc.0 > /sys/kernel/config/usb_gadget/g1/UDC',
    '  sleep 1',
    // Odd rounds without read-ahead: every guest IN packet is then async at libusb when the gadget goes.
    '  $proof --phase unplug --round $i --read-ahead $(( i % 2 ? 0 : 4096 )) || rc=$?',
    'done',
    'dmesg | grep -iE "dummy|usb 2-|gadget" | tail -n 20',
    'exit $rc',
    '',
  ].join('\n');
}

export function parsePassthroughLines(lines: readonly string[]): Map<string, unknown[]> {
  const out = new Map<string, unknown[]>();
  for (const l of lines) {
    const m = /^@@PT (\S+) (.*)$/.exec(l.trim());
    if (!m) continue;
    let v: unknown;
    try {
      v = JSON.parse(m[2]!);
    } catch {
      v = m[2];
    }
    const list = out.get(m[1]!) ?? [];
    list.push(v);
    out.set(m[1]!, list);
  }
  return out;
}

export async function runPassthroughLab(opts: PassthroughLabOptions = {}): Promise<PassthroughLabResult> {
  const proof = join(repoRoot(), 'dist/src/guest/passthrough-proof.js');
  if (!existsSync(proof)) throw new PassthroughLabError(`${proof} not found: run npm run build first`);
  const lab = await runLab({
    reference: true, // a plain QEMU guest: the model runs inside it, in the proof program
    ports: ['none', 'none'],
    modules: [...GADGET_MODULES, ...HOST_ROOT_MODULES],
    extraQemuArgs: hostRootQemuArgs(),
    script: passthroughGuestScript(opts),
    settleSeconds: 1,
    timeoutMs: opts.timeoutMs ?? 600_000,
    onProgress: opts.onProgress,
  });
  return { records: parsePassthroughLines(lab.scriptOutput ?? []), lab };
}
