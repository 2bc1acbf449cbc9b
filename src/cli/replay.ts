/**
 * `uhci-dm replay FILE`: re-run a recorded trace against this build's model
 * and verify every output byte for byte. Exit 0: "replay ok: E events, F
 * frames". Exit 1: the first divergence, with its event, time, frame number
 * and a decoded view of the schedule. Exit 2: the file cannot be used
 * (missing, corrupt, truncated, unsupported version) or bad arguments; one
 * line on stderr, no stack trace.
 */
import { neutralise, neutraliseJson, neutraliseLine } from '../platform/safe-text.js';
import { TraceFormatError } from '../trace/format.js';
import { formatDivergence } from '../trace/divergence.js';
import { replayTrace, type ReplayOptions } from '../trace/replay.js';
import { optionHelp, parseArgs, UsageError, type OptionSpec } from './args.js';

const OPTIONS: Record<string, OptionSpec> = {
  json: { value: false, help: 'print the result as JSON' },
  help: { value: false, help: 'this text' },
};

export interface ReplayCommandIo {
  out?: (s: string) => void;
  err?: (s: string) => void;
  /** Replay against another model (tests). */
  replay?: ReplayOptions;
}

export async function replayCommand(argv: string[], io: ReplayCommandIo = {}): Promise<number> {
  const out = io.out ?? ((s: string) => process.stdout.write(s));
  const err = io.err ?? ((s: string) => process.stderr.write(s));
  let file: string;
  let json: boolean;
  try {
    const p = parseArgs(argv, OPTIONS);
    if (p.options.has('help')) {
      out(`usage: uhci-dm replay [options] FILE\n  re-run a trace (.uhcitrace.gz) against this model and verify every output\n${optionHelp(OPTIONS)}\n`);
      return 0;
    }
    if (p.positionals.length !== 1) throw new UsageError('replay takes exactly one trace file');
    file = p.positionals[0]!;
    json = p.options.has('json');
  } catch (e) {
    if (e instanceof UsageError) {
      err(`uhci-dm replay: ${neutraliseLine(e.message)}\n`);
      return 2;
    }
    throw e;
  }
  try {
    const started = process.hrtime.bigint();
    const r = await replayTrace(file, io.replay);
    const wallNs = Number(process.hrtime.bigint() - started);
    if (r.ok) {
      if (json) out(JSON.stringify({ ok: true, events: r.events, frames: r.frames, traceNs: r.summary.endNs, replayNs: wallNs }) + '\n');
      else out(`replay ok: ${r.events} events, ${r.frames} frames\n`);
      return 0;
    }
    // The divergence quotes the trace: no raw terminal controls on the way out (safe-text.ts).
    if (json) out(neutraliseJson(JSON.stringify({ ok: false, divergence: r.divergence })) + '\n');
    else out(neutralise(formatDivergence(r.divergence, r.events)) + '\n');
    return 1;
  } catch (e) {
    // A file someone handed us: whatever goes wrong reading it is one line, never a stack trace.
    const msg = e instanceof TraceFormatError ? e.message : `${file} cannot be replayed: ${e instanceof Error ? e.message : String(e)}`;
    err(`uhci-dm replay: ${neutraliseLine(msg)}\n`);
    return 2;
  }
}
