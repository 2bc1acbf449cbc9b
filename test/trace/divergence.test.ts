/**
 * Replay against a deliberately changed model (or an edited trace) must stop
 * at the first divergence, name it, and exit 1.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { replayCommand } from '../../src/cli/replay.js';
import { UhciPciFunction, type UhciPciFunctionOptions } from '../../src/device/uhci-pci-function.js';
import type { GuestMemory } from '../../src/platform/memory.js';
import { replayTrace, type ReplayOptions } from '../../src/trace/replay.js';
import { gzipText, recordHidScenario, traceText, type Recorded } from './scenarios.js';

let dir: string;
let rec: Recorded;
let file: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'uhci-trace-'));
  rec = await recordHidScenario();
  file = join(dir, 'hid.uhcitrace.gz');
  writeFileSync(file, rec.bytes);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(path: string, replay?: ReplayOptions): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await replayCommand([path], { out: (s) => (out += s), err: (s) => (err += s), replay });
  return { code, out, err };
}

/** A model whose guest-memory view is altered by `wrap`. */
function withMemory(wrap: (mem: GuestMemory) => GuestMemory): ReplayOptions {
  return { createFunction: (o: UhciPciFunctionOptions) => new UhciPciFunction({ ...o, mem: wrap(o.mem) }) };
}

test('the unchanged model replays the file: exit 0 and the one-line summary', async () => {
  const r = await run(file);
  expect(r).toEqual({ code: 0, out: `replay ok: ${rec.summary.events} events, ${rec.summary.frames} frames\n`, err: '' });
});

test('a register that reads differently once is named with the event, time, frame and both values', async () => {
  let portscReads = 0;
  class AlteredPortsc extends UhciPciFunction {
    override ioRead(offset: number, size: 1 | 2 | 4): number {
      const v = super.ioRead(offset, size);
      if (offset === 0x10 && ++portscReads === 1) return v ^ 0x0004; // PE flipped on the first PORTSC1 read
      return v;
    }
  }
  const r = await run(file, { createFunction: (o) => new AlteredPortsc(o) });
  expect(r.code).toBe(1);
  expect(r.err).toBe('');
  const first = r.out.split('\n')[0]!;
  expect(first).toMatch(/^replay diverged at event \d+ of \d+ \(port read, t=[\d.]+ ms, FRNUM=0x[0-9a-f]+, \d+ frames run\)/);
  const exp = /trace expected: port read returned (0x[0-9a-f]+)/.exec(r.out);
  const got = /model did: +returned (0x[0-9a-f]+)/.exec(r.out);
  expect(exp && got).toBeTruthy();
  expect((Number(exp![1]) ^ Number(got![1])) >>> 0).toBe(0x0004);
  expect(r.out).toContain('controller: USBCMD[');
});

test('a TD status write that differs shows the TD as recorded and as the model wrote it', async () => {
  let ctrlWrites = 0;
  const opts = withMemory((mem) => ({
    read: (a, b) => mem.read(a, b),
    write: (a, b) => {
      // TD control/status words carry C_ERR (bits 28:27); QH element writes are link pointers.
      if (b.length === 4 && b[3]! & 0x18 && ++ctrlWrites === 3) {
        const c = b.slice();
        c[2]! |= 0x40; // STALLED (bit 22)
        mem.write(a, c);
        return;
      }
      mem.write(a, b);
    },
  }));
  const r = await replayTrace(rec.bytes, opts);
  expect(r.ok).toBe(false);
  if (r.ok) return;
  const d = r.divergence;
  expect(d.expected).toMatch(/^write 0x[0-9a-f]+ = [0-9a-f]{8}$/);
  expect(d.got).toMatch(/^write 0x[0-9a-f]+ = [0-9a-f]{8}$/);
  const traceTd = d.context.find((l) => l.startsWith('TD involved, as the trace has it'))!;
  const modelTd = d.context.find((l) => l.startsWith('TD involved, as the model made it'))!;
  expect(traceTd).toMatch(/TD@0x[0-9a-f]+ (IN|OUT|SETUP) dev=\d+/);
  expect(traceTd).not.toMatch(/STALLED/);
  expect(modelTd).toMatch(/STALLED/);
  expect(d.context.some((l) => l.startsWith('schedule of frame'))).toBe(true);
  expect(d.context.some((l) => /frame list\[\d+\] @0x/.test(l))).toBe(true);
  expect(d.frames).toBeGreaterThan(0);
  expect(d.tNs).toBeGreaterThan(0);
});

test('a model that sends a different packet is caught at the device', async () => {
  // The model misreads the endpoint of interrupt TDs (endpoint 1 becomes 0).
  const opts = withMemory((mem) => ({
    read: (a, b) => {
      mem.read(a, b);
      if (b.length === 16 && b[8] === 0x69 && (b[9]! & 0x80) && !(b[10]! & 7)) b[9]! &= 0x7f;
    },
    write: (a, b) => mem.write(a, b),
  }));
  const r = await replayTrace(rec.bytes, opts);
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.divergence.expected).toMatch(/^packet to port 1: IN dev \d+ ep 1 /);
  expect(r.divergence.got).toMatch(/^packet to port 1: IN dev \d+ ep 0 /);
});

test('a model with other timer behaviour (idle coalescing) diverges at the timer it arms', async () => {
  const r = await replayTrace(rec.bytes, { createFunction: (o) => new UhciPciFunction({ ...o, idleCoalesce: 64 }) });
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.divergence.expected).toMatch(/^arm timer #\d+ for now\+1000000 ns$/);
  expect(r.divergence.got).toMatch(/^arm timer #\d+ for now\+\d+ ns$/);
  expect(r.divergence.got).not.toBe(r.divergence.expected);
});

test('a device that answered differently (edited trace) makes the model write other bytes', async () => {
  // Change the first byte the tablet's interrupt endpoint returned.
  let edited = false;
  const text = traceText(rec.bytes)
    .split('\n')
    .map((line) => {
      if (edited || !line.startsWith('[')) return line;
      const e = JSON.parse(line) as unknown[];
      for (const it of e[e.length - 1] as unknown[]) {
        if (Array.isArray(it) && it[0] === 'p' && it[4] === 1 && typeof it[9] === 'string' && it[9].length >= 4) {
          it[9] = 'ff' + (it[9] as string).slice(2);
          edited = true;
          return JSON.stringify(e);
        }
      }
      return line;
    })
    .join('\n');
  expect(edited).toBe(true);
  const path = join(dir, 'edited.uhcitrace.gz');
  writeFileSync(path, gzipText(text));
  const r = await run(path);
  expect(r.code).toBe(1);
  expect(r.out).toMatch(/trace expected: write 0x[0-9a-f]+ = 00/);
  expect(r.out).toMatch(/model did: +write 0x[0-9a-f]+ = ff/);
});
