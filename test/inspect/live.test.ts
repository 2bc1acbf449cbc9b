/**
 * Live inspection (LiveInspector on a running recorder) against the file
 * path: the same session seen live and read back from its trace gives the
 * same transfers, devices and anomalies; the streamed pcap holds the same
 * usbmon packets as the whole-file export; the window bounds what is kept;
 * a decoding failure turns inspection off without touching the model.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspectTrace, type Inspection } from '../../src/inspect/inspector.js';
import { LiveInspectError, LiveInspector } from '../../src/inspect/live-inspector.js';
import { PCAP_HEADER_LEN, UsbmonPcapWriter, usbmonPcap } from '../../src/inspect/usbmon-pcap.js';
import type { Urb } from '../../src/inspect/transfers.js';
import { Recorder } from '../../src/trace/recorder.js';
import { SEEDED, recordHidSession } from './seeded.js';

/** The packets of a pcap file (record headers dropped), as hex strings. */
function packets(pcap: Uint8Array): string[] {
  const dv = new DataView(pcap.buffer, pcap.byteOffset, pcap.byteLength);
  const out: string[] = [];
  for (let o = PCAP_HEADER_LEN; o < pcap.length; ) {
    const n = dv.getUint32(o + 8, true);
    expect(dv.getUint32(o + 12, true)).toBe(n);
    out.push(Buffer.from(pcap.subarray(o + 16, o + 16 + n)).toString('hex'));
    o += 16 + n;
  }
  return out;
}

const plain = (x: unknown) => JSON.parse(JSON.stringify(x, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)));

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'uhci-live-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('live and file inspection of one session agree; the streamed pcap has the same packets as the file export', async () => {
  const pcapPath = join(dir, 'live.pcap');
  const pcap = new UsbmonPcapWriter(pcapPath);
  let live!: LiveInspector;
  const streamed: Urb[] = [];
  const bytes = await recordHidSession('ack', (rec) => {
    live = new LiveInspector(rec, {
      frames: 1 << 20,
      onHeader: (h) => pcap.setStart(Date.parse(h.created)),
      onUrb: (u) => {
        streamed.push(u);
        pcap.write(u);
      },
    });
  });
  live.close();
  pcap.close();
  const file = await inspectTrace(bytes);
  const now: Inspection = live.inspect({ from: 1 });
  expect(now.frames).toBe(file.frames);
  expect(now.events).toBe(file.events);
  expect(now.summary).toEqual(file.summary);
  expect(now.header).toEqual(file.header);
  expect(file.urbs.length).toBeGreaterThan(20);
  expect(plain(now.urbs)).toEqual(plain(file.urbs));
  expect(plain(streamed)).toEqual(plain(file.urbs));
  expect(plain(now.devices)).toEqual(plain(file.devices));
  expect(now.anomalies).toEqual(file.anomalies);
  expect(plain(now.timeline)).toEqual(plain(file.timeline));
  expect(now.stats).toEqual(file.stats);

  // The streamed file: same packets as the whole-trace export (written in completion order).
  const written = new Uint8Array(readFileSync(pcapPath));
  const exported = usbmonPcap(file.urbs, Date.parse(file.header.created));
  expect([...written.subarray(0, PCAP_HEADER_LEN)]).toEqual([...exported.subarray(0, PCAP_HEADER_LEN)]);
  expect(packets(written).sort()).toEqual(packets(exported).sort());
  expect(pcap.transfers).toBe(file.urbs.length);
  expect(written.length).toBe(exported.length);
});

test('a query for the last N frames, and a range past the end', async () => {
  let live!: LiveInspector;
  await recordHidSession('ack', (rec) => {
    live = new LiveInspector(rec);
  });
  const all = live.inspect({ from: 1 });
  const last = live.inspect({ last: 30 });
  expect(last.range).toEqual({ from: all.frames - 29, to: all.frames });
  const inLast = (f: number) => f >= all.frames - 29;
  expect(last.timeline.length).toBeGreaterThan(0);
  for (const e of last.timeline) {
    if (e.kind === 'frame') expect(inLast(e.frame.serial)).toBe(true);
    if (e.kind === 'idle') expect(inLast(e.toFrame)).toBe(true);
  }
  expect(last.urbs).toEqual(all.urbs.filter((u) => inLast(u.completeFrame)));
  const past = live.inspect({ from: all.frames + 5 });
  expect(past.range.from).toBeGreaterThan(past.range.to);
  expect(past.timeline).toEqual([]);
  expect(() => live.inspect({ from: 9, to: 2 })).toThrow(LiveInspectError);
});

test('the window: entries and transfers older than the last N frames are dropped, devices are kept', async () => {
  let live!: LiveInspector;
  // Observed live with a 10-frame window and at most 8 entries.
  await recordHidSession('ack', (rec) => {
    live = new LiveInspector(rec, { frames: 10, maxEntries: 8 });
  });
  const r = live.inspect({ from: 1 });
  expect(r.timeline.length).toBeLessThanOrEqual(8);
  expect(r.urbs.length).toBeLessThanOrEqual(8);
  for (const e of r.timeline) {
    const end = e.kind === 'frame' ? e.frame.serial : e.kind === 'idle' ? e.toFrame : e.event.frame + 1;
    expect(end).toBeGreaterThan(r.frames - 10);
  }
  expect(r.range.from).toBeGreaterThan(1);
  // What the run taught about its devices outlives the window.
  expect(r.devices.map((d) => d.vendorId)).toEqual([0x0627, 0x0627]);
});

test('anomalies found live are the same as from the file (seeded data-toggle bug)', async () => {
  // SEEDED scenarios build their own rig; replay the same trace's events through a live inspector.
  const bytes = await SEEDED['data-toggle']();
  const rec = Recorder.withoutFile();
  const live = new LiveInspector(rec);
  const { traceLines } = await import('../../src/trace/reader.js');
  let n = 0;
  for await (const line of traceLines(bytes)) {
    if (n++ === 0) live.header(JSON.parse(line));
    else if (line.startsWith('[')) live.event(JSON.parse(line));
  }
  const r = live.inspect({ from: 1 });
  const file = await inspectTrace(bytes);
  expect(r.anomalies.map((a) => a.kind)).toEqual(file.anomalies.map((a) => a.kind));
  expect(r.anomalies.length).toBeGreaterThan(0);
});

test('a decoding failure stops inspection (reported once), nothing is thrown at the recorder', async () => {
  const errors: string[] = [];
  let live!: LiveInspector;
  await recordHidSession('ack', (rec) => {
    live = new LiveInspector(rec, { onError: (e) => errors.push(e.message) });
  });
  expect(live.inspect().anomalies).toEqual([]);
  live.event(['no-such-kind', 0, 0, []]);
  live.event(['no-such-kind', 0, 0, []]);
  expect(() => live.drain()).not.toThrow();
  expect(() => live.inspect()).toThrow(/live inspection stopped: corrupt trace: unknown event kind/);
  expect(errors).toHaveLength(1);
});

test('live inspection with a small memory cap forgets old entries, counts them, and agrees with a file inspection under the same cap', async () => {
  let live!: LiveInspector;
  const bytes = await recordHidSession('ack', (rec) => {
    live = new LiveInspector(rec, { frames: 1 << 20, memoryCap: 4 });
  });
  live.close();
  const now = live.inspect({ from: 1 });
  const file = await inspectTrace(bytes, { memoryCap: 4 });
  expect(now.stats.dropped).toBeGreaterThan(0);
  expect(now.stats).toEqual(file.stats);
  expect((await inspectTrace(bytes)).stats.dropped).toBe(0);
});
