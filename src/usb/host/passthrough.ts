/**
 * Keeps one root port connected to a host device chosen by a selector:
 * opens it (now, or when it appears if `reattach` is set), tells the owner
 * to plug it into the port, and tells it to unplug when the host device goes
 * away (hotplug detach or a NO_DEVICE result). With `reattach`, a matching
 * device that shows up again is opened and plugged in again, as QEMU's
 * usb-host auto-scan does (usb_host_auto_check).
 *
 * The owner wires the callbacks to the controller, for example
 *   onAttach: (dev) => fn.attach(port, dev)
 *   onDetach: () => fn.detach(port)
 */
import { UserFacingError } from '../../platform/user-facing-error.js';
import type { LogLimiter } from '../../platform/logger.js';
import { HostUsbDevice, type HostUsbDeviceOptions } from './host-device.js';
import { hostLogLimiter, stderrErrors, type HostLogLevel } from './host-context.js';
import type { LibusbDevice, LibusbHost } from './libusb.js';
import { formatHostSelector, matchesSelector, type HostDeviceSelector } from './selector.js';
import { messageOf } from './transfer-tracker.js';

export class HostDeviceNotFoundError extends UserFacingError {}

export interface HostPassthroughOptions extends Omit<HostUsbDeviceOptions, 'onDisconnect'> {
  /** Plug the opened device into the port. */
  onAttach(dev: HostUsbDevice): void;
  /** Unplug it (the host device went away). */
  onDetach(dev: HostUsbDevice, reason: string): void;
  /** Open a matching device again when it comes back (default false). */
  reattach?: boolean;
}

export class HostPassthrough {
  private current: HostUsbDevice | null = null;
  private unsubscribe: (() => void) | null = null;
  private stopped = false;
  /** One limiter for this selector's devices: a device that keeps coming back cannot flood the log. */
  private readonly logs: LogLimiter;

  constructor(
    readonly host: LibusbHost,
    readonly selector: HostDeviceSelector,
    private readonly opts: HostPassthroughOptions,
  ) {
    this.logs = opts.logLimiter ?? hostLogLimiter(opts.log ?? stderrErrors);
  }

  /** The device plugged in now, if any. */
  get device(): HostUsbDevice | null {
    return this.current;
  }

  /**
   * Open the device if it is present and plug it in. Without `reattach`,
   * a missing device is an error (HostDeviceNotFoundError); with it, the
   * device is plugged in when it appears. Opening errors (permission,
   * speed) are thrown.
   */
  start(): HostUsbDevice | null {
    this.stopped = false;
    if (this.opts.reattach && !this.unsubscribe) {
      this.unsubscribe = this.host.onHotplug((event, dev) => this.hotplug(event, dev));
    } else if (!this.unsubscribe) {
      // Unplug detection even without reattach.
      this.unsubscribe = this.host.onHotplug((event, dev) => {
        if (event === 'detach') this.hotplug(event, dev);
      });
    }
    const found = this.find();
    if (!found) {
      if (this.opts.reattach) return null;
      void this.stop();
      throw new HostDeviceNotFoundError(`no host USB device matches ${formatHostSelector(this.selector)}`);
    }
    return this.open(found);
  }

  /** Stop watching; unplug and close the current device. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.unsubscribe = null;
    const dev = this.current;
    this.current = null;
    if (dev) {
      this.opts.onDetach(dev, 'stopped');
      await dev.close();
    }
  }

  private find(): LibusbDevice | undefined {
    return this.host.list().find((d) => matchesSelector(this.selector, d.info));
  }

  private open(raw: LibusbDevice): HostUsbDevice {
    const dev = new HostUsbDevice(raw, { ...this.opts, logLimiter: this.logs, onDisconnect: (d, reason) => this.lost(d, reason) });
    this.current = dev;
    this.opts.onAttach(dev);
    return dev;
  }

  private lost(dev: HostUsbDevice, reason: string): void {
    if (this.current !== dev) return;
    this.current = null;
    this.opts.onDetach(dev, reason);
    if (this.opts.reattach && !this.stopped) {
      // Still (or again) present, e.g. after a snapshot restore: plug it in again.
      const again = this.find();
      if (again) this.tryOpen(again);
    }
  }

  private tryOpen(raw: LibusbDevice): void {
    try {
      this.open(raw);
    } catch (e) {
      // Not openable now (permission, busy): wait for the next hotplug event.
      this.logs.log('replug-failed', 'warn', 'usb-host', `${formatHostSelector(this.selector)}: not plugged in again: ${messageOf(e)}`);
    }
  }

  private log(level: HostLogLevel, msg: string): void {
    (this.opts.log ?? stderrErrors)(level, msg);
  }

  /** A libusb hotplug event. It comes from the host's event loop: nothing it throws may leave (one error line instead). */
  private hotplug(event: 'attach' | 'detach', raw: LibusbDevice): void {
    try {
      if (this.stopped) return;
      if (event === 'detach') {
        const cur = this.current;
        if (cur && (cur.dev === raw || (cur.info.busNumber === raw.info.busNumber && cur.info.deviceAddress === raw.info.deviceAddress))) {
          cur.hostUnplugged();
        }
        return;
      }
      if (!this.current && this.opts.reattach && matchesSelector(this.selector, raw.info)) this.tryOpen(raw);
    } catch (e) {
      this.log('error', `${formatHostSelector(this.selector)}: error handling a hotplug ${event}: ${messageOf(e)}`);
    }
  }
}
