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
 */
import type { Clock, TimerHandle } from '../platform/clock.js';
import type { IrqLine } from '../platform/irq.js';
import { GuestMemoryFault, type GuestMemory } from '../platform/memory.js';
import { VERSION } from '../cli/main.js';
import { GzipFileSink, type TraceSink } from './sink.js';
import { ShadowMemory } from './shadow-memory.js';
import {
  INPUT_KINDS,
  OUTPUT_KINDS,
  TRACE_FORMAT,
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
    return new Recorder(new GzipFileSink(path), opts);
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
    if (this.closed) return run();
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
    if (this.closed) return;
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
    if (this.closed) {
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

  private line(rec: Rec): void {
    this.events++;
    for (const o of this.observers) o.event(rec);
    if (!this.sink) return;
    this.buf += JSON.stringify(rec) + '\n';
    if (this.buf.length >= (this.opts.flushBytes ?? 256 * 1024)) this.flush();
    else if ((this.events & 63) === 0 && Date.now() - this.lastFlush >= (this.opts.flushMs ?? 2000)) this.flush();
  }

  private flush(): void {
    if (this.buf.length && this.sink) this.sink.write(this.buf);
    this.buf = '';
    this.lastFlush = Date.now();
  }

  /** Write the summary line and close the sink. Events after this are not recorded. */
  async close(): Promise<RecordingSummary> {
    if (this.closed) throw new RecorderStateError('recorder already closed');
    if (this.depth !== 0) throw new RecorderStateError('cannot close a recorder inside an event');
    this.closed = true;
    const summary: TraceSummary = this.progress();
    if (!this.sink) return summary;
    this.buf += JSON.stringify({ summary }) + '\n';
    this.flush();
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
      shadow.write(addr, buf);
      this.rec.output([addr, toHex(buf)]);
    }
  }

  write(addr: number, buf: Uint8Array): void {
    try {
      this.mem.write(addr, buf);
    } catch (e) {
      if (e instanceof GuestMemoryFault) this.rec.output([OUTPUT_KINDS.writeFault, addr, toHex(buf)]);
      throw e;
    }
    this.rec.shadow.write(addr, buf);
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
