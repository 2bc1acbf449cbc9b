/**
 * Test helper: run `uhci-dm xen ARGS` in-process against a simulated
 * hypervisor and wait until it serves (its ioreq server and ports).
 */
import { xenCommand } from '../../src/cli/xen.js';
import type { IoreqServer } from '../../src/xen/ioreq-server.js';
import { SimHypervisor } from '../../src/xen/sim/hypervisor.js';
import type { UsbPorts } from '../../src/xen/usb-ports.js';

export interface SimXen {
  hv: SimHypervisor;
  server: IoreqServer;
  ports: UsbPorts;
  /** The command's exit code, once it stops. */
  done: Promise<number>;
}

export async function startSimXen(argv: string[], opts: { domid: number; vcpus?: number; err?: (s: string) => void }): Promise<SimXen> {
  const hv = new SimHypervisor({ domid: opts.domid, vcpus: opts.vcpus ?? 1 });
  let server: IoreqServer | undefined;
  let ports: UsbPorts | undefined;
  const done = xenCommand(argv, {
    platform: hv.platform,
    signals: false,
    err: opts.err ?? (() => undefined),
    out: () => undefined,
    onReady: (s, p) => {
      server = s;
      ports = p;
    },
  });
  let exited: number | undefined;
  void done.then((c) => (exited = c));
  while (!server) {
    if (exited !== undefined) throw new Error(`uhci-dm xen exited ${exited} before serving`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return { hv, server, ports: ports!, done };
}
