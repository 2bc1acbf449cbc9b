/**
 * `inspectTrace`: one pass over a trace that decodes the frames, assembles
 * transfers, runs the anomaly checks and builds the timeline the text, HTML
 * and JSON reports print (idle frames collapsed).
 */
import type { TraceHeader, TraceSummary } from '../trace/format.js';
import type { TraceSource } from '../trace/reader.js';
import { AnomalyDetector, type Anomaly, type AnomalyOptions } from './anomalies.js';
import { COMPLETED_RESULTS, decodeTrace, type BoundaryEvent, type FrameRecord } from './trace-decoder.js';
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
  stats: { busyFrames: number; idleFrames: number; transfers: number };
}

/** Reads a guest makes over and over (polling): folded into idle stretches. */
class QuietReads {
  private readonly last = new Map<number, number>();
  quiet(e: BoundaryEvent): boolean {
    if (e.kind === 'activity') return true;
    if (e.kind !== 'io' || e.write) return false;
    if (e.offset === 6) return true; // FRNUM moves every frame; reading it is routine
    const k = e.offset * 8 + e.size;
    const same = this.last.get(k) === e.value;
    this.last.set(k, e.value);
    return same;
  }
}

export async function inspectTrace(source: TraceSource, opts: InspectOptions = {}): Promise<Inspection> {
  const from = opts.from ?? 1;
  const to = opts.to ?? Number.MAX_SAFE_INTEGER;
  const keepUrbs = opts.transfers ?? true;
  const book = new DeviceBook();
  const urbs: Urb[] = [];
  let frameUrbs: Urb[] = [];
  let epoch = () => 0;
  const detector = new AnomalyDetector(book, () => epoch(), opts.anomalies);
  const assembler = new TransferAssembler(book, (u) => {
    detector.urb(u);
    frameUrbs.push(u);
    if (keepUrbs && u.completeFrame >= from && u.completeFrame <= to) urbs.push(u);
  });
  const timeline: TimelineEntry[] = [];
  const quiet = new QuietReads();
  let busyFrames = 0;
  let idleFrames = 0;

  const inRange = (frame: number) => frame >= from && frame <= to;
  const pushIdle = (f: FrameRecord) => {
    const last = timeline[timeline.length - 1];
    if (last && last.kind === 'idle') {
      last.toFrame = f.serial;
      last.frames++;
      last.toNs = f.tNs;
    } else timeline.push({ kind: 'idle', fromFrame: f.serial, toFrame: f.serial, frames: 1, fromNs: f.tNs, toNs: f.tNs, quiet: 0 });
  };

  let decoderRef: { haltEpoch: number } | null = null;
  epoch = () => decoderRef?.haltEpoch ?? 0;

  const sink = {
    frame(f: FrameRecord): void {
      frameUrbs = [];
      let flEntry = -1;
      for (const s of f.steps) {
        if (s.kind === 'fl') flEntry = s.addr;
        if (s.kind !== 'td') continue;
        const v = s.visit;
        detector.tdVisit(v, f, flEntry);
        if (COMPLETED_RESULTS.has(v.result)) {
          const t = transactionOf(v, f.serial, f.tNs);
          detector.transaction(t, f);
          assembler.transaction(t);
        }
      }
      detector.frameEnd(f);
      const fresh = detector.drainNew().filter((a) => a.frame === f.serial);
      if (!inRange(f.serial)) return;
      if (f.busy || fresh.length) {
        busyFrames++;
        timeline.push({ kind: 'frame', frame: f, transfers: frameUrbs, anomalies: fresh });
      } else {
        idleFrames++;
        pushIdle(f);
      }
    },
    event(e: BoundaryEvent): void {
      detector.event(e);
      if (e.kind === 'device-reset') book.reset(e.port);
      if (e.kind === 'attach' || e.kind === 'detach') book.forget(e.port);
      if (!(e.frame >= from - 1 && e.frame <= to)) return;
      const last = timeline[timeline.length - 1];
      if (quiet.quiet(e)) {
        if (last && last.kind === 'idle') {
          last.quiet++;
          return;
        }
        if (last && last.kind === 'event' && last.event.kind === e.kind && e.kind === 'io' && last.event.kind === 'io' && last.event.offset === e.offset && !last.event.write) {
          last.repeat++;
          return;
        }
      }
      timeline.push({ kind: 'event', event: e, repeat: 1 });
    },
  };
  // The decoder's halt epoch is read by the detector while decoding.
  const decoded = await decodeTrace(source, {
    frame: (f) => sink.frame(f),
    event: (e) => sink.event(e),
  }, (d) => (decoderRef = d));
  const anomalies = detector.list().filter((a) => inRange(a.frame));
  const devices: DeviceSummary[] = [...book.ports.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([port, d]) => ({ port, address: d.address, vendorId: d.vendorId, productId: d.productId, ep0MaxPacket: d.ep0MaxPacket, endpoints: [...d.endpoints.values()] }));
  return {
    header: decoded.header,
    summary: decoded.summary,
    events: decoded.events,
    frames: decoded.frames,
    range: { from, to: Math.min(to, decoded.frames) },
    timeline,
    anomalies,
    urbs,
    devices,
    stats: { busyFrames, idleFrames, transfers: urbs.length },
  };
}
