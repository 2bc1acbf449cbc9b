/**
 * FFI smoke test of the real backend: the Debian Xen 4.17 libraries load
 * through koffi and every prototype we bind resolves. This must FAIL (not
 * skip) when libxen-dev / the libraries are missing: CI installs libxen-dev.
 * Without a hypervisor, opening a handle fails with a typed, user-facing
 * error that carries libxencall's own message.
 */
import { existsSync } from 'node:fs';
import { XenUnavailableError } from '../../src/xen/platform.js';
import { XEN_LIBRARIES, XEN_PROTOTYPES, bindXenLibraries, NativeXenPlatform } from '../../src/xen/xen-libs.js';

const hypervisorPresent = existsSync('/dev/xen/privcmd') || existsSync('/proc/xen/privcmd');

test('the Xen 4.17 libraries load and every bound symbol resolves', () => {
  let bound: ReturnType<typeof bindXenLibraries>;
  try {
    bound = bindXenLibraries();
  } catch (e) {
    throw new Error(`Xen libraries not usable — install Debian's libxen-dev (4.17) and koffi: ${(e as Error).message}`);
  }
  const expected = Object.values(XEN_PROTOTYPES).flatMap((p) => Object.keys(p));
  expect(expected.length).toBeGreaterThanOrEqual(30);
  for (const name of expected) expect(typeof bound.fns[name]).toBe('function');
  expect(Object.keys(XEN_LIBRARIES)).toEqual(expect.arrayContaining(['devicemodel', 'evtchn', 'foreignmemory', 'store']));
});

(hypervisorPresent ? test.skip : test)('without Xen, opening a device-model handle is a typed error naming the cause', () => {
  const p = new NativeXenPlatform();
  let err: unknown;
  try {
    p.openDeviceModel();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(XenUnavailableError);
  expect((err as XenUnavailableError).userFacing).toBe(true);
  expect((err as Error).message).toMatch(/xendevicemodel_open failed/);
  expect((err as Error).message).toMatch(/Could not obtain handle on privileged command interface/);
  expect(() => p.openForeignMemory()).toThrow(XenUnavailableError);
});
