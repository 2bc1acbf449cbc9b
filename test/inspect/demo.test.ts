import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoCommand } from '../../src/cli/demo.js';
import { inspectTrace } from '../../src/inspect/inspector.js';
import { describeAnomaly } from '../../src/inspect/text-report.js';

test('the demo trace (uhci-dm demo --record) inspects without anomalies and with its transfers', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'uhci-inspect-demo-'));
  const file = join(dir, 'demo.uhcitrace.gz');
  const write = process.stdout.write;
  // The demo prints its findings; keep the test output clean.
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    expect(await demoCommand(['--record', file])).toBe(0);
  } finally {
    process.stdout.write = write;
  }
  try {
    const r = await inspectTrace(file);
    expect(r.anomalies.map(describeAnomaly)).toEqual([]);
    // Both devices enumerated: their descriptors were learned from the trace.
    expect(r.devices.map((d) => [d.port, d.address, d.vendorId, d.ep0MaxPacket])).toEqual([
      [0, 1, 0x0627, 8],
      [1, 2, 0x0627, 8],
    ]);
    expect(r.urbs.filter((u) => u.type === 'interrupt').length).toBeGreaterThanOrEqual(5);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
