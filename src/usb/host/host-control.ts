/**
 * Endpoint 0 of a passed-through device (QEMU 7.2 hw/usb/core.c do_token_*
 * in front of host-libusb.c usb_host_handle_control). The SETUP (and, for
 * host-to-device requests, the OUT data stage) are collected in the
 * ControlPipe and become one libusb control transfer:
 *  - a device-to-host request is sent when its SETUP arrives: the SETUP
 *    answers `async` and completes when libusb does; the IN data stage is
 *    then served from the result;
 *  - a host-to-device request is sent at its status stage: the status IN
 *    answers `async`;
 *  - while a request runs at the host, further endpoint-0 tokens are NAKed.
 * Requests carried out here rather than forwarded: SET_ADDRESS only changes
 * the address the guest uses (the device keeps its host address, QEMU
 * usb_host_set_address); SET_CONFIGURATION and SET_INTERFACE go to
 * host-configuration.ts and stall when they fail; CLEAR_FEATURE
 * (ENDPOINT_HALT) calls libusb_clear_halt and always succeeds.
 * SET_FEATURE(ENDPOINT_HALT) is forwarded, after dropping what was read
 * ahead on that endpoint.
 */
import type { UsbPacket } from '../packet.js';
import type { ControlPipe } from '../control-pipe.js';
import { LibusbError } from './libusb.js';
import type { HostContext } from './host-context.js';
import type { HostConfiguration } from './host-configuration.js';
import type { EndpointQueues } from './endpoint-queues.js';
import { isNoDevice, packetStatusForRequestError, packetStatusForTransfer } from './status-map.js';
import { errnoOf, messageOf, type Pending } from './transfer-tracker.js';

/** Configuration bmAttributes remote wakeup bit (USB 2.0 Table 9-10). */
const CFG_ATT_REMOTE_WAKEUP = 0x20;
const CONTROL = 'a control transfer';

export class HostControl {
  /** The request running at the host, if any. */
  private running: Pending | null = null;

  constructor(
    private readonly ctx: HostContext,
    private readonly pipe: ControlPipe,
    private readonly config: HostConfiguration,
    private readonly endpoints: EndpointQueues,
    /** SET_ADDRESS: the guest's address for the device. */
    private readonly setAddress: (address: number) => void,
  ) {}

  handle(p: UsbPacket): void {
    if (this.ctx.tracker.isLive(this.running)) {
      // A request is still running at the host: try again later.
      p.status = 'nak';
      return;
    }
    this.pipe.token(p, this.onSetup, this.onStatus);
  }

  /** The status stage of a host-to-device request (runOutRequest). */
  private readonly onStatus = (p: UsbPacket): void => this.runOutRequest(p);

  /** A SETUP the pipe accepted: a device-to-host request goes to the host device now. */
  private readonly onSetup = (p: UsbPacket): void => {
    const pipe = this.pipe;
    if (!pipe.dirIn) {
      pipe.stage = pipe.length === 0 ? 'status' : 'data';
      p.actualLength = 8;
      return;
    }
    // Device-to-host: ask the device now; the SETUP completes with its answer.
    pipe.stage = 'idle';
    const setup = Uint8Array.from(pipe.setup);
    const { tracker, dev, opts } = this.ctx;
    this.running = tracker.submit('control', p, null, CONTROL, (cb) => dev.controlTransfer(setup, new Uint8Array(0), opts.controlTimeoutMs, cb), (r, pend) => {
      if (!pend.packet) return; // cancelled
      const status = packetStatusForTransfer(r.status);
      if (status === 'ack') {
        const n = Math.min(r.data.length, pipe.length, pipe.buffer.length);
        pipe.buffer.set(r.data.subarray(0, n));
        this.fixupDescriptor(setup, n);
        pipe.answered(n);
        tracker.finish(pend, 'ack', 8);
      } else {
        pipe.stage = 'idle';
        tracker.finish(pend, status);
      }
    }).pend;
  };

  /** QEMU suppress-remote-wake: hide remote wakeup in GET_DESCRIPTOR(CONFIGURATION, 0). */
  private fixupDescriptor(setup: Uint8Array, n: number): void {
    if (!this.ctx.opts.suppressRemoteWake) return;
    if (setup[0] === 0x80 && setup[1] === 6 && setup[3] === 2 && setup[2] === 0 && n > 7) {
      if (this.pipe.buffer[7]! & CFG_ATT_REMOTE_WAKEUP) {
        this.pipe.buffer[7]! &= ~CFG_ATT_REMOTE_WAKEUP;
        this.ctx.log('debug', `${this.ctx.hostName}: remote wakeup hidden from the guest`);
      }
    }
  }

  /** Status stage of a host-to-device request: carry it out. */
  private runOutRequest(p: UsbPacket): void {
    const s = this.pipe.setup;
    const type = s[0]!;
    const request = s[1]!;
    const value = s[2]! | (s[3]! << 8);
    const index = s[4]! | (s[5]! << 8);
    if (type === 0x00 && request === 0x05) {
      // SET_ADDRESS: the device keeps its host address (QEMU usb_host_set_address).
      this.setAddress(value & 0xff);
      return;
    }
    if (type === 0x00 && request === 0x09) {
      this.runRequest(p, 'SET_CONFIGURATION', () => this.config.set(value & 0xff));
      return;
    }
    if (type === 0x01 && request === 0x0b) {
      this.runRequest(p, 'SET_INTERFACE', () => this.config.setInterface(index, value));
      return;
    }
    if (type === 0x02 && request === 0x01 && value === 0) {
      // CLEAR_FEATURE(ENDPOINT_HALT): libusb_clear_halt, result ignored (QEMU).
      this.runRequest(p, 'CLEAR_FEATURE(ENDPOINT_HALT)', async () => {
        this.endpoints.flush(index & 0x8f);
        try {
          await this.ctx.dev.clearHalt(index & 0x8f);
        } catch (e) {
          if (e instanceof LibusbError && isNoDevice(e.errno)) throw e;
        }
      });
      return;
    }
    if (type === 0x02 && request === 0x03 && value === 0) this.endpoints.dropReadAhead(index & 0x8f);
    const { tracker, dev, opts } = this.ctx;
    const data = this.pipe.data().slice();
    this.running = tracker.submit('control', p, null, CONTROL, (cb) => dev.controlTransfer(Uint8Array.from(s), data, opts.controlTimeoutMs, cb), (r, pend) => {
      tracker.finish(pend, packetStatusForTransfer(r.status));
    }).pend;
  }

  /** A request done with libusb calls; the status IN completes when it ends (a failure stalls it, QEMU). */
  private runRequest(p: UsbPacket, what: string, op: () => Promise<void>): void {
    this.running = this.ctx.tracker.request(p, what, op, (e) => {
      this.ctx.warn('control-request-failed', `${this.ctx.hostName}: ${messageOf(e)}`);
      return packetStatusForRequestError(errnoOf(e));
    });
  }
}
