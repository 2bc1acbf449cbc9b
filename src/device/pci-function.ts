/**
 * The one contract between a PCI function and whatever carries guest
 * accesses to it: the transports (Xen ioreq server, QEMU proxy), replay,
 * and the control socket's port manager. Like rust-vmm's vm-device, the bus
 * side decodes the I/O window once (io-window.ts) and hands the function an
 * offset; nothing outside src/device and src/uhci reaches into the
 * controller.
 */
import type { UsbDevice } from '../usb/packet.js';

export type AccessSize = 1 | 2 | 4;

/** An I/O BAR as the guest has it programmed and enabled: ports [base, base + size). */
export interface IoWindow {
  readonly base: number;
  readonly size: number;
}

export interface PciFunctionStats {
  framesProcessed: number;
  framesSkipped: number;
  irqAsserted: boolean;
}

export interface PciFunction {
  configRead(offset: number, size: AccessSize): number;
  configWrite(offset: number, size: AccessSize, value: number): void;

  /** The I/O window while I/O decoding is enabled and the BAR is assigned, else null. */
  readonly ioWindow: IoWindow | null;
  /** Called after the guest moves, enables or disables the I/O window. */
  onIoWindowChange?: (window: IoWindow | null) => void;
  /**
   * Access at `offset` inside the I/O window. An access may run past the
   * window's end (io-window.ts): those bytes read all ones and writes to
   * them are dropped.
   */
  ioRead(offset: number, size: AccessSize): number;
  ioWrite(offset: number, size: AccessSize, value: number): void;
  /**
   * Access at bus address `port`, decoded against the window by the one
   * rule (io-window.ts). Undefined / false when no byte of it is ours.
   */
  portRead(port: number, size: AccessSize): number | undefined;
  portWrite(port: number, size: AccessSize, value: number): boolean;

  /** The INTx pin the function uses (1 = INTA# ... 4 = INTD#), as its Interrupt Pin register says. */
  readonly interruptPin: number;

  /** PCI reset (RST#, or QEMU DEVICE_RESET). */
  reset(): void;

  /** Root ports (numbered from 0). */
  readonly portCount: number;
  deviceAt(port: number): UsbDevice | null;
  attach(port: number, dev: UsbDevice): void;
  detach(port: number): UsbDevice | null;

  stats(): PciFunctionStats;

  /**
   * Report an internal fault (anything that threw where it must not: our
   * code, a device, a backend). The function behaves as its hardware does
   * on an internal error and logs it once; never throws. Transports call it
   * for exceptions out of the function; device-side code may call it too.
   */
  hostSystemError(where: string, error: unknown): void;
}
