/**
 * Every trace checked into traces/ (recorded from real guests in the lab)
 * replays against the current model byte for byte. A behaviour change shows
 * up here as a named divergence with its frame number and decoded TD/QH.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { formatDivergence } from '../../src/trace/divergence.js';
import { replayTrace } from '../../src/trace/replay.js';

const dir = join(process.cwd(), 'traces');
const files = readdirSync(dir).filter((f) => f.endsWith('.uhcitrace.gz')).sort();

test('traces/ holds the lab recordings', () => {
  expect(files).toEqual(expect.arrayContaining(['linux-tablet.uhcitrace.gz', 'linux-tablet-keyboard.uhcitrace.gz', 'linux-replug-tablet.uhcitrace.gz', 'seabios-uhci-init.uhcitrace.gz']));
});

test.each(files)('replay %s', async (file) => {
  const r = await replayTrace(join(dir, file));
  if (!r.ok) throw new Error(formatDivergence(r.divergence));
  expect(r.events).toBeGreaterThan(1000);
  expect(r.frames).toBeGreaterThan(1000);
});
