/**
 * `inspectTrace`: one pass over a trace that decodes the frames, assembles
 * transfers, runs the anomaly checks and builds the timeline the text, HTML
 * and JSON reports print (idle frames collapsed). The work is done by an
 * InspectionBuilder, a DecoderSink that is fed one frame or event at a
 * time; live inspection (live-inspector.ts) feeds the same builder from a
 * running recorder and keeps only a window of recent frames.
 */
import type { TraceHeader, TraceSummary } from '../trace/format.js';
import type { TraceSource } from '../trace/reader.js';
import { AnomalyDetector, type Anomaly, type AnomalyOptions } from './anomalies.js';
import { COMPLETED_RESULTS, type BoundaryEvent, type DecoderSink, type FrameRecord } from './decoded-trace.js';
import { REG } from '../uhci/registers.js';
import { decodeTrace } from './trace-decoder.js';
import { DeviceBook, TransferAssembler, transactionOf, type Urb } from './transfers.js';
import type { EndpointInfo } from './usb-requests.js';

export interface InspectOptions {
  /** First frame (serial, 1-based) to show. */
  from?: number;
  /** Last frame to show. */
  to?: number;
  anomalies?: Partial<AnomalyOptions>;
  /** Keep the transfers (for pcap export). Default true. */
  transfers?: boolean;
  /** Entries per remembered collection of the decoder and the anomaly checks (default DEFAULT_MEMORY_CAP). */
  memoryCap?: number;
}

export type TimelineEntry =
  | { kind: 'frame'; frame: FrameRecord; transfers: Urb[]; anomalies: Anomaly[] }
  | { kind: 'idle'; fromFrame: number; toFrame: number; frames: number; fromNs: number; toNs: number; quiet: number }
  | { kind: 'event'; event: BoundaryEvent; repeat: number };

export interface DeviceSummary {
  port: number;
  address: number;
  vendorId: number | null;
  productId: number | null;
  ep0MaxPacket: number | null;
  endpoints: EndpointInfo[];
}

export interface Inspection {
  header: TraceHeader;
  summary: TraceSummary;
  events: number;
  frames: number;
  range: { from: number; to: number };
  timeline: TimelineEntry[];
  anomalies: Anomaly[];
  urbs: Urb[];
  devices: DeviceSummary[];
  /** `dropped`: entries the decoder and the anomaly checks forgot at their memory cap (0: nothing). */
  stats: { busyFrames: number; idleFrames: number; transfers: number; dropped: number };
}

/** Reads a guest makes over and over (polling): folded into idle stretches. */
class QuietReads {
  private readonly last = new Map<number, number>();
  quiet(e: BoundaryEvent): boolean {
    if (e.kind === 'activity') return true;
    if (e.kind !== 'io' || e.write) return false;
    if (e.offset === REG.FRNUM) return true; // FRNUM moves every frame; reading it is routine
    const k = e.offset * 8 + e.size;
    const same = this.last.get(k) === e.value;
    this.last.set(k, e.value);
    return same;
  }
}

/**
 * What an InspectionBuilder keeps when it is fed forever (a live run): the
 * timeline entries and transfers that end in the last `frames` frames (an
 * idle stretch reaching into the window is kept whole: it is one entry), and
 * never more than `maxEntries` timeline entries or transfers (a guest
 * hammering registers while the controller is stopped makes events without
 * frames).
 */
export interface TimelineWindow {
  frames: number;
  maxEntries: number;
}

/** The frame an entry ends in (what a window trims by). */
function lastFrameOf(e: TimelineEntry): number {
  return e.kind === 'frame' ? e.frame.serial : e.kind === 'idle' ? e.toFrame : e.event.frame;
}

export interface InspectionBuilderOptions extends InspectOptions {
  /** Keep only recent frames (default: keep everything in from..to). */
  window?: TimelineWindow;
  /** Every transfer as it completes (whatever the range), e.g. a streaming pcap writer. */
  onUrb?: (u: Urb) => void;
}

/** The part of an Inspection that does not depend on where the events came from. */
export type InspectionBody = Pick<Inspection, 'range' | 'timeline' | 'anomalies' | 'urbs' | 'devices' | 'stats'>;

/**
 * Decoded frames and events in, timeline, transfers, devices and anomalies
 * out. Give it to a TraceDecoder as its sink and `attach` the decoder (the
 * anomaly checks read its halt epoch).
 */
export class InspectionBuilder implements DecoderSink {
  readonly book = new DeviceBook();
  readonly detector: AnomalyDetector;
  private readonly assembler: TransferAssembler;
  private readonly from: number;
  private readonly to: number;
  private readonly keepUrbs: boolean;
  private readonly window: TimelineWindow | null;
  private readonly quiet = new QuietReads();
  private decoder: { readonly haltEpoch: number; readonly dropped: number } | null = null;
  private frameUrbs: Urb[] = [];
  /** Entries before `head` have left the window (dropped in batches). */
  private timeline: TimelineEntry[] = [];
  private head = 0;
  private urbs: Urb[] = [];
  private urbHead = 0;
  private busyFrames = 0;
  private idleFrames = 0;
  /** Serial of the last frame decoded. */
  lastFrame = 0;

  constructor(opts: InspectionBuilderOptions = {}) {
    this.from = opts.from ?? 1;
    this.to = opts.to ?? Number.MAX_SAFE_INTEGER;
    this.keepUrbs = opts.transfers ?? true;
    this.window = opts.window ?? null;
    this.detector = new AnomalyDetector(this.book, () => this.decoder?.haltEpoch ?? 0, opts.anomalies, opts.memoryCap);
    const onUrb = opts.onUrb;
    this.assembler = new TransferAssembler(this.book, (u) => {
      this.detector.urb(u);
      this.frameUrbs.push(u);
      onUrb?.(u);
      if (this.keepUrbs && u.completeFrame >= this.from && u.completeFrame <= this.to) this.urbs.push(u);
    });
  }

  /** The decoder feeding this builder (its halt epoch is read while decoding). */
  attach(decoder: { readonly haltEpoch: number; readonly dropped: number }): void {
    this.decoder = decoder;
  }

  private get dropped(): number {
    return (this.decoder?.dropped ?? 0) + this.detector.dropped;
  }

  private inRange(frame: number): boolean {
    return frame >= this.from && frame <= this.to;
  }

  private pushIdle(f: FrameRecord): void {
    const last = this.timeline[this.timeline.length - 1];
    if (last && last.kind === 'idle' && this.timeline.length > this.head) {
      last.toFrame = f.serial;
      last.frames++;
      last.toNs = f.tNs;
    } else this.push({ kind: 'idle', fromFrame: f.serial, toFrame: f.serial, frames: 1, fromNs: f.tNs, toNs: f.tNs, quiet: 0 });
  }

  private push(e: TimelineEntry): void {
    this.timeline.push(e);
    if (this.window && this.timeline.length - this.head > this.window.maxEntries) this.trim(this.window);
  }

  /** Drop what fell out of the window (compacting the arrays now and then). */
  private trim(w: TimelineWindow): void {
    const oldest = this.lastFrame - w.frames + 1;
    const tl = this.timeline;
    while (this.head < tl.length - 1 && (lastFrameOf(tl[this.head]!) < oldest || tl.length - this.head > w.maxEntries)) this.head++;
    if (this.head >= 1024 && this.head * 2 >= tl.length) {
      this.timeline = tl.slice(this.head);
      this.head = 0;
    }
    const us = this.urbs;
    while (this.urbHead < us.length && (us[this.urbHead]!.completeFrame < oldest || us.length - this.urbHead > w.maxEntries)) this.urbHead++;
    if (this.urbHead >= 1024 && this.urbHead * 2 >= us.length) {
      this.urbs = us.slice(this.urbHead);
      this.urbHead = 0;
    }
  }

  frame(f: FrameRecord): void {
    this.frameUrbs = [];
    this.lastFrame = f.serial;
    const detector = this.detector;
    let flEntry = -1;
    for (const s of f.steps) {
      if (s.kind === 'fl') flEntry = s.addr;
      if (s.kind !== 'td') continue;
      const v = s.visit;
      detector.tdVisit(v, f, flEntry);
      if (COMPLETED_RESULTS.has(v.result)) {
        const t = transactionOf(v, f.serial, f.tNs);
        detector.transaction(t, f);
        this.assembler.transaction(t);
      }
    }
    detector.frameEnd(f);
    if (this.window) this.trim(this.window);
    const fresh = detector.drainNew().filter((a) => a.frame === f.serial);
    if (!this.inRange(f.serial)) return;
    if (f.busy || fresh.length) {
      this.busyFrames++;
      this.push({ kind: 'frame', frame: f, transfers: this.frameUrbs, anomalies: fresh });
    } else {
      this.idleFrames++;
      this.pushIdle(f);
    }
  }

  event(e: BoundaryEvent): void {
    this.detector.event(e);
    if (e.kind === 'device-reset') this.book.reset(e.port);
    if (e.kind === 'attach' || e.kind === 'detach') this.book.forget(e.port);
    if (!(e.frame >= this.from - 1 && e.frame <= this.to)) return;
    const last = this.timeline.length > this.head ? this.timeline[this.timeline.length - 1] : undefined;
    if (this.quiet.quiet(e)) {
      if (last && last.kind === 'idle') {
        last.quiet++;
        return;
      }
      if (last && last.kind === 'event' && last.event.kind === e.kind && e.kind === 'io' && last.event.kind === 'io' && last.event.offset === e.offset && !last.event.write) {
        last.repeat++;
        return;
      }
    }
    this.push({ kind: 'event', event: e, repeat: 1 });
  }

  devices(): DeviceSummary[] {
    return [...this.book.ports.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([port, d]) => ({ port, address: d.address, vendorId: d.vendorId, productId: d.productId, ep0MaxPacket: d.ep0MaxPacket, endpoints: [...d.endpoints.values()] }));
  }

  /** Everything fed so far (within the builder's range), for `frames` decoded frames. */
  body(frames: number): InspectionBody {
    const timeline = this.timeline.slice(this.head);
    const urbs = this.urbs.slice(this.urbHead);
    return {
      range: { from: this.from, to: Math.min(this.to, frames) },
      timeline,
      anomalies: this.detector.list().filter((a) => this.inRange(a.frame)),
      urbs,
      devices: this.devices(),
      stats: { busyFrames: this.busyFrames, idleFrames: this.idleFrames, transfers: urbs.length, dropped: this.dropped },
    };
  }

  /**
   * Frames `from..to` of what the window still holds (a live query): the
   * range starts no earlier than the oldest frame kept; anomalies are all
   * those found so far.
   */
  view(from: number, to: number): InspectionBody {
    const tl = this.timeline;
    const first = tl.length > this.head ? tl[this.head]! : null;
    const oldest = first ? (first.kind === 'frame' ? first.frame.serial : first.kind === 'idle' ? first.fromFrame : first.event.frame + 1) : this.lastFrame + 1;
    const lo = Math.max(from, Math.min(oldest, this.lastFrame), 1);
    const hi = Math.min(to, this.lastFrame);
    const timeline: TimelineEntry[] = [];
    let busyFrames = 0;
    let idleFrames = 0;
    for (let i = this.head; i < tl.length; i++) {
      const e = tl[i]!;
      if (e.kind === 'frame') {
        if (e.frame.serial < lo || e.frame.serial > hi) continue;
        busyFrames++;
      } else if (e.kind === 'idle') {
        const a = Math.max(lo, e.fromFrame);
        const b = Math.min(hi, e.toFrame);
        if (a > b) continue;
        idleFrames += b - a + 1;
      } else if (!(e.event.frame >= lo - 1 && e.event.frame <= hi)) continue;
      timeline.push(e);
    }
    const urbs = this.urbs.slice(this.urbHead).filter((u) => u.completeFrame >= lo && u.completeFrame <= hi);
    return {
      range: { from: lo, to: hi },
      timeline,
      anomalies: this.detector.list(),
      urbs,
      devices: this.devices(),
      stats: { busyFrames, idleFrames, transfers: urbs.length, dropped: this.dropped },
    };
  }
}

export async function inspectTrace(source: TraceSource, opts: InspectOptions = {}): Promise<Inspection> {
  const builder = new InspectionBuilder(opts);
  const decoded = await decodeTrace(source, builder, (d) => builder.attach(d), opts.memoryCap);
  return {
    header: decoded.header,
    summary: decoded.summary,
    events: decoded.events,
    frames: decoded.frames,
    ...builder.body(decoded.frames),
  };
}
