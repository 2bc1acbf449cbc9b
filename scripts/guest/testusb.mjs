#!/usr/bin/env node
/**
 * testusb for the lab guest: what Linux tools/usb/testusb.c does, without a
 * compiler. Runs inside the guest with the host's node (9p + chroot) and
 * binds libc's ioctl with koffi (a dependency of this repository).
 *
 * It finds the test devices under /dev/bus/usb (gadget zero 0525:a4a0 uses
 * interface 0, as testusb_ifnum does), and for each requested case issues
 *   ioctl(fd, USBDEVFS_IOCTL, { ifno, USBTEST_REQUEST, &param })
 * which the usbtest driver bound to that interface runs in the kernel.
 *
 * Layouts (x86-64; include/uapi/linux/usbdevice_fs.h, drivers/usb/misc/
 * usbtest.c struct usbtest_param_64, tools/usb/testusb.c):
 *   struct usbtest_param { u32 test_num, iterations, length, vary, sglen;
 *                          (4 bytes padding) s64 duration_sec, duration_usec; }  = 40 bytes
 *   USBTEST_REQUEST = _IOWR('U', 100, 40 bytes) = 0xc0285564
 *   struct usbdevfs_ioctl { int ifno; int ioctl_code; void *data; }           = 16 bytes
 *   USBDEVFS_IOCTL  = _IOWR('U', 18, 16 bytes)  = 0xc0105512
 * testusb's defaults: iterations 1000, length 512, vary 512, sglen 32; a case
 * failing with EOPNOTSUPP does not apply to the device and is skipped.
 *
 * Output, one line per case:
 *   @@USBTEST <dev> <case> pass <seconds>
 *   @@USBTEST <dev> <case> fail <errno> <name>
 *   @@USBTEST <dev> <case> skip EOPNOTSUPP
 * Options: --cases 0-29 | 1,2,9  --iterations N --length N --vary N --sglen N
 *          --case 14:vary=1,5:iterations=10:sglen=8 (per-case overrides)
 */
import { readdirSync, readFileSync, openSync, closeSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const koffi = require('koffi');

const IOC_READ_WRITE = 3;
const ioc = (dir, type, nr, size) => ((dir << 30) | (size << 16) | (type.charCodeAt(0) << 8) | nr) >>> 0;
const PARAM_SIZE = 40;
const WRAPPER_SIZE = 16;
const USBTEST_REQUEST = ioc(IOC_READ_WRITE, 'U', 100, PARAM_SIZE);
const USBDEVFS_IOCTL = ioc(IOC_READ_WRITE, 'U', 18, WRAPPER_SIZE);
const EOPNOTSUPP = 95;
const ERRNO_NAMES = {
  1: 'EPERM', 2: 'ENOENT', 5: 'EIO', 11: 'EAGAIN', 12: 'ENOMEM', 16: 'EBUSY', 19: 'ENODEV', 22: 'EINVAL', 32: 'EPIPE',
  61: 'ENODATA', 62: 'ETIME', 71: 'EPROTO', 74: 'EBADMSG', 75: 'EOVERFLOW', 84: 'EILSEQ', 90: 'EMSGSIZE', 95: 'EOPNOTSUPP',
  104: 'ECONNRESET', 108: 'ESHUTDOWN', 110: 'ETIMEDOUT', 115: 'EINPROGRESS', 121: 'EREMOTEIO',
};

function parseArgs(argv) {
  const o = { cases: [...Array(30).keys()], iterations: 1000, length: 512, vary: 512, sglen: 32, caseParams: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === '--cases') {
      o.cases = v.split(',').flatMap((r) => {
        const [lo, hi] = r.split('-').map(Number);
        return hi === undefined ? [lo] : Array.from({ length: hi - lo + 1 }, (_, k) => lo + k);
      });
    } else if (a === '--case') {
      for (const spec of v.split(',')) {
        const [c, ...kvs] = spec.split(':');
        const over = o.caseParams.get(Number(c)) ?? {};
        for (const kv of kvs) {
          const [k, n] = kv.split('=');
          if (!['iterations', 'length', 'vary', 'sglen'].includes(k)) throw new Error(`unknown case parameter ${k}`);
          over[k] = Number(n);
        }
        o.caseParams.set(Number(c), over);
      }
    } else if (a === '--iterations') o.iterations = Number(v);
    else if (a === '--length') o.length = Number(v);
    else if (a === '--vary') o.vary = Number(v);
    else if (a === '--sglen') o.sglen = Number(v);
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

/** testusb_ifnum for the devices this lab has: gadget zero (and its usermode variants that use interface 0). */
function testInterface(desc) {
  if (desc.length < 18 || desc[0] !== 18 || desc[1] !== 1) return -1;
  const vid = desc[8] | (desc[9] << 8);
  const pid = desc[10] | (desc[11] << 8);
  if (vid === 0x0525 && (pid === 0xa4a0 || pid === 0xa4a3)) return 0;
  if (vid === 0xfff0 && pid === 0xfff0) return 0;
  return -1;
}

function findDevices(root = '/dev/bus/usb') {
  const found = [];
  for (const bus of readdirSync(root).sort()) {
    for (const dev of readdirSync(`${root}/${bus}`).sort()) {
      const path = `${root}/${bus}/${dev}`;
      const ifnum = testInterface(readFileSync(path).subarray(0, 18));
      if (ifnum >= 0) found.push({ path, ifnum });
    }
  }
  return found;
}

const libc = koffi.load('libc.so.6');
// The wrapper's address is passed as an integer: it points into koffi-allocated memory.
const ioctlAt = libc.func('int ioctl(int, unsigned long, uint64_t)');

function runOne(fd, ifnum, param) {
  const block = koffi.alloc('uint8', PARAM_SIZE + WRAPPER_SIZE);
  const view = new DataView(koffi.view(block, PARAM_SIZE + WRAPPER_SIZE));
  const base = koffi.address(block);
  view.setUint32(0, param.test, true);
  view.setUint32(4, param.iterations, true);
  view.setUint32(8, param.length, true);
  view.setUint32(12, param.vary, true);
  view.setUint32(16, param.sglen, true);
  view.setInt32(PARAM_SIZE + 0, ifnum, true);
  view.setInt32(PARAM_SIZE + 4, USBTEST_REQUEST | 0, true);
  view.setBigUint64(PARAM_SIZE + 8, base, true);
  const wrapper = base + BigInt(PARAM_SIZE);
  const rc = ioctlAt(fd, USBDEVFS_IOCTL, wrapper);
  const errno = rc < 0 ? koffi.errno() : 0;
  const secs = Number(view.getBigInt64(24, true)) + Number(view.getBigInt64(32, true)) / 1e6;
  koffi.free(block);
  return { rc, errno, secs };
}

const opts = parseArgs(process.argv.slice(2));
const devices = findDevices();
if (!devices.length) {
  console.log('@@USBTEST none no test devices recognized');
  process.exit(2);
}
let failed = 0;
for (const dev of devices) {
  console.error(`${dev.path} interface ${dev.ifnum}`);
  const fd = openSync(dev.path, 'r+');
  for (const test of opts.cases) {
    const param = { test, iterations: opts.iterations, length: opts.length, vary: opts.vary, sglen: opts.sglen, ...opts.caseParams.get(test) };
    const { iterations } = param;
    const args = `iterations=${param.iterations} length=${param.length} vary=${param.vary} sglen=${param.sglen}`;
    const t0 = Date.now();
    const { rc, errno, secs } = runOne(fd, dev.ifnum, param);
    if (rc < 0 && errno === EOPNOTSUPP) {
      console.log(`@@USBTEST ${dev.path} ${test} skip EOPNOTSUPP`);
    } else if (rc < 0) {
      failed++;
      console.log(`@@USBTEST ${dev.path} ${test} fail ${errno} ${ERRNO_NAMES[errno] ?? '?'} ${args} wall=${((Date.now() - t0) / 1000).toFixed(1)}`);
    } else {
      console.log(`@@USBTEST ${dev.path} ${test} pass ${secs.toFixed(6)} ${args} wall=${((Date.now() - t0) / 1000).toFixed(1)}`);
    }
  }
  closeSync(fd);
}
process.exit(failed ? 1 : 0);
