/**
 * The firmware lab: QEMU 7.2 boots SeaBIOS only (no kernel, no disk) with
 * our model as the UHCI function (or QEMU's own with `reference`), and we
 * read SeaBIOS's debug console (port 0x402) to see what the firmware found:
 * "UHCI init on dev 00:05.0 (io=c000)", "USB keyboard initialized", ...
 * SeaBIOS probes the controller, resets the ports, enumerates the devices
 * and configures a keyboard for boot-protocol input, then gives up booting.
 */
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nativeAvailable } from '../qemu/libc.js';
import { checkQemu } from '../qemu/qemu-binary.js';
import { LabRig, referenceUhciQemuArgs, sharedRamQemuArgs } from './proxy-rig.js';

export type BiosPort = 'tablet' | 'mouse' | 'keyboard' | 'none';

export interface BiosLabOptions {
  ports?: readonly BiosPort[];
  reference?: boolean;
  record?: string;
  /** Give up after this long (default 40 s). */
  timeoutMs?: number;
  onProgress?: (msg: string) => void;
}

export interface BiosLabResult {
  mode: 'model' | 'reference';
  /** SeaBIOS debug-console lines. */
  log: string[];
  /** The UHCI line, e.g. "UHCI init on dev 00:05.0 (io=c000)". */
  uhciInit: string | null;
  /** SeaBIOS configured a USB keyboard. */
  usbKeyboard: boolean;
  /** SeaBIOS configured a USB mouse/tablet (it supports boot mice). */
  usbMouse: boolean;
  /** SeaBIOS reached the end of its boot menu without a boot device. */
  finished: boolean;
  elapsedMs: number;
  trace: { path: string; events: number; frames: number } | null;
}

/** SeaBIOS's last words when it has no boot device (or found one). */
const FINISHED = /No bootable device|Booting from/;

export async function runBiosLab(opts: BiosLabOptions = {}): Promise<BiosLabResult> {
  const t0 = Date.now();
  const ports = [...(opts.ports ?? ['tablet', 'keyboard'])];
  const progress = opts.onProgress ?? (() => {});
  const qemu = await checkQemu();
  if (!opts.reference) nativeAvailable();
  const dir = mkdtempSync(join(tmpdir(), 'uhci-bios-'));
  const logPath = join(dir, 'seabios.log');
  const record = opts.record ? { path: opts.record, notes: `uhci-dm bios lab: SeaBIOS UHCI init, ports ${ports.join(', ')}` } : undefined;
  progress(`starting SeaBIOS (${opts.reference ? 'reference' : 'model'}: ${ports.join(', ')})`);
  const rig = await LabRig.start({
    binary: qemu.binary,
    args: [...biosQemuArgs(logPath), ...(opts.reference ? referenceUhciQemuArgs(ports) : [])],
    model: opts.reference ? undefined : { ports, record },
    timeoutMs: opts.timeoutMs ?? 40_000,
    removeAtEnd: [dir],
  });
  let finished = false;
  let log: string[] = [];
  const end = await rig.run(
    () =>
      rig.every(200, () => {
        if (finished || !readLog(logPath).some((l) => FINISHED.test(l))) return;
        finished = true;
        progress('SeaBIOS finished its device scan');
        // Let the firmware's last USB polls land, then stop.
        rig.after(1500, () => rig.kill('SIGTERM'));
        return true;
      }),
    () => (log = readLog(logPath).filter((l) => l.length > 0)),
  );
  return {
    mode: opts.reference ? 'reference' : 'model',
    log,
    uhciInit: log.find((l) => l.startsWith('UHCI init')) ?? null,
    usbKeyboard: log.some((l) => /USB keyboard initialized/.test(l)),
    usbMouse: log.some((l) => /USB mouse initialized/.test(l)),
    finished,
    elapsedMs: Date.now() - t0,
    trace: end.trace && opts.record ? { path: opts.record, events: end.trace.events, frames: end.trace.frames } : null,
  };
}

/** QEMU with firmware only: SeaBIOS's debug console (port 0x402) to a file, guest RAM shareable with the proxy. */
function biosQemuArgs(logPath: string): string[] {
  return [
    '-accel', 'tcg', '-m', '256', '-nodefaults', '-display', 'none', '-serial', 'none', '-no-reboot',
    '-chardev', `file,id=seabios,path=${logPath}`, '-device', 'isa-debugcon,iobase=0x402,chardev=seabios',
    ...sharedRamQemuArgs('256M'),
  ];
}

function readLog(logPath: string): string[] {
  return existsSync(logPath) ? readFileSync(logPath, 'latin1').split('\n').map((l) => l.replace(/\r$/, '')) : [];
}
