/**
 * The stages of a control transfer on endpoint 0 (USB 2.0 §8.5.3: SETUP,
 * optional data stage, status stage in the other direction) as QEMU's
 * hw/usb/core.c runs them for every device (do_token_setup, do_token_in,
 * do_token_out): the SETUP packet's 8 bytes, the data-stage buffer, how far
 * the data stage got and which stage comes next. What a request means is
 * the device's business (the emulated devices answer at once, the libusb
 * passthrough asks the host device); this only moves bytes and stages.
 */
import { PID_IN, PID_OUT, PID_SETUP, type UsbPacket } from './packet.js';

export type ControlStage = 'idle' | 'data' | 'status';

/** bmRequestType bit 7: device-to-host. */
const DIR_IN = 0x80;

export class ControlPipe {
  stage: ControlStage = 'idle';
  readonly setup = new Uint8Array(8);
  /** Data-stage length: wLength, for a device-to-host request cut to what the device answered. */
  length = 0;
  /** Data-stage bytes moved so far. */
  index = 0;
  readonly buffer: Uint8Array;

  constructor(bufferSize: number) {
    this.buffer = new Uint8Array(bufferSize);
  }

  /** The current request is device-to-host. */
  get dirIn(): boolean {
    return (this.setup[0]! & DIR_IN) !== 0;
  }

  /**
   * One endpoint-0 token, the dispatch every device shares (QEMU
   * hw/usb/core.c usb_process_one → do_token_setup/in/out): a SETUP the pipe
   * accepts (setupToken) goes to the device's `setup`, a rejected one
   * stalls; an IN that is the status stage of a host-to-device request
   * (inToken) goes to the device's `status`, other INs are answered here;
   * OUT tokens are the pipe's (outToken); any other PID stalls.
   */
  token(p: UsbPacket, setup: (p: UsbPacket) => void, status: (p: UsbPacket) => void): void {
    switch (p.pid) {
      case PID_SETUP:
        if (this.setupToken(p)) setup(p);
        else p.status = 'stall';
        return;
      case PID_IN:
        if (this.inToken(p)) status(p);
        return;
      case PID_OUT:
        this.outToken(p);
        return;
      default:
        p.status = 'stall';
    }
  }

  /**
   * SETUP token: keep the 8 bytes and rewind the data stage. False when the
   * packet must stall: it is not 8 bytes, or wLength does not fit the buffer
   * (QEMU: "ctrl buffer too small"; the setup bytes are taken but the stage
   * and length stay as they were). The caller then sets the stage.
   */
  setupToken(p: UsbPacket): boolean {
    if (p.data.length !== 8) return false;
    this.setup.set(p.data);
    this.index = 0;
    const wLength = this.setup[6]! | (this.setup[7]! << 8);
    if (wLength > this.buffer.length) return false;
    this.length = wLength;
    return true;
  }

  /** A device-to-host request was answered with `n` bytes in the buffer: serve them in the data stage. */
  answered(n: number): void {
    if (n < this.length) this.length = n;
    this.index = 0;
    this.stage = 'data';
  }

  /**
   * IN token after the SETUP. True when it is the status stage of a
   * host-to-device request: the stage is back to idle and the caller
   * carries out the request and answers the packet. Otherwise the packet is
   * answered here: the next data-stage bytes, a zero-length packet once the
   * data of a device-to-host request is through, or a stall (IN during the
   * OUT data stage ends the transfer, as does any token with no transfer).
   */
  inToken(p: UsbPacket): boolean {
    const dirIn = this.dirIn;
    if (this.stage === 'status') {
      if (dirIn) return false;
      this.stage = 'idle';
      return true;
    }
    if (this.stage === 'data' && dirIn) {
      const len = Math.min(this.length - this.index, p.data.length);
      p.data.set(this.buffer.subarray(this.index, this.index + len));
      p.actualLength = len;
      this.index += len;
      if (this.index >= this.length) this.stage = 'status';
      return false;
    }
    this.stage = 'idle';
    p.status = 'stall';
    return false;
  }

  /**
   * OUT token after the SETUP: data-stage bytes of a host-to-device request
   * (kept in the buffer), the status stage of a device-to-host request
   * (which ends it), extra OUT data in the status stage of a host-to-device
   * request (acknowledged and ignored), else a stall.
   */
  outToken(p: UsbPacket): void {
    const dirIn = this.dirIn;
    if (this.stage === 'status') {
      if (dirIn) this.stage = 'idle';
      return;
    }
    if (this.stage === 'data' && !dirIn) {
      const len = Math.min(this.length - this.index, p.data.length);
      this.buffer.set(p.data.subarray(0, len), this.index);
      p.actualLength = len;
      this.index += len;
      if (this.index >= this.length) this.stage = 'status';
      return;
    }
    this.stage = 'idle';
    p.status = 'stall';
  }

  /** The request's data: for a host-to-device request what the data stage brought. */
  data(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}
