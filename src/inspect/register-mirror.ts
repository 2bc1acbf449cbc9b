/**
 * The trace decoder's copy of the controller registers it needs to follow
 * the schedule walk (FLBASEADD, FRNUM) and the run/halt state, kept from
 * the guest's own accesses as the trace shows them. Writes are split and
 * applied as the controller does (io-access.ts and the register
 * declarations in uhci/registers.ts); reads of USBSTS and FRNUM refresh the
 * copy with what the model answered.
 */
import { splitWrite } from '../uhci/io-access.js';
import { FLBASEADD, FRAME_LIST_ENTRIES, FRNUM, REG, USBCMD, USBINTR, USBSTS } from '../uhci/registers.js';

/** A saved controller state as a load event carries it (only what the mirror uses). */
export interface MirroredState {
  cmd?: number;
  intr?: number;
  frnum?: number;
  flBase?: number;
  status?: number;
}

export class RegisterMirror {
  cmd = USBCMD.reset;
  /** Last USBSTS value the guest read (less what it cleared since). */
  status = USBSTS.reset;
  intr = USBINTR.reset;
  frnum = FRNUM.reset;
  flBase = FLBASEADD.reset;
  /** Where the I/O window is (absolute port accesses), or null. */
  ioBase: number | null = null;
  irq: 0 | 1 = 0;

  /** `stopped` is called when the controller halts (Run/Stop cleared) or resets (its packets are gone too). */
  constructor(private readonly stopped: (reset: boolean) => void) {}

  /** HCRESET, GRESET or PCI reset: registers to their reset values; FRNUM is kept (as the controller). */
  reset(): void {
    this.cmd = USBCMD.reset;
    this.status = USBSTS.reset;
    this.intr = USBINTR.reset;
    this.flBase = FLBASEADD.reset;
    this.stopped(true);
  }

  /** Restored from a saved state. */
  load(c: MirroredState): void {
    this.cmd = c.cmd ?? this.cmd;
    this.intr = c.intr ?? this.intr;
    this.frnum = c.frnum ?? this.frnum;
    this.flBase = c.flBase ?? this.flBase;
    this.status = c.status ?? this.status;
  }

  /** A guest write of `size` bytes at BAR offset `offset`. */
  write(offset: number, size: number, value: number): void {
    splitWrite(offset, size as 1 | 2 | 4, value, (off, v) => this.writeWord(off, v));
  }

  /** A guest read the model answered with `value`. */
  read(offset: number, size: number, value: number): void {
    if (offset === REG.USBSTS) this.status = value & 0xffff;
    if (offset === REG.FRNUM && size >= 2) this.frnum = FRNUM.get(value, 'FN');
  }

  /** A dword read inside the 4 KiB frame list: a frame's first fetch. */
  inFrameList(addr: number, len: number): boolean {
    const fl = this.flBase;
    return len === 4 && addr >= fl && addr < fl + FRAME_LIST_ENTRIES * 4 && (addr & 3) === 0;
  }

  /**
   * The frame list entry at `flAddr` starts a frame: FRNUM's low 10 bits
   * are its index (UHCI DG §2.1.4); the 11th bit follows from the last
   * known FRNUM (the frame number only moves forward).
   */
  startFrame(flAddr: number): void {
    const idx = (flAddr - this.flBase) >> 2;
    if ((this.frnum & (FRAME_LIST_ENTRIES - 1)) !== idx) {
      let f = (this.frnum & FRAME_LIST_ENTRIES) | idx;
      if (f < this.frnum) f = (f + FRAME_LIST_ENTRIES) & FRNUM.bit.FN;
      this.frnum = f;
    }
  }

  /** A frame ended: FRNUM advances. */
  endFrame(): void {
    this.frnum = (this.frnum + 1) & FRNUM.bit.FN;
  }

  private writeWord(off: number, v: number): void {
    switch (off) {
      case REG.USBCMD:
        if (v & (USBCMD.bit.HCRESET | USBCMD.bit.GRESET)) {
          this.reset();
          return;
        }
        if (this.cmd & USBCMD.bit.RS && !(v & USBCMD.bit.RS)) this.stopped(false);
        this.cmd = USBCMD.applyWrite(this.cmd, v);
        return;
      case REG.USBSTS:
        this.status = USBSTS.applyWrite(this.status, v);
        return;
      case REG.USBINTR:
        this.intr = USBINTR.applyWrite(this.intr, v);
        return;
      case REG.FRNUM:
        this.frnum = FRNUM.applyWrite(this.frnum, v);
        return;
      case REG.FLBASEADD:
      case REG.FLBASEADD + 2:
        this.flBase = FLBASEADD.applyHalfWrite(this.flBase, off === REG.FLBASEADD ? 0 : 1, v);
        return;
    }
  }
}
