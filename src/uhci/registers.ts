/**
 * The UHCI I/O register file (Intel UHCI Design Guide rev 1.1, §2.1), 32
 * bytes at PCI BAR4. Each register is declared once here — offset, fields,
 * access, reset value — and the controller, the root ports, the saved state,
 * the trace decoder and every printer derive their masks from it. Where
 * QEMU 7.2 (hw/usb/hcd-uhci.c, uhci_port_write/uhci_reset) differs from the
 * design guide, the declaration follows QEMU (the oracle compares with it)
 * and says so.
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

/**
 * USBCMD (UHCI DG §2.1.1), reset 0. QEMU stores the whole written word
 * (`s->cmd = val`), reserved bits 15:8 included; HCRESET and GRESET never
 * stay set because the reset they start clears the register.
 */
export const USBCMD = new Layout('USBCMD', 16, {
  RS: { lsb: 0, access: 'RW', doc: 'Run/Stop: execute the schedule while 1' },
  HCRESET: { lsb: 1, access: 'RW', doc: 'Host controller reset (self-clearing)' },
  GRESET: { lsb: 2, access: 'RW', doc: 'Global reset: drive reset on the USB' },
  EGSM: { lsb: 3, access: 'RW', doc: 'Enter global suspend mode' },
  FGR: { lsb: 4, access: 'RW', doc: 'Force global resume' },
  SWDBG: { lsb: 5, access: 'RW', doc: 'Software debug: stop after each transaction' },
  CF: { lsb: 6, access: 'RW', doc: 'Configure flag (software semaphore)' },
  MAXP: { lsb: 7, access: 'RW', doc: 'Max packet for full-speed bandwidth reclamation: 1=64 bytes, 0=32' },
  RSVD: { lsb: 8, width: 8, access: 'RW', reserved: true, doc: 'Reserved (QEMU stores it)' },
});

/**
 * USBSTS (UHCI DG §2.1.2), reset 0x0020 (HCHalted). Every status bit is
 * write-1-to-clear; HCHalted is read-only in the design guide but QEMU
 * clears it on a written 1 too (`s->status &= ~val`), and so do we.
 */
export const USBSTS = new Layout('USBSTS', 16, {
  USBINT: { lsb: 0, access: 'RW1C', doc: 'IOC or short packet interrupt at end of frame' },
  USBERRINT: { lsb: 1, access: 'RW1C', doc: 'A transaction ended in error' },
  RD: { lsb: 2, access: 'RW1C', doc: 'Resume detect' },
  HSE: { lsb: 3, access: 'RW1C', doc: 'Host system error (PCI/DMA)' },
  HCPE: { lsb: 4, access: 'RW1C', doc: 'Host controller process error (bad schedule)' },
  HCHALTED: { lsb: 5, access: 'RW1C', reset: 1, doc: 'Controller halted' },
  RSVD: { lsb: 6, width: 10, access: 'RSVD' },
});

/** USBINTR (UHCI DG §2.1.3), reset 0; QEMU stores the whole word (`s->intr = val`). */
export const USBINTR = new Layout('USBINTR', 16, {
  TOCRC: { lsb: 0, access: 'RW', doc: 'Timeout/CRC interrupt enable' },
  RESUME: { lsb: 1, access: 'RW', doc: 'Resume interrupt enable' },
  IOC: { lsb: 2, access: 'RW', doc: 'Interrupt on complete enable' },
  SP: { lsb: 3, access: 'RW', doc: 'Short packet interrupt enable' },
  RSVD: { lsb: 4, width: 12, access: 'RW', reserved: true, doc: 'Reserved (QEMU stores it)' },
});

/**
 * FRNUM (UHCI DG §2.1.4): 11 bits, writable only while halted; bits 9:0
 * index the 1024-entry frame list. HCRESET leaves it as it was (QEMU's
 * uhci_reset does not touch it).
 */
export const FRNUM = new Layout('FRNUM', 16, {
  FN: { lsb: 0, width: 11, access: 'RW', doc: 'Frame number (bits 9:0 index the frame list)' },
  RSVD: { lsb: 11, width: 5, access: 'RSVD' },
});
export const FRAME_LIST_ENTRIES = 1024;
/** The frame list entry a frame number uses: FRNUM bits 9:0 (UHCI DG §2.1.4). */
export function frameListIndex(frnum: number): number {
  return frnum & (FRAME_LIST_ENTRIES - 1);
}

/** FLBASEADD (UHCI DG §2.1.5): the frame list is 4 KiB aligned, bits 11:0 are not stored. */
export const FLBASEADD = new Layout('FLBASEADD', 32, {
  RSVD: { lsb: 0, width: 12, access: 'RSVD' },
  BASE: { lsb: 12, width: 20, access: 'RW', doc: 'Frame list base address bits 31:12' },
});

/**
 * SOFMOD (UHCI DG §2.1.6), a byte: frame length is 11936 + SOF timing
 * full-speed bit times; reset 64 → 12000. QEMU stores all 8 bits.
 */
export const SOFMOD = new Layout('SOFMOD', 8, {
  SOF: { lsb: 0, width: 7, access: 'RW', reset: 64, doc: 'SOF timing value' },
  RSVD: { lsb: 7, access: 'RW', reserved: true, doc: 'Reserved (QEMU stores it)' },
});

/**
 * PORTSC (UHCI DG §2.1.7), reset 0x0080. Guest writes as QEMU 7.2
 * uhci_port_write: bits 0x1bb (UHCI_PORT_READ_ONLY: CCS, CSC, PEC, line
 * status, bit 7, LSDA) are not set by a write, CSC and PEC clear on a
 * written 1 (UHCI_PORT_WRITE_CLEAR), everything else takes the written
 * value, reserved bits 10, 11 and 15:13 included. Line status is computed
 * on read (root-port.ts). PE can only be set with a device connected (a
 * rule of the port, not of the layout).
 */
export const PORTSC = new Layout('PORTSC', 16, {
  CCS: { lsb: 0, access: 'RO', doc: 'Current connect status' },
  CSC: { lsb: 1, access: 'RW1C', doc: 'Connect status change' },
  PE: { lsb: 2, access: 'RW', doc: 'Port enabled' },
  PEC: { lsb: 3, access: 'RW1C', doc: 'Port enable change' },
  LS: { lsb: 4, width: 2, access: 'RO', computed: true, doc: 'Line status: bit 4 = D+, bit 5 = D-' },
  RD: { lsb: 6, access: 'RW', doc: 'Resume detect (drive resume)' },
  ONE: { lsb: 7, access: 'RO', reset: 1, doc: 'Reserved, always reads 1' },
  LSDA: { lsb: 8, access: 'RO', doc: 'Low-speed device attached' },
  PR: { lsb: 9, access: 'RW', doc: 'Port reset' },
  RSVD10: { lsb: 10, width: 2, access: 'RW', reserved: true, doc: 'Reserved (QEMU stores it)' },
  SUSP: { lsb: 12, access: 'RW', doc: 'Suspend' },
  RSVD13: { lsb: 13, width: 3, access: 'RW', reserved: true, doc: 'Reserved (QEMU stores it)' },
});

/** Read value of an unimplemented 16-bit register (QEMU: "disabled port", 0xff7f). */
export const UNIMPLEMENTED_READ = 0xff7f;
