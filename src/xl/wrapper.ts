/**
 * The device-model wrapper libxl runs in QEMU's place (xl.cfg:
 * `device_model_override = "/usr/local/bin/uhci-dm-qemu"`): it takes libxl's
 * QEMU command line, serves the UHCI controllers itself (one `uhci-dm xen`
 * process per controller, started before QEMU and so before the guest runs),
 * runs the real QEMU with the rest, and stands between libxl and QEMU on the
 * QMP socket. It lives as long as QEMU: libxl's SIGHUP on destroy (libxl
 * libxl__destroy_device_model → libxl__kill_xs_path) reaches QEMU, and when
 * QEMU ends the controllers are stopped and the run directory removed.
 */
import { spawn, type StdioOptions } from 'node:child_process';
import { lstatSync, mkdirSync, readSync, rmSync, unlinkSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../platform/logger.js';
import { UserFacingError } from '../platform/user-facing-error.js';
import { formatQemuArgv } from './qemu-argv.js';
import { USB1_BDF, withQmpPath, type DmPlan } from './dm-plan.js';
import { QmpInterposer } from './qmp-interposer.js';
import { readTrailer, type SavedController } from './saved-state.js';
import { USB1_BUS, USB1_ID, UsbQmpHandler } from './usb-qmp.js';

export class WrapperError extends UserFacingError {}

export interface WrapperDeps {
  /** The real QEMU. */
  qemu: string;
  /** Parent of the per-domain run directory (root-owned, 0700). */
  runRoot: string;
  logger: Logger;
  /** True once the guest has run (controllers then cannot be added). */
  guestStarted(): boolean;
  /** Extra `uhci-dm xen` options for every controller. */
  controllerArgs: readonly string[];
  /** How uhci-dm is started (tests); default this Node and bin/uhci-dm.js. */
  controllerCommand?: readonly string[];
  /** Install signal handlers (default true). */
  signals?: boolean;
}

/** Numbers in `fd=N` / `fd:N` option values: fds libxl opened for QEMU, inherited at the same numbers. */
export function inheritedFds(args: readonly string[]): number[] {
  const out = new Set<number>();
  for (const a of args) for (const m of a.matchAll(/(?:^|[,:])fd[=:](\d+)/g)) out.add(Number(m[1]));
  return [...out].filter((n) => n > 2 && n < 1024).sort((a, b) => a - b);
}

/** Make `runRoot/<domid>` afresh: runRoot must be a real directory (not a symlink) only its owner can enter. */
function makeRunDir(runRoot: string, domid: number): string {
  mkdirSync(runRoot, { recursive: true, mode: 0o700 });
  const st = lstatSync(runRoot);
  if (!st.isDirectory() || (st.mode & 0o077) !== 0 || (typeof process.getuid === 'function' && st.uid !== process.getuid())) {
    throw new WrapperError(`${runRoot} must be a directory of this user with mode 0700`);
  }
  const dir = join(runRoot, String(domid));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/** The first `len` bytes of fd `fd`, from offset 0. */
function readPrefix(fd: number, len: number): Buffer {
  const buf = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const n = readSync(fd, buf, got, len - got, got);
    if (n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}

export async function runWrapper(plan: DmPlan, deps: WrapperDeps): Promise<number> {
  const { logger } = deps;
  const runDir = makeRunDir(deps.runRoot, plan.domid);
  logger.log('info', 'xl', 'uhci-dm device-model wrapper', { domid: plan.domid, qemu: deps.qemu, serves: plan.taken.join(' ') || 'nothing yet' });

  // Restore / migration: libxl hands the saved device-model state as -incoming fd:N.
  let restored: SavedController[] = [];
  let incoming: { fd: number; bytes: Buffer } | null = null;
  const inc = plan.incoming !== undefined ? /^fd:(\d+)$/.exec(plan.incoming) : null;
  if (inc) {
    const fd = Number(inc[1]);
    const split = readTrailer(fd);
    if (split.usb) {
      restored = split.usb.controllers;
      incoming = { fd, bytes: readPrefix(fd, split.qemuBytes) };
      logger.log('info', 'xl', 'restoring USB state', { controllers: restored.length });
    } else {
      logger.log('info', 'xl', 'saved state holds no uhci-dm part: controllers start fresh');
    }
  }

  const handler = new UsbQmpHandler({
    domid: plan.domid,
    runDir,
    logger,
    extraArgs: deps.controllerArgs,
    command: deps.controllerCommand,
    guestStarted: () => deps.guestStarted(),
    restored,
  });
  let interposer: QmpInterposer | null = null;
  const cleanup = async () => {
    await interposer?.close().catch(() => undefined);
    await handler.stopAll().catch(() => undefined);
    if (plan.qmp?.kind === 'path' && existsSync(plan.qmp.path)) unlinkSync(plan.qmp.path);
    rmSync(runDir, { recursive: true, force: true });
  };

  let qemuArgs = plan.qemu;
  try {
    if (plan.usb1) await handler.startController(USB1_ID, USB1_BUS, USB1_BDF, plan.usb1.devices);
    if (plan.qmp) {
      const qemuQmp = join(runDir, 'qmp.sock');
      if (plan.qmp.kind === 'path' && existsSync(plan.qmp.path)) unlinkSync(plan.qmp.path);
      interposer = await QmpInterposer.listen(plan.qmp.kind === 'path' ? { path: plan.qmp.path } : { fd: plan.qmp.fd }, { qemuPath: qemuQmp, handler, logger });
      qemuArgs = withQmpPath(qemuArgs, qemuQmp);
    }
  } catch (e) {
    await cleanup();
    throw e;
  }

  // fds QEMU still needs at their numbers (our restore pipe replaces the -incoming one).
  const argv = formatQemuArgv(qemuArgs);
  const stdio: StdioOptions = ['inherit', 'inherit', 'inherit'];
  for (const fd of inheritedFds(argv)) {
    while (stdio.length < fd) stdio.push('ignore');
    stdio[fd] = incoming && fd === incoming.fd ? 'pipe' : fd;
  }
  const qemu = spawn(deps.qemu, argv, { stdio });
  if (incoming) {
    const pipe = qemu.stdio[incoming.fd] as NodeJS.WritableStream | null;
    pipe?.end(incoming.bytes);
  }
  const forward = (sig: NodeJS.Signals) => {
    logger.log('info', 'xl', `${sig} received: stopping QEMU`);
    qemu.kill(sig === 'SIGINT' ? 'SIGTERM' : sig);
  };
  if (deps.signals ?? true) for (const s of ['SIGHUP', 'SIGTERM', 'SIGINT'] as const) process.on(s, forward);
  const code = await new Promise<number>((resolve) => {
    qemu.once('error', (e) => {
      logger.log('error', 'xl', 'cannot run QEMU', { qemu: deps.qemu, error: e.message });
      resolve(1);
    });
    qemu.once('exit', (c, sig) => resolve(c ?? (sig ? 128 + (sig === 'SIGKILL' ? 9 : sig === 'SIGTERM' ? 15 : 1) : 1)));
  });
  if (deps.signals ?? true) for (const s of ['SIGHUP', 'SIGTERM', 'SIGINT'] as const) process.off(s, forward);
  logger.log('info', 'xl', 'QEMU exited; stopping the controllers', { code });
  await cleanup();
  return code;
}
