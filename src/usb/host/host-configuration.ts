/**
 * The configuration and alternate settings the guest selected on a
 * passed-through device, carried out at the host (QEMU host-libusb.c
 * usb_host_set_config, usb_host_claim_interfaces, usb_host_set_interface,
 * usb_host_release_interfaces): SET_CONFIGURATION releases the claimed
 * interfaces, calls libusb_set_configuration (skipped for
 * single-configuration devices, as QEMU does since 2.x) and claims the new
 * configuration's interfaces (detaching kernel drivers first);
 * SET_INTERFACE calls libusb_set_interface_alt_setting. Both rebuild the
 * endpoint table.
 */
import { LIBUSB_ERROR_OTHER, LibusbError, type HostConfigInfo, type HostDeviceInfo } from './libusb.js';
import type { HostContext } from './host-context.js';
import type { EndpointQueues } from './endpoint-queues.js';
import { isNoDevice } from './status-map.js';

export class HostConfiguration {
  /** bConfigurationValue the guest selected (0 = unconfigured). */
  value = 0;
  private readonly altSettings = new Map<number, number>();
  private readonly claimed = new Set<number>();
  private readonly kernelDetached = new Set<number>();
  /** Bumped by reset/detach: a libusb request still running from before must not change our state. */
  private epoch = 0;

  constructor(
    private readonly ctx: HostContext,
    private readonly info: HostDeviceInfo,
    private readonly endpoints: EndpointQueues,
  ) {}

  /** Reset or detach: requests still running must not change our state when they end. */
  invalidate(): void {
    this.epoch++;
  }

  /** Port reset: the guest's view is unconfigured (the host keeps its interfaces until the next SET_CONFIGURATION or close). */
  forget(): void {
    this.value = 0;
    this.altSettings.clear();
    this.endpoints.clear();
  }

  private configInfo(value: number): HostConfigInfo | undefined {
    return this.info.configs.find((c) => c.value === value);
  }

  /** QEMU usb_host_set_config + usb_host_claim_interfaces. */
  async set(value: number): Promise<void> {
    const epoch = this.epoch;
    this.endpoints.dropData();
    await this.release();
    if (this.info.numConfigurations !== 1) await this.ctx.dev.setConfiguration(value);
    if (epoch !== this.epoch) return; // reset or unplugged meanwhile
    this.forget();
    if (value === 0) return;
    const cfg = this.configInfo(value);
    if (!cfg) throw new LibusbError(LIBUSB_ERROR_OTHER, `no configuration ${value}`);
    const numbers = [...new Set(cfg.interfaces.map((i) => i.number))];
    for (const n of numbers) {
      if (this.ctx.opts.detachKernelDriver) {
        let active = false;
        try {
          active = this.ctx.dev.kernelDriverActive(n);
        } catch {
          active = false; // not supported on this platform
        }
        if (active) {
          this.ctx.dev.detachKernelDriver(n);
          this.kernelDetached.add(n);
        }
      }
      this.ctx.dev.claimInterface(n);
      this.claimed.add(n);
      this.altSettings.set(n, 0);
    }
    this.value = value;
    this.endpoints.rebuild(this.configInfo(this.value), this.altSettings);
  }

  async setInterface(iface: number, alternate: number): Promise<void> {
    const epoch = this.epoch;
    this.endpoints.dropData();
    await this.ctx.dev.setInterface(iface, alternate);
    if (epoch !== this.epoch) return;
    this.altSettings.set(iface, alternate);
    this.endpoints.rebuild(this.configInfo(this.value), this.altSettings);
  }

  /** Release the claimed interfaces; only NO_DEVICE is an error. */
  async release(): Promise<void> {
    for (const i of [...this.claimed]) {
      this.claimed.delete(i);
      try {
        await this.ctx.dev.releaseInterface(i);
      } catch (e) {
        if (e instanceof LibusbError && isNoDevice(e.errno)) throw e;
      }
    }
  }

  /** Give the device back to the host (QEMU usb_host_close): release, reset, re-attach kernel drivers. */
  async giveBack(): Promise<void> {
    await this.release();
    try {
      await this.ctx.dev.reset();
    } catch {
      // best effort
    }
    for (const i of this.kernelDetached) {
      try {
        this.ctx.dev.attachKernelDriver(i);
      } catch {
        // best effort
      }
    }
    this.kernelDetached.clear();
  }
}
