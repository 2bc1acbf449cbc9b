/**
 * `uhci-dm inspect FILE`: a decoded per-frame timeline of a trace (the
 * schedule walk with tokens, status, data and decoded setup packets; register
 * and port events; IRQ edges; idle frames collapsed), the anomaly report, and
 * exports: --json, --html OUT.html (self-contained page), --pcap OUT.pcap
 * (Linux usbmon format for Wireshark/tshark). Exit 0 when no anomaly was
 * found, 1 when some were, 2 for bad arguments or an unusable file.
 */
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { markingStyle, neutralise, neutraliseJson, neutraliseLine, renderMarked } from '../platform/safe-text.js';
import { TraceFormatError } from '../trace/format.js';
import { DEFAULT_ANOMALY_OPTIONS } from '../inspect/anomalies.js';
import { formatInspectionHtml } from '../inspect/html-report.js';
import { inspectTrace, type Inspection } from '../inspect/inspector.js';
import { ANSI, formatInspection, type Style } from '../inspect/text-report.js';
import { usbmonPcap } from '../inspect/usbmon-pcap.js';
import { intOption, optionHelp, parseArgs, UsageError, type OptionSpec } from './args.js';

const OPTIONS: Record<string, OptionSpec> = {
  from: { value: true, help: 'first frame to show (frames count from 1 at the start of the trace)' },
  to: { value: true, help: 'last frame to show' },
  json: { value: false, help: 'print events, transfers and anomalies as one JSON object' },
  html: { value: true, help: 'write a self-contained HTML timeline to FILE' },
  pcap: { value: true, help: 'write the transfers as a usbmon pcap (LINKTYPE_USB_LINUX_MMAPPED) to FILE' },
  'no-color': { value: false, help: 'no ANSI colour even on a terminal' },
  color: { value: false, help: 'ANSI colour even when stdout is not a terminal' },
  quiet: { value: false, help: 'print only the anomaly report' },
  'irq-frames': { value: true, help: `IRQ high this many frames after the guest read USBSTS, without a USBSTS write, is flagged (default ${DEFAULT_ANOMALY_OPTIONS.irqFrames})` },
  'irq-silent-frames': { value: true, help: `IRQ high this many frames with no USBSTS access at all is flagged (default ${DEFAULT_ANOMALY_OPTIONS.irqSilentFrames})` },
  'ioc-window': { value: true, help: `IOC storm window in frames (default ${DEFAULT_ANOMALY_OPTIONS.iocWindow})` },
  'ioc-max': { value: true, help: `IOC storm: more IOC frames than this in the window (default ${DEFAULT_ANOMALY_OPTIONS.iocMax})` },
  help: { value: false, help: 'this text' },
};

export interface InspectCommandIo {
  out?: (s: string) => void;
  err?: (s: string) => void;
  /** Whether stdout is a terminal (colour). */
  isTty?: boolean;
}

/** The inspection as JSON-able data (byte arrays as hex strings; no raw terminal controls, safe-text.ts). */
export function inspectionJson(r: Inspection): string {
  const { timeline, anomalies, urbs, devices, header, summary, events, frames, range, stats } = r;
  return neutraliseJson(
    JSON.stringify(
      { trace: { header, summary, events, frames }, range, stats, devices, anomalies, transfers: urbs, timeline },
      (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v),
    ),
  );
}

const MARKED: Style = markingStyle(['frame', 'event', 'ok', 'bad', 'dim', 'alert']);
const isStyleClass = (cls: string): cls is keyof Style => Object.hasOwn(MARKED, cls);

/**
 * The text report, safe for a terminal: whatever the trace's strings hold
 * is shown as escapes (safe-text.ts); with `color`, ANSI colour is added
 * after that.
 */
export function inspectionText(r: Inspection, name: string, color: boolean): string {
  return renderMarked(formatInspection(r, MARKED, name), (cls, text) => (color && isStyleClass(cls) ? ANSI[cls](text) : text), (text) => text);
}

export async function inspectCommand(argv: string[], io: InspectCommandIo = {}): Promise<number> {
  const out = io.out ?? ((s: string) => process.stdout.write(s));
  const err = io.err ?? ((s: string) => process.stderr.write(s));
  let file: string;
  let p: ReturnType<typeof parseArgs>;
  let from: number;
  let to: number;
  let anomalies: { irqFrames: number; irqSilentFrames: number; iocWindow: number; iocMax: number };
  try {
    p = parseArgs(argv, OPTIONS);
    if (p.options.has('help')) {
      out(`usage: uhci-dm inspect [options] FILE\n  decode a trace (.uhcitrace.gz): per-frame schedule walk, events, guest-driver anomalies\n${optionHelp(OPTIONS)}\nexit status: 0 no anomalies, 1 anomalies found, 2 bad arguments or file\n`);
      return 0;
    }
    if (p.positionals.length !== 1) throw new UsageError('inspect takes exactly one trace file');
    file = p.positionals[0]!;
    from = intOption(p, 'from', 1, 1, Number.MAX_SAFE_INTEGER);
    to = intOption(p, 'to', Number.MAX_SAFE_INTEGER, 1, Number.MAX_SAFE_INTEGER);
    if (to < from) throw new UsageError(`--to ${to} is before --from ${from}`);
    anomalies = {
      irqFrames: intOption(p, 'irq-frames', DEFAULT_ANOMALY_OPTIONS.irqFrames, 1, 1 << 30),
      irqSilentFrames: intOption(p, 'irq-silent-frames', DEFAULT_ANOMALY_OPTIONS.irqSilentFrames, 1, 1 << 30),
      iocWindow: intOption(p, 'ioc-window', DEFAULT_ANOMALY_OPTIONS.iocWindow, 1, 1 << 16),
      iocMax: intOption(p, 'ioc-max', DEFAULT_ANOMALY_OPTIONS.iocMax, 0, 1 << 16),
    };
  } catch (e) {
    if (e instanceof UsageError) {
      err(`uhci-dm inspect: ${neutraliseLine(e.message)}\n`);
      return 2;
    }
    throw e;
  }
  let r: Inspection;
  try {
    r = await inspectTrace(file, { from, to, anomalies, transfers: true });
  } catch (e) {
    // A file someone handed us: whatever goes wrong reading it is one line, never a stack trace.
    const msg = e instanceof TraceFormatError ? e.message : `${file} cannot be inspected: ${e instanceof Error ? e.message : String(e)}`;
    err(`uhci-dm inspect: ${neutraliseLine(msg)}\n`);
    return 2;
  }
  const name = basename(file);
  const html = p.options.get('html')?.[0];
  const pcap = p.options.get('pcap')?.[0];
  try {
    if (html) writeFileSync(html, formatInspectionHtml(r, name));
    if (pcap) {
      const start = Date.parse(r.header.created);
      writeFileSync(pcap, usbmonPcap(r.urbs, Number.isFinite(start) ? start : 0));
    }
  } catch (e) {
    err(`uhci-dm inspect: cannot write output: ${neutraliseLine((e as Error).message)}\n`);
    return 2;
  }
  if (p.options.has('json')) out(inspectionJson(r) + '\n');
  else {
    const tty = io.isTty ?? process.stdout.isTTY === true;
    const color = p.options.has('color') || (tty && !p.options.has('no-color') && !process.env.NO_COLOR);
    if (p.options.has('quiet')) r = { ...r, timeline: [], devices: [] };
    out(inspectionText(r, name, color));
    if (html) out(neutralise(`HTML timeline written to ${html}\n`));
    if (pcap) out(neutralise(`${r.urbs.length} transfers written to ${pcap} (usbmon pcap)\n`));
  }
  return r.anomalies.length ? 1 : 0;
}
