/**
 * `uhci-dm xen --domid N`: serve the UHCI function to a Xen HVM guest as a
 * standalone ioreq server beside the domain's main device model. Option
 * names follow qemu-dm / xl (`-usb`, `-usbdevice tablet`, `-device
 * usb-tablet`). `--simulate` runs the same server against the in-memory
 * simulated hypervisor with a built-in guest driver (a demo; no Xen needed).
 * `--inspect` keeps a live, in-memory recording of recent frames for the
 * control socket's `inspect` command; `--pcap FILE` streams the transfers
 * as a usbmon pcap while the guest runs. See docs/xen.md.
 */
import { UserFacingError } from '../platform/user-facing-error.js';
import { StreamLogger } from '../platform/logger.js';
import { RealClock } from '../platform/clock.js';
import { UhciGuestDriver } from '../guest/uhci-driver.js';
import { LiveInspector, DEFAULT_LIVE_FRAMES } from '../inspect/live-inspector.js';
import { DEFAULT_PCAP_MAX_BYTES, UsbmonPcapWriter } from '../inspect/usbmon-pcap.js';
import { createUhciFunction } from '../trace/recorded-function.js';
import { DEFAULT_TRACE_MAX_BYTES } from '../trace/sink.js';
import { Recorder } from '../trace/recorder.js';
import { BdfSyntaxError, formatBdf, parseBdf } from '../xen/bdf.js';
import { ControlServer, type InspectRequest } from '../xen/control-socket.js';
import { IoreqServer, type StopReason } from '../xen/ioreq-server.js';
import { XenCallError, type XenPlatform } from '../xen/platform.js';
import { SimHypervisor } from '../xen/sim/hypervisor.js';
import { SimGuestBus } from '../xen/sim/vcpu.js';
import { UsbPorts, parseDeviceSpec } from '../xen/usb-ports.js';
import type { LibusbHost } from '../usb/host/libusb.js';
import { openNodeUsbHost } from '../usb/host/node-usb.js';
import { intOption, optionHelp, parseArgs, UsageError, type OptionSpec } from './args.js';
import { byteSizeOption } from './byte-size.js';
import { inspectionJson, inspectionText } from './inspect.js';

const OPTIONS: Record<string, OptionSpec> = {
  domid: { value: true, help: 'domain id of the HVM guest (required)' },
  bdf: { value: true, help: 'PCI address of the UHCI function in the guest, default 00:05.0' },
  usb: { value: false, help: 'accepted for qemu-dm compatibility (the controller is always present)' },
  usbdevice: { value: true, multiple: true, help: 'tablet | mouse | keyboard | host:vvvv:pppp | host:BUS.ADDR | host:BUS-PORT' },
  device: { value: true, multiple: true, help: 'usb-tablet | usb-mouse | usb-kbd [,serial=S][,usb_version=1|2][,msos-desc=on|off] | usb-host,vendorid=..,productid=.. (or hostbus=,hostaddr= / hostport=)' },
  control: { value: true, help: 'control socket path (JSON lines, QMP-like: usb_add, usb_del, query-usb, save, restore, inspect, quit)' },
  record: { value: true, help: 'record everything crossing the model boundary to FILE (.uhcitrace.gz)' },
  'record-max': { value: true, help: `stop recording (the file stays a complete trace) when it would pass VALUE bytes (K/M/G/T suffixes, e.g. 512M; default ${DEFAULT_TRACE_MAX_BYTES / 2 ** 30}G)` },
  inspect: { value: false, help: `keep a live recording of the last frames in memory for the control socket's inspect command (decoded timeline + anomalies; default ${DEFAULT_LIVE_FRAMES} frames)` },
  'inspect-frames': { value: true, help: `frames the live recording keeps (implies --inspect; default ${DEFAULT_LIVE_FRAMES})` },
  pcap: { value: true, help: 'write transfers to FILE as they complete, as a usbmon pcap (LINKTYPE_USB_LINUX_MMAPPED) for Wireshark/tshark (implies --inspect)' },
  'pcap-max': { value: true, help: `stop the capture when the pcap would pass VALUE bytes (K/M/G/T suffixes; default ${DEFAULT_PCAP_MAX_BYTES / 2 ** 30}G)` },
  'log-json': { value: false, help: 'structured logs as JSON lines on stderr' },
  verbose: { value: false, help: 'debug logging' },
  runas: { value: true, help: 'drop privileges to USER[:GROUP] after setup (needs root)' },
  vcpus: { value: true, help: 'vCPU slots to serve (default: the domain\'s count; --simulate: 2)' },
  simulate: { value: false, help: 'serve a simulated hypervisor with a built-in guest driver (demo, no Xen)' },
  'host-usb': { value: false, help: 'open libusb at start so host devices can be hot-added on the control socket' },
  reattach: { value: false, help: 're-attach a passed-through host device when it comes back after an unplug' },
  'idle-coalesce': { value: true, help: 'when the schedule is idle, run up to N frames per wake-up (default 32; 1 = every ms)' },
  help: { value: false, help: 'this text' },
};

export interface XenCommandIo {
  out?: (s: string) => void;
  err?: (s: string) => void;
  /** Platform override (tests). */
  platform?: XenPlatform;
  /** Install SIGTERM/SIGINT handlers (default true). */
  signals?: boolean;
  /** Called once the server is serving (tests). */
  onReady?: (server: IoreqServer, ports: UsbPorts) => void;
}

/** The process could not change to the --runas user. */
export class RunAsError extends UserFacingError {}

/** setgroups/setgid/setuid to USER[:GROUP] (GROUP defaults to a group named like the user). */
function dropPrivileges(spec: string): void {
  const [user, group = user] = spec.split(':');
  // initgroups exists on POSIX Node but is missing from @types/node 20's Process.
  const initgroups = (process as unknown as { initgroups?: (user: string, extraGroup: string) => void }).initgroups;
  if (!user || typeof process.getuid !== 'function' || !process.setuid || !process.setgid || !initgroups) {
    throw new RunAsError(`--runas ${spec}: needs a POSIX system and USER[:GROUP]`);
  }
  if (process.getuid() !== 0) throw new RunAsError(`--runas ${spec} needs uhci-dm to start as root`);
  try {
    initgroups(user, group!);
    process.setgid(group!);
    process.setuid(user);
  } catch (e) {
    throw new RunAsError(`cannot switch to ${user}:${group}: ${(e as Error).message}`);
  }
}

export async function xenCommand(argv: string[], io: XenCommandIo = {}): Promise<number> {
  const out = io.out ?? ((s: string) => void process.stdout.write(s));
  const err = io.err ?? ((s: string) => void process.stderr.write(s));
  try {
    return await runXen(argv, io, out, err);
  } catch (e) {
    if (e instanceof UsageError || e instanceof BdfSyntaxError) {
      err(`uhci-dm xen: ${e.message}\n`);
      return 2;
    }
    if (e instanceof UserFacingError || e instanceof XenCallError) {
      err(`uhci-dm xen: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

async function runXen(argv: string[], io: XenCommandIo, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const p = parseArgs(argv, OPTIONS);
  if (p.options.has('help')) {
    out(`usage: uhci-dm xen --domid N [options]\n${optionHelp(OPTIONS)}\n`);
    return 0;
  }
  if (p.positionals.length) throw new UsageError(`xen takes no arguments (got '${p.positionals[0]}')`);
  const simulate = p.options.has('simulate');
  if (!simulate && !p.options.has('domid')) throw new UsageError('--domid N is required');
  // DOMID_FIRST_RESERVED is 0x7FF0; domain 0 is never an HVM guest.
  const domid = intOption(p, 'domid', 1, 1, 0x7fef);
  const bdf = parseBdf(p.options.get('bdf')?.[0] ?? '00:05.0');
  // Devices go on the ports in command-line order, -usbdevice and -device mixed (as QEMU attaches them).
  const specs = p.order.filter((o) => o.name === 'usbdevice' || o.name === 'device').map((o) => o.value);
  specs.forEach((s) => parseDeviceSpec(s)); // refuse bad / unsupported names before touching Xen
  const vcpusOpt = p.options.has('vcpus') ? intOption(p, 'vcpus', 1, 1, 128) : undefined;
  const logger = new StreamLogger({ json: p.options.has('log-json'), level: p.options.has('verbose') ? 'debug' : 'info', write: (l) => err(l + '\n') });
  const runas = p.options.get('runas')?.[0];

  let sim: SimHypervisor | null = null;
  let platform: XenPlatform;
  if (io.platform) platform = io.platform;
  else if (simulate) {
    sim = new SimHypervisor({ domid, vcpus: vcpusOpt ?? 2, delivery: 'immediate' });
    platform = sim.platform;
  } else {
    platform = new (await import('../xen/xen-libs.js')).NativeXenPlatform();
  }

  const clock = new RealClock();
  const idleCoalesce = intOption(p, 'idle-coalesce', 32, 1, 1024);
  const recordPath = p.options.get('record')?.[0];
  const pcapPath = p.options.get('pcap')?.[0];
  const liveOn = p.options.has('inspect') || p.options.has('inspect-frames') || pcapPath !== undefined;
  const liveFrames = intOption(p, 'inspect-frames', DEFAULT_LIVE_FRAMES, 1, 1 << 20);
  const notes = `uhci-dm xen --domid ${domid} ${specs.join(' ')}`;
  // Live inspection observes the --record recorder, or one that keeps no file.
  const recordMax = byteSizeOption(p, 'record-max', DEFAULT_TRACE_MAX_BYTES, 1 << 16, 2 ** 40);
  const pcapMax = byteSizeOption(p, 'pcap-max', DEFAULT_PCAP_MAX_BYTES, 1 << 16, 2 ** 40);
  const pcap = pcapPath ? new UsbmonPcapWriter(pcapPath, 1, pcapMax) : null;
  const recorder = recordPath ? Recorder.toFile(recordPath, { notes, maxBytes: recordMax, logger }) : liveOn ? Recorder.withoutFile({ notes }) : null;
  const live = recorder && liveOn ? startLiveInspection(recorder, liveFrames, pcap, logger) : null;
  const server = new IoreqServer({
    platform,
    domid,
    bdf,
    clock,
    logger,
    vcpus: vcpusOpt ?? (simulate ? sim?.nrVcpus : undefined),
    createFunction: (fio) => createUhciFunction({ ...fio, recorder, idleCoalesce }),
    afterSetup: runas ? () => dropPrivileges(runas) : undefined,
  });
  const closeRecording = async () => {
    const summary = await recorder?.close();
    live?.close();
    pcap?.close();
    return summary;
  };
  try {
    await server.start();
  } catch (e) {
    await closeRecording().catch(() => undefined);
    throw e;
  }
  const pciPath = `0000:${formatBdf(bdf)}`;
  // libusb is opened only when host devices are wanted (it starts a hotplug thread).
  let usbHost: LibusbHost | null = null;
  if (p.options.has('host-usb') || specs.some((s) => parseDeviceSpec(s).kind === 'host')) {
    try {
      usbHost = await openNodeUsbHost();
    } catch (e) {
      logger.log('warn', 'xen', `libusb unavailable: ${(e as Error).message}`);
    }
  }
  const ports = new UsbPorts(server.fn, clock, pciPath, usbHost, p.options.has('reattach'), logger);
  try {
    specs.forEach((s) => ports.add(s));
  } catch (e) {
    ports.releaseAll();
    await server.stop('error');
    await closeRecording().catch(() => undefined);
    throw e;
  }
  logger.log('info', 'xen', 'serving', { bdf: formatBdf(bdf), simulate, devices: ports.list().map((d) => `${d.port}:${d.kind}`).join(',') });

  const control = p.options.has('control')
    ? await ControlServer.listen(
        p.options.get('control')![0]!,
        {
          ports,
          status: () => ({ domid, id: server.id, bdf: formatBdf(bdf), running: server.running, ioBase: server.fn.ioBase, intx: server.intxLevel, ...server.stats }),
          quit: () => void server.stop('stop'),
          inspect: live ? (req) => liveInspectReply(live, req, `uhci-dm xen (domain ${domid})`) : undefined,
        },
        logger,
      ).catch(async (e: unknown) => {
        await server.stop('error');
        throw e;
      })
    : null;

  const onSignal = (sig: NodeJS.Signals) => {
    logger.log('info', 'xen', `${sig} received`);
    void server.stop('signal');
  };
  if (io.signals ?? true) {
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }
  // Keep the event loop alive while serving (the simulated platform has no fd to wait on).
  const keepAlive = setInterval(() => undefined, 1 << 30);
  io.onReady?.(server, ports);

  if (sim) void simulatedGuest(sim, server, logger, out);

  let reason: StopReason;
  try {
    reason = await server.stopped;
  } finally {
    clearInterval(keepAlive);
    ports.releaseAll();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await control?.close();
    const summary = await closeRecording();
    const recordError = recorder?.writeError ?? null;
    if (summary && recordPath) {
      if (recordError !== null) logger.log('error', 'xen', 'trace recording failed; the file holds what was written before', { file: recordPath, events: summary.events, error: recordError });
      else logger.log('info', 'xen', 'trace written', { file: recordPath, events: summary.events });
    }
    if (pcap) logger.log('info', 'xen', 'pcap written', { file: pcapPath, transfers: pcap.transfers });
  }
  logger.log('info', 'xen', 'stopped', { reason });
  return reason === 'error' ? 1 : 0;
}

/** The live inspector on `recorder`, streaming transfers to `pcap` when there is one. */
function startLiveInspection(recorder: Recorder, frames: number, pcap: UsbmonPcapWriter | null, logger: StreamLogger): LiveInspector {
  let pcapFailed = false;
  return new LiveInspector(recorder, {
    frames,
    onHeader: (h) => {
      const start = Date.parse(h.created);
      pcap?.setStart(Number.isFinite(start) ? start : 0);
    },
    onUrb: pcap
      ? (u) => {
          if (pcapFailed) return;
          try {
            pcap.write(u);
          } catch (e) {
            // A full disk stops the capture, not the device model.
            pcapFailed = true;
            logger.log('error', 'xen', 'pcap write failed; capture stopped', { file: pcap.path, error: (e as Error).message });
          }
        }
      : undefined,
    onError: (e) => logger.log('error', 'xen', 'live inspection stopped', { error: e.message }),
  });
}

/** The control socket's `inspect` answer: report text, or the `uhci-dm inspect --json` object. */
function liveInspectReply(live: LiveInspector, req: InspectRequest, name: string): string | Record<string, unknown> {
  let r = live.inspect(req);
  if (req.quiet) r = { ...r, timeline: [], devices: [] };
  if (req.json) return JSON.parse(inspectionJson(r)) as Record<string, unknown>;
  return inspectionText(r, name, false);
}

/** --simulate: a guest on vCPU 0 probes the function and enumerates what is plugged in, through ioreqs. */
async function simulatedGuest(sim: SimHypervisor, server: IoreqServer, logger: StreamLogger, out: (s: string) => void): Promise<void> {
  const bus = new SimGuestBus(sim.vcpus[0]!, null);
  const driver = new UhciGuestDriver(bus);
  try {
    const found = await driver.probe(0xc000, [server.bdf.device]);
    out(`simulated guest: UHCI ${found.id.toString(16)} at PCI slot ${found.slot}, I/O 0x${driver.ioBase.toString(16)}\n`);
    await driver.start();
    for (let port = 0; port < server.fn.portCount; port++) {
      if (!server.fn.deviceAt(port)) continue;
      const d = await driver.enumerate(port);
      out(`simulated guest: port ${port + 1}: ${d.vendorId.toString(16).padStart(4, '0')}:${d.productId.toString(16).padStart(4, '0')} ${d.manufacturer} ${d.product}\n`);
    }
    out(`simulated guest: enumeration done (${server.stats.ioreqs} ioreqs served); serving until SIGTERM/SIGINT or quit\n`);
  } catch (e) {
    if (server.running) logger.log('warn', 'sim-guest', 'simulated guest failed', { error: (e as Error).message });
  }
}
