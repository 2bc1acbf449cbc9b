/**
 * One UHCI root hub port: the PORTSC register (UHCI Design Guide §2.1.7) and
 * the device plugged into it. Connect/disconnect/reset/enable/suspend/resume
 * semantics follow QEMU 7.2's hcd-uhci.c, plus line status, which QEMU
 * leaves at 0 (see `lineStatus`).
 */
import type { UsbDevice } from '../usb/packet.js';
import { PORTSC, PORTSC_READ_ONLY, PORTSC_RESET, PORTSC_WRITE_CLEAR } from './registers.js';

export const PORT_CCS = 1 << 0;
export const PORT_CSC = 1 << 1;
export const PORT_PE = 1 << 2;
export const PORT_PEC = 1 << 3;
export const PORT_LS_DPLUS = 1 << 4;
export const PORT_LS_DMINUS = 1 << 5;
export const PORT_RD = 1 << 6;
export const PORT_LSDA = 1 << 8;
export const PORT_PR = 1 << 9;
export const PORT_SUSP = 1 << 12;

export interface PortEvents {
  /** Resume signalling reached the controller (device wakeup or connect while suspended). */
  resume(): void;
}

export class RootPort {
  /** PORTSC bits that are stored (line status is computed on read). */
  ctrl = PORTSC_RESET;
  device: UsbDevice | null = null;

  constructor(
    readonly index: number,
    private readonly events: PortEvents,
  ) {}

  get connected(): boolean {
    return (this.ctrl & PORT_CCS) !== 0;
  }
  get enabled(): boolean {
    return (this.ctrl & PORT_PE) !== 0;
  }

  /**
   * Line status (PORTSC bits 5:4 = D-, D+), UHCI DG §2.1.7. An idle bus
   * shows the J state: D+ high for a full-speed device, D- high for a
   * low-speed one; SE0 (both low) during port reset or with nothing
   * attached. QEMU 7.2 always reads 0 here (deliberate deviation: we model
   * the wire).
   */
  lineStatus(): number {
    if (!this.device || !(this.ctrl & PORT_CCS) || this.ctrl & PORT_PR) return 0;
    return this.device.speed === 'low' ? PORT_LS_DMINUS : PORT_LS_DPLUS;
  }

  read(): number {
    return (this.ctrl | this.lineStatus()) & 0xffff;
  }

  /**
   * Guest write (QEMU 7.2 semantics): a rising PR resets the device; the
   * read-only bits keep their value, PE can only be set while a device is
   * connected, CSC/PEC clear when written as 1; other bits take the value.
   */
  write(value: number): void {
    value &= 0xffff;
    const dev = this.device;
    if (dev && value & PORT_PR && !(this.ctrl & PORT_PR)) {
      dev.reset();
    }
    let next = this.ctrl & PORTSC_READ_ONLY;
    if (!(this.ctrl & PORT_CCS)) value &= ~PORT_PE;
    next |= value & ~PORTSC_READ_ONLY;
    next &= ~(value & PORTSC_WRITE_CLEAR);
    this.ctrl = next & 0xffff;
  }

  /** Plug a device in: CCS and CSC set, LSDA follows the speed. */
  attach(dev: UsbDevice): void {
    this.device = dev;
    this.ctrl |= PORT_CCS | PORT_CSC;
    if (dev.speed === 'low') this.ctrl |= PORT_LSDA;
    else this.ctrl &= ~PORT_LSDA;
    this.events.resume();
  }

  /** Unplug: CCS cleared with CSC, and a disabled port reports PEC. */
  detach(): UsbDevice | null {
    const dev = this.device;
    this.device = null;
    if (this.ctrl & PORT_CCS) {
      this.ctrl &= ~PORT_CCS;
      this.ctrl |= PORT_CSC;
    }
    if (this.ctrl & PORT_PE) {
      this.ctrl &= ~PORT_PE;
      this.ctrl |= PORT_PEC;
    }
    this.ctrl &= ~PORT_LSDA;
    this.events.resume();
    return dev;
  }

  /** Remote wakeup from the device: RD is set if the port is suspended. */
  wakeup(): void {
    if (this.ctrl & PORT_SUSP && !(this.ctrl & PORT_RD)) {
      this.ctrl |= PORT_RD;
      this.events.resume();
    }
  }

  /**
   * Controller reset (HCRESET/GRESET/PCI reset): PORTSC back to 0x0080; an
   * attached device is reset and reported as freshly connected (QEMU's
   * usb_port_reset = detach + attach + device reset).
   */
  controllerReset(): void {
    this.ctrl = PORTSC_RESET;
    const dev = this.device;
    if (dev) {
      this.ctrl |= PORT_CCS | PORT_CSC;
      if (dev.speed === 'low') this.ctrl |= PORT_LSDA;
      dev.reset();
    }
  }

  format(): string {
    return PORTSC.format(this.read());
  }
}
