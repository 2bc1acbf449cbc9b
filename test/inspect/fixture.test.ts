import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspectTrace } from '../../src/inspect/inspector.js';
import { formatInspectionHtml } from '../../src/inspect/html-report.js';
import { PLAIN, formatInspection } from '../../src/inspect/text-report.js';
import { htmlProblems } from './tools.js';

const FIXTURE = join(process.cwd(), 'test/fixtures/traces/seeded-data-toggle.uhcitrace.gz');

describe('checked-in seeded trace (test/fixtures/traces/seeded-data-toggle.uhcitrace.gz)', () => {
  test('exactly the seeded data toggle bug, at its frame and TD', async () => {
    const r = await inspectTrace(FIXTURE);
    expect(r.anomalies).toHaveLength(1);
    expect(r.anomalies[0]).toMatchObject({ kind: 'data-toggle', frame: 87, address: 0x210050, count: 1 });
    expect(r.anomalies[0]!.message).toContain('TD@0x210020, frame 84');
  });

  test('the timeline decodes the enumeration: setup packets, device knowledge, transfers', async () => {
    const r = await inspectTrace(FIXTURE);
    const text = formatInspection(r, PLAIN, 'fixture');
    expect(text).toContain('GET_DESCRIPTOR(DEVICE) bmRequestType=0x80 bRequest=6 wValue=0x0100 wIndex=0x0000 wLength=8');
    expect(text).toContain('SET_ADDRESS(1)');
    expect(text).toContain('GET_DESCRIPTOR(CONFIGURATION)');
    expect(text).toContain('HID SET_IDLE');
    expect(text).toMatch(/write USBCMD = 0x00c1 USBCMD\[MAXP CF RS\]/);
    expect(text).toMatch(/read {2}PORTSC1 = 0x0095 PORTSC\[ONE LS=1 PE CCS\]/);
    expect(text).toMatch(/IRQ asserted ↑ at end of frame \(IOC\)/);
    expect(text).toMatch(/… \d+ idle frames \(\d+\.\.\d+/);
    // The device told its max packet sizes and VID:PID along the way.
    expect(r.devices).toEqual([
      expect.objectContaining({ port: 0, address: 1, vendorId: 0x0627, productId: 0x0001, ep0MaxPacket: 8, endpoints: [expect.objectContaining({ address: 0x81, type: 3, maxPacket: 8 })] }),
    ]);
    // The tablet's interrupt reports (moveTo(100, 200) and (101, 200)) are transfers.
    const reports = r.urbs.filter((u) => u.type === 'interrupt').map((u) => [...u.data]);
    expect(reports).toEqual([
      [0, 100, 0, 200, 0, 0],
      [0, 101, 0, 200, 0, 0],
    ]);
    // Idle frames are collapsed: the timeline is far shorter than the frame count.
    expect(r.stats.busyFrames + r.stats.idleFrames).toBe(r.frames);
    expect(r.stats.idleFrames).toBeGreaterThan(r.stats.busyFrames);
  });

  test('--from/--to limit the timeline and the anomalies to a frame range', async () => {
    const r = await inspectTrace(FIXTURE, { from: 84, to: 86 });
    const frames = r.timeline.flatMap((e) => (e.kind === 'frame' ? [e.frame.serial] : e.kind === 'idle' ? [e.fromFrame, e.toFrame] : []));
    expect(Math.min(...frames)).toBe(84);
    expect(Math.max(...frames)).toBe(86);
    expect(r.anomalies).toEqual([]);
    expect((await inspectTrace(FIXTURE, { from: 87, to: 87 })).anomalies.map((a) => a.kind)).toEqual(['data-toggle']);
  });

  test('the HTML page is well-formed and self-contained, and links the anomaly to its frame', async () => {
    const r = await inspectTrace(FIXTURE);
    const html = formatInspectionHtml(r, 'a <fixture> & co');
    expect(htmlProblems(html)).toEqual([]);
    expect(html).toContain('<a href="#f87">frame 87</a>');
    expect(html).toContain('id="f87"');
    expect(html).toContain('a &lt;fixture&gt; &amp; co');
    // The checker itself catches what it should.
    expect(htmlProblems(html.replace('</summary>', ''))).not.toEqual([]);
    expect(htmlProblems(html.replace('a &lt;fixture&gt;', 'a <fixture>'))).not.toEqual([]);
    expect(htmlProblems(html.replace('<style>', '<script src="http://x/y.js"></script><style>'))).not.toEqual([]);
  });

  test('format version 1 stays readable: the fixture is a valid gzip trace', () => {
    const b = readFileSync(FIXTURE);
    expect(b[0]).toBe(0x1f);
    expect(b[1]).toBe(0x8b);
  });
});
