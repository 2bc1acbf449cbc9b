/**
 * Reader for test/fixtures/qemu-7.2/raw-console.txt, the dump a Linux 6.1
 * guest printed about QEMU 7.2's usb-tablet/usb-kbd/usb-mouse
 * (scripts/capture-qemu-hid.sh, scripts/qemu-capture/usbprobe.c).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ProbeLine {
  kind: 'R' | 'I';
  label: string;
  requestType: number;
  request: number;
  value: number;
  index: number;
  length: number;
  /** Data read (IN) / empty for OUT, or null when the request failed. */
  data: Uint8Array | null;
  error: string | null;
  /** Interrupt reads: endpoint address. */
  endpoint?: number;
}

export interface QemuFixture {
  /** sysfs attributes per USB device path ("1-1", "1-2.1", ...). */
  sysfs: Map<string, Map<string, string>>;
  /** Device path per product string. */
  pathOf: Map<string, string>;
  /** Probe results per device path, in order. */
  probes: Map<string, ProbeLine[]>;
  /** HID report descriptor per device path. */
  reportDescriptors: Map<string, Uint8Array>;
}

export const fixtureDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'qemu-7.2');

const unhex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));

export function loadQemuFixture(): QemuFixture {
  const text = readFileSync(join(fixtureDir, 'raw-console.txt'), 'utf8');
  const f: QemuFixture = { sysfs: new Map(), pathOf: new Map(), probes: new Map(), reportDescriptors: new Map() };
  let current: string | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    const parts = line.split(' ');
    switch (parts[0]) {
      case 'S': {
        const [, path, attr, ...rest] = parts;
        if (!f.sysfs.has(path!)) f.sysfs.set(path!, new Map());
        f.sysfs.get(path!)!.set(attr!, rest.join(' '));
        break;
      }
      case 'P':
        current = parts[1]!;
        f.pathOf.set(parts.slice(2).join(' '), current);
        f.probes.set(current, []);
        break;
      case 'R': {
        const [, label, rt, rq, val, idx, len, res, hex] = parts;
        f.probes.get(current!)!.push({
          kind: 'R', label: label!, requestType: parseInt(rt!, 16), request: parseInt(rq!, 16),
          value: parseInt(val!, 16), index: parseInt(idx!, 16), length: Number(len),
          data: res === 'OK' ? unhex(hex ?? '') : null, error: res === 'ERR' ? hex! : null,
        });
        break;
      }
      case 'I': {
        const [, label, ep, len, res, hex] = parts;
        f.probes.get(current!)!.push({
          kind: 'I', label: label!, requestType: 0, request: 0, value: 0, index: 0, length: Number(len),
          endpoint: parseInt(ep!, 16), data: res === 'OK' ? unhex(hex ?? '') : null, error: res === 'ERR' ? hex! : null,
        });
        break;
      }
      case 'H': {
        // "H 1-1/1-1:1.0/0003:... <hex>": the device path is the part before the interface.
        const path = parts[1]!.split('/').find((p) => p.includes(':'))!.split(':')[0]!;
        f.reportDescriptors.set(path, unhex(parts[2]!));
        break;
      }
    }
  }
  return f;
}
