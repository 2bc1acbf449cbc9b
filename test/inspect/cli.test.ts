import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspectCommand } from '../../src/cli/inspect.js';
import { htmlProblems } from './tools.js';

const FIXTURE = join(process.cwd(), 'test/fixtures/traces/seeded-data-toggle.uhcitrace.gz');

async function run(args: string[], isTty = false): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await inspectCommand(args, { out: (s) => (out += s), err: (s) => (err += s), isTty });
  return { code, out, err };
}

describe('uhci-dm inspect', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'uhci-inspect-cli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('text timeline and anomaly report; exit 1 when anomalies were found', async () => {
    const r = await run([FIXTURE]);
    expect(r.code).toBe(1);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^seeded-data-toggle\.uhcitrace\.gz: recorded /);
    expect(r.out).toMatch(/frame 87 FRNUM 0x056 t=98\.000 ms/);
    expect(r.out).toMatch(/anomalies: 1\n {2}data-toggle at frame 87 .*@0x210050/);
    expect(r.out).not.toContain('\x1b[');
  });

  test('colour on a terminal, --no-color turns it off, --color forces it', async () => {
    expect((await run([FIXTURE], true)).out).toContain('\x1b[1;36mframe ');
    expect((await run([FIXTURE, '--no-color'], true)).out).not.toContain('\x1b[');
    expect((await run([FIXTURE, '--color'], false)).out).toContain('\x1b[');
  });

  test('--from/--to', async () => {
    const r = await run([FIXTURE, '--from', '60', '--to', '70']);
    expect(r.code).toBe(0); // the anomaly (frame 87) is outside the range
    const shown = [...r.out.matchAll(/^frame (\d+) /gm)].map((m) => Number(m[1]));
    expect(shown.length).toBeGreaterThan(0);
    expect(shown.every((f) => f >= 60 && f <= 70)).toBe(true);
    expect(r.out).toContain('anomalies: none');
  });

  test('--json: events, transfers and anomalies as one object', async () => {
    const r = await run([FIXTURE, '--json']);
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out);
    expect(j.anomalies).toEqual([expect.objectContaining({ kind: 'data-toggle', frame: 87, address: 0x210050 })]);
    expect(j.trace.frames).toBe(j.trace.summary.frames);
    const tds = j.timeline.filter((e: { kind: string }) => e.kind === 'frame').flatMap((e: { frame: { steps: { kind: string }[] } }) => e.frame.steps.filter((s) => s.kind === 'td'));
    expect(tds.length).toBeGreaterThan(10);
    expect(j.transfers.find((u: { setupBytes: string | null }) => u.setupBytes === '8006000100000800').data).toBe('1201000200000008');
    expect(j.timeline.some((e: { kind: string; event?: { kind: string } }) => e.kind === 'event' && e.event?.kind === 'io')).toBe(true);
  });

  test('--html writes a self-contained page; --pcap writes a pcap', async () => {
    const html = join(dir, 'out.html');
    const pcap = join(dir, 'out.pcap');
    const r = await run([FIXTURE, '--html', html, '--pcap', pcap, '--quiet']);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`HTML timeline written to ${html}`);
    expect(htmlProblems(readFileSync(html, 'utf8'))).toEqual([]);
    const p = readFileSync(pcap);
    expect(p.readUInt32LE(20)).toBe(220);
  });

  test('bad arguments and unusable files: one line on stderr, exit 2', async () => {
    expect((await run([])).code).toBe(2);
    expect((await run([FIXTURE, '--from', 'x'])).err).toMatch(/--from must be an integer/);
    expect((await run([FIXTURE, '--from', '9', '--to', '3'])).code).toBe(2);
    const missing = await run([join(dir, 'nope.uhcitrace.gz')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/^uhci-dm inspect: cannot open .*no such file\n$/);
    const junk = join(dir, 'junk.gz');
    writeFileSync(junk, 'not gzip at all');
    expect((await run([junk])).err).toMatch(/not a gzip-compressed trace/);
    expect((await run(['--help'])).code).toBe(0);
  });
});
