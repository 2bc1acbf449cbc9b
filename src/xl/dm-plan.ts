/**
 * What a device-model wrapper does with the command line libxl gives QEMU:
 * which options uhci-dm serves (`-usb`, `-usbdevice X`, `-device usb-tablet`
 * etc. on the `-usb` bus), which it must adapt (the QMP chardev libxl talks
 * to), and what goes to QEMU unchanged. Pure: argv in, plan out.
 *
 * Facts (Xen 4.17 tools/libs/light/libxl_dm.c, libxl__build_device_model_args_new):
 * - `-xen-domid N` names the domain; `-chardev socket,id=libxl-cmd,...` +
 *   `-mon chardev=libxl-cmd,mode=control` is libxl's QMP connection, a
 *   `path=/var/run/xen/qmp-libxl-N` socket, or with dm_restrict an `fd=N`
 *   listening socket libxl opened;
 * - `usb=1` / `usbdevice=[...]` become `-usb` and one `-usbdevice X` each;
 *   `usbversion=2|3` asks for `-device usb-ehci` / `nec-usb-xhci` instead,
 *   which stays QEMU's (uhci-dm is a USB 1.1 controller);
 * - a stub-domain device model is recognisable by `-xen-domid` of the
 *   stubdomain and `-machine xenpv` in the dom0 helper; a wrapper is never the
 *   stubdomain's own QEMU.
 * On QEMU 7.2's xenfv/pc machine `-usb` puts piix3-usb-uhci at 00:01.2, a
 * function of the multi-function PIIX3 at 00:01.0 (hw/i386/pc_piix.c), and
 * QEMU 7.2 refuses `-usbdevice host:...`.
 */
import { UserFacingError } from '../platform/user-facing-error.js';
import { formatKeyValues, parseKeyValues, parseQemuArgv, type QemuOption } from './qemu-argv.js';

/** The PCI address QEMU gives the `-usb` controller on the PIIX3 (00:01.2). */
export const USB1_BDF = '00:01.2';
/**
 * Addresses for controllers added with usbctrl (QMP device_add
 * piix3-usb-uhci): the PIIX3's unused functions 4..7. QEMU allocates whole
 * slots for its own devices and never uses these, so they cannot collide
 * with a later `xl pci-attach`; Linux and Windows scan all eight functions
 * of a multi-function device (PCI Local Bus Spec 3.0, 3.2.2.3.4 / header
 * type bit 7).
 */
export const USBCTRL_BDFS: readonly string[] = ['00:01.4', '00:01.5', '00:01.6', '00:01.7'];

/** QEMU drivers of USB devices uhci-dm emulates or passes through, by QEMU name. */
export const OUR_USB_DRIVERS: ReadonlySet<string> = new Set(['usb-tablet', 'usb-mouse', 'usb-kbd', 'usb-host']);
/** Controllers of another USB version libxl may ask QEMU for (usbversion=2|3): left to QEMU. */
const OTHER_USB_CONTROLLERS: ReadonlySet<string> = new Set(['usb-ehci', 'ich9-usb-ehci1', 'nec-usb-xhci', 'qemu-xhci']);

/** libxl's QMP connection as QEMU would have opened it. */
export type QmpEndpoint = { kind: 'path'; path: string } | { kind: 'fd'; fd: number };

export interface DmPlan {
  domid: number;
  /** `-machine xenpv`: the dom0 helper QEMU of a PV domain or stubdomain (no USB here). */
  pv: boolean;
  /** The `-usb` controller and what goes on it (`-usbdevice` / `-device` specs in uhci-dm xen syntax), or null. */
  usb1: { devices: string[] } | null;
  /** libxl's QMP socket (the wrapper listens there), or null when none was given. */
  qmp: QmpEndpoint | null;
  /** `-incoming` value (restore / migration), if any. */
  incoming?: string;
  /** dm_restrict: QEMU's `-runas` value and `-chroot` path. */
  runas?: string;
  chroot?: string;
  /** QEMU's options minus what uhci-dm serves; the QMP chardev still as libxl gave it (see withQmpPath). */
  qemu: QemuOption[];
  /** One line per option taken out, for the log. */
  taken: string[];
}

export class DmPlanError extends UserFacingError {}

/** A `-device` value for one of our USB drivers, in uhci-dm xen's syntax (bus/port/id dropped; id kept for QMP). */
function deviceSpec(kv: ReturnType<typeof parseKeyValues>): string {
  const props = new Map(kv.props);
  props.delete('bus');
  props.delete('port');
  props.delete('id');
  return formatKeyValues({ implied: kv.implied, props });
}

export function planFromLibxlArgv(argv: readonly string[]): DmPlan {
  const opts = parseQemuArgv(argv);
  const first = (n: string) => opts.find((o) => o.name === n)?.value;
  const domidText = first('xen-domid');
  if (domidText === undefined) throw new DmPlanError('no -xen-domid: this is not a Xen device-model command line');
  const domid = Number(domidText);
  if (!/^\d+$/.test(domidText) || domid < 1 || domid > 0x7fef) throw new DmPlanError(`bad -xen-domid '${domidText}'`);
  const machine = parseKeyValues(first('machine') ?? first('M') ?? '', 'type');
  const pv = machine.implied === 'xenpv';

  const otherUsb = opts.some((o) => o.name === 'device' && OTHER_USB_CONTROLLERS.has(parseKeyValues(o.value!, 'driver').implied ?? ''));
  const serveUsb = !pv && !otherUsb;
  const qemu: QemuOption[] = [];
  const taken: string[] = [];
  let usb = false;
  const devices: string[] = [];
  let qmp: QmpEndpoint | null = null;
  for (const o of opts) {
    if (serveUsb && o.name === 'usb') {
      usb = true;
      taken.push('-usb');
      continue;
    }
    if (serveUsb && o.name === 'usbdevice') {
      usb = true;
      // uhci-dm xen reads -usbdevice names as QEMU does (tablet, mouse, keyboard, host:...).
      devices.push(o.value!);
      taken.push(`-usbdevice ${o.value}`);
      continue;
    }
    if (serveUsb && o.name === 'device') {
      const kv = parseKeyValues(o.value!, 'driver');
      const bus = kv.props.get('bus');
      if (kv.implied === 'piix3-usb-uhci' && !kv.props.has('addr')) {
        throw new DmPlanError(`-device ${o.value}: give usb=1 or usbctrl= instead (uhci-dm places its controllers itself)`);
      }
      if (OUR_USB_DRIVERS.has(kv.implied ?? '') && (bus === undefined || bus === 'usb-bus.0')) {
        usb = true;
        devices.push(deviceSpec(kv));
        taken.push(`-device ${o.value}`);
        continue;
      }
    }
    if (o.name === 'chardev') {
      const kv = parseKeyValues(o.value!, 'backend');
      if (kv.implied === 'socket' && kv.props.get('id') === 'libxl-cmd') {
        const path = kv.props.get('path');
        const fd = kv.props.get('fd');
        if (path !== undefined) qmp = { kind: 'path', path };
        else if (fd !== undefined && /^\d+$/.test(fd)) qmp = { kind: 'fd', fd: Number(fd) };
        else throw new DmPlanError(`-chardev ${o.value}: libxl's QMP socket has neither path= nor fd=`);
      }
    }
    qemu.push(o);
  }
  return {
    domid,
    pv,
    usb1: usb ? { devices } : null,
    qmp,
    incoming: first('incoming'),
    runas: first('runas'),
    chroot: first('chroot'),
    qemu,
    taken,
  };
}

/** QEMU's options with libxl's QMP chardev moved to `path` (the wrapper stands in between). */
export function withQmpPath(qemu: readonly QemuOption[], path: string): QemuOption[] {
  return qemu.map((o) => {
    if (o.name !== 'chardev') return o;
    const kv = parseKeyValues(o.value!, 'backend');
    if (kv.implied !== 'socket' || kv.props.get('id') !== 'libxl-cmd') return o;
    const props = new Map(kv.props);
    props.delete('fd');
    props.set('path', path);
    const value = formatKeyValues({ implied: kv.implied, props });
    return { name: o.name, value, tokens: [o.tokens[0]!, value] };
  });
}

/** QEMU's options with `-incoming` replaced by `value` (the wrapper feeds QEMU its part of a saved state). */
export function withIncoming(qemu: readonly QemuOption[], value: string): QemuOption[] {
  return qemu.map((o) => (o.name === 'incoming' ? { name: o.name, value, tokens: [o.tokens[0]!, value] } : o));
}
