import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DescriptorError,
  encodeConfigDescriptor,
  encodeLangIdTable,
  encodeStringDescriptor,
  encodeReportDescriptor,
  hid,
} from '../../src/usb/descriptors.js';
import { buildRomImages, ROM_DEVICE_NAMES, sentDeviceDescriptor } from '../../src/usb/rom-images.js';
import { qemuHidDescriptorSet, qemuSerial, type HidKind } from '../../src/usb/hid/qemu-hid-descriptors.js';
import { loadQemuFixture } from './qemu-fixture.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fx = loadQemuFixture();
const products: Record<HidKind, string> = {
  tablet: 'QEMU USB Tablet',
  mouse: 'QEMU USB Mouse',
  keyboard: 'QEMU USB Keyboard',
};
const kinds: HidKind[] = ['tablet', 'mouse', 'keyboard'];

describe('roms/ is reproducible', () => {
  const built = buildRomImages();
  test('every checked-in file equals the builder output', () => {
    const onDisk = readdirSync(join(root, 'roms')).sort();
    expect(onDisk).toEqual([...built.keys()].sort());
    for (const [name, bytes] of built) {
      expect(Buffer.from(readFileSync(join(root, 'roms', name))).equals(Buffer.from(bytes))).toBe(true);
    }
  });
});

describe.each(kinds)('%s descriptors equal QEMU 7.2 as the guest read them', (kind) => {
  const path = fx.pathOf.get(products[kind])!;
  const sys = fx.sysfs.get(path)!;
  const rom = (suffix: string) => readFileSync(join(root, 'roms', `${ROM_DEVICE_NAMES[kind]}.${suffix}.bin`));

  test('sysfs descriptors = device descriptor + configuration', () => {
    const ours = Buffer.concat([Buffer.from(sentDeviceDescriptor(kind)), rom('config')]).toString('hex');
    expect(ours).toBe(sys.get('descriptors'));
    expect(rom('device').toString('hex')).toBe(sys.get('descriptors')!.slice(0, 36));
  });

  test('HID report descriptor', () => {
    expect(rom('report').toString('hex')).toBe(Buffer.from(fx.reportDescriptors.get(path)!).toString('hex'));
    expect(Buffer.from(qemuHidDescriptorSet(kind).reportDescriptor).equals(rom('report'))).toBe(true);
  });

  test('ids, version, strings, serial number and power', () => {
    const set = qemuHidDescriptorSet(kind);
    expect(sys.get('idVendor')).toBe(set.device.idVendor.toString(16).padStart(4, '0'));
    expect(sys.get('idProduct')).toBe(set.device.idProduct.toString(16).padStart(4, '0'));
    expect(sys.get('bcdDevice')).toBe(set.device.bcdDevice.toString(16).padStart(4, '0'));
    // bcdUSB 2.00 although the full-speed table says 1.00: MS OS descriptors raise it.
    expect(sys.get('version')).toBe(`${(set.bcdUSB >> 8).toString(16)}.${(set.bcdUSB & 0xff).toString(16).padStart(2, '0')}`);
    expect(sys.get('speed')).toBe('12');
    expect(sys.get('manufacturer')).toBe(set.strings[set.device.iManufacturer]);
    expect(sys.get('product')).toBe(set.strings[set.device.iProduct]);
    expect(sys.get('serial')).toBe(qemuSerial(kind, { hcdPath: '0000:00:02.0', portPath: path.replace(/^\d+-/, '') }));
    expect(sys.get('bMaxPower')).toBe(`${set.device.configs[0]!.maxPower * 2}mA`);
    expect(sys.get('bmAttributes')).toBe(set.device.configs[0]!.attributes.toString(16));
  });

  test('qualifier, other-speed configuration, BOS and MS OS descriptors', () => {
    const probe = (label: string) => Buffer.from(fx.probes.get(path)!.find((p) => p.label === label)!.data!);
    expect(rom('qualifier').equals(probe('qualifier'))).toBe(true);
    expect(rom('other-speed-config').equals(probe('otherspeed'))).toBe(true);
    expect(readFileSync(join(root, 'roms', 'usb-hid.bos.bin')).equals(probe('bos'))).toBe(true);
    expect(readFileSync(join(root, 'roms', 'usb-hid.msos-compat.bin')).equals(probe('msos_dev4'))).toBe(true);
    expect(readFileSync(join(root, 'roms', 'usb-hid.msos-ext-props.bin')).equals(probe('msos_dev5'))).toBe(true);
  });
});

describe('descriptor encoders', () => {
  test('string descriptors are UTF-16LE with bLength = 2 + 2n', () => {
    expect(Buffer.from(encodeStringDescriptor('QEMU')).toString('hex')).toBe('0a03510045004d005500');
    expect(Buffer.from(encodeStringDescriptor('é€')).toString('hex')).toBe('0603e900ac20');
    expect(() => encodeStringDescriptor('x'.repeat(127))).toThrow(DescriptorError);
    expect(Buffer.from(encodeLangIdTable([0x0409, 0x0407])).toString('hex')).toBe('0603090407 04'.replace(' ', ''));
  });

  test('HID items pick the smallest size, signed for extents', () => {
    const b = (x: { bytes: Uint8Array }) => Buffer.from(x.bytes).toString('hex');
    expect(b(hid.logicalMinimum(-127))).toBe('1581');
    expect(b(hid.logicalMaximum(0x7fff))).toBe('26ff7f');
    expect(b(hid.logicalMaximum(255))).toBe('26ff00');
    expect(b(hid.logicalMaximum(255, 1))).toBe('25ff');
    expect(b(hid.usageMaximum(0xff))).toBe('29ff');
    expect(b(hid.endCollection())).toBe('c0');
    expect(encodeReportDescriptor([hid.usagePage(1), hid.usage(0x10000)]).length).toBe(2 + 5);
  });

  test('wTotalLength covers interfaces, class descriptors and endpoints', () => {
    const cfg = encodeConfigDescriptor({
      value: 2, iConfiguration: 0, attributes: 0xc0, maxPower: 0,
      interfaces: [{ number: 0, alternate: 0, interfaceClass: 0xff, subClass: 0, protocol: 0, iInterface: 0,
        classDescriptors: [Uint8Array.of(3, 0x24, 1)],
        endpoints: [{ address: 0x02, attributes: 2, maxPacketSize: 0x200, interval: 0 }] }],
    });
    expect(cfg.length).toBe(9 + 9 + 3 + 7);
    expect(cfg[2] | (cfg[3]! << 8)).toBe(cfg.length);
    expect(Buffer.from(cfg.subarray(21)).toString('hex')).toBe('07050202000200');
  });

  test('usb_version=1 has no high-speed tables; msos-desc=off keeps bcdUSB 1.00', () => {
    expect(qemuHidDescriptorSet('tablet', { usbVersion: 1 }).otherSpeed).toBeUndefined();
    const off = qemuHidDescriptorSet('tablet', { msosDesc: false });
    expect(off.bcdUSB).toBe(0x0100);
    expect(off.strings[0xee]).toBeUndefined();
    expect(qemuSerial('mouse', { portPath: '3' })).toBe('89126-3');
    expect(qemuSerial('mouse', { serial: 'abc', hcdPath: 'x' })).toBe('abc');
  });
});
