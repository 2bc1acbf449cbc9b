/**
 * `uhci-dm-qemu`: the program an admin names in xl.cfg's
 * `device_model_override`. libxl runs it with QEMU's arguments; it serves the
 * domain's UHCI controllers and runs the real QEMU with the rest (src/xl/).
 *
 * Settings come from the environment libxl passes on (it keeps xl's
 * environment, libxl__spawn_local_dm): UHCI_DM_QEMU_XEN (the real QEMU-xen; default
 * the first of DEFAULT_QEMUS that exists), UHCI_DM_RUN_DIR (default
 * /run/uhci-dm), UHCI_DM_ARGS (extra `uhci-dm xen` options for every
 * controller, space-separated, e.g. `--inspect`; `--host-usb` is always given), UHCI_DM_LOG_JSON=1.
 * Logs go to stderr, which libxl sends to /var/log/xen/qemu-dm-NAME.log.
 */
import { existsSync } from 'node:fs';
import { neutraliseLine } from '../platform/safe-text.js';
import { StreamLogger } from '../platform/logger.js';
import { UserFacingError } from '../platform/user-facing-error.js';
import { planFromLibxlArgv } from '../xl/dm-plan.js';
import { runWrapper, WrapperError } from '../xl/wrapper.js';

/** Where QEMU-xen lives: Debian's qemu-system-xen, then Xen's own build default, then Debian's Xen tool dir. */
export const DEFAULT_QEMUS: readonly string[] = ['/usr/libexec/xen-qemu-system-i386', '/usr/lib/xen/bin/qemu-system-i386', '/usr/lib/xen-4.17/bin/qemu-system-i386'];

/** Whether the domain's vCPUs have run yet (libxenctrl; loaded only under Xen). */
async function guestStartedProbe(domid: number): Promise<() => boolean> {
  const { DomainInfoReader } = await import('../xen/domain-info.js');
  const reader = DomainInfoReader.open();
  return () => reader.read(domid).cpuTimeNs > 0n;
}

export async function qemuWrapperMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const err = (s: string) => void process.stderr.write(`uhci-dm-qemu: ${neutraliseLine(s)}\n`);
  const logger = new StreamLogger({ json: env.UHCI_DM_LOG_JSON === '1', level: 'info', write: (l) => process.stderr.write(l + '\n') });
  try {
    const plan = planFromLibxlArgv(argv);
    const qemu = env.UHCI_DM_QEMU_XEN || DEFAULT_QEMUS.find((p) => existsSync(p));
    if (!qemu) throw new WrapperError(`no QEMU-xen found (looked for ${DEFAULT_QEMUS.join(', ')}); set UHCI_DM_QEMU_XEN`);
    const name = argv[argv.indexOf('-name') + 1] ?? '';
    if (plan.pv && argv.includes('-name') && name.endsWith('-dm')) {
      throw new WrapperError(`domain ${plan.domid} (${name}) is a stub domain's device model: uhci-dm does not serve stub domains; remove device_model_override or the stubdomain setting`);
    }
    const guestStarted = plan.pv ? () => true : await guestStartedProbe(plan.domid);
    return await runWrapper(plan, {
      qemu,
      runRoot: env.UHCI_DM_RUN_DIR || '/run/uhci-dm',
      logger,
      guestStarted,
      // --host-usb: libusb open from the start, so that `xl usbdev-attach` works as with QEMU.
      controllerArgs: ['--host-usb', ...(env.UHCI_DM_ARGS ?? '').split(/\s+/).filter((a) => a && a !== '--host-usb'), ...(plan.runas ? ['--runas', plan.runas] : [])],
    });
  } catch (e) {
    if (e instanceof UserFacingError) {
      err(e.message);
      return 1;
    }
    throw e;
  }
}
