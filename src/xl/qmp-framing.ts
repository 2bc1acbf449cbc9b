/**
 * QMP is a stream of JSON objects (QEMU docs/interop/qmp-spec.txt, 2.1: each
 * message is one JSON object; QEMU ends each with CRLF, clients need not).
 * This splits a byte stream into whole objects however it is chunked: a
 * scanner that tracks string/escape state and brace depth, with a size cap
 * so that a peer cannot make the wrapper buffer without bound.
 */

export class QmpFramingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QmpFramingError';
  }
}

export class QmpSplitter {
  private buf: Buffer[] = [];
  private bufLen = 0;
  private depth = 0;
  private inString = false;
  private escape = false;

  /** @param maxMessage largest object accepted, in bytes. */
  constructor(private readonly maxMessage: number) {}

  /** Feed bytes; returns the complete objects' text, in order. Throws QmpFramingError on a message over the cap or bytes outside an object. */
  push(chunk: Buffer): string[] {
    const out: string[] = [];
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (this.depth === 0) {
        // Between messages only whitespace may appear.
        if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
          start = i + 1;
          continue;
        }
        if (c !== 0x7b) throw new QmpFramingError(`unexpected byte 0x${c.toString(16)} between QMP messages`);
        start = i;
        this.depth = 1;
        continue;
      }
      if (this.inString) {
        if (this.escape) this.escape = false;
        else if (c === 0x5c) this.escape = true;
        else if (c === 0x22) this.inString = false;
        continue;
      }
      if (c === 0x22) this.inString = true;
      else if (c === 0x7b || c === 0x5b) this.depth++;
      else if (c === 0x7d || c === 0x5d) {
        this.depth--;
        if (this.depth === 0) {
          const piece = chunk.subarray(start, i + 1);
          this.checkSize(piece.length);
          out.push(Buffer.concat([...this.buf, piece]).toString('utf8'));
          this.buf = [];
          this.bufLen = 0;
          start = i + 1;
        }
      }
    }
    if (this.depth > 0 && start < chunk.length) {
      const rest = chunk.subarray(start);
      this.checkSize(rest.length);
      this.buf.push(Buffer.from(rest));
      this.bufLen += rest.length;
    }
    return out;
  }

  private checkSize(add: number): void {
    if (this.bufLen + add > this.maxMessage) throw new QmpFramingError(`QMP message over ${this.maxMessage} bytes`);
  }
}

/** A parsed QMP message: a JSON object (anything else is a protocol error). */
export type QmpMessage = Record<string, unknown>;

export function parseQmpMessage(text: string): QmpMessage {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new QmpFramingError(`bad JSON in QMP message: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new QmpFramingError('QMP message is not a JSON object');
  return v as QmpMessage;
}
