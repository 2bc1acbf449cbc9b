/**
 * `uhci-dm list-host`: the host's USB devices as libusb sees them, one line
 * each in the style of lsusb (bus, address, vid:pid, strings), plus the
 * speed, the port path and whether the device could be passed through to a
 * UHCI port. Says so plainly when the host has no USB devices, or when
 * devices are there but cannot be opened (no permission on /dev/bus/usb).
 */
import { guestSpeedFor } from '../usb/host/host-speed.js';
import { LIBUSB_ERROR_ACCESS, LibusbError, portPath, type LibusbHost } from '../usb/host/libusb.js';
import { optionHelp, parseArgs, UsageError, type OptionSpec } from './args.js';

const OPTIONS: Record<string, OptionSpec> = {
  json: { value: false, help: 'print the list as JSON' },
  help: { value: false, help: 'this text' },
};

const hex4 = (n: number) => n.toString(16).padStart(4, '0');
const pad3 = (n: number) => String(n).padStart(3, '0');

export interface HostDeviceListing {
  bus: number;
  address: number;
  port: string;
  vendorId: string;
  productId: string;
  speed: string;
  manufacturer: string | null;
  product: string | null;
  /** Opened to read strings; false with `error` when libusb refused. */
  readable: boolean;
  error: string | null;
  /** Why it cannot go on a UHCI port, or null if it can. */
  uhci: string | null;
}

/** Gather the listing (opens each device briefly to read its strings). */
export async function listHostDevices(host: LibusbHost): Promise<HostDeviceListing[]> {
  const out: HostDeviceListing[] = [];
  for (const d of host.list()) {
    const i = d.info;
    let manufacturer: string | null = null;
    let product: string | null = null;
    let readable = false;
    let error: string | null = null;
    try {
      d.open();
      readable = true;
      try {
        manufacturer = (await d.getString(i.iManufacturer)) ?? null;
        product = (await d.getString(i.iProduct)) ?? null;
      } finally {
        d.close();
      }
    } catch (e) {
      error = e instanceof LibusbError && e.errno === LIBUSB_ERROR_ACCESS ? 'no permission' : (e as Error).message;
    }
    let uhci: string | null = null;
    try {
      guestSpeedFor(i);
    } catch (e) {
      uhci = (e as Error).message;
    }
    out.push({
      bus: i.busNumber,
      address: i.deviceAddress,
      port: portPath(i),
      vendorId: hex4(i.vendorId),
      productId: hex4(i.productId),
      speed: i.speed,
      manufacturer,
      product,
      readable,
      error,
      uhci,
    });
  }
  return out;
}

export function formatListing(list: readonly HostDeviceListing[]): string {
  if (list.length === 0) {
    return 'No USB devices found on this host: libusb lists none (no USB controller, or /dev/bus/usb is not available here).';
  }
  const lines = list.map((d) => {
    const names = [d.manufacturer, d.product].filter((s): s is string => !!s).join(' ');
    const what = d.readable ? names || '(no strings)' : `(strings unreadable: ${d.error})`;
    const fit = d.uhci ? 'not usable on UHCI' : 'usable on UHCI';
    return `Bus ${pad3(d.bus)} Device ${pad3(d.address)}: ID ${d.vendorId}:${d.productId} ${what} [${d.speed} speed, port ${d.port}, ${fit}]`;
  });
  const denied = list.filter((d) => d.error === 'no permission').length;
  if (denied) {
    lines.push(
      `No permission to open ${denied} of ${list.length} device(s): run as root or grant access to /dev/bus/usb (udev rule) to read strings and pass devices through.`,
    );
  }
  return lines.join('\n');
}

export async function listHostCommand(argv: string[], hostOverride?: LibusbHost): Promise<number> {
  const p = parseArgs(argv, OPTIONS);
  if (p.options.has('help')) {
    process.stdout.write(`usage: uhci-dm list-host [options]\n${optionHelp(OPTIONS)}\n`);
    return 0;
  }
  if (p.positionals.length) throw new UsageError(`list-host takes no arguments (got '${p.positionals[0]}')`);
  let host = hostOverride;
  if (!host) {
    const { openNodeUsbHost } = await import('../usb/host/node-usb.js');
    host = await openNodeUsbHost();
  }
  let list: HostDeviceListing[];
  try {
    list = await listHostDevices(host);
  } catch (e) {
    // libusb could not even enumerate (e.g. LIBUSB_ERROR_ACCESS on the bus directory).
    const msg = e instanceof LibusbError && e.errno === LIBUSB_ERROR_ACCESS ? 'no permission to list USB devices' : (e as Error).message;
    process.stderr.write(`uhci-dm: cannot list host USB devices: ${msg}\n`);
    return 1;
  }
  if (p.options.has('json')) process.stdout.write(JSON.stringify(list, null, 2) + '\n');
  else process.stdout.write(formatListing(list) + '\n');
  return 0;
}
