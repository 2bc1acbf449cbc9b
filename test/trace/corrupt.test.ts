/**
 * Files replay cannot use: one clear line on stderr, exit code 2, no stack.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { replayCommand } from '../../src/cli/replay.js';
import { gzipText, recordAsyncScenario, traceText, type Recorded } from './scenarios.js';

let dir: string;
let rec: Recorded;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'uhci-trace-'));
  rec = await recordAsyncScenario();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
async function replayBytes(bytes: Uint8Array | string): Promise<{ code: number; out: string; err: string }> {
  const path = join(dir, `t${n++}.uhcitrace.gz`);
  writeFileSync(path, bytes);
  return runPath(path);
}
async function runPath(path: string, extra: string[] = []): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await replayCommand([...extra, path], { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

function expectUnusable(r: { code: number; out: string; err: string }, message: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.out).toBe('');
  expect(r.err).toMatch(/^uhci-dm replay: .+\n$/);
  expect(r.err.split('\n')).toHaveLength(2); // one line
  expect(r.err).not.toMatch(/\n\s+at /);
  expect(r.err).toMatch(message);
}

test('the intact file replays (exit 0)', async () => {
  expect((await replayBytes(rec.bytes)).code).toBe(0);
});

test('truncated gzip stream', async () => {
  for (const keep of [0.3, 0.6, 0.95]) {
    const r = await replayBytes(rec.bytes.subarray(0, Math.floor(rec.bytes.length * keep)));
    expectUnusable(r, /truncated/);
  }
});

test('flipped bytes inside the compressed data', async () => {
  for (let k = 1; k < 16; k++) {
    const at = k / 16 - 0.01;
    const b = rec.bytes.slice();
    const i = Math.floor(b.length * at);
    b[i] ^= 0x5a;
    b[i + 1] ^= 0xa5;
    expectUnusable(await replayBytes(b), /corrupt|truncated|not valid|not a gzip/);
  }
});

test('a damaged gzip header', async () => {
  const b = rec.bytes.slice();
  b[0] = 0x00;
  expectUnusable(await replayBytes(b), /not a gzip-compressed trace/);
});

test('an unsupported format version', async () => {
  const text = traceText(rec.bytes).replace('"version":1', '"version":2');
  expectUnusable(await replayBytes(gzipText(text)), /unsupported trace format version 2 \(this uhci-dm reads version 1\)/);
});

test('not a trace at all', async () => {
  expectUnusable(await replayBytes(gzipText('hello world\n')), /no valid header line/);
  expectUnusable(await replayBytes(gzipText('{"format":"something-else","version":1}\n')), /not a uhci-dm trace/);
  expectUnusable(await replayBytes('plain text, not gzip\n'), /not a gzip-compressed trace/);
  expectUnusable(await replayBytes(gzipText('')), /empty/);
});

test('a recording that was never closed (no summary line)', async () => {
  const lines = traceText(rec.bytes).trimEnd().split('\n');
  expectUnusable(await replayBytes(gzipText(lines.slice(0, -1).join('\n') + '\n')), /truncated: no summary line/);
});

test('a summary that does not match the events, a line that is not JSON, an unknown event', async () => {
  const lines = traceText(rec.bytes).trimEnd().split('\n');
  const dropped = [...lines.slice(0, 5), ...lines.slice(6)];
  expectUnusable(await replayBytes(gzipText(dropped.join('\n') + '\n')), /summary counts \d+ events, the file has \d+/);
  const garbled = [...lines];
  garbled[7] = garbled[7]!.slice(0, 10);
  expectUnusable(await replayBytes(gzipText(garbled.join('\n') + '\n')), /event 7 is not valid JSON/);
  const unknown = [...lines];
  unknown[3] = '["Q",0,0,[]]';
  expectUnusable(await replayBytes(gzipText(unknown.join('\n') + '\n')), /unknown event kind "Q"/);
});

test('a missing file and bad arguments', async () => {
  expectUnusable(await runPath(join(dir, 'nope.uhcitrace.gz')), /no such file/);
  let err = '';
  expect(await replayCommand([], { err: (s) => (err += s) })).toBe(2);
  expect(err).toMatch(/exactly one trace file/);
  expect(await replayCommand(['--bogus', 'x'], { err: () => undefined })).toBe(2);
});
