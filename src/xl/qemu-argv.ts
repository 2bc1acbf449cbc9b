/**
 * QEMU's command line as a list of options: each `-name [value]` pair kept
 * with its original spelling, so a device-model wrapper can take some out and
 * hand the rest to QEMU byte for byte. QEMU accepts `-name` and `--name`;
 * an option takes one value unless it is one of QEMU 7.2's flags
 * (qemu-options.hx: the entries declared without an argument).
 */

import { UserFacingError } from '../platform/user-facing-error.js';

/** QEMU 7.2 options that take no value (qemu-options.hx, HAS_ARG absent). */
const FLAGS: ReadonlySet<string> = new Set([
  'S', 'alt-grab', 'ctrl-grab', 'daemonize', 'enable-kvm', 'enable-sync-profile', 'full-screen',
  'h', 'help', 'no-acpi', 'no-fd-bootchk', 'no-frame', 'no-hpet', 'no-quit', 'no-reboot',
  'no-shutdown', 'no-user-config', 'nodefaults', 'nographic', 'only-migratable', 'old-param',
  'preconfig', 'semihosting', 'snapshot', 'usb', 'version', 'win2k-hack', 'xen-attach',
  'xen-domid-restrict', 'localtime', 'std-vga', 'rtc-td-hack', 'no-kvm', 'no-kvm-irqchip',
  'no-kvm-pit', 'no-kvm-pit-reinjection', 's', 'curses', 'sdl', 'singlestep', 'watchdog-action-none',
]);

export interface QemuOption {
  /** Name without dashes, e.g. `usbdevice`. */
  name: string;
  /** The value; undefined for a flag. */
  value?: string;
  /** The exact tokens as given (`['--usbdevice', 'tablet']`). */
  tokens: readonly string[];
}

/** A malformed QEMU command line (an option missing its value, a stray word). */
export class QemuArgvError extends UserFacingError {}

/** Split argv (without argv[0]) into options. */
export function parseQemuArgv(argv: readonly string[]): QemuOption[] {
  const out: QemuOption[] = [];
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (!tok.startsWith('-') || tok === '-' || tok === '--') {
      // QEMU 7.2 takes a bare word as the disk image (-hda); libxl never passes one.
      throw new QemuArgvError(`unexpected argument '${tok}' (only options are understood)`);
    }
    const name = tok.replace(/^--?/, '');
    if (FLAGS.has(name)) {
      out.push({ name, tokens: [tok] });
      continue;
    }
    const value = argv[i + 1];
    if (value === undefined) throw new QemuArgvError(`option ${tok} needs a value`);
    out.push({ name, value, tokens: [tok, value] });
    i++;
  }
  return out;
}

/** Back to argv. */
export function formatQemuArgv(opts: readonly QemuOption[]): string[] {
  return opts.flatMap((o) => [...o.tokens]);
}

/**
 * A QEMU option value in its `key=value,...` form (`-device usb-tablet,bus=x.0`),
 * with QEMU's escaping: a doubled comma is a literal comma. The first element
 * may be a bare word (the driver / backend name), reported as `implied`.
 */
export interface KeyValues {
  implied?: string;
  props: Map<string, string>;
}

export function parseKeyValues(text: string, impliedKey?: string): KeyValues {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === ',') {
      if (text[i + 1] === ',') {
        cur += ',';
        i++;
        continue;
      }
      parts.push(cur);
      cur = '';
      continue;
    }
    cur += c;
  }
  parts.push(cur);
  const props = new Map<string, string>();
  let implied: string | undefined;
  parts.forEach((p, idx) => {
    const eq = p.indexOf('=');
    if (eq < 0) {
      if (idx === 0) implied = p;
      else props.set(p, 'on');
      return;
    }
    props.set(p.slice(0, eq), p.slice(eq + 1));
  });
  if (implied === undefined && impliedKey && props.has(impliedKey)) implied = props.get(impliedKey);
  return { implied, props };
}

/** The inverse of parseKeyValues (commas in values doubled). */
export function formatKeyValues(kv: KeyValues): string {
  const esc = (s: string) => s.replace(/,/g, ',,');
  const parts = kv.implied !== undefined ? [esc(kv.implied)] : [];
  for (const [k, v] of kv.props) parts.push(`${esc(k)}=${esc(v)}`);
  return parts.join(',');
}
