/**
 * One UHCI root hub port: the PORTSC register (UHCI Design Guide §2.1.7) and
 * the device plugged into it. Connect/disconnect/reset/enable/suspend/resume
 * semantics follow QEMU 7.2's hcd-uhci.c, plus line status, which QEMU
 * leaves at 0 (see `lineStatus`).
 */
import type { UsbDevice } from '../usb/packet.js';
import { PORTSC } from './registers.js';

/** Line status field values (PORTSC bits 5:4): the J state of a full-speed (D+ high) and a low-speed (D- high) device. */
const LINE_J_FULL_SPEED = 0b01;
const LINE_J_LOW_SPEED = 0b10;

export interface PortEvents {
  /** Resume signalling reached the controller (device wakeup or connect while suspended). */
  resume(): void;
}

export class RootPort {
  /** PORTSC bits that are stored (line status is computed on read). */
  ctrl = PORTSC.reset;
  device: UsbDevice | null = null;

  constructor(
    readonly index: number,
    private readonly events: PortEvents,
  ) {}

  get connected(): boolean {
    return (this.ctrl & PORTSC.bit.CCS) !== 0;
  }
  get enabled(): boolean {
    return (this.ctrl & PORTSC.bit.PE) !== 0;
  }

  /**
   * Line status (PORTSC bits 5:4 = D-, D+), UHCI DG §2.1.7. An idle bus
   * shows the J state: D+ high for a full-speed device, D- high for a
   * low-speed one; SE0 (both low) during port reset or with nothing
   * attached. QEMU 7.2 always reads 0 here (deliberate deviation: we model
   * the wire).
   */
  lineStatus(): number {
    if (!this.device || !(this.ctrl & PORTSC.bit.CCS) || this.ctrl & PORTSC.bit.PR) return 0;
    return PORTSC.set(0, 'LS', this.device.speed === 'low' ? LINE_J_LOW_SPEED : LINE_J_FULL_SPEED);
  }

  read(): number {
    return (this.ctrl | this.lineStatus()) & 0xffff;
  }

  /**
   * Guest write (QEMU 7.2 semantics): a rising PR resets the device, PE can
   * only be set while a device is connected; the rest is the declared
   * access of each PORTSC field (RO bits keep their value, CSC/PEC clear
   * when written as 1, RW bits take the value).
   */
  write(value: number): void {
    value &= 0xffff;
    const dev = this.device;
    if (dev && value & PORTSC.bit.PR && !(this.ctrl & PORTSC.bit.PR)) {
      dev.reset();
    }
    if (!(this.ctrl & PORTSC.bit.CCS)) value &= ~PORTSC.bit.PE;
    this.ctrl = PORTSC.applyWrite(this.ctrl, value);
  }

  /** Plug a device in: CCS and CSC set, LSDA follows the speed. */
  attach(dev: UsbDevice): void {
    this.device = dev;
    this.ctrl |= PORTSC.bit.CCS | PORTSC.bit.CSC;
    if (dev.speed === 'low') this.ctrl |= PORTSC.bit.LSDA;
    else this.ctrl &= ~PORTSC.bit.LSDA;
    this.events.resume();
  }

  /** Unplug: CCS cleared with CSC, and a disabled port reports PEC. */
  detach(): UsbDevice | null {
    const dev = this.device;
    this.device = null;
    if (this.ctrl & PORTSC.bit.CCS) {
      this.ctrl &= ~PORTSC.bit.CCS;
      this.ctrl |= PORTSC.bit.CSC;
    }
    if (this.ctrl & PORTSC.bit.PE) {
      this.ctrl &= ~PORTSC.bit.PE;
      this.ctrl |= PORTSC.bit.PEC;
    }
    this.ctrl &= ~PORTSC.bit.LSDA;
    this.events.resume();
    return dev;
  }

  /** Remote wakeup from the device: RD is set if the port is suspended. */
  wakeup(): void {
    if (this.ctrl & PORTSC.bit.SUSP && !(this.ctrl & PORTSC.bit.RD)) {
      this.ctrl |= PORTSC.bit.RD;
      this.events.resume();
    }
  }

  /**
   * Controller reset (HCRESET/GRESET/PCI reset): PORTSC back to 0x0080; an
   * attached device is reset and reported as freshly connected (QEMU's
   * usb_port_reset = detach + attach + device reset).
   */
  controllerReset(): void {
    this.ctrl = PORTSC.reset;
    const dev = this.device;
    if (dev) {
      this.ctrl |= PORTSC.bit.CCS | PORTSC.bit.CSC;
      if (dev.speed === 'low') this.ctrl |= PORTSC.bit.LSDA;
      dev.reset();
    }
  }

  format(): string {
    return PORTSC.format(this.read());
  }
}
