/**
 * What the inspector remembers per guest address is capped (bounded.ts):
 * a schedule that touches more TDs, QHs and pages than the cap makes the
 * decoder forget the oldest and count them, and the report says so.
 */
import { join } from 'node:path';
import { BoundedMap, BoundedSet, DropCounter } from '../../src/inspect/bounded.js';
import { inspectTrace } from '../../src/inspect/inspector.js';
import { formatInspection } from '../../src/inspect/text-report.js';

describe('bounded collections', () => {
  test('a full set forgets its oldest entry and counts it', () => {
    const drops = new DropCounter();
    const s = new BoundedSet<number>(3, drops);
    for (let i = 0; i < 10; i++) s.add(i);
    expect([...s]).toEqual([7, 8, 9]);
    expect(drops.dropped).toBe(7);
    s.add(9); // present: nothing forgotten
    expect(drops.dropped).toBe(7);
  });

  test('a full map forgets its oldest key, an update of a present key forgets nothing', () => {
    const drops = new DropCounter();
    const m = new BoundedMap<number, string>(2, drops);
    m.set(1, 'a').set(2, 'b').set(2, 'B');
    expect(drops.dropped).toBe(0);
    m.set(3, 'c');
    expect([...m.entries()]).toEqual([[2, 'B'], [3, 'c']]);
    expect(drops.dropped).toBe(1);
    expect(() => new BoundedSet(0, drops)).toThrow(RangeError);
  });
});

describe('inspector memory cap', () => {
  const file = join(process.cwd(), 'traces/linux-tablet.uhcitrace.gz');

  test('a checked-in trace stays within the default cap: nothing dropped', async () => {
    const r = await inspectTrace(file, { transfers: false });
    expect(r.stats.dropped).toBe(0);
    expect(formatInspection(r)).not.toMatch(/memory cap/);
  });

  test('with a cap of 4 entries the same trace decodes the same frames, counts what it forgot and says so', async () => {
    const full = await inspectTrace(file, { transfers: false });
    const capped = await inspectTrace(file, { transfers: false, memoryCap: 4 });
    expect(capped.frames).toBe(full.frames);
    expect(capped.events).toBe(full.events);
    expect(capped.stats.dropped).toBeGreaterThan(100);
    expect(formatInspection(capped)).toMatch(new RegExp(`note: ${capped.stats.dropped} remembered .* dropped at the inspector's memory cap`));
  });
});
