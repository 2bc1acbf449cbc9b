/**
 * The firmware lab: QEMU 7.2 boots SeaBIOS only (no kernel, no disk) with
 * our model as the UHCI function (or QEMU's own with `reference`), and we
 * read SeaBIOS's debug console (port 0x402) to see what the firmware found:
 * "UHCI init on dev 00:05.0 (io=c000)", "USB keyboard initialized", ...
 * SeaBIOS probes the controller, resets the ports, enumerates the devices
 * and configures a keyboard for boot-protocol input, then gives up booting.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { UhciPciFunction } from '../device/uhci-pci-function.js';
import { RealClock } from '../platform/clock.js';
import { createUhciFunction } from '../trace/recorded-function.js';
import { Recorder } from '../trace/recorder.js';
import { createUsbDevice } from '../usb/devices.js';
import { HidUsbDevice } from '../usb/hid/hid-device.js';
import { closeFd, nativeAvailable, socketPair } from '../qemu/libc.js';
import { QemuProxyTransport } from '../qemu/proxy-transport.js';
import { checkQemu } from '../qemu/qemu-binary.js';

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

const PCI_ADDR = '05.0';
const HCD_PATH = '0000:00:05.0';

export async function runBiosLab(opts: BiosLabOptions = {}): Promise<BiosLabResult> {
  const t0 = Date.now();
  const ports = [...(opts.ports ?? ['tablet', 'keyboard'])];
  const progress = opts.onProgress ?? (() => {});
  const qemu = await checkQemu();
  if (!opts.reference) nativeAvailable();
  const dir = mkdtempSync(join(tmpdir(), 'uhci-bios-'));
  const logPath = join(dir, 'seabios.log');
  const args = [
    '-accel', 'tcg', '-m', '256', '-nodefaults', '-display', 'none', '-serial', 'none', '-no-reboot',
    '-chardev', `file,id=seabios,path=${logPath}`, '-device', 'isa-debugcon,iobase=0x402,chardev=seabios',
    '-object', `memory-backend-file,id=mem,size=256M,mem-path=${existsSync('/dev/shm') ? '/dev/shm' : tmpdir()},share=on`,
    '-machine', 'pc,memory-backend=mem',
  ];
  let transport: QemuProxyTransport | null = null;
  let fn: UhciPciFunction | null = null;
  let recorder: Recorder | null = null;
  const devices: HidUsbDevice[] = [];
  let childFd = -1;
  if (opts.reference) {
    args.push('-device', `piix3-usb-uhci,id=uhci,addr=${PCI_ADDR}`);
    const qdev = { tablet: 'usb-tablet', mouse: 'usb-mouse', keyboard: 'usb-kbd' } as const;
    ports.forEach((p, i) => {
      if (p !== 'none') args.push('-device', `${qdev[p]},bus=uhci.0,port=${i + 1}`);
    });
  } else {
    const [ours, theirs] = socketPair();
    childFd = theirs;
    transport = new QemuProxyTransport({ fd: ours });
    const clock = new RealClock();
    if (opts.record) recorder = Recorder.toFile(opts.record, { notes: `uhci-dm bios lab: SeaBIOS UHCI init, ports ${ports.join(', ')}` });
    fn = createUhciFunction({ mem: transport.mem, irq: transport.irq, clock, recorder });
    ports.forEach((p, i) => {
      if (p === 'none') return;
      const dev = createUsbDevice(p, { clock, hcdPath: HCD_PATH, portPath: String(i + 1) }) as HidUsbDevice;
      fn!.attach(i, dev);
      devices.push(dev);
    });
    args.push('-device', `x-pci-proxy-dev,id=uhci0,addr=${PCI_ADDR},fd=3`);
  }
  progress(`starting SeaBIOS (${opts.reference ? 'reference' : 'model'}: ${ports.join(', ')})`);
  const child = spawn(qemu.binary, args, { stdio: ['ignore', 'ignore', 'pipe', ...(childFd >= 0 ? [childFd] : [])] });
  if (childFd >= 0) closeFd(childFd);
  const served = transport && fn ? transport.serve(fn) : null;

  const readLog = () => (existsSync(logPath) ? readFileSync(logPath, 'latin1').split('\n').map((l) => l.replace(/\r$/, '')) : []);
  let finished = false;
  const poll = setInterval(() => {
    const log = readLog();
    if (log.some((l) => /No bootable device|Booting from/.test(l)) && !finished) {
      finished = true;
      progress('SeaBIOS finished its device scan');
      // Let the firmware's last USB polls land, then stop.
      setTimeout(() => child.kill('SIGTERM'), 1500);
    }
  }, 200);
  const timeout = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 40_000);
  await new Promise<void>((resolve) => child.on('exit', () => resolve()));
  clearInterval(poll);
  clearTimeout(timeout);
  if (served && transport) {
    const t = setTimeout(() => transport!.stop(), 2000);
    await served;
    clearTimeout(t);
  }
  devices.forEach((d) => d.dispose());
  const summary = recorder ? await recorder.close() : null;
  const log = readLog().filter((l) => l.length > 0);
  rmSync(dir, { recursive: true, force: true });
  return {
    mode: opts.reference ? 'reference' : 'model',
    log,
    uhciInit: log.find((l) => l.startsWith('UHCI init')) ?? null,
    usbKeyboard: log.some((l) => /USB keyboard initialized/.test(l)),
    usbMouse: log.some((l) => /USB mouse initialized/.test(l)),
    finished,
    elapsedMs: Date.now() - t0,
    trace: summary && opts.record ? { path: opts.record, events: summary.events, frames: summary.frames } : null,
  };
}
