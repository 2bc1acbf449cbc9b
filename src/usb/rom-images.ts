/**
 * The descriptor ROM images checked in under roms/, built from the
 * declarative sources (qemu-hid-descriptors.ts). scripts/build-roms.mjs
 * writes them; test/usb/roms.test.ts checks the checked-in files equal this
 * output and QEMU 7.2's bytes.
 *
 * Per device (usb-tablet, usb-mouse, usb-kbd; QEMU defaults usb_version=2,
 * msos-desc=on):
 *   <dev>.device.bin               device descriptor as sent (18 bytes)
 *   <dev>.config.bin               configuration 1 with interface/HID/endpoint (34 bytes)
 *   <dev>.report.bin               HID report descriptor
 *   <dev>.qualifier.bin            device qualifier (high-speed tables)
 *   <dev>.other-speed-config.bin   other-speed configuration
 * Shared:
 *   usb-hid.bos.bin, usb-hid.msos-compat.bin, usb-hid.msos-ext-props.bin
 *   manifest.json                  file list with sizes and SHA-256, string table
 */
import { createHash } from 'node:crypto';
import {
  DT_OTHER_SPEED_CONFIG,
  encodeBosUsb2Ext,
  encodeConfigDescriptor,
  encodeDeviceDescriptor,
  encodeDeviceQualifier,
  encodeMsosCompatId,
  encodeMsosDwordProperty,
} from './descriptors.js';
import { LANGIDS, qemuHidDescriptorSet, type HidKind } from './hid/qemu-hid-descriptors.js';

export const ROM_DEVICE_NAMES: Record<HidKind, string> = {
  tablet: 'usb-tablet',
  mouse: 'usb-mouse',
  keyboard: 'usb-kbd',
};

/** Device descriptor bytes as the device sends them (bcdUSB after QEMU's MS OS raise). */
export function sentDeviceDescriptor(kind: HidKind): Uint8Array {
  const set = qemuHidDescriptorSet(kind);
  const b = encodeDeviceDescriptor(set.device);
  b[2] = set.bcdUSB & 0xff;
  b[3] = set.bcdUSB >> 8;
  return b;
}

export function buildRomImages(): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  for (const kind of ['tablet', 'mouse', 'keyboard'] as const) {
    const name = ROM_DEVICE_NAMES[kind];
    const set = qemuHidDescriptorSet(kind);
    files.set(`${name}.device.bin`, sentDeviceDescriptor(kind));
    files.set(`${name}.config.bin`, encodeConfigDescriptor(set.device.configs[0]!));
    files.set(`${name}.report.bin`, set.reportDescriptor);
    files.set(`${name}.qualifier.bin`, encodeDeviceQualifier(set.otherSpeed!));
    files.set(`${name}.other-speed-config.bin`, encodeConfigDescriptor(set.otherSpeed!.configs[0]!, DT_OTHER_SPEED_CONFIG));
  }
  files.set('usb-hid.bos.bin', encodeBosUsb2Ext(true));
  files.set('usb-hid.msos-compat.bin', encodeMsosCompatId());
  files.set('usb-hid.msos-ext-props.bin', encodeMsosDwordProperty('SelectiveSuspendEnabled', 1, 6));

  const manifest = {
    source: 'src/usb/hid/qemu-hid-descriptors.ts (facts from QEMU 7.2.0 hw/usb/dev-hid.c, desc.c, desc-msos.c)',
    build: 'node scripts/build-roms.mjs',
    files: [...files.entries()].map(([file, b]) => ({
      file,
      size: b.length,
      sha256: createHash('sha256').update(b).digest('hex'),
    })),
    langIds: LANGIDS.map((l) => `0x${l.toString(16).padStart(4, '0')}`),
    strings: Object.fromEntries(
      qemuHidDescriptorSet('tablet').strings.flatMap((s, i) => (s === undefined ? [] : [[String(i), s]])),
    ),
    serialNote: 'the serial string of each device is "<table value>-<hcd path>-<port path>" unless a serial is given',
  };
  files.set('manifest.json', new TextEncoder().encode(JSON.stringify(manifest, null, 2) + '\n'));
  return files;
}
