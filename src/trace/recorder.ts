/**
 * Recording side of a trace: the Recorder builds event lines (format.ts) and
 * streams them to a sink; the platform wrappers here (clock, guest memory,
 * IRQ line) sit between the model and the transport's real ones and report
 * every crossing to it. Devices are wrapped by RecordingDevice and the PCI
 * function itself by RecordedUhciFunction.
 *
 * Time: at the start of every top-level event the recorder samples the
 * transport's clock once, and the model's clock returns that value until the
 * event ends. A replay therefore needs only each event's time to give the
 * model the same view of the clock.
 *
 * Limits: the file stops growing at the sink's size cap (`--record-max`),
 * and recording to it stops when an event line would pass TRACE_LIMITS (a
 * line too long, more guest pages than the shadow may hold) or the disk
 * fails (ENOSPC, EIO). Then the file gets the summary line of what it holds
 * (a complete trace of the run up to there, which replays), one line is
 * logged, and the model goes on unaffected; observers (live inspection)
 * keep seeing events.
 */
import type { Clock, TimerHandle } from '../platform/clock.js';
import type { IrqLine } from '../platform/irq.js';
import { GuestMemoryFault, type GuestMemory } from '../platform/memory.js';
import type { Logger } from '../platform/logger.js';
import { VERSION } from '../version.js';
import { GzipFileSink, TraceSinkFullError, type TraceSink } from './sink.js';
import { ShadowMemory } from './shadow-memory.js';
import {
  INPUT_KINDS,
  OUTPUT_KINDS,
  TRACE_FORMAT,
  TRACE_LIMITS,
  TRACE_VERSION,
  toHex,
  type TraceHeader,
  type TraceModelOptions,
  type TraceSummary,
} from './format.js';

export interface RecorderOptions {
  /** Free text stored in the header (what was recorded, by whom). */
  notes?: string;
  /** Model name and version for the header (default "uhci-dm <version>"). */
  model?: string;
  /** Buffered text is compressed and written once it reaches this size (default 256 KiB). */
  flushBytes?: number;
  /** ... or when this much wall time passed since the last write (default 2000 ms). */
  flushMs?: number;
  /** Compressed size the file may reach (Recorder.toFile; default DEFAULT_TRACE_MAX_BYTES). */
  maxBytes?: number;
  /** Where the one line saying that recording stopped goes. */
  logger?: Logger;
}

/** Statistics a finished recording reports (same as the summary line). */
export type RecordingSummary = TraceSummary;

/** Frame counters of the recorded controller, read when the summary is written. */
export interface FrameCounters {
  readonly framesProcessed: number;
  readonly framesSkipped: number;
}

/**
 * Sees the recording as it is made: the header once, then every top-level
 * event line as the array it is serialised from (the same value a reader
 * gets back from the file; not to be modified). Live inspection uses this
 * to decode a running instance without a trace file.
 */
export interface RecordingObserver {
  header(h: TraceHeader): void;
  event(rec: readonly unknown[]): void;
}

/** The recorder was used out of order (two functions, events after close). */
export class RecorderStateError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'RecorderStateError';
  }
}

type Rec = unknown[];

export class Recorder {
  private readonly opts: RecorderOptions;
  private clock: Clock | null = null;
  private counters: FrameCounters | null = null;
  private depth = 0;
  /** Item list of the innermost open event. */
  private items: Rec | null = null;
  private lastT = 0;
  private latchedT = 0;
  private events = 0;
  private itemCount = 0;
  private buf = '';
  private lastFlush = Date.now();
  private closed = false;
  /** The file gets no more lines (a limit was reached or the disk failed). */
  private fileStopped = false;
  /** Why writing the file failed (null: it did not fail). */
  private failure: string | null = null;
  /** Why the file must stop at the end of the current event (the shadow memory is full). */
  private stopAtLine: string | null = null;
  /** What the file holds: counts at the end of the buffered text, and at the last write. */
  private readonly atBuf: TraceSummary = { events: 0, items: 0, frames: 0, skipped: 0, endNs: 0 };
  private readonly atFlush: TraceSummary = { events: 0, items: 0, frames: 0, skipped: 0, endNs: 0 };
  private readonly observers: RecordingObserver[] = [];
  /** Guest memory as the trace knows it (see ShadowMemory). */
  readonly shadow = new ShadowMemory();

  /** `sink` null: nothing is serialised or written (only observers see the events). */
  constructor(
    private readonly sink: TraceSink | null,
    opts: RecorderOptions = {},
  ) {
    this.opts = opts;
  }

  /** A recorder that keeps no file: for observers only (live inspection). */
  static withoutFile(opts: RecorderOptions = {}): Recorder {
    return new Recorder(null, opts);
  }

  /** Add an observer; it must be added before the function is built (it sees the header then). */
  observe(o: RecordingObserver): void {
    if (this.clock) throw new RecorderStateError('observers must be added before recording starts');
    this.observers.push(o);
  }

  /** What the summary line would say now. */
  progress(): RecordingSummary {
    return {
      events: this.events,
      items: this.itemCount,
      frames: this.counters?.framesProcessed ?? 0,
      skipped: this.counters?.framesSkipped ?? 0,
      endNs: this.lastT,
    };
  }

  /** A recorder writing a gzip trace file at `path`. */
  static toFile(path: string, opts: RecorderOptions = {}): Recorder {
    return new Recorder(new GzipFileSink(path, opts.maxBytes), opts);
  }

  /** False once the file stopped growing (limit or write failure); the run goes on. */
  get recording(): boolean {
    return !this.closed && !this.fileStopped && this.sink !== null;
  }

  get started(): boolean {
    return this.clock !== null;
  }

  /** Write the header; called once by createRecordedFunction. */
  start(clock: Clock, options: TraceModelOptions): void {
    if (this.clock) throw new RecorderStateError('a recorder records one UHCI function; this one is already in use');
    if (this.closed) throw new RecorderStateError('recorder is closed');
    this.clock = clock;
    const header: TraceHeader = {
      format: TRACE_FORMAT,
      version: TRACE_VERSION,
      created: new Date().toISOString(),
      model: this.opts.model ?? `uhci-dm ${VERSION}`,
      options,
      notes: this.opts.notes ?? '',
    };
    for (const o of this.observers) o.header(header);
    if (this.sink) this.buf += JSON.stringify(header) + '\n';
  }

  private constructionRec: Rec | null = null;

  /** Open the event that holds the model's outputs during its construction. */
  openConstruction(): void {
    if (this.depth !== 0 || this.closed) throw new RecorderStateError('construction must be the first event');
    const t = this.clock ? this.clock.nowNs() : 0;
    this.constructionRec = [INPUT_KINDS.construct, t - this.lastT];
    this.lastT = t;
    this.latchedT = t;
    this.items = [];
    this.depth = 1;
  }

  closeConstruction(): void {
    const rec = this.constructionRec;
    if (!rec || this.depth !== 1) throw new RecorderStateError('no construction event open');
    rec.push(0, this.items);
    this.items = null;
    this.depth = 0;
    this.constructionRec = null;
    this.line(rec);
  }

  /** Where the summary's frame counts come from. */
  setCounters(c: FrameCounters): void {
    this.counters = c;
  }

  /** Time the model sees: the current event's time while one is open. */
  now(): number {
    if (this.depth > 0) return this.latchedT;
    return this.clock ? this.clock.nowNs() : 0;
  }

  /**
   * Record an input: `rec` is `[kind, 0, ...args]`; `run` performs it; the
   * result (encoded by `encode`) and the items produced are appended. At top
   * level this becomes a line; nested inside another event, an item.
   */
  input<T>(rec: Rec, run: () => T, encode: (r: T) => unknown = defaultEncode): T {
    if (this.idle) return run();
    const top = this.depth === 0;
    if (top) {
      const t = this.clock ? this.clock.nowNs() : 0;
      rec[1] = t - this.lastT;
      this.lastT = t;
      this.latchedT = t;
    } else {
      rec[1] = 0;
      this.items!.push(rec);
    }
    const parent = this.items;
    const items: Rec = [];
    this.items = items;
    this.depth++;
    let result: unknown = 0;
    try {
      const r = run();
      result = encode(r);
      return r;
    } catch (e) {
      result = { e: e instanceof Error ? e.message : String(e) };
      throw e;
    } finally {
      this.depth--;
      this.items = parent;
      rec.push(result, items);
      if (top) this.line(rec);
    }
  }

  /** Record an output item of the current event. */
  output(item: unknown): void {
    if (this.idle) return;
    if (!this.items) {
      // The model acted outside any input: keep it visible (replay reports it).
      this.input([INPUT_KINDS.orphan, 0], () => this.output(item));
      return;
    }
    this.itemCount++;
    this.items.push(item);
  }

  /**
   * Record a call into a device (packet, cancel, reset): `item` is pushed as
   * an output now; inputs the device makes during the call (nested hooks)
   * are collected, and `finish` supplies the fields known afterwards.
   */
  deviceCall(item: Rec, run: () => void, finish: () => unknown[]): void {
    if (this.idle) {
      run();
      return;
    }
    if (!this.items) {
      this.input([INPUT_KINDS.orphan, 0], () => this.deviceCall(item, run, finish));
      return;
    }
    this.output(item);
    const parent = this.items;
    const nested: Rec = [];
    this.items = nested;
    this.depth++;
    try {
      run();
    } finally {
      this.depth--;
      this.items = parent;
      item.push(...finish(), nested);
    }
  }

  /** Nobody wants the events any more: the model's calls pass straight through. */
  private get idle(): boolean {
    return this.closed || (this.fileStopped && this.observers.length === 0);
  }

  private line(rec: Rec): void {
    this.events++;
    for (const o of this.observers) o.event(rec);
    if (!this.sink || this.fileStopped) return;
    if (this.stopAtLine !== null) return this.stopAfterFlush(this.stopAtLine);
    const text = JSON.stringify(rec);
    if (text.length > TRACE_LIMITS.lineChars) return this.stopAfterFlush(`an event line would be longer than ${TRACE_LIMITS.lineChars} characters`);
    this.buf += text + '\n';
    const a = this.atBuf;
    a.events++;
    a.items = this.itemCount;
    a.frames = this.counters?.framesProcessed ?? 0;
    a.skipped = this.counters?.framesSkipped ?? 0;
    a.endNs = this.lastT;
    if (this.buf.length >= (this.opts.flushBytes ?? 256 * 1024)) this.flush();
    else if ((this.events & 63) === 0 && Date.now() - this.lastFlush >= (this.opts.flushMs ?? 2000)) this.flush();
  }

  private flush(): void {
    if (this.buf.length && this.sink && !this.fileStopped) {
      try {
        this.sink.write(this.buf);
        Object.assign(this.atFlush, this.atBuf);
      } catch (e) {
        if (e instanceof TraceSinkFullError) this.stopFile('limit', `the file reached its size limit of ${e.maxBytes} bytes`);
        else this.stopFile('error', e instanceof Error ? e.message : String(e));
      }
    }
    this.buf = '';
    this.lastFlush = Date.now();
  }

  /**
   * The guest touched more memory than a trace may describe: the current
   * event cannot be written (it ends the file); observers still get it.
   */
  shadowFull(why: string): void {
    this.stopAtLine ??= why;
  }

  /** The lines buffered so far are fine: write them, then end the file. */
  private stopAfterFlush(why: string): void {
    this.flush();
    this.stopFile('limit', why);
  }

  /** End the file at its last complete write with a summary of what it holds, and say so once. */
  private stopFile(reason: 'limit' | 'error', why: string): void {
    const sink = this.sink;
    if (!sink || this.fileStopped) return;
    this.fileStopped = true;
    this.buf = '';
    try {
      sink.write(JSON.stringify({ summary: this.atFlush }) + '\n', true);
    } catch {
      // the disk is full: the file ends without a summary (a reader calls it truncated)
    }
    sink.close().catch(() => undefined);
    if (reason === 'error') this.failure = why;
    const fields = { file: sink.name, events: this.atFlush.events, error: why };
    if (reason === 'limit') this.opts.logger?.log('warn', 'trace', 'trace limit reached; recording stopped, the file holds a complete trace up to here', fields);
    else this.opts.logger?.log('error', 'trace', 'trace write failed; recording stopped, the model goes on', fields);
  }

  /** Why writing the trace file failed, or null (no file, or no failure; a size limit is not a failure). */
  get writeError(): string | null {
    return this.failure;
  }

  /** Write the summary line and close the sink. Events after this are not recorded. */
  async close(): Promise<RecordingSummary> {
    if (this.closed) throw new RecorderStateError('recorder already closed');
    if (this.depth !== 0) throw new RecorderStateError('cannot close a recorder inside an event');
    this.closed = true;
    if (!this.sink) return this.progress();
    if (this.fileStopped) return { ...this.atFlush };
    this.flush();
    if (this.fileStopped) return { ...this.atFlush };
    const summary: TraceSummary = this.progress();
    try {
      this.sink.write(JSON.stringify({ summary }) + '\n', true);
    } catch (e) {
      this.stopFile('error', e instanceof Error ? e.message : String(e));
      return { ...this.atFlush };
    }
    await this.sink.close();
    return summary;
  }
}

function defaultEncode(r: unknown): unknown {
  return r === undefined ? 0 : r;
}

/** The model's clock: latched per event, timers recorded when armed, cleared and fired. */
export class RecordingClock implements Clock {
  private serial = 0;
  private readonly inner = new Map<number, TimerHandle>();

  constructor(
    private readonly clock: Clock,
    private readonly rec: Recorder,
  ) {}

  nowNs(): number {
    return this.rec.now();
  }

  setTimer(atNs: number, cb: () => void): TimerHandle {
    const serial = ++this.serial;
    this.rec.output([OUTPUT_KINDS.setTimer, serial, atNs - this.rec.now()]);
    const h = this.clock.setTimer(atNs, () => {
      this.inner.delete(serial);
      this.rec.input([INPUT_KINDS.timer, 0, serial], cb);
    });
    this.inner.set(serial, h);
    return { id: serial };
  }

  clearTimer(handle: TimerHandle): void {
    this.rec.output([OUTPUT_KINDS.clearTimer, handle.id]);
    const h = this.inner.get(handle.id);
    if (h) this.clock.clearTimer(h);
    this.inner.delete(handle.id);
  }
}

/** Guest memory as the model sees it: every DMA read (with its bytes) and write recorded. */
export class RecordingMemory implements GuestMemory {
  constructor(
    private readonly mem: GuestMemory,
    private readonly rec: Recorder,
  ) {}

  read(addr: number, buf: Uint8Array): void {
    try {
      this.mem.read(addr, buf);
    } catch (e) {
      if (e instanceof GuestMemoryFault) this.rec.output([OUTPUT_KINDS.readFault, addr, buf.length]);
      throw e;
    }
    const shadow = this.rec.shadow;
    if (shadow.matches(addr, buf)) {
      this.rec.output(buf.length === 4 ? addr : [addr, buf.length]);
    } else {
      this.updateShadow(addr, buf);
      this.rec.output([addr, toHex(buf)]);
    }
  }

  private updateShadow(addr: number, buf: Uint8Array): void {
    try {
      this.rec.shadow.write(addr, buf);
    } catch (e) {
      this.rec.shadowFull((e as Error).message);
    }
  }

  write(addr: number, buf: Uint8Array): void {
    try {
      this.mem.write(addr, buf);
    } catch (e) {
      if (e instanceof GuestMemoryFault) this.rec.output([OUTPUT_KINDS.writeFault, addr, toHex(buf)]);
      throw e;
    }
    this.updateShadow(addr, buf);
    this.rec.output([OUTPUT_KINDS.write, addr, toHex(buf)]);
  }
}

/** The INTx line: level changes recorded. */
export class RecordingIrq implements IrqLine {
  constructor(
    private readonly irq: IrqLine,
    private readonly rec: Recorder,
  ) {}
  set(level: boolean): void {
    this.rec.output([OUTPUT_KINDS.irq, level ? 1 : 0]);
    this.irq.set(level);
  }
}
