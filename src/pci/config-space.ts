/**
 * PCI configuration space of the UHCI function, as QEMU 7.2 presents its
 * `piix3-usb-uhci` (8086:7020) and `piix4-usb-uhci` (8086:7112) devices.
 *
 * Every value and write mask here was read back from a real QEMU 7.2.22
 * (`qemu-system-x86_64 -machine pc`, qtest, config mechanism #1), see
 * test/pci/config-space.qemu.test.ts, which compares this class with QEMU byte
 * for byte. The rules behind them are in QEMU's hw/pci/pci.c (pci_init_wmask,
 * pci_init_w1cmask, pci_default_write_config, pci_bar_address,
 * pci_do_device_reset), hw/pci/pci_host.c (pci_host_config_read/write_common)
 * and hw/usb/hcd-uhci.c (usb_uhci_common_realize, the reset hook).
 *
 * This module knows nothing of transports: they call read/write with the
 * register offset and size the guest used, and listen to onBarChange and
 * onIntxChange.
 */
import {
  PCI_BASE_ADDRESS_SPACE_IO,
  PCI_CACHE_LINE_SIZE,
  PCI_CAPABILITY_LIST,
  PCI_CLASS_DEVICE,
  PCI_CLASS_PROG,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_COMMAND_SERR,
  PCI_CONFIG_HEADER_SIZE,
  PCI_CONFIG_SPACE_SIZE,
  PCI_DEVICE_ID,
  PCI_HEADER_TYPE,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_REVISION_ID,
  PCI_STATUS,
  PCI_STATUS_DETECTED_PARITY,
  PCI_STATUS_INTERRUPT,
  PCI_STATUS_PARITY,
  PCI_STATUS_REC_MASTER_ABORT,
  PCI_STATUS_REC_TARGET_ABORT,
  PCI_STATUS_SIG_SYSTEM_ERROR,
  PCI_STATUS_SIG_TARGET_ABORT,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
  pciBarOffset,
} from './pci-regs.js';

export type UhciVariant = 'piix3' | 'piix4';

/** A config access with an offset or size no PCI function can take. */
export class ConfigAccessError extends Error {
  override name = 'ConfigAccessError';
}

/** A saved state that does not fit this function (wrong shape, variant or identity). */
export class ConfigStateError extends Error {
  override name = 'ConfigStateError';
}

/** Intel's PCI vendor id. */
export const UHCI_VENDOR_ID = 0x8086;
/** 82371SB (PIIX3) USB function; QEMU piix3-usb-uhci. */
export const UHCI_PIIX3_DEVICE_ID = 0x7020;
/** 82371AB/EB (PIIX4) USB function; QEMU piix4-usb-uhci. */
export const UHCI_PIIX4_DEVICE_ID = 0x7112;
/** Revision: QEMU 7.2 reports 0x01 for both variants (measured). */
export const UHCI_REVISION = 0x01;
/** Class code 0x0c0300: serial bus controller / USB / UHCI (prog-if 0x00). */
export const UHCI_CLASS_CODE = 0x0c0300;
/**
 * Subsystem vendor/device: QEMU fills in its defaults 1af4:1100 (Red Hat /
 * "QEMU") for devices that set none (pci_init_default_subsystem_id); measured.
 */
export const UHCI_SUBSYSTEM_VENDOR_ID = 0x1af4;
export const UHCI_SUBSYSTEM_ID = 0x1100;
/** Interrupt pin: QEMU's PIIX3 and PIIX4 UHCI use INTD# (pin 4); measured. */
export const UHCI_INTERRUPT_PIN = 4;
/** BAR4 (offset 0x20): I/O space, 32 bytes. BAR4 "for consistency with real hardware" (QEMU). */
export const UHCI_IO_BAR_OFFSET = pciBarOffset(4);
export const UHCI_IO_SIZE = 32;
/** Serial Bus Release Number register; 0x10 = USB 1.0 (QEMU sets USB_RELEASE_1). */
export const UHCI_SBRN = 0x60;
export const UHCI_SBRN_VALUE = 0x10;
/**
 * PIIX "USB clock" byte pair at 0x6A/0x6B: QEMU's UHCI reset hook writes 0x01
 * and 0x00 there on every device reset (hcd-uhci.c, measured: dword 0x68 reads
 * 0x00010000 after power-on).
 */
export const UHCI_USB_CLOCK = 0x6a;
/**
 * Legacy support register (LEGSUP) offset. Real PIIX hardware resets it to
 * 0x2000, but QEMU 7.2 never initialises it: it reads 0x0000 after power-on and
 * after reset, and like all of 0x40..0xFF it is fully writable (measured). We
 * match QEMU, not the datasheet.
 */
export const UHCI_LEGSUP = 0xc0;

/**
 * COMMAND write mask, measured 0x0507: I/O, memory, bus master, SERR# enable,
 * INTx disable (QEMU pci_init_wmask; SERR because QEMU_PCI_CAP_SERR is set by
 * default). All other command bits read 0.
 */
export const UHCI_COMMAND_WMASK =
  PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;
/**
 * STATUS bits that a write of 1 clears (QEMU pci_init_w1cmask). QEMU never sets
 * them for this device, so on it they always read 0; they can only get set here
 * through loadState. No STATUS bit is plainly writable.
 */
export const UHCI_STATUS_W1CMASK =
  PCI_STATUS_PARITY |
  PCI_STATUS_SIG_TARGET_ABORT |
  PCI_STATUS_REC_TARGET_ABORT |
  PCI_STATUS_REC_MASTER_ABORT |
  PCI_STATUS_SIG_SYSTEM_ERROR |
  PCI_STATUS_DETECTED_PARITY;

/** Bytes 0x6A/0x6B after each reset. */
const USB_CLOCK_RESET = [0x01, 0x00] as const;

/** The saved form of a UhciConfigSpace. */
export interface UhciConfigState {
  readonly version: 1;
  readonly variant: UhciVariant;
  /** The 256 config bytes. */
  readonly config: number[];
  /** Level the controller last drove on INTx (before INTx disable gating). */
  readonly intxLevel: boolean;
}

interface Masks {
  /** Bits a write may change. */
  readonly wmask: Uint8Array;
  /** Bits a write of 1 clears. */
  readonly w1cmask: Uint8Array;
  /** Read-only bits that a saved state must agree on (QEMU's cmask, minus dynamic bits). */
  readonly cmask: Uint8Array;
}

function setLe(buf: Uint8Array, offset: number, size: number, value: number): void {
  for (let i = 0; i < size; i++) buf[offset + i] = (value >>> (8 * i)) & 0xff;
}

function getLe(buf: Uint8Array, offset: number, size: number): number {
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = (v << 8) | buf[offset + i]!;
  return v >>> 0;
}

/** Config bytes a guest sees right after QEMU has built and reset the machine. */
function powerOnImage(variant: UhciVariant): Uint8Array {
  const c = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  setLe(c, PCI_VENDOR_ID, 2, UHCI_VENDOR_ID);
  setLe(c, PCI_DEVICE_ID, 2, variant === 'piix4' ? UHCI_PIIX4_DEVICE_ID : UHCI_PIIX3_DEVICE_ID);
  // COMMAND 0, STATUS 0 (no capability list, no 66 MHz, DEVSEL fast = 0).
  c[PCI_REVISION_ID] = UHCI_REVISION;
  c[PCI_CLASS_PROG] = UHCI_CLASS_CODE & 0xff;
  setLe(c, PCI_CLASS_DEVICE, 2, UHCI_CLASS_CODE >>> 8);
  // Cache line 0, latency timer 0 (read only in QEMU), header type 0x00
  // (single function, type 0), BIST 0.
  setLe(c, UHCI_IO_BAR_OFFSET, 4, PCI_BASE_ADDRESS_SPACE_IO); // unassigned I/O BAR
  setLe(c, PCI_SUBSYSTEM_VENDOR_ID, 2, UHCI_SUBSYSTEM_VENDOR_ID);
  setLe(c, PCI_SUBSYSTEM_ID, 2, UHCI_SUBSYSTEM_ID);
  // Capabilities pointer 0: no capabilities. Interrupt line 0 (firmware sets it).
  c[PCI_INTERRUPT_PIN] = UHCI_INTERRUPT_PIN;
  c[UHCI_SBRN] = UHCI_SBRN_VALUE;
  c[UHCI_USB_CLOCK] = USB_CLOCK_RESET[0];
  c[UHCI_USB_CLOCK + 1] = USB_CLOCK_RESET[1];
  return c;
}

/** Write masks, all measured on QEMU 7.2 (see the constants above). */
function buildMasks(): Masks {
  const wmask = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  const w1cmask = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  const cmask = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  setLe(wmask, PCI_COMMAND, 2, UHCI_COMMAND_WMASK);
  wmask[PCI_CACHE_LINE_SIZE] = 0xff;
  // BAR4: address bits above the 32-byte size are writable, so sizing with
  // 0xFFFFFFFF reads back 0xFFFFFFE1. BARs 0-3 and 5, the ROM BAR and the
  // latency timer are not implemented and stay 0.
  setLe(wmask, UHCI_IO_BAR_OFFSET, 4, ~(UHCI_IO_SIZE - 1) >>> 0);
  wmask[PCI_INTERRUPT_LINE] = 0xff;
  // QEMU makes the whole device-specific area writable (including SBRN,
  // the USB clock bytes and LEGSUP).
  wmask.fill(0xff, PCI_CONFIG_HEADER_SIZE);
  setLe(w1cmask, PCI_STATUS, 2, UHCI_STATUS_W1CMASK);
  // Identity bytes a saved state must not change (QEMU pci_init_cmask).
  cmask.fill(0xff, PCI_VENDOR_ID, PCI_DEVICE_ID + 2);
  cmask.fill(0xff, PCI_REVISION_ID, PCI_CLASS_DEVICE + 2);
  cmask[PCI_HEADER_TYPE] = 0xff;
  cmask[PCI_CAPABILITY_LIST] = 0xff;
  cmask[PCI_STATUS] = 0x10; // capability-list bit
  return { wmask, w1cmask, cmask };
}

const MASKS = buildMasks();

function checkAccess(offset: number, size: number): void {
  if (!Number.isInteger(offset) || offset < 0) {
    throw new ConfigAccessError(`config offset must be a non-negative integer, got ${offset}`);
  }
  if (size !== 1 && size !== 2 && size !== 4) {
    throw new ConfigAccessError(`config access size must be 1, 2 or 4, got ${size}`);
  }
}

export class UhciConfigSpace {
  readonly variant: UhciVariant;
  /** Called with the new I/O base (or null) whenever the decoded BAR4 window moves, appears or disappears. */
  onBarChange?: (base: number | null) => void;
  /** Called whenever the INTx output (level gated by COMMAND.INTX_DISABLE) changes. */
  onIntxChange?: (asserted: boolean) => void;

  private config: Uint8Array;
  private intxLevel = false;
  private mappedBase: number | null = null;
  private intxOut = false;

  constructor(variant: UhciVariant = 'piix3') {
    if (variant !== 'piix3' && variant !== 'piix4') {
      throw new ConfigAccessError(`unknown UHCI variant ${String(variant)}`);
    }
    this.variant = variant;
    this.config = powerOnImage(variant);
  }

  /**
   * Read `size` bytes at `offset`, little-endian. Like QEMU's
   * pci_host_config_read_common: bytes past the 256-byte space read as 0
   * when the access starts inside it, and an access starting at or past 256
   * reads all ones. An access may cross a dword boundary (QEMU's PCI core
   * allows it). Mechanism #1 never produces one: its data window is the four
   * ports 0xCFC..0xCFF, and on QEMU an `inw 0xCFF` gets 0xFF for the byte
   * from port 0xD00 (measured), which is the transport's business, not ours.
   */
  read(offset: number, size: 1 | 2 | 4): number {
    checkAccess(offset, size);
    if (offset >= PCI_CONFIG_SPACE_SIZE) return size === 4 ? 0xffffffff : (1 << (8 * size)) - 1;
    const n = Math.min(size, PCI_CONFIG_SPACE_SIZE - offset);
    return getLe(this.config, offset, n);
  }

  /**
   * Write `size` bytes of `value` at `offset`, little-endian, byte by byte
   * through the write mask, then clear the W1C bits written as 1 (QEMU
   * pci_default_write_config). Bytes past 256 are dropped.
   */
  write(offset: number, size: 1 | 2 | 4, value: number): void {
    checkAccess(offset, size);
    if (offset >= PCI_CONFIG_SPACE_SIZE) return;
    const n = Math.min(size, PCI_CONFIG_SPACE_SIZE - offset);
    const { wmask, w1cmask } = MASKS;
    for (let i = 0; i < n; i++) {
      const a = offset + i;
      const v = (value >>> (8 * i)) & 0xff;
      const wm = wmask[a]!;
      this.config[a] = ((this.config[a]! & ~wm) | (v & wm)) & ~(v & w1cmask[a]!);
    }
    this.update();
  }

  /**
   * Device reset as QEMU does it (pci_do_device_reset + the UHCI reset hook;
   * the same on system reset and on a proxy DEVICE_RESET): INTx deasserted,
   * writable COMMAND bits and W1C STATUS bits cleared, interrupt line and
   * cache line size 0, BAR4 back to "unassigned I/O" (0x00000001), 0x6A/0x6B
   * set to 01 00. Everything else in 0x40..0xFF keeps what the guest wrote
   * (measured: SBRN and LEGSUP survive a reset in QEMU 7.2).
   */
  reset(): void {
    const { wmask, w1cmask } = MASKS;
    this.intxLevel = false;
    for (const off of [PCI_COMMAND, PCI_COMMAND + 1, PCI_STATUS, PCI_STATUS + 1]) {
      this.config[off] = this.config[off]! & ~(wmask[off]! | w1cmask[off]!);
    }
    this.config[PCI_INTERRUPT_LINE] = 0; // STATUS.INTERRUPT follows intxLevel in update()
    this.config[PCI_CACHE_LINE_SIZE] = 0;
    setLe(this.config, UHCI_IO_BAR_OFFSET, 4, PCI_BASE_ADDRESS_SPACE_IO);
    this.config[UHCI_USB_CLOCK] = USB_CLOCK_RESET[0];
    this.config[UHCI_USB_CLOCK + 1] = USB_CLOCK_RESET[1];
    this.update();
  }

  /** Back to the power-on image, device-specific bytes included. */
  powerOn(): void {
    this.config = powerOnImage(this.variant);
    this.intxLevel = false;
    this.update();
  }

  /**
   * The controller's interrupt request. QEMU mirrors it in STATUS bit 3
   * whatever COMMAND.INTX_DISABLE says, and drives the pin only when INTx is
   * not disabled (pci_irq_handler, pci_update_irq_disabled; measured).
   *
   * Deliberate difference: QEMU re-evaluates INTX_DISABLE only when a config
   * write covers byte 0x04, so a lone byte write to 0x05 that flips the bit
   * leaves its pin as it was, and if the request then drops while disabled the
   * pin stays asserted for good (measured on 7.2.22: the next system reset
   * then aborts QEMU in pcibus_reset, `irq_count == 0` assertion). We gate the
   * pin on the current bit after every write. Word/dword writes of COMMAND
   * (what Linux's pci_intx() does) behave the same in both, and the QEMU
   * comparison test checks that case.
   */
  setIntxLevel(level: boolean): void {
    this.intxLevel = level;
    this.update();
  }

  get ioEnabled(): boolean {
    return (this.command & PCI_COMMAND_IO) !== 0;
  }
  /** Bus mastering enabled: gates the controller's DMA. */
  get busMaster(): boolean {
    return (this.command & PCI_COMMAND_MASTER) !== 0;
  }
  get intxDisabled(): boolean {
    return (this.command & PCI_COMMAND_INTX_DISABLE) !== 0;
  }
  /** Whether INTx is asserted on the pin (level and not disabled). */
  get intxAsserted(): boolean {
    return this.intxOut;
  }
  /**
   * Base of the 32-byte I/O window, or null when it is not decoded. As QEMU's
   * pci_bar_address for I/O BARs on the pc machine: null unless COMMAND.IO is
   * set, and null for base 0 or a window reaching 0xFFFFFFFF (e.g. while the
   * BAR holds the sizing pattern). QEMU accepts any 32-bit base; one above
   * 0xFFFF is "mapped" but no x86 port reaches it.
   */
  get ioBase(): number | null {
    return this.mappedBase;
  }
  get interruptPin(): number {
    return this.config[PCI_INTERRUPT_PIN]!;
  }
  get interruptLine(): number {
    return this.config[PCI_INTERRUPT_LINE]!;
  }
  get command(): number {
    return getLe(this.config, PCI_COMMAND, 2);
  }
  get status(): number {
    return getLe(this.config, PCI_STATUS, 2);
  }

  /** A copy of the 256 config bytes. */
  bytes(): Uint8Array {
    return this.config.slice();
  }

  saveState(): UhciConfigState {
    return { version: 1, variant: this.variant, config: Array.from(this.config), intxLevel: this.intxLevel };
  }

  /**
   * Restore a saved state. Like QEMU's get_pci_config_device, refuses a state
   * whose read-only identity bytes differ from this function's. Fires
   * onBarChange / onIntxChange if the outputs change.
   */
  loadState(s: object): void {
    const st = s as Partial<Record<keyof UhciConfigState, unknown>>;
    if (st.version !== 1) throw new ConfigStateError(`unsupported config state version ${String(st.version)}`);
    if (st.variant !== this.variant) {
      throw new ConfigStateError(`state is for variant ${String(st.variant)}, this function is ${this.variant}`);
    }
    const cfg = st.config;
    if (
      !Array.isArray(cfg) ||
      cfg.length !== PCI_CONFIG_SPACE_SIZE ||
      !cfg.every((b): b is number => Number.isInteger(b) && b >= 0 && b <= 0xff)
    ) {
      throw new ConfigStateError('config must be an array of 256 bytes');
    }
    if (typeof st.intxLevel !== 'boolean') throw new ConfigStateError('intxLevel must be a boolean');
    const image = powerOnImage(this.variant);
    for (let i = 0; i < PCI_CONFIG_SPACE_SIZE; i++) {
      if ((cfg[i]! ^ image[i]!) & MASKS.cmask[i]!) {
        throw new ConfigStateError(
          `read-only config byte 0x${i.toString(16)} is 0x${cfg[i]!.toString(16)} in the state, 0x${image[i]!.toString(16)} here`,
        );
      }
    }
    this.config = Uint8Array.from(cfg);
    this.intxLevel = st.intxLevel;
    this.update();
  }

  /** Recompute the derived outputs and tell the listeners what changed. */
  private update(): void {
    if (this.intxLevel) this.config[PCI_STATUS] = this.config[PCI_STATUS]! | PCI_STATUS_INTERRUPT;
    else this.config[PCI_STATUS] = this.config[PCI_STATUS]! & ~PCI_STATUS_INTERRUPT;

    const base = this.decodeIoBase();
    if (base !== this.mappedBase) {
      this.mappedBase = base;
      this.onBarChange?.(base);
    }
    const out = this.intxLevel && !this.intxDisabled;
    if (out !== this.intxOut) {
      this.intxOut = out;
      this.onIntxChange?.(out);
    }
  }

  private decodeIoBase(): number | null {
    if (!this.ioEnabled) return null;
    const base = (getLe(this.config, UHCI_IO_BAR_OFFSET, 4) & ~(UHCI_IO_SIZE - 1)) >>> 0;
    const last = base + UHCI_IO_SIZE - 1;
    if (base === 0 || last >= 0xffffffff) return null;
    return base;
  }
}

/** BAR offsets other than BAR4 (all read 0 and ignore writes). */
export const UHCI_UNUSED_BAR_OFFSETS: readonly number[] = [0, 1, 2, 3, 5].map(pciBarOffset);
