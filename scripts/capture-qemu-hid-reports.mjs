#!/usr/bin/env node
// One-off capture of the interrupt reports QEMU 7.2's usb-tablet, usb-mouse
// and usb-kbd send for scripted input. For each device: boot the host's
// Debian kernel under TCG with only that device behind piix3-usb-uhci; the
// guest (scripts/qemu-capture/usbprobe.c --reports) announces each scenario
// of test/fixtures/qemu-7.2/report-scenarios.json, this script injects its
// input through QMP input-send-event while the guest is not polling, and the
// guest prints the reports it then reads. Output:
// test/fixtures/qemu-7.2/reports.txt.
// Needs qemu-system-x86_64, busybox-static, cpio, gcc + static libc.
// Usage: node scripts/capture-qemu-hid-reports.mjs   (~1 minute)
import { execFileSync, execSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = join(root, 'test/fixtures/qemu-7.2');
const spec = JSON.parse(readFileSync(join(fixtures, 'report-scenarios.json'), 'utf8'));
const kernel = readdirSync('/boot').filter((f) => /^vmlinuz-.*-amd64$/.test(f)).sort().pop();
const kver = kernel.replace('vmlinuz-', '');
const work = mkdtempSync(join(tmpdir(), 'hid-reports-'));

function buildInitrd() {
  const r = join(work, 'root');
  for (const d of ['bin', 'dev', 'proc', 'sys', 'mod']) mkdirSync(join(r, d), { recursive: true });
  execFileSync('gcc', ['-O1', '-static', '-o', join(r, 'bin/usbprobe'), join(root, 'scripts/qemu-capture/usbprobe.c')]);
  copyFileSync('/bin/busybox', join(r, 'bin/busybox'));
  for (const m of ['usb/common/usb-common', 'usb/core/usbcore', 'usb/host/uhci-hcd']) {
    const base = `/lib/modules/${kver}/kernel/drivers/${m}.ko`;
    const name = join(r, 'mod', m.split('/').pop() + '.ko');
    if (existsSync(base)) copyFileSync(base, name);
    else writeFileSync(name, execFileSync('xz', ['-dc', base + '.xz'], { maxBuffer: 64 << 20 }));
  }
  writeFileSync(join(r, 'init'), `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in usb-common usbcore uhci-hcd; do insmod /mod/$m.ko; done
for x in $(cat /proc/cmdline); do case $x in mps=*) MPS=\${x#mps=};; scen=*) SCEN=\${x#scen=};; esac; done
i=0; while [ $i -lt 100 ]; do grep -q 0627 /sys/bus/usb/devices/1-1/idVendor 2>/dev/null && break; sleep 0.2; i=$((i+1)); done
sleep 1
d=/sys/bus/usb/devices/1-1
echo "===REPORTS-BEGIN==="
usbprobe --reports /dev/bus/usb/$(printf %03d $(cat $d/busnum))/$(printf %03d $(cat $d/devnum)) $MPS $(echo $SCEN | tr , ' ')
echo "===REPORTS-END==="
poweroff -f
`);
  chmodSync(join(r, 'init'), 0o755);
  execSync(`cd ${r} && find . | cpio -o -H newc --quiet > ${join(work, 'initrd')}`);
}

function qmpClient(path) {
  return new Promise((resolveClient, reject) => {
    const sock = connect(path);
    let buf = '';
    const waiters = [];
    sock.on('data', (d) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if ('return' in msg || 'error' in msg) waiters.shift()?.(msg);
        if ('QMP' in msg) {
          const cmd = (c) => new Promise((res) => { waiters.push(res); sock.write(JSON.stringify(c) + '\n'); });
          cmd({ execute: 'qmp_capabilities' }).then(() => resolveClient({ cmd, close: () => sock.end() }));
        }
      }
    });
    sock.on('error', reject);
  });
}

async function captureDevice(dev, { mps, scenarios }) {
  const qmpPath = join(work, `${dev}.qmp`);
  const scen = scenarios.map((s) => s.name).join(',');
  const q = spawn('qemu-system-x86_64', [
    '-accel', 'tcg', '-m', '512', '-nodefaults', '-nographic', '-serial', 'stdio',
    '-kernel', `/boot/${kernel}`, '-initrd', join(work, 'initrd'), '-no-reboot',
    '-append', `console=ttyS0 quiet panic=-1 mps=${mps} scen=${scen}`,
    '-qmp', `unix:${qmpPath},server=on,wait=off`,
    '-device', 'piix3-usb-uhci', '-device', dev,
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  const killTimer = setTimeout(() => q.kill('SIGKILL'), 180_000);
  let qmp = null;
  for (let k = 0; k < 100 && !qmp; k++) {
    try { qmp = await qmpClient(qmpPath); } catch { await new Promise((r) => setTimeout(r, 100)); }
  }
  if (!qmp) throw new Error('no QMP');
  const lines = [];
  let pending = '';
  let chain = Promise.resolve();
  q.stdout.on('data', (d) => {
    pending += d.toString().replace(/\r/g, '');
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).replace(/^.*(===REPORTS)/, '$1');
      pending = pending.slice(nl + 1);
      if (/^(REP|DONE|WAIT|R) /.test(line) || line.startsWith('===REPORTS')) lines.push(line);
      const m = /^WAIT (\S+)/.exec(line);
      if (m) {
        const s = scenarios.find((x) => x.name === m[1]);
        chain = chain.then(async () => {
          for (const events of s.commands) {
            const r = await qmp.cmd({ execute: 'input-send-event', arguments: { events } });
            if (r.error) throw new Error(`${dev} ${s.name}: ${JSON.stringify(r.error)}`);
          }
        });
      }
    }
  });
  await new Promise((res) => q.on('exit', res));
  clearTimeout(killTimer);
  await chain;
  qmp.close();
  if (!lines.includes('===REPORTS-END===')) throw new Error(`${dev}: capture incomplete:\n${lines.join('\n')}`);
  return lines.filter((l) => /^(REP|DONE) /.test(l));
}

try {
  buildInitrd();
  const version = execFileSync('qemu-system-x86_64', ['--version']).toString().split('\n')[0];
  const out = [`# qemu: ${version}`, `# kernel: ${kver}`];
  for (const [dev, cfg] of Object.entries(spec.devices)) {
    out.push(`DEV ${dev}`, ...(await captureDevice(dev, cfg)));
  }
  writeFileSync(join(fixtures, 'reports.txt'), out.join('\n') + '\n');
  console.log(`wrote ${join(fixtures, 'reports.txt')}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
