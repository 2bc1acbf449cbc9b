/**
 * Passthrough lab: real kernel USB device, real libusb. A plain lab guest
 * (QEMU TCG, no proxy) loads dummy_hcd at full speed (is_high_speed=0),
 * creates a configfs gadget 0525:a4a0 with a SourceSink function (pattern 1)
 * bound to dummy_udc.0, mounts the host's root over virtio-9p and runs the
 * host's node on dist/src/guest/passthrough-proof.js (compiled from
 * src/guest/passthrough-proof.ts): libusb in the guest opens the gadget,
 * HostUsbDevice plugs it into an in-process UHCI model driven by the
 * built-in guest driver. The proof's results come back as `@@PT` lines.
 *
 * Needs the compiled dist/ (npm run build) and the repository visible at
 * the same path in the guest (it is: the host root is exported).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { HOST_ROOT_MODULES, hostRootMountScript, hostRootQemuArgs, repoRoot } from './guest-image.js';
import { runLab, type LabResult } from './lab.js';

export class PassthroughLabError extends Error {
  override name = 'PassthroughLabError';
  readonly userFacing = true;
}

export interface PassthroughLabOptions {
  /** Bytes per direction for the bulk IN/OUT runs (default 1 MiB). */
  bytes?: number;
  /** Gadget removals mid-transfer (default 5). */
  unplugRounds?: number;
  timeoutMs?: number;
  onProgress?: (msg: string) => void;
}

export interface PassthroughLabResult {
  /** `@@PT <name> <json>` records by name, in order (host-device/enumerated: one per process; unplug: one per round). */
  records: Map<string, unknown[]>;
  lab: LabResult;
}

export const GADGET_MODULES: readonly string[] = ['dummy_hcd', 'libcomposite', 'usb_f_ss_lb'];

/** Guest shell: dummy_hcd at full speed, the configfs SourceSink gadget, host root, the proof. */
export function passthroughGuestScript(opts: PassthroughLabOptions, root = repoRoot(), node = process.execPath): string {
  const g = '/sys/kernel/config/usb_gadget/g1';
  return [
    '#!/bin/sh',
    'mount -t configfs none /sys/kernel/config',
    // Reload dummy_hcd full speed only (insmod at boot used the high-speed default).
    'rmmod dummy_hcd; insmod /lib/modules/dummy_hcd.ko is_high_speed=0 is_super_speed=0 || echo "@@PT error {\\"message\\":\\"dummy_hcd\\"}"',
    `mkdir -p ${g} && cd ${g}`,
    'echo 0x0525 > idVendor; echo 0xa4a0 > idProduct; echo 0x0200 > bcdUSB',
    'mkdir -p strings/0x409; echo uhci-dm > strings/0x409/manufacturer; echo "SourceSink gadget" > strings/0x409/product; echo 4242 > strings/0x409/serialnumber',
    'mkdir -p functions/SourceSink.0; echo 1 > functions/SourceSink.0/pattern',
    'mkdir -p configs/c.1/strings/0x409; echo "source and sink" > configs/c.1/strings/0x409/configuration',
    'ln -s functions/SourceSink.0 configs/c.1/',
    'echo full-speed > max_speed',
    'echo dummy_udc.0 > UDC || echo "@@PT error {\\"message\\":\\"bind UDC\\"}"',
    'cd /',
    'sleep 2',
    'cat /sys/bus/usb/devices/*/speed 2>/dev/null | tr "\\n" " "; echo',
    hostRootMountScript('/host'),
    'mount -t configfs none /host/sys/kernel/config',
    `proof="chroot /host ${node} ${join(root, 'dist/src/guest/passthrough-proof.js')}"`,
    `$proof --phase main --bytes ${opts.bytes ?? 1 << 20}`,
    'rc=$?',
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
