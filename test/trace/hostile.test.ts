/**
 * Traces someone handed us, built to hurt: each is refused with one line on
 * stderr and exit 2, within a bound stated as a cap (decompressed bytes),
 * and whatever the trace's strings hold reaches no terminal raw.
 */
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createGzip, gzipSync } from 'node:zlib';
import { inspectCommand } from '../../src/cli/inspect.js';
import { replayCommand } from '../../src/cli/replay.js';
import { TRACE_LIMITS, TraceFormatError } from '../../src/trace/format.js';
import { CHUNK, traceLineBatches, type ReadProgress } from '../../src/trace/reader.js';

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'uhci-hostile-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HEADER = { format: 'uhci-dm-trace', version: 1, created: '2026-01-01T00:00:00Z', model: 'hostile', options: { variant: 'piix3' }, notes: '' };

/** A trace file from lines (the summary is added, counting the events). */
function traceFile(name: string, events: unknown[], header: object = HEADER): string {
  const lines = [JSON.stringify(header), ...events.map((e) => JSON.stringify(e)), JSON.stringify({ summary: { events: events.length, items: 0, frames: 0, skipped: 0, endNs: 0 } })];
  const path = join(dir, name);
  writeFileSync(path, gzipSync(lines.join('\n') + '\n'));
  return path;
}

/** `bytes` of `fill` after `prefix`, gzip-compressed as a stream (the data never sits in memory whole). */
async function bomb(name: string, prefix: string, fill: string, bytes: number): Promise<string> {
  const path = join(dir, name);
  const z = createGzip({ level: 9 });
  const done = once(z.pipe(createWriteStream(path)), 'finish');
  z.write(prefix);
  const block = Buffer.from(fill.repeat(Math.ceil((1 << 20) / fill.length)));
  for (let n = 0; n < bytes; n += block.length) if (!z.write(block)) await once(z, 'drain');
  z.end();
  await done;
  return path;
}

async function run(cmd: 'inspect' | 'replay', args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io = { out: (s: string) => (out += s), err: (s: string) => (err += s) };
  const code = cmd === 'inspect' ? await inspectCommand(args, io) : await replayCommand(args, io);
  return { code, out, err };
}

/** Refused by both commands: exit 2, nothing on stdout, one line on stderr matching `message`. */
async function expectRefused(path: string, message: RegExp): Promise<void> {
  for (const cmd of ['inspect', 'replay'] as const) {
    const r = await run(cmd, [path]);
    expect({ cmd, code: r.code, out: r.out }).toEqual({ cmd, code: 2, out: '' });
    expect(r.err).toMatch(new RegExp(`^uhci-dm ${cmd}: [^\\n]+\\n$`));
    expect(r.err).toMatch(message);
  }
}

/** Any character a terminal acts on, other than newline. */
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

test('1 GiB of zeros without a newline: refused once a line passes the cap, after reading little more than the cap', async () => {
  const path = await bomb('zeros.uhcitrace.gz', '', '\0', 1 << 30);
  const progress: ReadProgress = { decompressed: 0 };
  const read = async () => {
    for await (const batch of traceLineBatches(path, progress)) void batch;
  };
  await expect(read()).rejects.toThrow(new TraceFormatError(`${path} is not a usable trace: a line is longer than ${TRACE_LIMITS.lineChars} characters`));
  // Decompression stopped within a chunk of the cap, not after the gigabyte.
  expect(progress.decompressed).toBeLessThanOrEqual(TRACE_LIMITS.lineChars + CHUNK);
  await expectRefused(path, /a line is longer than 16777216 characters/);
}, 60_000);

test('a gzip bomb of valid short lines: refused by its decompression ratio, after 64 MiB', async () => {
  const path = await bomb('lines.uhcitrace.gz', JSON.stringify(HEADER) + '\n', '["t",0,1,0,[]]\n', 256 << 20);
  const progress: ReadProgress = { decompressed: 0 };
  const read = async () => {
    for await (const batch of traceLineBatches(path, progress)) void batch;
  };
  await expect(read()).rejects.toThrow(/decompresses to more than 256 times its size/);
  expect(progress.decompressed).toBeLessThanOrEqual(TRACE_LIMITS.ratioAfterBytes + CHUNK);
}, 60_000);

test('an item that reads 1e9 bytes (a 263-byte file that allocated 4 GB) is refused before anything decodes it', async () => {
  const path = traceFile('huge-read.uhcitrace.gz', [['N', 0, 0, []], ['ir', 0, 0, 2, 0, [[4096, 1e9]]]]);
  expect(readFileSync(path).length).toBeLessThan(300);
  await expectRefused(path, /event 2 reads more than 4096 bytes at once/);
});

test('other items beyond the limits: data, addresses, nesting, strings, event kinds, times', async () => {
  const cases: [unknown[], RegExp][] = [
    [['iw', 0, 0, 2, 1, 0, [['w', 4096, '00'.repeat(TRACE_LIMITS.itemBytes + 1)]]], /holds a string longer than 8192|data longer than 4096/],
    [['iw', 0, 0, 2, 1, 0, [['rf', 4096, 1e9]]], /data longer than 4096 bytes/],
    [['iw', 0, 0, 2, 1, 0, [2 ** 32]], /guest address outside 0\.\.0xffffffff/],
    [['iw', 0, 0, 2, 1, 0, [[-4, 4]]], /guest address outside/],
    [['iw', 0, 0, 2, 1, 0, [['w', 1.5, '00']]], /guest address outside/],
    [['iw', 0, 0, 2, 1, 0, ['x']], /neither a number nor a list/],
    [['iw', 0, 0, 2, 1, 0, [['zz', 1]]], /item of unknown kind/],
    [['A', 0, 0, { speed: 'full', vendorId: 1, productId: 2, name: 'n'.repeat(TRACE_LIMITS.stringChars + 1), address: 0 }, 0, []], /without a name of bounded length/],
    [['Q', 0, 0, []], /unknown event kind "Q"/],
    [['t', 'soon', 1, 0, []], /has no time/],
  ];
  // Device calls nested one in another, deeper than the limit.
  let nested: unknown[] = [];
  for (let i = 0; i <= TRACE_LIMITS.nesting; i++) nested = [['r', 0, 0, nested]];
  cases.push([['iw', 0, 0, 2, 1, 0, nested], /nests items more than 8 deep/]);
  let i = 0;
  for (const [event, message] of cases) {
    const path = traceFile(`case${i++}.uhcitrace.gz`, [['N', 0, 0, []], event]);
    await expectRefused(path, message);
  }
});

test('more items in one event than the limit', async () => {
  const items = new Array<number>(TRACE_LIMITS.eventItems + 1).fill(4096);
  await expectRefused(traceFile('many.uhcitrace.gz', [['N', 0, 0, []], ['t', 0, 1, 0, items]]), /has more than 1000000 items/);
});

test("terminal escape sequences in a trace's strings reach no output raw", async () => {
  const evil = '\u001b[2J\u001b]0;owned\u0007\u009b31m\u202eevil\r';
  const header = { ...HEADER, model: `m${evil}`, notes: `n${evil}` };
  const path = traceFile(
    'escapes.uhcitrace.gz',
    [
      ['N', 0, 0, []],
      ['A', 1000, 0, { speed: 'full', vendorId: 1, productId: 2, name: `dev${evil}`, address: 0 }, 0, []],
    ],
    header,
  );
  for (const args of [[path], ['--color', path]]) {
    const r = await run('inspect', args);
    expect(r.code).toBe(0);
    expect(r.out).toContain('dev\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u202eevil\\x0d');
    // Only our own colour codes: ESC [ digits ; m.
    expect(r.out.replace(/\u001b\[[0-9;]*m/g, '')).not.toMatch(RAW_CONTROL);
  }
  const json = await run('inspect', ['--json', path]);
  expect(json.out).not.toMatch(RAW_CONTROL);
  expect((JSON.parse(json.out) as { trace: { header: { notes: string } } }).trace.header.notes).toBe(`n${evil}`); // same value, escaped
  const html = join(dir, 'escapes.html');
  expect((await run('inspect', ['--quiet', '--html', html, path])).code).toBe(0);
  const page = readFileSync(html, 'utf8');
  expect(page).not.toMatch(RAW_CONTROL);
  expect(page).toContain('dev\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u202eevil\\x0d');

  // An error message quoting the trace: one line, escaped.
  const bad = traceFile('bad-variant.uhcitrace.gz', [], { ...HEADER, options: { variant: `v\n${evil}` } });
  for (const cmd of ['inspect', 'replay'] as const) {
    const r = await run(cmd, [bad]);
    expect(r.code).toBe(2);
    expect(r.err.split('\n')).toHaveLength(2);
    expect(r.err.slice(0, -1)).not.toMatch(RAW_CONTROL);
    expect(r.err).toMatch(/unknown variant/);
  }
});
