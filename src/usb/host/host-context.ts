/**
 * What the pieces of a passed-through host device (control, configuration,
 * endpoint queues, bulk streams, per-packet and isochronous transfers)
 * share: the libusb handle, the transfer tracker, the resolved options and
 * the device's state. HostUsbDevice implements it.
 */
import { LogLimiter } from '../../platform/logger.js';
import type { LibusbDevice } from './libusb.js';
import type { TransferTracker } from './transfer-tracker.js';

export type HostLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** The log of a host device or passthrough given no `log` option: errors, one line each, on stderr; nothing else. */
export function stderrErrors(level: HostLogLevel, msg: string): void {
  if (level === 'error') process.stderr.write(`uhci-dm: usb-host error: ${msg}\n`);
}

/**
 * Rate limits (platform/logger.ts LogLimiter: a burst per key, then one line
 * per refill period) for the lines a guest or the host can trigger over and
 * over: failed control requests, unsupported isochronous endpoints, a device
 * that keeps coming and going. A passthrough shares one limiter among the
 * devices it opens one after another.
 */
export function hostLogLimiter(log: (level: HostLogLevel, msg: string) => void): LogLimiter {
  return new LogLimiter({
    log: (level, _component, msg, fields) => log(level, fields?.['key'] ? `${msg} (${String(fields['key'])})` : msg),
  });
}

/** HostUsbDeviceOptions with defaults applied (see there). */
export interface HostTransferOptions {
  detachKernelDriver: boolean;
  suppressRemoteWake: boolean;
  maxOutInFlight: number;
  bulkInReadAhead: number;
  bulkOutWriteBehind: number;
  controlTimeoutMs: number;
  dataTimeoutMs: number;
}

export interface HostContext {
  readonly dev: LibusbDevice;
  readonly tracker: TransferTracker;
  readonly opts: HostTransferOptions;
  /** "bus.addr vid:pid (port ...)" for messages. */
  readonly hostName: string;
  /** False once the host device is gone or closed: nothing new is submitted. */
  readonly usable: boolean;
  /** Tell the port something changed without a packet completing (data arrived for later). */
  activity(): void;
  log(level: HostLogLevel, msg: string): void;
  /** A warning the guest or the host can trigger repeatedly: rate limited under `key` (a fixed condition name). */
  warn(key: string, msg: string): void;
}
