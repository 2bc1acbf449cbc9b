/**
 * `uhci-dm lab`: boot a real Linux guest under QEMU with our UHCI model as
 * its USB controller (through QEMU's x-pci-proxy-dev) and print what the
 * guest saw. `--reference` boots the same guest with QEMU's own UHCI and
 * devices for comparison.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspectTrace } from '../inspect/inspector.js';
import { usbmonPcap } from '../inspect/usbmon-pcap.js';
import { runLab, type LabResult } from '../lab/lab.js';
import type { LabPort } from '../lab/proxy-model.js';
import { formatLsusb, EV_ABS, EV_KEY, EV_SYN, EV_MSC, EV_REL, type InputEvent } from '../lab/lab-report.js';
import { runBiosLab, type BiosPort } from '../lab/bios.js';
import { runUsbtestLab, CI_USBTEST_PLAN } from '../lab/usbtest-lab.js';
import { runPassthroughLab } from '../lab/passthrough-lab.js';
import { formatXenLabResult, runXenLab } from '../lab/xen-lab.js';
import { parseArgs, optionHelp, UsageError, intOption, type OptionSpec, type Parsed } from './args.js';

const OPTIONS: Record<string, OptionSpec> = {
  port1: { value: true, help: 'device on port 1 (tablet|mouse|keyboard|gadget-zero|none), default tablet' },
  port2: { value: true, help: 'device on port 2 (tablet|mouse|keyboard|gadget-zero|none), default keyboard' },
  reference: { value: false, help: "boot with QEMU's own piix3-usb-uhci and devices instead of the model" },
  module: { value: true, multiple: true, help: 'extra guest kernel module to load (repeatable)' },
  script: { value: true, help: 'shell script the guest runs after its report (output is shown)' },
  timeout: { value: true, help: 'seconds before QEMU is killed (default 240)' },
  json: { value: false, help: 'print the result as JSON' },
  record: { value: true, help: 'record everything crossing the model boundary to FILE (.uhcitrace.gz)' },
  pcap: { value: true, help: 'write the transfers as a usbmon pcap (LINKTYPE_USB_LINUX_MMAPPED) to FILE when the guest is done (decoded from the recording)' },
  replug: { value: true, help: 'after the input, unplug the device on port N (1|2) and plug a new one in' },
  bios: { value: false, help: 'boot SeaBIOS only (no kernel) and report what the firmware found' },
  usbtest: { value: false, help: "Linux usbtest (testusb's cases 0-29) against our emulated gadget zero behind our UHCI" },
  iterations: { value: true, help: 'with --usbtest: iterations per case (default: the CI plan; testusb uses 1000)' },
  passthrough: { value: false, help: 'a real dummy_hcd gadget in the guest, passed through libusb into our UHCI model' },
  bytes: { value: true, help: 'with --passthrough: bytes per bulk direction (default 1048576)' },
  rounds: { value: true, help: 'with --passthrough: gadget removals mid-transfer (default 5)' },
  xen: { value: false, help: 'real Xen 4.17 under QEMU TCG: an HVM domU served by uhci-dm xen in dom0 (tablet + keyboard), after a reference domU with QEMU-xen\'s UHCI, then xl save / xl restore with uhci-dm following (minutes; needs the Xen packages, see docs/xen.md)' },
  'no-reference': { value: false, help: 'with --xen: skip the reference domU' },
  dropin: { value: false, help: 'with --xen: the drop-in instead: an ordinary xl.cfg (usb=1, usbdevice, usbctrl) plus device_model_override = uhci-dm-qemu, driven by xl commands only (create, usbdev-attach/usb-list/usbdev-detach, save, restore)' },
  'no-save-restore': { value: false, help: 'with --xen: skip the xl save / xl restore part (and the passthrough that follows it)' },
  'no-passthrough': { value: false, help: "with --xen: skip the hot-plug of a dom0 USB gadget through libusb after the restore" },
  help: { value: false, help: 'this text' },
};

const PORT_KINDS: readonly LabPort[] = ['tablet', 'mouse', 'keyboard', 'gadget-zero', 'none'];

function port(v: string | undefined, def: LabPort, name: string): LabPort {
  if (v === undefined) return def;
  const alias: Record<string, LabPort> = { 'usb-tablet': 'tablet', 'usb-mouse': 'mouse', 'usb-kbd': 'keyboard' };
  const k = (alias[v] ?? v) as LabPort;
  if (!PORT_KINDS.includes(k)) throw new UsageError(`--${name} must be one of ${PORT_KINDS.join('|')}, got '${v}'`);
  return k;
}

function formatEvent(e: InputEvent): string {
  const t = e.type === EV_KEY ? 'KEY' : e.type === EV_ABS ? 'ABS' : e.type === EV_REL ? 'REL' : e.type === EV_SYN ? 'SYN' : e.type === EV_MSC ? 'MSC' : `type${e.type}`;
  return `${t} ${e.code}=${e.value}`;
}

export function formatLabResult(r: LabResult): string {
  const out: string[] = [];
  out.push(`mode: ${r.mode === 'model' ? 'uhci-dm model via x-pci-proxy-dev' : 'QEMU piix3-usb-uhci (reference)'}; ${r.qemuVersion}; kernel ${r.kernelVersion}; ${(r.elapsedMs / 1000).toFixed(1)} s`);
  if (!r.booted) out.push('guest did not boot (see console below)');
  if (r.settled) out.push(`settled at ${r.settled.uptime} s guest time: ${r.settled.boundInterfaces} interfaces bound, ${r.settled.eventDevices} USB input devices`);
  out.push('', 'USB devices:');
  for (const d of [...r.devices].sort((a, b) => a.devnum - b.devnum)) {
    const ifs = d.interfaces.map((i) => `${i.name} class ${i.interfaceClass.toString(16).padStart(2, '0')} ${i.driver ?? 'no driver'}`);
    out.push(`  ${formatLsusb(d)}${d.serial ? ` (serial ${d.serial})` : ''}${ifs.length ? ' [' + ifs.join('; ') + ']' : ''}`);
  }
  out.push('', 'input devices:');
  for (const i of r.inputs) {
    const evs = i.events.filter((e) => e.type !== EV_SYN && e.type !== EV_MSC).map(formatEvent);
    out.push(`  ${i.event}: ${i.name} (${i.phys}) events: ${evs.length ? evs.join(', ') : 'none'}`);
  }
  if (r.injected.length) out.push('', `injected: ${r.injected.map((j) => `port ${j.port} ${j.device}: ${j.actions.length} actions`).join('; ')}`);
  out.push('', 'kernel log (usb/uhci/hid/input):', ...r.kernelLog.map((l) => '  ' + l));
  if (r.insmodFailures.length) out.push('', `insmod failed: ${r.insmodFailures.join(', ')}`);
  if (r.scriptOutput) out.push('', `script output (exit ${r.scriptExitCode}):`, ...r.scriptOutput.map((l) => '  ' + l));
  if (r.proxy) {
    const s = r.proxy;
    out.push('', `proxy: ${s.configReads} config reads, ${s.configWrites} config writes, ${s.barReads} BAR reads, ${s.barWrites} BAR writes, ${s.barMisses} misses, ${s.memoryMaps} memory maps, ${s.resets} resets, ${s.irqRaises} IRQ raises, ${s.functionErrors} model errors; ended: ${r.proxyEnd}`);
  }
  const warn = r.modelLog.filter((l) => l.startsWith('warn') || l.startsWith('error'));
  if (warn.length) out.push('', 'model warnings:', ...warn.slice(0, 50).map((l) => '  ' + l));
  if (!r.done) {
    out.push('', `guest did not finish${r.timedOut ? ' (timed out)' : ''}; last console lines:`, ...r.console.slice(-30).map((l) => '  ' + l));
    if (r.qemuStderr) out.push('QEMU stderr:', r.qemuStderr.trim());
  }
  return out.join('\n');
}

export async function labCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, OPTIONS);
  if (p.options.has('help')) {
    process.stdout.write(`usage: uhci-dm lab [options]\n${optionHelp(OPTIONS)}\n`);
    return 0;
  }
  if (p.positionals.length) throw new UsageError(`lab takes no arguments (got '${p.positionals[0]}')`);
  if (p.options.has('reference') && (p.options.has('record') || p.options.has('replug') || p.options.has('pcap'))) {
    throw new UsageError('--record, --pcap and --replug need the model (they cannot be used with --reference)');
  }
  for (const mode of ['usbtest', 'passthrough', 'bios']) {
    if (p.options.has('pcap') && p.options.has(mode)) throw new UsageError(`--pcap cannot be used with --${mode} (use --record FILE, then uhci-dm inspect FILE --pcap OUT)`);
  }
  const json = p.options.has('json');
  if (p.options.has('xen')) return xenLab(p, json);
  for (const o of ['no-reference', 'no-save-restore', 'no-passthrough', 'dropin']) if (p.options.has(o)) throw new UsageError(`--${o} only applies to --xen`);
  if (p.options.has('usbtest')) return usbtestLab(p, json);
  if (p.options.has('passthrough')) return passthroughLab(p, json);
  if (p.options.has('bios')) return biosLab(p, json);
  return linuxLab(p, json);
}

const progress = (m: string) => process.stderr.write(`lab: ${m}\n`);

async function xenLab(p: Parsed, json: boolean): Promise<number> {
  for (const o of ['reference', 'record', 'pcap', 'replug', 'bios', 'usbtest', 'passthrough', 'module', 'script', 'port1', 'port2']) {
    if (p.options.has(o)) throw new UsageError(`--${o} cannot be used with --xen`);
  }
  const saveRestore = !p.options.has('no-save-restore');
  const hostPassthrough = saveRestore && !p.options.has('no-passthrough');
  const dropIn = p.options.has('dropin');
  const r = await runXenLab({
    dropIn,
    reference: !p.options.has('no-reference'),
    saveRestore,
    hostPassthrough,
    timeout: intOption(p, 'timeout', 540, 60, 7200),
    progress,
  });
  if (json) process.stdout.write(JSON.stringify({ ...r, serial: undefined }, null, 2) + '\n');
  else process.stdout.write(formatXenLabResult(r) + '\n');
  if (dropIn) return r.dm.done && /@@XEN:dm-procs-end 0 0/.test(r.serial) ? 0 : 1;
  const ok = r.dm.done && r.uhciDmExit === 0 && (!saveRestore || r.restored?.uhciDmExitAfterSave === 0) && (!hostPassthrough || (r.hotplug?.address ?? 0) !== 0);
  return ok ? 0 : 1;
}

async function usbtestLab(p: Parsed, json: boolean): Promise<number> {
  const plan = p.options.has('iterations') ? { ...CI_USBTEST_PLAN, iterations: intOption(p, 'iterations', 100, 1, 100000), caseParams: undefined } : CI_USBTEST_PLAN;
  const r = await runUsbtestLab({ ...plan, timeoutMs: intOption(p, 'timeout', 900, 60, 7200) * 1000, onProgress: progress });
  if (json) process.stdout.write(JSON.stringify({ device: r.device, cases: r.cases }, null, 2) + '\n');
  else {
    process.stdout.write(`usbtest on ${r.device ?? '(no device)'}:\n`);
    for (const c of r.cases) process.stdout.write(`  test ${String(c.test).padStart(2)}: ${c.outcome}${c.errno ? ' (' + c.errno + ')' : ''}${c.seconds !== null ? ' ' + c.seconds + ' s' : ''}\n`);
  }
  return r.cases.length > 0 && r.cases.every((c) => c.outcome !== 'fail') ? 0 : 1;
}

async function passthroughLab(p: Parsed, json: boolean): Promise<number> {
  const r = await runPassthroughLab({
    bytes: intOption(p, 'bytes', 1 << 20, 4096, 1 << 30),
    unplugRounds: intOption(p, 'rounds', 5, 0, 100),
    timeoutMs: intOption(p, 'timeout', 900, 60, 7200) * 1000,
    onProgress: progress,
  });
  const records = Object.fromEntries(r.records);
  process.stdout.write(JSON.stringify(records, null, json ? 2 : 0) + '\n');
  return r.lab.done && !r.records.has('error') ? 0 : 1;
}

async function biosLab(p: Parsed, json: boolean): Promise<number> {
  for (const o of ['module', 'script', 'replug']) if (p.options.has(o)) throw new UsageError(`--${o} cannot be used with --bios`);
  const ports = labPorts(p);
  if (ports.includes('gadget-zero')) throw new UsageError('--bios supports tablet, mouse, keyboard and none');
  const r = await runBiosLab({
    ports: ports as BiosPort[],
    reference: p.options.has('reference'),
    record: p.options.get('record')?.[0],
    timeoutMs: intOption(p, 'timeout', 40, 5, 600) * 1000,
    onProgress: progress,
  });
  if (json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  else {
    process.stdout.write(
      [
        `mode: ${r.mode === 'model' ? 'uhci-dm model via x-pci-proxy-dev' : "QEMU's piix3-usb-uhci"}; SeaBIOS only; ${(r.elapsedMs / 1000).toFixed(1)} s`,
        'SeaBIOS USB lines:',
        ...r.log.filter((l) => /UHCI|USB|usb|keyboard|mouse/.test(l)).map((l) => '  ' + l),
        r.trace ? `trace: ${r.trace.events} events, ${r.trace.frames} frames → ${r.trace.path}` : '',
      ]
        .filter(Boolean)
        .join('\n') + '\n',
    );
  }
  return r.uhciInit && r.finished ? 0 : 1;
}

/** The default lab: the Linux guest on the model (or QEMU's UHCI with --reference). */
async function linuxLab(p: Parsed, json: boolean): Promise<number> {
  const script = guestScript(p.options.get('script')?.[0]);
  // --pcap: the lab records (to --record FILE, or a temporary trace) and the transfers are decoded from it afterwards.
  const pcapPath = p.options.get('pcap')?.[0];
  const tmp = pcapPath && !p.options.has('record') ? mkdtempSync(join(tmpdir(), 'uhci-dm-lab-')) : null;
  const record = tmp ? join(tmp, 'lab.uhcitrace.gz') : p.options.get('record')?.[0];
  try {
    const result = await runLab({
      ports: labPorts(p),
      reference: p.options.has('reference'),
      modules: p.options.get('module') ?? [],
      script,
      timeoutMs: intOption(p, 'timeout', 240, 10, 3600) * 1000,
      record,
      replugPort: p.options.has('replug') ? (intOption(p, 'replug', 1, 1, 2) as 1 | 2) : undefined,
      onProgress: progress,
    });
    if (pcapPath && record && result.trace) {
      const r = await inspectTrace(record, { transfers: true });
      const start = Date.parse(r.header.created);
      writeFileSync(pcapPath, usbmonPcap(r.urbs, Number.isFinite(start) ? start : 0));
      progress(`${r.urbs.length} transfers written to ${pcapPath} (usbmon pcap)`);
    }
    // The temporary trace is gone once we return: do not name it.
    const shown = tmp ? { ...result, trace: null } : result;
    process.stdout.write((json ? JSON.stringify(shown, null, 2) : formatLabResult(shown)) + '\n');
    return result.done ? 0 : 1;
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

function labPorts(p: Parsed): LabPort[] {
  return [port(p.options.get('port1')?.[0], 'tablet', 'port1'), port(p.options.get('port2')?.[0], 'keyboard', 'port2')];
}

/** --script FILE: its contents, as a shell script. */
function guestScript(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  let script: string;
  try {
    script = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read --script ${path}: ${(e as Error).message}`);
  }
  return script.startsWith('#!') ? script : '#!/bin/sh\n' + script;
}
