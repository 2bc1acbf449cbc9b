/**
 * Where a recorder's text goes. The file sink compresses each flushed chunk
 * as its own gzip member and writes it synchronously: memory stays bounded
 * however long the recording runs, even when the model runs without giving
 * the event loop a turn (a ManualClock advanced by hours), and whatever was
 * flushed before a crash is readable (concatenated members are one valid
 * gzip stream, RFC 1952 §2.2).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

export interface TraceSink {
  /** Append text (complete lines). */
  write(text: string): void;
  /** Finish the file. */
  close(): Promise<void>;
}

export class GzipFileSink implements TraceSink {
  private fd: number | null;
  bytesWritten = 0;
  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }
  write(text: string): void {
    if (this.fd === null) throw new Error(`trace file ${this.path} is already closed`);
    const z = gzipSync(text);
    writeSync(this.fd, z);
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
  private readonly chunks: Buffer[] = [];
  closed = false;
  write(text: string): void {
    this.chunks.push(gzipSync(text));
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  /** The gzip file contents written so far. */
  bytes(): Uint8Array {
    return new Uint8Array(Buffer.concat(this.chunks));
  }
}
