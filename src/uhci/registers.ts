/**
 * The UHCI I/O register file (Intel UHCI Design Guide rev 1.1, §2.1), 32
 * bytes at PCI BAR4. Each register layout is declared once here.
 */
import { Layout } from '../bits/layout.js';

/** Register offsets inside the I/O BAR (UHCI DG Table 2). */
export const REG = {
  USBCMD: 0x00,
  USBSTS: 0x02,
  USBINTR: 0x04,
  FRNUM: 0x06,
  FLBASEADD: 0x08,
  SOFMOD: 0x0c,
  PORTSC1: 0x10,
  PORTSC2: 0x12,
} as const;

export const IO_BAR_SIZE = 32;
export const NUM_PORTS = 2;

/** USBCMD (UHCI DG §2.1.1). */
export const USBCMD = new Layout('USBCMD', 16, {
  RS: { lsb: 0, access: 'RW', doc: 'Run/Stop: execute the schedule while 1' },
  HCRESET: { lsb: 1, access: 'RW', doc: 'Host controller reset (self-clearing)' },
  GRESET: { lsb: 2, access: 'RW', doc: 'Global reset: drive reset on the USB' },
  EGSM: { lsb: 3, access: 'RW', doc: 'Enter global suspend mode' },
  FGR: { lsb: 4, access: 'RW', doc: 'Force global resume' },
  SWDBG: { lsb: 5, access: 'RW', doc: 'Software debug: stop after each transaction' },
  CF: { lsb: 6, access: 'RW', doc: 'Configure flag (software semaphore)' },
  MAXP: { lsb: 7, access: 'RW', doc: 'Max packet for full-speed bandwidth reclamation: 1=64 bytes, 0=32' },
});
export type UsbCmdField = 'RS' | 'HCRESET' | 'GRESET' | 'EGSM' | 'FGR' | 'SWDBG' | 'CF' | 'MAXP';

/** USBSTS (UHCI DG §2.1.2): every status bit is write-1-to-clear; HCHalted is read only on hardware. */
export const USBSTS = new Layout('USBSTS', 16, {
  USBINT: { lsb: 0, access: 'RW1C', doc: 'IOC or short packet interrupt at end of frame' },
  USBERRINT: { lsb: 1, access: 'RW1C', doc: 'A transaction ended in error' },
  RD: { lsb: 2, access: 'RW1C', doc: 'Resume detect' },
  HSE: { lsb: 3, access: 'RW1C', doc: 'Host system error (PCI/DMA)' },
  HCPE: { lsb: 4, access: 'RW1C', doc: 'Host controller process error (bad schedule)' },
  HCHALTED: { lsb: 5, access: 'RW1C', doc: 'Controller halted' },
});

/** USBINTR (UHCI DG §2.1.3). */
export const USBINTR = new Layout('USBINTR', 16, {
  TOCRC: { lsb: 0, access: 'RW', doc: 'Timeout/CRC interrupt enable' },
  RESUME: { lsb: 1, access: 'RW', doc: 'Resume interrupt enable' },
  IOC: { lsb: 2, access: 'RW', doc: 'Interrupt on complete enable' },
  SP: { lsb: 3, access: 'RW', doc: 'Short packet interrupt enable' },
});

/** FRNUM (UHCI DG §2.1.4): 11 bits, bits 0..9 index the 1024-entry frame list. */
export const FRNUM_MASK = 0x7ff;
export const FRAME_LIST_ENTRIES = 1024;

/** SOFMOD (UHCI DG §2.1.6): frame length is 11936 + SOFMOD full-speed bit times; reset value 64 → 12000. */
export const SOFMOD_DEFAULT = 64;

/** PORTSC (UHCI DG §2.1.7). */
export const PORTSC = new Layout('PORTSC', 16, {
  CCS: { lsb: 0, access: 'RO', doc: 'Current connect status' },
  CSC: { lsb: 1, access: 'RW1C', doc: 'Connect status change' },
  PE: { lsb: 2, access: 'RW', doc: 'Port enabled' },
  PEC: { lsb: 3, access: 'RW1C', doc: 'Port enable change' },
  LS: { lsb: 4, width: 2, access: 'RO', doc: 'Line status: bit 4 = D+, bit 5 = D-' },
  RD: { lsb: 6, access: 'RW', doc: 'Resume detect (drive resume)' },
  ONE: { lsb: 7, access: 'RO', doc: 'Reserved, always reads 1' },
  LSDA: { lsb: 8, access: 'RO', doc: 'Low-speed device attached' },
  PR: { lsb: 9, access: 'RW', doc: 'Port reset' },
  SUSP: { lsb: 12, access: 'RW', doc: 'Suspend' },
});

/**
 * PORTSC value after reset: QEMU resets ports to 0x0080 (bit 7 reads as 1,
 * UHCI DG §2.1.7 "reserved, reads as 1").
 */
export const PORTSC_RESET = 0x0080;

/**
 * Bits of PORTSC that a guest write cannot set directly: QEMU 7.2 keeps
 * 0x1bb (CCS, CSC, PEC, line status, bit 7, LSDA) and treats CSC/PEC as
 * write-1-to-clear. Everything else (PE, RD, PR, bits 10..15) takes the
 * written value — QEMU stores the reserved bits 10, 11, 13..15 too.
 */
export const PORTSC_READ_ONLY = 0x01bb;
export const PORTSC_WRITE_CLEAR = 0x000a;

/** Read value of an unimplemented 16-bit register (QEMU: "disabled port", 0xff7f). */
export const UNIMPLEMENTED_READ = 0xff7f;
