import { gzipSync } from 'node:zlib';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeTrace } from '../../src/inspect/trace-decoder.js';
import type { FrameRecord, BoundaryEvent } from '../../src/inspect/decoded-trace.js';
import { inspectTrace } from '../../src/inspect/inspector.js';
import { describeAnomaly } from '../../src/inspect/text-report.js';
import { decodeSetup, parseConfigEndpoints, requestName } from '../../src/inspect/usb-requests.js';
import { makeToken } from '../../src/uhci/descriptors.js';

const le = (v: number) => Buffer.from(Uint32Array.of(v >>> 0).buffer).toString('hex');

function trace(events: unknown[][]): Uint8Array {
  const header = { format: 'uhci-dm-trace', version: 1, created: '2026-11-25T00:00:00.000Z', model: 'hand', options: { variant: 'piix3' }, notes: '' };
  const lines = [JSON.stringify(header), ...events.map((e) => JSON.stringify(e)), JSON.stringify({ summary: { events: events.length, items: 0, frames: 1, skipped: 0, endNs: 0 } })];
  return new Uint8Array(gzipSync(lines.join('\n') + '\n'));
}

async function decode(bytes: Uint8Array): Promise<{ frames: FrameRecord[]; events: BoundaryEvent[] }> {
  const frames: FrameRecord[] = [];
  const events: BoundaryEvent[] = [];
  await decodeTrace(bytes, { frame: (f) => frames.push(f), event: (e) => events.push(e) });
  return { frames, events };
}

describe('trace decoder', () => {
  const token = makeToken(0x69, 1, 1, 0, 8);
  const walk = (tdFetch: unknown[]) => [
    ['N', 0, 0, []],
    ['iw', 0, 8, 4, 0x100000, 0, []],
    ['iw', 0, 0, 2, 0xc1, 0, [['T', 1, 1000000]]],
    [
      't',
      1000000,
      1,
      0,
      [
        [0x100000, le(0x110012)],
        [0x110010, le(1)],
        [0x110014, le(0x110040)],
        ...tdFetch,
        ['p', 0, 0x69, 1, 1, 0, 8, 'ack', 3, '010203', 1, 0, []],
        ['w', 0x120000, '010203'],
        ['w', 0x110044, le(0x18000002 | (1 << 24))],
        ['w', 0x110014, le(1)],
        ['i', 1],
      ],
    ],
  ];

  test.each([
    ['one 16-byte read', [[0x110040, le(1) + le(0x19800000) + le(token) + le(0x120000)]]],
    ['four dword reads', [[0x110040, le(1)], [0x110044, le(0x19800000)], [0x110048, le(token)], [0x11004c, le(0x120000)]]],
  ])('a frame: frame list → QH → TD fetched as %s, result, data, element advance, IRQ', async (_n, fetch) => {
    const { frames, events } = await decode(trace(walk(fetch)));
    expect(frames).toHaveLength(1);
    const f = frames[0]!;
    expect(f).toMatchObject({ serial: 1, frnum: 0, tNs: 1000000, irq: 1, ioc: true, spd: false, busy: true });
    expect(f.steps.map((s) => s.kind)).toEqual(['fl', 'qh', 'td']);
    expect(f.steps[1]).toMatchObject({ kind: 'qh', addr: 0x110010, head: 1, element: 0x110040 });
    const td = f.steps[2]!;
    if (td.kind !== 'td') throw new Error('not a TD');
    expect(td.visit).toMatchObject({ addr: 0x110040, via: 0x110010, result: 'short', port: 0, elementAdvance: 1 });
    expect([...td.visit.in!]).toEqual([1, 2, 3]);
    expect(events.map((e) => e.kind)).toEqual(['io', 'io']);
    expect(events[0]).toMatchObject({ kind: 'io', write: true, offset: 8, size: 4, value: 0x100000 });
  });

  test('a corrupt or truncated file is a TraceFormatError', async () => {
    await expect(decode(new Uint8Array(gzipSync('{"format":"uhci-dm-trace","version":1,"options":{"variant":"piix3"}}\n["N",0,0,[]]\n')))).rejects.toThrow(/truncated/);
    await expect(decode(trace([['?', 0, 0, []]]))).rejects.toThrow(/unknown event kind/);
  });
});

describe('USB request names', () => {
  const name = (b: number[]) => requestName(decodeSetup(Uint8Array.from(b))!);
  test('standard, HID class and vendor requests', () => {
    expect(name([0x80, 6, 0, 1, 0, 0, 18, 0])).toBe('GET_DESCRIPTOR(DEVICE)');
    expect(name([0x80, 6, 1, 3, 9, 4, 255, 0])).toBe('GET_DESCRIPTOR(STRING 1)');
    expect(name([0x80, 6, 0, 3, 0, 0, 255, 0])).toBe('GET_DESCRIPTOR(STRING 0)');
    expect(name([0x81, 6, 0, 0x22, 0, 0, 74, 0])).toBe('GET_DESCRIPTOR(REPORT)');
    expect(name([0, 5, 3, 0, 0, 0, 0, 0])).toBe('SET_ADDRESS(3)');
    expect(name([0, 9, 1, 0, 0, 0, 0, 0])).toBe('SET_CONFIGURATION(1)');
    expect(name([2, 1, 0, 0, 0x81, 0, 0, 0])).toBe('CLEAR_FEATURE(ENDPOINT_HALT ep 0x81)');
    expect(name([0x21, 10, 0, 0, 0, 0, 0, 0])).toBe('HID SET_IDLE');
    expect(name([0xc0, 1, 0, 0, 0, 0, 0, 0])).toBe('vendor request 0x01');
  });
  test('endpoint descriptors of a configuration (QEMU tablet)', () => {
    const cd = Buffer.from('09022200010107a0320904000001030000000921010000012200000705810308000a', 'hex');
    expect(parseConfigEndpoints(cd)).toEqual([{ address: 0x81, type: 3, maxPacket: 8, interval: 10, interfaceClass: 3 }]);
  });
});

describe('real traces stay quiet', () => {
  // Lab traces recorded from real guests land in traces/; every one must inspect without anomalies.
  const dir = join(process.cwd(), 'traces');
  const files = readdirSync(dir).filter((f) => f.endsWith('.uhcitrace.gz'));
  test(`traces/*.uhcitrace.gz (${files.length} present)`, async () => {
    for (const f of files) {
      const r = await inspectTrace(join(dir, f));
      expect(`${f}: ${r.anomalies.map(describeAnomaly).join('\n')}`).toBe(`${f}: `);
    }
  });
});
