/**
 * Type 0 PCI configuration header: register offsets and bits.
 * Source: PCI Local Bus Specification 3.0, §6.1 (header layout), §6.2.2
 * (Command), §6.2.3 (Status), §6.2.5 (Base Address Registers).
 */

export const PCI_CONFIG_SPACE_SIZE = 256;
/** Bytes 0x00..0x3F are the standard header; the rest is device specific. */
export const PCI_CONFIG_HEADER_SIZE = 0x40;

export const PCI_VENDOR_ID = 0x00; // u16
export const PCI_DEVICE_ID = 0x02; // u16
export const PCI_COMMAND = 0x04; // u16
export const PCI_STATUS = 0x06; // u16
export const PCI_REVISION_ID = 0x08; // u8
export const PCI_CLASS_PROG = 0x09; // u8, programming interface
export const PCI_CLASS_DEVICE = 0x0a; // u16, sub-class (low byte) + base class (high byte)
export const PCI_CACHE_LINE_SIZE = 0x0c; // u8
export const PCI_LATENCY_TIMER = 0x0d; // u8
export const PCI_HEADER_TYPE = 0x0e; // u8
export const PCI_BIST = 0x0f; // u8
export const PCI_BASE_ADDRESS_0 = 0x10; // six u32 BARs, 0x10..0x27
export const PCI_CARDBUS_CIS = 0x28; // u32
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c; // u16
export const PCI_SUBSYSTEM_ID = 0x2e; // u16
export const PCI_ROM_ADDRESS = 0x30; // u32
export const PCI_CAPABILITY_LIST = 0x34; // u8
export const PCI_INTERRUPT_LINE = 0x3c; // u8
export const PCI_INTERRUPT_PIN = 0x3d; // u8, 1 = INTA# .. 4 = INTD#
export const PCI_MIN_GNT = 0x3e; // u8
export const PCI_MAX_LAT = 0x3f; // u8

/** Offset of BAR `n` (0..5). */
export function pciBarOffset(n: number): number {
  return PCI_BASE_ADDRESS_0 + 4 * n;
}

// Command register bits (§6.2.2).
export const PCI_COMMAND_IO = 1 << 0;
export const PCI_COMMAND_MEMORY = 1 << 1;
export const PCI_COMMAND_MASTER = 1 << 2;
export const PCI_COMMAND_SPECIAL = 1 << 3;
export const PCI_COMMAND_INVALIDATE = 1 << 4;
export const PCI_COMMAND_VGA_PALETTE = 1 << 5;
export const PCI_COMMAND_PARITY = 1 << 6;
export const PCI_COMMAND_WAIT = 1 << 7;
export const PCI_COMMAND_SERR = 1 << 8;
export const PCI_COMMAND_FAST_BACK = 1 << 9;
export const PCI_COMMAND_INTX_DISABLE = 1 << 10;

// Status register bits (§6.2.3).
export const PCI_STATUS_INTERRUPT = 1 << 3; // read only: INTx# is asserted
export const PCI_STATUS_CAP_LIST = 1 << 4;
export const PCI_STATUS_66MHZ = 1 << 5;
export const PCI_STATUS_FAST_BACK = 1 << 7;
export const PCI_STATUS_PARITY = 1 << 8; // master data parity error (RW1C)
export const PCI_STATUS_DEVSEL_MASK = 3 << 9;
export const PCI_STATUS_SIG_TARGET_ABORT = 1 << 11; // RW1C
export const PCI_STATUS_REC_TARGET_ABORT = 1 << 12; // RW1C
export const PCI_STATUS_REC_MASTER_ABORT = 1 << 13; // RW1C
export const PCI_STATUS_SIG_SYSTEM_ERROR = 1 << 14; // RW1C
export const PCI_STATUS_DETECTED_PARITY = 1 << 15; // RW1C

// BAR low bits (§6.2.5.1).
export const PCI_BASE_ADDRESS_SPACE_IO = 0x1;
