/**
 * Passthrough proof, the program that runs inside the lab guest (host's
 * node via 9p + chroot, see src/lab/passthrough-lab.ts): a real kernel USB
 * device (a configfs SourceSink gadget on dummy_hcd, full speed) is opened
 * with libusb (openNodeUsbHost, the `usb` 2.x package), wrapped in
 * HostUsbDevice and plugged into an in-process UhciPciFunction, which the
 * built-in guest driver drives: data moves guest schedule → our UHCI model
 * → HostUsbDevice → libusb → dummy_hcd → the gadget.
 *
 * Guest time: the model runs on a ManualClock, one frame per driver wait.
 * Before each frame the bus lets host I/O settle (up to `paceMs` of real
 * time): the host side counts as infinitely fast compared to the guest, so
 * the frames counted measure the model's own schedule and wire-time budget
 * (WireTimer), not the speed of dummy_hcd under TCG. Real time is reported
 * too.
 *
 * Three phases, one process each: `--phase main` (enumerate, bulk IN/OUT
 * with checksums and throughput, stall and clear-halt; `--progress-bytes`
 * adds `progress` records with memory use and transfers in flight),
 * `--phase hid` (the HID keyboard gadget 0525:a4ac: interrupt IN polled
 * from the guest schedule while reports are written to /dev/hidg0, see
 * Rig.hidReports) and `--phase unplug` (enumerate, then the gadget is
 * unbound from its UDC by a second process while a bulk IN transfer runs;
 * the UDC is bound again at the end). One
 * removal per process because node-usb's bundled libusb learns about new
 * devices only from udev (its libusb is built with linux_udev.c), and the
 * lab guest runs no udevd: a device that appears after libusb_init stays
 * invisible to that process.
 *
 * Output: one line per result, `@@PT <name> <json>`.
 */
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { constants as fsConstants, existsSync, readFileSync } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { UhciPciFunction } from '../device/uhci-pci-function.js';
import { ManualClock } from '../platform/clock.js';
import { LatchedIrq } from '../platform/irq.js';
import { FlatMemory } from '../platform/memory.js';
import { ExactlyOnceProbe } from '../usb/host/exactly-once-probe.js';
import { HostUsbDevice } from '../usb/host/host-device.js';
import type { LibusbDevice, LibusbHost } from '../usb/host/libusb.js';
import { openNodeUsbHost } from '../usb/host/node-usb.js';
import { GuestBulkPipe, type BulkResult } from './bulk-pipe.js';
import { InterruptInPoller } from './passthrough-proof-hid.js';
import { FULL_SPEED_BULK_CEILING, HID_GADGET, HID_REPORTS } from './passthrough-proof-facts.js';
import { InProcessBus } from './model-bus.js';
import { UhciGuestDriver, type EnumeratedDevice } from './uhci-driver.js';


const VID = 0x0525;
const PID = 0xa4a0;

function emit(name: string, value: unknown): void {
  process.stdout.write(`@@PT ${name} ${JSON.stringify(value)}\n`);
}

interface Args {
  phase: 'main' | 'unplug' | 'hid';
  /** Bytes per direction (main). */
  bytes: number;
  /** TDs per guest transfer (512 × 64 bytes = 32 KiB). */
  chunkTds: number;
  /** Removal number (unplug): chooses the delay before the unbind. */
  round: number;
  /** Real time a frame may wait for host I/O to settle. */
  paceMs: number;
  udcPath: string;
  udc: string;
  /** HostUsbDevice bulkInReadAhead (0: one libusb transfer per guest packet, each answered async). */
  readAhead: number;
  /** HID phase: the gadget's character device. */
  hidg: string;
  /** Emit a `progress` record every this many bytes of a bulk run (0: never). */
  progressBytes: number;
  /** Bulk runs of the main phase, in order ('in', 'out'). */
  directions: ('in' | 'out')[];
}

function parseArgs(argv: string[]): Args {
  const a: Args = { phase: 'main', bytes: 1 << 20, chunkTds: 512, round: 0, paceMs: 200, udcPath: '/sys/kernel/config/usb_gadget/g1/UDC', udc: 'dummy_udc.0', readAhead: 4096, progressBytes: 0, directions: ['in', 'out'], hidg: '/dev/hidg0' };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]!.replace(/^--/, '');
    const v = argv[i + 1] ?? '';
    if (k === 'phase') a.phase = v === 'unplug' || v === 'hid' ? v : 'main';
    else if (k === 'bytes') a.bytes = Number(v);
    else if (k === 'chunk-tds') a.chunkTds = Number(v);
    else if (k === 'round') a.round = Number(v);
    else if (k === 'pace-ms') a.paceMs = Number(v);
    else if (k === 'udc-path') a.udcPath = v;
    else if (k === 'udc') a.udc = v;
    else if (k === 'read-ahead') a.readAhead = Number(v);
    else if (k === 'hidg') a.hidg = v;
    else if (k === 'progress-bytes') a.progressBytes = Number(v);
    else if (k === 'directions') a.directions = v.split(',').filter((d): d is 'in' | 'out' => d === 'in' || d === 'out');
    else throw new Error(`unknown option --${k}`);
  }
  return a;
}

/** An InProcessBus whose frames first wait (bounded) for host I/O to settle. */
class PacedBus extends InProcessBus {
  /** Frames that started before the host was ready (pace limit hit). */
  pacedOut = 0;
  constructor(
    fn: UhciPciFunction,
    mem: FlatMemory,
    private readonly manual: ManualClock,
    private readonly ready: () => boolean,
    private readonly paceMs: number,
  ) {
    super(fn, mem, manual);
  }
  override async wait(ms: number): Promise<void> {
    for (let i = 0; i < ms; i++) {
      const t0 = Date.now();
      await new Promise<void>((r) => setImmediate(r));
      while (!this.ready()) {
        if (Date.now() - t0 > this.paceMs) {
          this.pacedOut++;
          break;
        }
        await new Promise<void>((r) => setTimeout(r, 0));
      }
      this.manual.advance(1_000_000);
    }
  }
}

function findGadget(host: LibusbHost, vid = VID, pid = PID): LibusbDevice | undefined {
  return host.list().find((d) => d.info.vendorId === vid && d.info.productId === pid);
}

async function waitFor<T>(f: () => T | undefined, ms: number): Promise<T | undefined> {
  const t0 = Date.now();
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) return undefined;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Write the UDC binding from a second process (unbind: ''). */
function setUdc(path: string, value: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('/bin/sh', ['-c', `echo "${value}" > ${path}`], (e) => (e ? reject(e) : resolve()));
  });
}

/** f_sourcesink pattern 1 ("mod63"): byte i of each 64-byte packet is i % 63. */
function patternStream(length: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = (i % 64) % 63;
  return b;
}

const patternOk = (data: Uint8Array): boolean => data.every((b, i) => b === (i % 64) % 63);

function bulkEndpoints(cd: Uint8Array): { in: number; out: number } {
  let epIn = 0;
  let epOut = 0;
  for (let o = 0; o + 1 < cd.length && cd[o]! > 0; o += cd[o]!) {
    if (cd[o + 1] === 5 && (cd[o + 3]! & 3) === 2) {
      if (cd[o + 2]! & 0x80) epIn ||= cd[o + 2]!;
      else epOut ||= cd[o + 2]!;
    }
  }
  return { in: epIn, out: epOut };
}

/** The model, the passthrough device and the guest driver, wired together. */
class Rig {
  readonly clock = new ManualClock();
  readonly mem = new FlatMemory(8 << 20);
  readonly fn = new UhciPciFunction({ mem: this.mem, irq: new LatchedIrq(), clock: this.clock });
  readonly hd: HostUsbDevice;
  readonly probe: ExactlyOnceProbe;
  readonly bus: PacedBus;
  readonly drv: UhciGuestDriver;
  readonly pipe: GuestBulkPipe;
  epIn = 0x81;
  epOut = 0x01;
  disconnects = 0;
  dev!: EnumeratedDevice;

  constructor(raw: LibusbDevice, paceMs: number, readAhead: number) {
    this.hd = new HostUsbDevice(raw, {
      bulkInReadAhead: readAhead,
      bulkOutWriteBehind: 8192,
      onDisconnect: () => {
        this.disconnects++;
        this.fn.detach(0);
      },
    });
    this.probe = new ExactlyOnceProbe(this.hd);
    this.fn.attach(0, this.probe);
    // Host settled: a frame's worth read ahead (or nothing in flight), and room in the write-behind window.
    const ready = () =>
      this.hd.disconnected ||
      ((this.hd.readAheadBytes(this.epIn) >= 1216 || this.hd.transfersInFlight === 0) && this.hd.writeBehindBytes(this.epOut) <= 8192 - 1216);
    this.bus = new PacedBus(this.fn, this.mem, this.clock, ready, paceMs);
    this.drv = new UhciGuestDriver(this.bus);
    this.pipe = new GuestBulkPipe(this.bus, this.drv.layout.frameList);
  }

  async start(record = 'enumerated'): Promise<void> {
    await this.drv.probe();
    await this.drv.start();
    await this.pipe.install();
    this.dev = await this.drv.enumerate(0);
    const eps = bulkEndpoints(this.dev.configDescriptor);
    this.epIn = eps.in;
    this.epOut = eps.out;
    emit(record, {
      vendorId: this.dev.vendorId,
      productId: this.dev.productId,
      manufacturer: this.dev.manufacturer,
      product: this.dev.product,
      serial: this.dev.serial,
      maxPacket0: this.dev.maxPacket0,
      configValue: this.dev.configDescriptor[5],
      deviceDescriptor: Buffer.from(this.dev.deviceDescriptor).toString('hex'),
      endpoints: eps,
      interfaces: interfaceTriples(this.dev.configDescriptor),
      interruptIn: this.dev.interruptIn,
      hidReportDescriptor: this.dev.hidReportDescriptor ? Buffer.from(this.dev.hidReportDescriptor).toString('hex') : null,
      portsc: await this.drv.portStatus(0),
    });
  }

  endpointStatus(ep: number): Promise<Uint8Array> {
    return this.drv.control(this.dev.address, false, 64, { bmRequestType: 0x82, bRequest: 0, wValue: 0, wIndex: ep, wLength: 2 });
  }

  /** Emit a `progress` record when `bytes` crossed the next multiple of `every`. */
  private progressAt = 0;
  progress(direction: 'in' | 'out', bytes: number, frames: number, t0: number, every: number): void {
    if (every <= 0 || bytes < this.progressAt + every) return;
    this.progressAt = bytes - (bytes % every);
    const m = process.memoryUsage();
    const meminfo = existsSync('/proc/meminfo') ? readFileSync('/proc/meminfo', 'utf8') : '';
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? NaN);
    emit('progress', {
      direction,
      bytes,
      frames,
      realSeconds: (Date.now() - t0) / 1000,
      rssMiB: m.rss / 2 ** 20,
      heapUsedMiB: m.heapUsed / 2 ** 20,
      externalMiB: m.external / 2 ** 20,
      arrayBuffersMiB: m.arrayBuffers / 2 ** 20,
      guestMemAvailableMiB: kb('MemAvailable') / 1024,
      transfersInFlight: this.hd.transfersInFlight,
      writeBehindBytes: this.hd.writeBehindBytes(this.epOut),
      readAheadBytes: this.hd.readAheadBytes(this.epIn),
      pacedOut: this.bus.pacedOut,
      stats: { ...this.hd.stats },
    });
  }

  async bulkIn(total: number, chunkTds: number, progressEvery = 0) {
    const chunk = chunkTds * 64;
    const hIn = createHash('sha256');
    const hWant = createHash('sha256');
    const want = patternStream(chunk);
    let bytes = 0;
    let frames = 0;
    let badPackets = 0;
    let outcome = 'ok';
    const t0 = Date.now();
    while (bytes < total) {
      const r = await this.pipe.transfer({ address: this.dev.address, endpoint: this.epIn & 0xf, in: true, length: Math.min(chunk, total - bytes) });
      frames += r.frames;
      hIn.update(r.data);
      hWant.update(want.subarray(0, r.bytes));
      for (let o = 0; o < r.bytes; o += 64) if (!patternOk(r.data.subarray(o, o + 64))) badPackets++;
      bytes += r.bytes;
      this.progress('in', bytes, frames, t0, progressEvery);
      if (r.outcome !== 'ok') {
        outcome = r.outcome;
        break;
      }
    }
    this.progressAt = 0;
    const realSeconds = (Date.now() - t0) / 1000;
    return { bytes, frames, outcome, badPackets, sha256: hIn.digest('hex'), expectedSha256: hWant.digest('hex'), ...rates(bytes, frames, realSeconds), pacedOut: this.bus.pacedOut };
  }

  async bulkOut(total: number, chunkTds: number, progressEvery = 0) {
    const chunk = chunkTds * 64;
    const data = patternStream(chunk);
    const h = createHash('sha256');
    let bytes = 0;
    let frames = 0;
    let outcome = 'ok';
    const t0 = Date.now();
    while (bytes < total) {
      const r = await this.pipe.transfer({ address: this.dev.address, endpoint: this.epOut & 0xf, in: false, length: Math.min(chunk, total - bytes), out: data });
      frames += r.frames;
      h.update(data.subarray(0, r.bytes));
      bytes += r.bytes;
      this.progress('out', bytes, frames, t0, progressEvery);
      if (r.outcome !== 'ok') {
        outcome = r.outcome;
        break;
      }
    }
    this.progressAt = 0;
    const drained = (await waitFor(() => (this.hd.writeBehindBytes(this.epOut) === 0 ? true : undefined), 10_000)) ?? false;
    const realSeconds = (Date.now() - t0) / 1000;
    // The sink halts its endpoint on a pattern mismatch (f_sourcesink check_read_data).
    const st = await this.endpointStatus(this.epOut);
    return { bytes, frames, outcome, drained, sinkHalted: (st[0]! & 1) === 1, sha256: h.digest('hex'), ...rates(bytes, frames, realSeconds), pacedOut: this.bus.pacedOut };
  }

  async stallAndClear() {
    const { drv, pipe, dev, epIn } = this;
    await drv.control(dev.address, false, 64, { bmRequestType: 0x02, bRequest: 3, wValue: 0, wIndex: epIn, wLength: 0 });
    const halted = await this.endpointStatus(epIn);
    const stalled = await pipe.transfer({ address: dev.address, endpoint: epIn & 0xf, in: true, length: 64 });
    await drv.control(dev.address, false, 64, { bmRequestType: 0x02, bRequest: 1, wValue: 0, wIndex: epIn, wLength: 0 });
    pipe.resetToggle(dev.address, epIn);
    const cleared = await this.endpointStatus(epIn);
    const after = await pipe.transfer({ address: dev.address, endpoint: epIn & 0xf, in: true, length: 256 });
    return {
      haltStatus: halted[0],
      stalledOutcome: stalled.outcome,
      statusAfterClear: cleared[0],
      afterOutcome: after.outcome,
      afterBytes: after.bytes,
      afterPatternOk: patternOk(after.data),
    };
  }

  /** A bulk IN transfer runs while a second process unbinds the UDC. */
  async removal(args: Args) {
    const info = this.hd.info;
    const node = `/dev/bus/usb/${String(info.busNumber).padStart(3, '0')}/${String(info.deviceAddress).padStart(3, '0')}`;
    const delayMs = 20 + ((args.round * 37) % 150);
    const unbind = new Promise<void>((r) => setTimeout(r, delayMs)).then(() => setUdc(args.udcPath, ''));
    const portHistory: number[] = [];
    // The kernel removing the usbfs node is the host-side unplug event (libusb hotplug needs udev here).
    const noticeUnplug = () => {
      if (!existsSync(node) && !this.hd.disconnected) this.hd.hostUnplugged();
    };
    // Keep bulk IN transfers going until the removal cuts one off (at most 20 s).
    const t0 = Date.now();
    let transfers = 0;
    let earlierBytes = 0;
    let earlierOk = true;
    let r: BulkResult;
    for (;;) {
      transfers++;
      r = await this.pipe.transfer({ address: this.dev.address, endpoint: this.epIn & 0xf, in: true, length: args.chunkTds * 64, maxFrames: 60_000 }, async () => {
        noticeUnplug();
        const sc = await this.drv.portStatus(0);
        if (portHistory[portHistory.length - 1] !== sc) portHistory.push(sc);
        return (sc & 1) === 0;
      });
      if (r.outcome !== 'ok' || Date.now() - t0 > 20_000) break;
      earlierBytes += r.bytes;
      earlierOk &&= patternOk(r.data);
    }
    await unbind;
    // The transfer may have ended before the unbind landed: wait for the disconnect.
    await waitFor(() => (noticeUnplug(), this.hd.disconnected ? true : undefined), 10_000);
    await new Promise((res) => setTimeout(res, 20));
    await this.bus.wait(2);
    const portsc = await this.drv.portStatus(0);
    return {
      round: args.round,
      readAhead: args.readAhead,
      delayMs,
      /** Transfers started; the last one is the one the removal cut off. */
      transfers,
      earlierBytes,
      transferOutcome: r.outcome,
      tds: r.tds,
      retired: r.retired,
      bytes: r.bytes,
      dataOk: earlierOk && patternOk(r.data),
      portscAfter: portsc,
      ccs: portsc & 1,
      csc: (portsc >> 1) & 1,
      portHistory,
      disconnects: this.disconnects,
      exactlyOnce: this.probe.report,
    };
  }

  /**
   * Interrupt IN through the real HID gadget: the guest schedule polls the
   * endpoint every frame from an interrupt QH (InterruptInPoller) while this
   * process writes reports into the gadget's /dev/hidg0. First nothing is
   * written for `nakFrames` frames: the TD must stay active (the device
   * NAKs; at libusb an interrupt transfer waits). Then HID_REPORTS are
   * written one after another (a write to /dev/hidg0 waits while the
   * previous report is not yet sent) and each must arrive byte-exact, in
   * order; then the endpoint NAKs again for `nakFrames`.
   */
  async hidReports(hidg: string, nakFrames: number) {
    const { dev, hd } = this;
    if (!dev.interruptIn) throw new Error('HID gadget has no interrupt IN endpoint');
    const poller = new InterruptInPoller(this.bus, this.drv.layout.frameList, {
      address: dev.address,
      endpoint: dev.interruptIn.endpoint,
      maxPacket: dev.interruptIn.maxPacket,
      lowSpeed: dev.lowSpeed,
    });
    await poller.install();
    const naks: { frames: number; report: string | null; libusbWaiting: boolean }[] = [];
    const nakWindow = async () => {
      const r = await poller.next(nakFrames);
      naks.push({ frames: nakFrames, report: r ? (r.data ? Buffer.from(r.data).toString('hex') : `error 0x${r.status.toString(16)}`) : null, libusbWaiting: hd.transfersInFlight > 0 });
    };
    await nakWindow();
    const fh = await openFile(hidg, fsConstants.O_WRONLY);
    let written = 0;
    let writeError: string | null = null;
    const writer = (async () => {
      try {
        for (const r of HID_REPORTS) {
          await fh.write(Uint8Array.from(r));
          written++;
        }
      } catch (e) {
        writeError = (e as Error).message;
      }
    })();
    // Every packet the guest got, in order: reports, and the zero-length packets the gadget may end them with
    // (Debian's 6.1 f_hid queues each report with req->zero set: a report of wMaxPacketSize bytes is followed by a ZLP).
    const received: string[] = [];
    const frames: number[] = [];
    let reports = 0;
    let failure: string | null = null;
    const t0 = Date.now();
    const take = async (maxFrames: number): Promise<boolean> => {
      const r = await poller.next(maxFrames);
      if (!r) return false;
      if (!r.data) {
        failure = `TD status 0x${r.status.toString(16)}`;
        return false;
      }
      received.push(Buffer.from(r.data).toString('hex'));
      frames.push(r.frames);
      if (r.data.length) reports++;
      return true;
    };
    while (reports < HID_REPORTS.length && failure === null && Date.now() - t0 < 60_000) await take(1000);
    // A zero-length packet after the last report, if the gadget sends one, arrives within a few frames.
    if (failure === null && HID_REPORTS.length) await take(20);
    const writerDone = await Promise.race([writer.then(() => true), new Promise<boolean>((res) => setTimeout(() => res(false), 10_000))]);
    await nakWindow();
    // Unlinked: the controller gives the waiting packet back (cancel) once it has not seen the TD for a while.
    await poller.remove(64);
    if (writerDone) await fh.close();
    return {
      reports: HID_REPORTS.length,
      written,
      writerDone,
      writeError,
      failure,
      received,
      /** The non-empty packets: the reports. */
      reportsReceived: received.filter((x) => x.length > 0),
      zeroLengthPackets: received.filter((x) => x.length === 0).length,
      expected: HID_REPORTS.map((r) => Buffer.from(r).toString('hex')),
      frames,
      naks,
      realSeconds: (Date.now() - t0) / 1000,
      exactlyOnce: this.probe.report,
    };
  }
}

/** (class, subclass, protocol) of every interface descriptor, in order. */
function interfaceTriples(cd: Uint8Array): number[][] {
  const out: number[][] = [];
  for (let o = 0; o + 1 < cd.length && cd[o]! > 0; o += cd[o]!) if (cd[o + 1] === 4) out.push([cd[o + 5]!, cd[o + 6]!, cd[o + 7]!]);
  return out;
}

function rates(bytes: number, frames: number, realSeconds: number) {
  const guestBytesPerSecond = bytes / (frames / 1000);
  return {
    guestBytesPerSecond,
    ceiling: FULL_SPEED_BULK_CEILING,
    percentOfCeiling: (100 * guestBytesPerSecond) / FULL_SPEED_BULK_CEILING,
    realSeconds,
    realBytesPerSecond: bytes / realSeconds,
  };
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const host = await openNodeUsbHost();
  if (args.phase === 'hid') {
    const raw = await waitFor(() => findGadget(host, HID_GADGET.vendorId, HID_GADGET.productId), 10_000);
    if (!raw) {
      emit('error', { message: 'HID gadget 0525:a4ac not found by libusb' });
      return 2;
    }
    emit('hid-host-device', { bus: raw.info.busNumber, address: raw.info.deviceAddress, speed: raw.info.speed, vendorId: raw.info.vendorId, productId: raw.info.productId });
    // Short pacing: while the device has no report an interrupt transfer waits at libusb, so frames cannot wait for it to settle.
    const rig = new Rig(raw, Math.min(args.paceMs, 2), 0);
    await rig.start('hid-enumerated');
    emit('hid-reports', await rig.hidReports(args.hidg, 100));
    await rig.hd.close();
    return 0;
  }
  const raw = await waitFor(() => findGadget(host), 10_000);
  if (!raw) {
    emit('error', { message: 'gadget 0525:a4a0 not found by libusb' });
    return 2;
  }
  emit('host-device', { bus: raw.info.busNumber, address: raw.info.deviceAddress, speed: raw.info.speed, vendorId: raw.info.vendorId, productId: raw.info.productId });
  const rig = new Rig(raw, args.paceMs, args.readAhead);
  await rig.start();
  if (args.phase === 'main') {
    for (const d of args.directions) {
      if (d === 'in') emit('bulk-in', await rig.bulkIn(args.bytes, args.chunkTds, args.progressBytes));
      else emit('bulk-out', await rig.bulkOut(args.bytes, args.chunkTds, args.progressBytes));
    }
    emit('stall', await rig.stallAndClear());
    await rig.hd.close();
  } else {
    emit('unplug', await rig.removal(args));
    await setUdc(args.udcPath, args.udc); // plug the gadget back in for the next round
  }
  return 0;
}

main().then(
  (rc) => process.exit(rc),
  (e: unknown) => {
    emit('error', { message: (e as Error).message, stack: (e as Error).stack });
    process.exit(1);
  },
);
