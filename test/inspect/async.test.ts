import { inspectTrace } from '../../src/inspect/inspector.js';
import { PLAIN, formatInspection } from '../../src/inspect/text-report.js';
import { recordAsyncScenario } from '../trace/scenarios.js';

describe('async packets in the timeline', () => {
  test('in flight, completed by the device, written back; a deactivated in-flight TD is flagged', async () => {
    const rec = await recordAsyncScenario();
    const r = await inspectTrace(rec.bytes);
    const text = formatInspection(r, PLAIN);
    // The first TD went to the device (async), stayed in flight, then completed with the device's 3 bytes.
    expect(text).toMatch(/TD@0x[0-9a-f]+ IN dev 0 ep 1 D0 maxlen 8 {2}→ async/);
    // While the device works on it the frames are idle (collapsed); the write-back comes after the completion.
    expect(text).toMatch(/device completed async packet #1[^\n]*\nframe \d+ [^\n]*\n[^\n]*\n[^\n]*\n {4}TD@0x[0-9a-f]+ IN dev 0 ep 1 D0 maxlen 8 {2}→ short {2}actlen 3/);
    expect(text).toMatch(/port 1: device completed async packet #1: ack, 3 bytes 010203/);
    const first = r.urbs.find((u) => u.data.length === 3)!;
    expect([...first.data]).toEqual([1, 2, 3]);
    expect(first.completeFrame).toBeGreaterThan(first.submitFrame);
    // Cancels show up (guest deactivation, and the unlinked TD).
    expect(text.match(/async packet #\d+ cancelled/g)!.length).toBeGreaterThanOrEqual(2);
    // The scenario deactivates an in-flight TD in place: exactly the rewrite a real controller races with.
    const kinds = r.anomalies.map((a) => a.kind);
    expect(kinds).toContain('td-rewritten-while-active');
    expect(r.anomalies.find((a) => a.kind === 'td-rewritten-while-active')!.message).toMatch(/deactivated in place/);
  });
});
