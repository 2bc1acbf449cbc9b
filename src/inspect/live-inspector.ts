/**
 * Inspection of a running instance, without a trace file: a RecordingObserver
 * on the live recorder feeds every event line to the same TraceDecoder and
 * InspectionBuilder that `uhci-dm inspect FILE` uses, as they are recorded.
 *
 * Bounded memory: the builder keeps a window of the last `frames` frames
 * (default 2048, about 2 s of bus time) and at most `maxEntries` timeline
 * entries and transfers (default 4 × frames); older ones are dropped. What
 * the decoder and the anomaly checks remember is per address (4 KiB pages of
 * guest memory the controller touched, as the recorder itself keeps; TDs and
 * QHs seen; anomalies folded by kind and address), so it grows with what the
 * guest's schedule touches, not with run time, and is capped (`memoryCap`
 * entries per collection, bounded.ts; what is forgotten is counted in the
 * inspection's `stats.dropped`).
 *
 * Decoding is not done on the vCPU's path: event lines are queued and
 * decoded on the next turn of the event loop (at once when 4096 are queued,
 * or when a query or close needs them). A decoding failure (a bug, never
 * the guest's doing) turns inspection off and is reported by `inspect`; the
 * device model goes on unaffected.
 */
import type { TraceHeader } from '../trace/format.js';
import type { Recorder, RecordingObserver } from '../trace/recorder.js';
import type { AnomalyOptions } from './anomalies.js';
import { InspectionBuilder, type Inspection } from './inspector.js';
import { TraceDecoder } from './trace-decoder.js';
import type { Urb } from './transfers.js';

export const DEFAULT_LIVE_FRAMES = 2048;
/** Frames a query shows when it names no range. */
export const DEFAULT_LIVE_LAST = 100;
/** Queued event lines that force decoding without waiting for the event loop. */
const MAX_QUEUED = 4096;

export interface LiveInspectorOptions {
  /** Frames kept for queries (default DEFAULT_LIVE_FRAMES). */
  frames?: number;
  /** Timeline entries and transfers kept at most (default 4 × frames). */
  maxEntries?: number;
  anomalies?: Partial<AnomalyOptions>;
  /** Entries per remembered collection of the decoder and the anomaly checks (default DEFAULT_MEMORY_CAP). */
  memoryCap?: number;
  /** Every transfer as it completes (a streaming pcap writer). */
  onUrb?: (u: Urb) => void;
  /** The header, once recording starts (its `created` is wall time of clock 0). */
  onHeader?: (h: TraceHeader) => void;
  /** Called once if decoding fails. */
  onError?: (e: Error) => void;
}

/** Which frames a live query shows: `from..to`, or the `last` N (default DEFAULT_LIVE_LAST). */
export interface LiveQuery {
  from?: number;
  to?: number;
  last?: number;
}

/** Live inspection cannot answer (not started, or it failed). */
export class LiveInspectError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'LiveInspectError';
  }
}

export class LiveInspector implements RecordingObserver {
  readonly frames: number;
  private readonly builder: InspectionBuilder;
  private readonly decoder: TraceDecoder;
  private hdr: TraceHeader | null = null;
  private queue: unknown[][] = [];
  private scheduled = false;
  private failure: string | null = null;
  private closed = false;

  constructor(
    private readonly recorder: Recorder,
    private readonly opts: LiveInspectorOptions = {},
  ) {
    this.frames = opts.frames ?? DEFAULT_LIVE_FRAMES;
    if (!Number.isInteger(this.frames) || this.frames < 1) throw new RangeError(`live inspection window must be at least 1 frame (got ${this.frames})`);
    const maxEntries = opts.maxEntries ?? 4 * this.frames;
    this.builder = new InspectionBuilder({ window: { frames: this.frames, maxEntries }, anomalies: opts.anomalies, memoryCap: opts.memoryCap, onUrb: opts.onUrb });
    this.decoder = new TraceDecoder(this.builder, opts.memoryCap);
    this.builder.attach(this.decoder);
    recorder.observe(this);
  }

  header(h: TraceHeader): void {
    this.hdr = h;
    this.opts.onHeader?.(h);
  }

  event(rec: readonly unknown[]): void {
    if (this.failure !== null || this.closed) return;
    // The recorder never touches a line again once it is handed over.
    this.queue.push(rec as unknown[]);
    if (this.queue.length >= MAX_QUEUED) this.drain();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.drain();
      });
    }
  }

  /** Decode everything queued. */
  drain(): void {
    const q = this.queue;
    if (!q.length || this.failure !== null) return;
    this.queue = [];
    try {
      for (const rec of q) this.decoder.event(rec);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      this.failure = err.message;
      this.opts.onError?.(err);
    }
  }

  /** Why inspection stopped, or null. */
  get error(): string | null {
    return this.failure;
  }

  /** Frames decoded so far. */
  get framesDecoded(): number {
    this.drain();
    return this.decoder.frames;
  }

  /** The timeline of the asked frames (within the window) and every anomaly found so far. */
  inspect(q: LiveQuery = {}): Inspection {
    this.drain();
    if (this.failure !== null) throw new LiveInspectError(`live inspection stopped: ${this.failure}`);
    if (!this.hdr) throw new LiveInspectError('live inspection has not started (the function is not built yet)');
    const frames = this.decoder.frames;
    let from: number;
    let to: number;
    if (q.from !== undefined || q.to !== undefined) {
      from = q.from ?? 1;
      to = q.to ?? Number.MAX_SAFE_INTEGER;
    } else {
      to = frames;
      from = Math.max(1, frames - (q.last ?? DEFAULT_LIVE_LAST) + 1);
    }
    if (to < from) throw new LiveInspectError(`'to' ${to} is before 'from' ${from}`);
    return {
      header: this.hdr,
      summary: this.recorder.progress(),
      events: this.decoder.eventNo,
      frames,
      ...this.builder.view(from, to),
    };
  }

  /** Decode what is left and stop (the recorder is closed by its owner). */
  close(): void {
    this.drain();
    this.closed = true;
  }
}
