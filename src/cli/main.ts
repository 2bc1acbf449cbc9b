/**
 * uhci-dm command line. Each subcommand lives in its own module; errors a
 * user can fix (bad arguments, missing QEMU, corrupt files) print one line
 * and exit with a non-zero code, never a stack trace.
 */
import { neutraliseLine } from '../platform/safe-text.js';
import { UserFacingError } from '../platform/user-facing-error.js';
import { VERSION } from '../version.js';
import { UsageError } from './args.js';

const USAGE = `usage: uhci-dm <command> [options]

commands:
  demo          run the controller with an emulated tablet and keyboard, enumerate
                them with the built-in guest driver, inject input (no Xen needed)
  xen           serve a Xen HVM domain's UHCI function as an ioreq server
                (uhci-dm xen --domid N [-usbdevice tablet] ...; see docs/xen.md)
  replay FILE   re-run a recorded trace against the current model and verify every
                output byte for byte (exit 1 on divergence, 2 on a bad file)
  inspect FILE  decoded per-frame timeline of a trace and a report of guest-driver
                anomalies; --html OUT, --json, --pcap OUT (usbmon for Wireshark)
  list-host     list the host's USB devices (what -usbdevice host:... can pass through)
  lab           boot a real Linux guest under QEMU (TCG) with this model as its UHCI
                function (x-pci-proxy-dev), report what the guest saw; --reference
                boots QEMU's own piix3-usb-uhci instead
  help          this text
  version       print the version

Run 'uhci-dm <command> --help' for a command's options.`;

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  demo: async () => (await import('./demo.js')).demoCommand,
  lab: async () => (await import('./lab.js')).labCommand,
  xen: async () => (await import('./xen.js')).xenCommand,
  replay: async () => (await import('./replay.js')).replayCommand,
  inspect: async () => (await import('./inspect.js')).inspectCommand,
  'list-host': async () => (await import('./list-host.js')).listHostCommand,
};

export async function run(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
      process.stdout.write(USAGE + '\n');
      return cmd ? 0 : 2;
    }
    if (cmd === 'version' || cmd === '--version') {
      process.stdout.write(`uhci-dm ${VERSION}\n`);
      return 0;
    }
    const load = commands[cmd];
    if (!load) throw new UsageError(`unknown command '${cmd}' (try 'uhci-dm help')`);
    return await (await load())(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`uhci-dm: ${neutraliseLine(e.message)}\n`);
      return 2;
    }
    if (e instanceof UserFacingError) {
      process.stderr.write(`uhci-dm: ${neutraliseLine(e.message)}\n`);
      return 1;
    }
    throw e;
  }
}
