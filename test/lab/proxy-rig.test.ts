/**
 * The lab rig without QEMU: /bin/sh stands in for it, so the console, the
 * deadline, the teardown on every path (spawn failure, an exception in a lab
 * callback, a model that cannot be built, a signal) and the model side of a
 * run (socket pair, recorder) are checked in seconds.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LabRig } from '../../src/lab/proxy-rig.js';
import { nativeAvailable } from '../../src/qemu/libc.js';

const native = (() => {
  try {
    nativeAvailable();
    return true;
  } catch {
    return false;
  }
})();

const scratch = () => mkdtempSync(join(tmpdir(), 'uhci-rig-test-'));
const openFds = () => readdirSync('/proc/self/fd').length;

test('console lines reach the lab, the unterminated tail comes back at the end, scratch files go', async () => {
  const dir = scratch();
  const rig = await LabRig.start({ binary: '/bin/sh', args: ['-c', 'read x; echo "got $x"; echo two; printf tail'], console: true, timeoutMs: 20_000, removeAtEnd: [dir] });
  const lines: string[] = [];
  rig.onConsoleLine((l) => lines.push(l));
  rig.sendConsole('hello\n');
  const end = await rig.run(() => undefined);
  expect(lines).toEqual(['got hello', 'two']);
  expect(end).toMatchObject({ qemuExit: 0, timedOut: false, consoleTail: 'tail', proxyEnd: null, trace: null });
  expect(existsSync(dir)).toBe(false);
  expect(rig.alive).toBe(false);
});

test('at the deadline QEMU is killed and the run says so', async () => {
  let told = 0;
  const rig = await LabRig.start({ binary: '/bin/sh', args: ['-c', 'exec sleep 30'], timeoutMs: 200, onTimeout: () => told++ });
  const t0 = Date.now();
  const end = await rig.run(() => undefined);
  expect(Date.now() - t0).toBeLessThan(10_000);
  expect({ qemuExit: end.qemuExit, timedOut: end.timedOut, told }).toEqual({ qemuExit: null, timedOut: true, told: 1 });
});

test('a binary that cannot start ends the run with its error in stderr', async () => {
  const dir = scratch();
  const rig = await LabRig.start({ binary: '/nonexistent/qemu-system-x86_64', args: [], timeoutMs: 20_000, removeAtEnd: [dir] });
  const end = await rig.run(() => undefined);
  expect(end.qemuExit).toBeNull();
  expect(end.stderr).toMatch(/ENOENT/);
  expect(existsSync(dir)).toBe(false);
});

test('an exception in a lab callback kills QEMU, tears down and is thrown by the run', async () => {
  const dir = scratch();
  const rig = await LabRig.start({ binary: '/bin/sh', args: ['-c', 'echo boom; exec sleep 30'], console: true, timeoutMs: 20_000, removeAtEnd: [dir] });
  rig.onConsoleLine((l) => {
    throw new Error(`cannot handle ${l}`);
  });
  const t0 = Date.now();
  await expect(rig.run(() => undefined)).rejects.toThrow('cannot handle boom');
  expect(Date.now() - t0).toBeLessThan(10_000);
  expect(rig.alive).toBe(false);
  expect(existsSync(dir)).toBe(false);
  // finish() is idempotent: the same outcome again.
  await expect(rig.finish()).rejects.toThrow('cannot handle boom');
});

(native ? test : test.skip)('model mode: QEMU gets the socket as fd 3; its end closes serving and the trace', async () => {
  const dir = scratch();
  const trace = join(dir, 'run.uhcitrace.gz');
  const fds = openFds();
  // fd 3 must be a socket in the child: the shell checks before exiting (closing it).
  const rig = await LabRig.start({
    binary: '/bin/sh',
    args: ['-c', '[ -S /proc/self/fd/3 ] && echo socket || echo missing'],
    console: true,
    model: { ports: ['tablet', 'none'], record: { path: trace, notes: 'rig test' } },
    resetModelAtEnd: true,
    timeoutMs: 20_000,
  });
  const lines: string[] = [];
  rig.onConsoleLine((l) => lines.push(l));
  expect(rig.model!.device(0)).not.toBeNull();
  expect(rig.model!.device(1)).toBeNull();
  const end = await rig.run(() => undefined);
  expect(lines).toEqual(['socket']);
  expect(end.proxyEnd?.reason).toBe('peer-closed');
  expect(end.trace!.events).toBeGreaterThan(0);
  expect([...readFileSync(trace).subarray(0, 2)]).toEqual([0x1f, 0x8b]);
  expect(openFds()).toBe(fds);
});

(native ? test : test.skip)('a model that cannot be built leaves no socket and no scratch files behind', async () => {
  const dir = scratch();
  const fds = openFds();
  await expect(
    LabRig.start({
      binary: '/bin/true',
      args: [],
      model: { ports: ['tablet', 'keyboard'], record: { path: '/nonexistent/dir/run.uhcitrace.gz', notes: '' } },
      timeoutMs: 20_000,
      removeAtEnd: [dir],
    }),
  ).rejects.toThrow(/ENOENT/);
  expect(existsSync(dir)).toBe(false);
  expect(openFds()).toBe(fds);
});

test('SIGTERM kills QEMU, removes the scratch files, and the process then dies of SIGTERM', async () => {
  const built = join(process.cwd(), 'dist/src/lab/proxy-rig.js');
  if (!existsSync(built)) throw new Error('dist/ is not built: run `npm run build` before this test (npm test does)');
  const dir = scratch();
  // The stand-in QEMU prints its pid; the lab prints it on and would print "finished" if it returned normally.
  const script = `const { LabRig } = await import(${JSON.stringify(built)});
const rig = await LabRig.start({ binary: '/bin/sh', args: ['-c', 'echo $$; exec sleep 60'], console: true, timeoutMs: 60000, removeAtEnd: [process.argv[1]] });
rig.onConsoleLine((l) => console.log('qemu ' + l));
await rig.run(() => undefined);
console.log('finished');`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, sig) => r(sig)));
  while (!/qemu \d+\n/.test(out) && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
  const qemuPid = Number(/qemu (\d+)/.exec(out)![1]);
  child.kill('SIGTERM');
  expect(await exited).toBe('SIGTERM');
  expect(out).not.toMatch(/finished/);
  expect(existsSync(dir)).toBe(false);
  expect(() => process.kill(qemuPid, 0)).toThrow(/ESRCH/);
});
