/** Format version 1 stays readable: a hand-written trace replays against the model. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { replayTrace } from '../../src/trace/replay.js';
import { gzipText, traceText } from './scenarios.js';

const FIXTURE = join('test', 'fixtures', 'traces', 'config-ids.uhcitrace.gz');

test('the hand-written config trace replays', async () => {
  const r = await replayTrace(FIXTURE);
  expect(r).toMatchObject({ ok: true, events: 9, frames: 0 });
});

test('an edited expectation in it is reported as a config-read divergence', async () => {
  const text = traceText(readFileSync(FIXTURE)).replace('["cr",1000,0,4,1881178246,[]]', '["cr",1000,0,4,1881178247,[]]');
  const r = await replayTrace(gzipText(text));
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.divergence).toMatchObject({ event: 2, kind: 'cr', tNs: 1000, expected: 'config read returned 0x70208087', got: 'returned 0x70208086' });
});

test('the header variant is honoured (PIIX4 has another device id)', async () => {
  const text = traceText(readFileSync(FIXTURE)).replace('"variant":"piix3"', '"variant":"piix4"');
  const r = await replayTrace(gzipText(text));
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.divergence.got).toBe('returned 0x71128086');
});
