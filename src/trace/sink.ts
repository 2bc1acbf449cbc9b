/**
 * Where a recorder's text goes. The file sink compresses each flushed chunk
 * as its own gzip member and writes it synchronously: memory stays bounded
 * however long the recording runs, even when the model runs without giving
 * the event loop a turn (a ManualClock advanced by hours), and whatever was
 * flushed before a crash is readable (concatenated members are one valid
 * gzip stream, RFC 1952 §2.2).
 *
 * A sink holds at most `maxBytes` of compressed data: a chunk that would
 * pass the cap is refused whole (TraceSinkFullError, nothing written), so
 * the file always ends at a line boundary. Only the final chunk (the summary
 * line) may pass it. A chunk the disk refuses part-way (ENOSPC, EIO) is cut
 * off again, so the file keeps ending at the last complete member.
 */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

/** Compressed bytes a trace file may reach by default (`--record-max`): about 12 minutes of a busy guest at 1.4 KB per frame. */
export const DEFAULT_TRACE_MAX_BYTES = 1024 * 1024 * 1024;

export interface TraceSink {
  /** Where the text goes, for messages (a path, or "memory"). */
  readonly name: string;
  /** Append text (complete lines); `final`: the last chunk, which may pass the size cap. */
  write(text: string, final?: boolean): void;
  /** Finish the file. */
  close(): Promise<void>;
}

/** The chunk would take the sink past its size cap; nothing was written. */
export class TraceSinkFullError extends Error {
  constructor(
    readonly sink: string,
    readonly maxBytes: number,
  ) {
    super(`${sink} reached its size limit of ${maxBytes} bytes`);
    this.name = 'TraceSinkFullError';
  }
}

/**
 * Write all of `bytes` at the end of the file `fd` (now `size` bytes long),
 * or, when the disk refuses part-way (ENOSPC, EIO), cut the file back to
 * `size` (giving back the space) and throw the write's error: a file made of
 * whole records stays one.
 */
export function appendWhole(fd: number, bytes: Uint8Array, size: number): void {
  try {
    // writeSync may write less than asked (rare for files): finish it.
    for (let o = 0; o < bytes.length; ) o += writeSync(fd, bytes, o, bytes.length - o);
  } catch (e) {
    try {
      ftruncateSync(fd, size);
    } catch {
      // the write error is what matters
    }
    throw e;
  }
}

export class GzipFileSink implements TraceSink {
  private fd: number | null;
  bytesWritten = 0;
  constructor(
    readonly path: string,
    readonly maxBytes = DEFAULT_TRACE_MAX_BYTES,
  ) {
    this.fd = openSync(path, 'w');
  }
  get name(): string {
    return this.path;
  }
  write(text: string, final = false): void {
    if (this.fd === null) throw new Error(`trace file ${this.path} is already closed`);
    const z = gzipSync(text);
    if (!final && this.bytesWritten + z.length > this.maxBytes) throw new TraceSinkFullError(this.path, this.maxBytes);
    // The file stays a sequence of whole gzip members.
    appendWhole(this.fd, z, this.bytesWritten);
    this.bytesWritten += z.length;
  }
  async close(): Promise<void> {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
  }
}

/** Keeps the compressed trace in memory (tests, benchmarks). */
export class MemorySink implements TraceSink {
  readonly name = 'memory';
  private readonly chunks: Buffer[] = [];
  private size = 0;
  closed = false;
  constructor(readonly maxBytes = Infinity) {}
  write(text: string, final = false): void {
    const z = gzipSync(text);
    if (!final && this.size + z.length > this.maxBytes) throw new TraceSinkFullError(this.name, this.maxBytes);
    this.chunks.push(z);
    this.size += z.length;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  /** The gzip file contents written so far. */
  bytes(): Uint8Array {
    return new Uint8Array(Buffer.concat(this.chunks));
  }
}
