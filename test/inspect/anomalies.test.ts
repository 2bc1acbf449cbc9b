import { ANOMALY_KINDS, type Anomaly } from '../../src/inspect/anomalies.js';
import { inspectTrace } from '../../src/inspect/inspector.js';
import { describeAnomaly } from '../../src/inspect/text-report.js';
import { replayTrace } from '../../src/trace/replay.js';
import { SEEDED, recordHidSession, recordLegalTdReuse, recordLinuxFsbrShape, recordLoop } from './seeded.js';

const show = (as: Anomaly[]) => as.map(describeAnomaly).join('\n');

describe('anomaly report on hand-made traces', () => {
  test.each(ANOMALY_KINDS.map((k) => [k]))('%s: the seeded bug is flagged, nothing else', async (kind) => {
    const bytes = await SEEDED[kind]();
    // The hand-made trace is a real recording: it replays against the model.
    expect((await replayTrace(bytes)).ok).toBe(true);
    const r = await inspectTrace(bytes);
    const kinds = [...new Set(r.anomalies.map((a) => a.kind))];
    if (kinds.length !== 1 || kinds[0] !== kind) throw new Error(`expected only ${kind}, got:\n${show(r.anomalies)}`);
    const a = r.anomalies[0]!;
    expect(a.frame).toBeGreaterThan(0);
    expect(a.frame).toBeLessThanOrEqual(r.frames);
    // The anomaly's frame is in the timeline with the anomaly attached.
    const entry = r.timeline.find((e) => e.kind === 'frame' && e.frame.serial === a.frame);
    expect(entry && entry.kind === 'frame' && entry.anomalies.map((x) => x.kind)).toContain(kind);
  });

  test('addresses and frames point at the culprit', async () => {
    const loop = await inspectTrace(await SEEDED['schedule-loop']());
    const l = loop.anomalies[0]!;
    // The self-linked QH is the first QH of the private schedule at 0x210000.
    expect(l.address).toBe(0x210000);
    expect(l.message).toMatch(/QH@0x210000 head links to itself/);

    const rw = await inspectTrace(await SEEDED['td-rewritten-while-active']());
    const a = rw.anomalies[0]!;
    expect(a.message).toMatch(/token 0x[0-9a-f]+ -> 0x[0-9a-f]+/);
    // The TD was seen active before the rewrite, in an earlier frame.
    expect(a.message).toMatch(/saw it active in frame (\d+)/);
    expect(Number(/frame (\d+)\)/.exec(a.message)![1])).toBeLessThan(a.frame);

    const mf = await inspectTrace(await SEEDED['memory-fault']());
    expect(mf.anomalies[0]!.address).toBe(0x7ff0000);
    expect(mf.anomalies[0]!.message).toMatch(/fetch of TD at 0x7ff0000/);

    const ml = await inspectTrace(await SEEDED['maxlen-exceeds-max-packet']());
    expect(ml.anomalies[0]!.message).toMatch(/asks for 64 bytes on dev 1 ep 1 IN, whose wMaxPacketSize is 8/);

    const dt = await inspectTrace(await SEEDED['data-toggle']());
    expect(dt.anomalies[0]!.message).toMatch(/uses DATA0, as did the previous successful transaction/);

    const irqTrace = await SEEDED['irq-not-acknowledged']();
    const irq = await inspectTrace(irqTrace, { anomalies: { irqFrames: 100 } });
    expect(irq.anomalies[0]!.message).toMatch(/asserted since frame (\d+): the guest read USBSTS \(0x1\) in frame \1 but has not written it back to acknowledge, 101 frames later/);
    // A larger threshold than the trace is long: quiet.
    expect((await inspectTrace(irqTrace, { anomalies: { irqFrames: 1000 } })).anomalies).toEqual([]);
  });

  test('quiet on a tablet + keyboard session whose guest acknowledges interrupts', async () => {
    const r = await inspectTrace(await recordHidSession('ack'));
    expect(show(r.anomalies)).toBe('');
    expect(r.urbs.length).toBeGreaterThan(20);
  });

  test('a polling guest that never looks at USBSTS (the demo driver) is flagged only past --irq-silent-frames', async () => {
    const bytes = await recordHidSession('none');
    expect(show((await inspectTrace(bytes)).anomalies)).toBe('');
    const r = await inspectTrace(bytes, { anomalies: { irqSilentFrames: 120 } });
    expect(r.anomalies.map((a) => a.kind)).toEqual(['irq-not-acknowledged']);
    expect(r.anomalies[0]!.message).toMatch(/has not accessed USBSTS in 121 frames \(interrupts enabled but never serviced\)/);
  });

  test('quiet on the Linux FSBR schedule shape, its self-linked terminating QH and dummy-TD reuse', async () => {
    const bytes = await recordLinuxFsbrShape();
    const r = await inspectTrace(bytes);
    expect(show(r.anomalies)).toBe('');
    // The control transfer in the loop really ran.
    expect(r.urbs.map((u) => u.setup && u.status === 0 && u.data.length)).toContain(18);
  });
});

describe('what is and is not a bug', () => {
  test('TD reuse after completion and after unlinking is not a rewrite of a linked active TD', async () => {
    const bytes = await recordLegalTdReuse();
    const r = await inspectTrace(bytes);
    expect(show(r.anomalies)).toBe('');
    // The reuse really happened: three interrupt transfers from two TD addresses, toggles 0, 1, 0.
    const ints = r.urbs.filter((u) => u.type === 'interrupt');
    expect(ints).toHaveLength(3);
    expect(new Set(ints.map((u) => u.td)).size).toBe(2);
  });

  test('IOC causes while the line is still high deliver no new interrupts: no storm', async () => {
    const storm = await inspectTrace(await SEEDED['ioc-storm']('ack'));
    expect(storm.anomalies[0]!.message).toMatch(/IOC storm: 25 IOC interrupts in the last 32 frames \(limit 24\)/);
    const held = await inspectTrace(await SEEDED['ioc-storm']('none'));
    expect(show(held.anomalies)).toBe('');
  });

  test('a TD chain that loops back is flagged', async () => {
    const r = await inspectTrace(await recordLoop('td-chain'));
    expect(r.anomalies.map((a) => a.kind)).toEqual(['schedule-loop']);
    expect(r.anomalies[0]!.message).toMatch(/TD chain loop: TD@0x[0-9a-f]+ links back to TD@0x[0-9a-f]+/);
  });

  test('a two-QH loop with an active TD in both QHs is flagged (FSBR loops hold an empty QH)', async () => {
    const r = await inspectTrace(await recordLoop('busy-qh-closes'));
    expect(r.anomalies.map((a) => a.kind)).toEqual(['schedule-loop']);
    expect(r.anomalies[0]!.message).toMatch(/QH@0x[0-9a-f]+ head link points back to QH@0x210000, and no QH in the loop is an empty terminating QH/);
  });
});
