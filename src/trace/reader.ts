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
import { INPUT_KINDS, OUTPUT_KINDS, TRACE_FORMAT, TRACE_LIMITS, isInputKind, TRACE_VERSION, TraceFormatError, type TraceHeader, type TraceSummary } from './format.js';

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

/** How far reading got (what a caller can hold the reader's limits against). */
export interface ReadProgress {
  /** Decompressed bytes handed over by zlib. */
  decompressed: number;
}

/** Decompressed bytes handed over at a time (fewer hand-offs between zlib and the replayer). */
export const CHUNK = 256 * 1024;

/**
 * Decompressed lines of a trace, in order (without the newline), a batch at
 * a time. Linear in the decompressed size; decompression stops as soon as a
 * line grows past TRACE_LIMITS.lineChars or the file decompresses to more
 * than TRACE_LIMITS.ratio times what was read of it (format.ts).
 */
export async function* traceLineBatches(source: TraceSource, progress?: ReadProgress): AsyncGenerator<string[]> {
  const name = typeof source === 'string' ? source : 'trace';
  const input: Readable =
    typeof source === 'string' ? createReadStream(source, { highWaterMark: CHUNK }) : Readable.from([Buffer.from(source)]);
  const gunzip = createGunzip({ chunkSize: CHUNK });
  let compressed = 0;
  input.on('data', (c: Buffer) => (compressed += c.length));
  input.on('error', (e) => gunzip.destroy(e));
  input.pipe(gunzip);
  const decoder = new StringDecoder('utf8');
  /** The line begun in earlier chunks, in pieces (joined once it ends: linear time). */
  let rest: string[] = [];
  let restChars = 0;
  let decompressed = 0;
  const lineTooLong = () =>
    new TraceFormatError(`${name} is not a usable trace: a line is longer than ${TRACE_LIMITS.lineChars} characters`);
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      decompressed += chunk.length;
      if (progress) progress.decompressed = decompressed;
      if (decompressed > TRACE_LIMITS.ratioAfterBytes && decompressed > TRACE_LIMITS.ratio * compressed) {
        throw new TraceFormatError(`${name} is not a usable trace: it decompresses to more than ${TRACE_LIMITS.ratio} times its size`);
      }
      const text = decoder.write(chunk);
      const first = text.indexOf('\n');
      if (first < 0) {
        rest.push(text);
        restChars += text.length;
        if (restChars > TRACE_LIMITS.lineChars) throw lineTooLong();
        continue;
      }
      if (restChars + first > TRACE_LIMITS.lineChars) throw lineTooLong();
      rest.push(text.slice(0, first));
      const lines = [rest.join('')];
      const last = text.lastIndexOf('\n');
      // Lines within one chunk are shorter than the chunk, so shorter than the limit.
      if (last > first) lines.push(...text.slice(first + 1, last).split('\n'));
      const tail = text.slice(last + 1);
      rest = tail.length ? [tail] : [];
      restChars = tail.length;
      yield lines;
    }
  } catch (e) {
    if (e instanceof TraceFormatError) throw e;
    throw new TraceFormatError(describeZlibError(e as NodeJS.ErrnoException, name));
  } finally {
    input.destroy();
    gunzip.destroy();
  }
  const end = decoder.end();
  if (end.length) rest.push(end);
  if (restChars + end.length > TRACE_LIMITS.lineChars) throw lineTooLong();
  if (rest.length) yield [rest.join('')];
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
  for (const k of ['created', 'model', 'notes'] as const) {
    const x = (h as Record<string, unknown>)[k];
    if (x === undefined) hdr[k] = '';
    else if (typeof x !== 'string' || x.length > TRACE_LIMITS.stringChars) throw new TraceFormatError(`${name}: header field ${k} is not a string of at most ${TRACE_LIMITS.stringChars} characters`);
  }
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

/** What a reader of a whole trace does with it, event by event. */
export interface TraceHandler {
  /** The header, before any event. */
  header?(h: TraceHeader): void;
  /** Event `n` (1-based), checked against TRACE_LIMITS (checkEvent). */
  event(rec: unknown[], n: number): void;
}

export interface TraceRead {
  header: TraceHeader;
  summary: TraceSummary;
  events: number;
}

/**
 * Read a whole trace: header, every event (parsed, checked against
 * TRACE_LIMITS, handed to `handler`), summary. Rejects with a one-line
 * TraceFormatError when the file cannot be used, also when the handler
 * fails on an event (a hostile file must not surface as a crash).
 */
export async function readTrace(source: TraceSource, handler: TraceHandler): Promise<TraceRead> {
  const name = typeof source === 'string' ? source : 'trace';
  const batches = traceLineBatches(source);
  let header: TraceHeader | null = null;
  let summary: TraceSummary | null = null;
  let events = 0;
  try {
    for await (const batch of batches) {
      for (const line of batch) {
        if (!header) {
          header = parseHeader(line, name);
          handler.header?.(header);
          continue;
        }
        if (summary) throw new TraceFormatError(`${name} is corrupt: data after the summary line`);
        if (line.charCodeAt(0) === 0x7b /* { */) {
          summary = parseSummary(line);
          if (!summary) throw new TraceFormatError(`${name} is corrupt: line ${events + 2} is neither an event nor the summary`);
          continue;
        }
        events++;
        let rec: unknown;
        try {
          rec = JSON.parse(line);
        } catch {
          throw new TraceFormatError(`${name} is corrupt: event ${events} is not valid JSON`);
        }
        const problem = checkEvent(rec);
        if (problem) throw new TraceFormatError(`${name} is corrupt: event ${events} ${problem}`);
        try {
          handler.event(rec as unknown[], events);
        } catch (e) {
          if (e instanceof TraceFormatError) throw e;
          throw new TraceFormatError(`${name}: event ${events} cannot be used: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    }
  } finally {
    await batches.return(undefined);
  }
  if (!header) throw new TraceFormatError(`${name} is empty (no header line)`);
  if (!summary) throw new TraceFormatError(`${name} is truncated: no summary line (the recording was not closed)`);
  return { header, summary, events };
}

const GUEST_ADDRESS_END = 2 ** 32;
const isAddress = (x: unknown) => Number.isInteger(x) && (x as number) >= 0 && (x as number) < GUEST_ADDRESS_END;
const isLength = (x: unknown) => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= TRACE_LIMITS.itemBytes;
const isHex = (x: unknown) => typeof x === 'string' && x.length <= 2 * TRACE_LIMITS.itemBytes;

/** Item kinds whose field `i` holds the data of a memory access or packet, as length or hex. */
const DATA_FIELDS: Record<string, number[]> = {
  [OUTPUT_KINDS.write]: [2],
  [OUTPUT_KINDS.writeFault]: [2],
  [OUTPUT_KINDS.readFault]: [2],
  [OUTPUT_KINDS.packet]: [6, 9],
  [INPUT_KINDS.complete]: [6],
};
const ADDRESS_KINDS: ReadonlySet<unknown> = new Set([OUTPUT_KINDS.write, OUTPUT_KINDS.writeFault, OUTPUT_KINDS.readFault]);
const ITEM_KINDS: ReadonlySet<unknown> = new Set(Object.values(OUTPUT_KINDS));

/**
 * Why an event line breaks TRACE_LIMITS or the shape every reader relies
 * on (a kind, a time, a list of items; addresses 32-bit, data lengths and
 * strings bounded, item lists nested at most `nesting` deep), or null.
 * Strings are data as hex (at most 2 × itemBytes characters), except a
 * device's name (at most stringChars).
 * Values are checked further where they are used.
 */
export function checkEvent(rec: unknown): string | null {
  if (!Array.isArray(rec) || typeof rec[0] !== 'string' || rec.length < 4) return 'is not an event';
  if (!isInputKind(rec[0])) return `has unknown event kind ${JSON.stringify(rec[0].slice(0, 16))}`;
  // A live clock may run a little backwards between events (timers firing early): |dt| is bounded, not its sign.
  if (typeof rec[1] !== 'number' || !(Math.abs(rec[1]) <= Number.MAX_SAFE_INTEGER)) return 'has no time (ns since the previous event, at most 2^53)';
  if (!Array.isArray(rec[rec.length - 1])) return 'has no item list';
  let items = 0;
  // Item lists still to check, with their depth (no recursion: depth is bounded, not the stack).
  const lists: { list: unknown[]; depth: number }[] = [];
  const fields = (r: unknown[], depth: number): string | null => {
    for (let i = 1; i < r.length; i++) {
      const x = r[i];
      if (typeof x === 'string' && !isHex(x)) return `holds a string longer than ${2 * TRACE_LIMITS.itemBytes} characters`;
      if (Array.isArray(x) && i === r.length - 1) {
        if (depth >= TRACE_LIMITS.nesting) return `nests items more than ${TRACE_LIMITS.nesting} deep`;
        lists.push({ list: x, depth: depth + 1 });
      }
    }
    const kind = r[0];
    if (kind === INPUT_KINDS.attach) {
      const id = r[3] as { name?: unknown } | null;
      if (!id || typeof id !== 'object' || typeof id.name !== 'string' || id.name.length > TRACE_LIMITS.stringChars) return 'attaches a device without a name of bounded length';
    }
    if (ADDRESS_KINDS.has(kind) && !isAddress(r[1])) return 'has a guest address outside 0..0xffffffff';
    for (const i of DATA_FIELDS[kind as string] ?? []) {
      const x = r[i];
      if (!(typeof x === 'number' ? isLength(x) : isHex(x))) return `has data longer than ${TRACE_LIMITS.itemBytes} bytes`;
    }
    return null;
  };
  const top = fields(rec, 0);
  if (top) return top;
  for (let next = lists.pop(); next; next = lists.pop()) {
    for (const it of next.list) {
      if (++items > TRACE_LIMITS.eventItems) return `has more than ${TRACE_LIMITS.eventItems} items`;
      if (typeof it === 'number') {
        if (!isAddress(it)) return 'has a guest address outside 0..0xffffffff';
        continue;
      }
      if (!Array.isArray(it)) return 'has an item that is neither a number nor a list';
      if (typeof it[0] === 'number') {
        // A memory read: [addr, length] or [addr, hex].
        if (!isAddress(it[0])) return 'has a guest address outside 0..0xffffffff';
        if (!(typeof it[1] === 'number' ? isLength(it[1]) : isHex(it[1]))) return `reads more than ${TRACE_LIMITS.itemBytes} bytes at once`;
        continue;
      }
      if (!ITEM_KINDS.has(it[0]) && !isInputKind(it[0])) return `has an item of unknown kind`;
      const bad = fields(it, next.depth);
      if (bad) return bad;
    }
  }
  return null;
}
