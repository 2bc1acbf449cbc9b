/**
 * Reading a trace: gunzip as a stream (a trace can be far larger than
 * memory) and split into lines; header and summary are checked here, the
 * events are left to the caller. Every problem with the file itself
 * (missing, not gzip, corrupt, truncated, wrong format or version) is a
 * TraceFormatError with a one-line message.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import { TRACE_FORMAT, TRACE_VERSION, TraceFormatError, type TraceHeader, type TraceSummary } from './format.js';

/** A trace file path, or the gzip bytes of a trace. */
export type TraceSource = string | Uint8Array;

function describeZlibError(e: NodeJS.ErrnoException, name: string): string {
  if (e.code === 'ENOENT') return `cannot open ${name}: no such file`;
  if (e.code === 'EISDIR') return `cannot read ${name}: it is a directory`;
  if (e.code === 'EACCES') return `cannot read ${name}: permission denied`;
  if (e.code === 'Z_BUF_ERROR' || /unexpected end of file/i.test(e.message)) return `${name} is truncated (the gzip stream ends early)`;
  if (/incorrect header check/i.test(e.message)) return `${name} is not a gzip-compressed trace (bad gzip header)`;
  if (e.code === 'Z_DATA_ERROR') return `${name} is corrupt (gzip: ${e.message})`;
  return `cannot read ${name}: ${e.message}`;
}

/** Decompressed bytes handed over at a time (fewer hand-offs between zlib and the replayer). */
const CHUNK = 256 * 1024;

/** Decompressed lines of a trace, in order (without the newline), a batch at a time. */
export async function* traceLineBatches(source: TraceSource): AsyncGenerator<string[]> {
  const name = typeof source === 'string' ? source : 'trace';
  const input: Readable =
    typeof source === 'string' ? createReadStream(source, { highWaterMark: CHUNK }) : Readable.from([Buffer.from(source)]);
  const gunzip = createGunzip({ chunkSize: CHUNK });
  input.on('error', (e) => gunzip.destroy(e));
  input.pipe(gunzip);
  const decoder = new StringDecoder('utf8');
  let rest = '';
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      const text = rest + decoder.write(chunk);
      const end = text.lastIndexOf('\n');
      if (end < 0) {
        rest = text;
        continue;
      }
      rest = text.slice(end + 1);
      yield text.slice(0, end).split('\n');
    }
  } catch (e) {
    if (e instanceof TraceFormatError) throw e;
    throw new TraceFormatError(describeZlibError(e as NodeJS.ErrnoException, name));
  } finally {
    input.destroy();
    gunzip.destroy();
  }
  rest += decoder.end();
  if (rest.length) yield [rest];
}

/** Decompressed lines of a trace, one at a time. */
export async function* traceLines(source: TraceSource): AsyncGenerator<string> {
  for await (const batch of traceLineBatches(source)) yield* batch;
}

export function parseHeader(line: string | undefined, name = 'trace'): TraceHeader {
  if (line === undefined) throw new TraceFormatError(`${name} is empty (no header line)`);
  let h: unknown;
  try {
    h = JSON.parse(line);
  } catch {
    throw new TraceFormatError(`${name} has no valid header line (not a uhci-dm trace)`);
  }
  if (!h || typeof h !== 'object' || (h as { format?: unknown }).format !== TRACE_FORMAT) {
    throw new TraceFormatError(`${name} is not a uhci-dm trace (header format is not '${TRACE_FORMAT}')`);
  }
  const v = (h as { version?: unknown }).version;
  if (v !== TRACE_VERSION) {
    throw new TraceFormatError(`${name} has unsupported trace format version ${JSON.stringify(v)} (this uhci-dm reads version ${TRACE_VERSION})`);
  }
  const hdr = h as TraceHeader;
  const opts = hdr.options as unknown;
  if (!opts || typeof opts !== 'object') throw new TraceFormatError(`${name}: header has no model options`);
  const variant = (opts as { variant?: unknown }).variant;
  if (variant !== 'piix3' && variant !== 'piix4') throw new TraceFormatError(`${name}: header names unknown variant ${JSON.stringify(variant)}`);
  for (const k of ['maxBatch', 'idleCoalesce'] as const) {
    const x = (opts as Record<string, unknown>)[k];
    if (x !== undefined && (typeof x !== 'number' || !Number.isInteger(x) || x < 1)) {
      throw new TraceFormatError(`${name}: header option ${k} is not a positive integer`);
    }
  }
  return hdr;
}

/** The summary line's content, or null when `line` is not a summary. */
export function parseSummary(line: string): TraceSummary | null {
  if (!line.startsWith('{')) return null;
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    return null;
  }
  const s = (o as { summary?: unknown } | null)?.summary;
  if (!s || typeof s !== 'object') return null;
  const r = s as Record<string, unknown>;
  for (const k of ['events', 'items', 'frames', 'skipped', 'endNs']) {
    if (typeof r[k] !== 'number') throw new TraceFormatError(`trace summary has no numeric '${k}'`);
  }
  return s as TraceSummary;
}
