/**
 * Guest memory for the fuzzer that recognises the schedule walk's fetches
 * and checks every controller access against them:
 *  - schedule reads (GuestMemory.readU32, the production fast path) are
 *    dword aligned; four consecutive dwords A..A+12 are a TD fetch, which must
 *    start 16-byte aligned (UHCI DG §3.2: TDs are 16-byte aligned; link
 *    pointers carry the address in bits 31:4) inside guest RAM; a pair A, A+4
 *    is a QH fetch (head, element);
 *  - writes go only where a real controller may write: the status word of a
 *    TD it fetched in this walk, the element pointer of a QH it fetched in
 *    this walk, the data buffer of an IN TD it fetched (at most MaxLen bytes);
 *  - each fetched TD is retired (Active 1 → 0) at most once;
 *  - a retire asks for the end-of-frame interrupts UHCI DG §3.2.2 (and
 *    QEMU's uhci_complete_td / uhci_handle_td_error) require: IOC for a TD
 *    with IOC set, SPD for a short IN packet with SPD set (`expectIoc`,
 *    `expectSpd`; the harness checks them against the engine after the walk);
 *  - `reads` counts schedule reads so the harness can bound a walk.
 * Without the fast path (`fast` false) TDs are 16-byte reads and QH words
 * 4-byte reads, as before readU32 existed.
 * Every write and every state the harness notes feeds `digest`, which
 * compares two runs of one case (frame replay on and off).
 */
import { HarnessAbort } from '../../src/platform/harness-abort.js';
import { FlatMemory, type GuestMemory } from '../../src/platform/memory.js';
import { TD_CTRL, ctrlActualLength, tokenMaxLen } from '../../src/uhci/descriptors.js';
import { PENDING_IOC, PENDING_SPD } from '../../src/uhci/schedule-host.js';
import { PID_IN } from '../../src/usb/packet.js';

/**
 * A broken invariant. It is a HarnessAbort so that the controller's fault
 * containment lets it through instead of turning it into a Host System Error.
 */
export class InvariantViolation extends HarnessAbort {
  override name = 'InvariantViolation';
}

/** Guest RAM size: pointers past it fault. */
const RAM = 0x40000;

/** A TD as fetched in the current walk (records are reused across walks: `epoch` says which walk). */
interface FetchedTd {
  epoch: number;
  /** The engine's pending end-of-frame interrupts when the TD was fetched. */
  pendingAtFetch: number;
  ctrl: number;
  buffer: number;
  maxLen: number;
  pid: number;
}

/** One RAM buffer reused by every case (zeroed per case): allocating 256 KiB per case dominated GC. */
let sharedRam: Uint8Array | null = null;

const u32At = (b: Uint8Array, o: number): number => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;

/** An error retire sets STALLED (stall, babble) or CRCTO; a NAK sets NAK: none of them is an ACK write-back. */
const NOT_ACK = TD_CTRL.bit.STALLED | TD_CTRL.bit.BABBLE | TD_CTRL.bit.CRCTO | TD_CTRL.bit.NAK;

export class CheckingMemory implements GuestMemory {
  readonly ram: FlatMemory;
  /** TD address → {ctrl as fetched, buffer, maxLen, pid}; valid when its epoch is the current walk's. */
  private tds = new Map<number, FetchedTd>();
  /** QH element-pointer address → epoch of the walk that fetched it. */
  private qhElements = new Map<number, number>();
  private epoch = 1;
  private lastRead32 = -1;
  /** Consecutive readU32 dwords: first address and count (a TD fetch is 4). */
  private runStart = -1;
  private runLen = 0;
  readonly retired = new Map<number, number>();
  writes = 0;
  /** Schedule reads (dwords or descriptors) since the walk began. */
  reads = 0;
  /** TD fetches recognised (all walks). */
  tdFetches = 0;
  /** This walk retired a TD that asks for IOC / a short packet that asks for SPD. */
  expectIoc = false;
  expectSpd = false;
  /**
   * This walk fetched a TD with IOC set / retired an IN TD with SPD set and
   * ActLen < MaxLen: without one, the walk has no cause for that interrupt.
   */
  iocJustified = false;
  spdJustified = false;
  /** FNV-1a over every write and every noted state. */
  digest = 0x811c9dc5;
  /** The engine's pending end-of-frame interrupts (PENDING_IOC | PENDING_SPD); set by the harness. */
  pendingInt: () => number = () => 0;
  /** The first violation, kept in case a caller swallowed the throw. */
  violation: string | null = null;

  /**
   * `shared`: reuse (and zero) the module's RAM buffer instead of allocating one.
   * `fast`: the controller sees readU32 (schedule reads are dwords); else it
   * sees read/write only.
   */
  constructor(
    shared = false,
    readonly fast = true,
  ) {
    if (shared) {
      if (!sharedRam) sharedRam = new Uint8Array(RAM);
      else sharedRam.fill(0);
      this.ram = new FlatMemory(sharedRam);
    } else {
      this.ram = new FlatMemory(RAM);
    }
  }

  /** A walk (or a replay check) begins: earlier fetches no longer allow writes. */
  beginWalk(): void {
    this.epoch++;
    this.reads = 0;
    this.runLen = 0;
    this.lastRead32 = -1;
    this.expectIoc = false;
    this.expectSpd = false;
    this.iocJustified = false;
    this.spdJustified = false;
    // Stale records are ignored by epoch; drop them now and then to bound the maps.
    if (this.tds.size > 4096) this.tds.clear();
    if (this.qhElements.size > 4096) this.qhElements.clear();
  }

  /** Record and throw a violation. */
  fail(msg: string): never {
    this.violation ??= msg;
    throw new InvariantViolation(msg);
  }

  /** Mix values into `digest`. */
  note(...values: number[]): void {
    let h = this.digest;
    for (const v of values) h = Math.imul(h ^ (v >>> 0), 0x01000193) >>> 0;
    this.digest = h;
  }

  readU32(addr: number): number {
    const v = this.ram.readU32(addr);
    this.reads++;
    if (addr & 3) this.fail(`schedule dword read at unaligned 0x${addr.toString(16)}`);
    if (this.runLen > 0 && addr === this.runStart + 4 * this.runLen) {
      this.runLen++;
    } else {
      this.runStart = addr;
      this.runLen = 1;
    }
    if (this.runLen === 2) this.qhElements.set(addr, this.epoch);
    if (this.runLen === 4) {
      // Not a QH after all: the second dword was the TD's control word.
      this.qhElements.delete(this.runStart + 4);
      this.fetchedTd(this.runStart, this.ram.readU32(this.runStart + 4), this.ram.readU32(this.runStart + 8), this.ram.readU32(this.runStart + 12));
      this.runLen = 0;
    }
    return v;
  }

  read(addr: number, buf: Uint8Array): void {
    this.ram.read(addr, buf);
    if (this.fast) return; // data bytes of an OUT/SETUP TD
    this.reads++;
    if (buf.length === 16) {
      this.fetchedTd(addr, u32At(buf, 4), u32At(buf, 8), u32At(buf, 12));
    } else if (buf.length === 4) {
      // QH: head read at A then element read at A+4.
      if (this.lastRead32 === addr - 4) this.qhElements.set(addr, this.epoch);
      this.lastRead32 = addr;
    }
  }

  private fetchedTd(addr: number, ctrl: number, token: number, buffer: number): void {
    this.tdFetches++;
    if (this.fast && ((addr & 0xf) !== 0 || addr + 16 > RAM)) {
      this.fail(`TD fetched at 0x${addr.toString(16)}: not 16-byte aligned inside RAM`);
    }
    let td = this.tds.get(addr);
    if (!td) {
      td = { epoch: 0, pendingAtFetch: 0, ctrl: 0, buffer: 0, maxLen: 0, pid: 0 };
      this.tds.set(addr, td);
    }
    td.epoch = this.epoch;
    td.pendingAtFetch = this.pendingInt();
    if (ctrl & TD_CTRL.bit.IOC) this.iocJustified = true;
    td.ctrl = ctrl;
    td.buffer = buffer;
    td.maxLen = tokenMaxLen(token);
    td.pid = token & 0xff;
  }

  write(addr: number, buf: Uint8Array): void {
    this.writes++;
    this.note(addr, buf.length);
    for (const b of buf) this.note(b);
    const epoch = this.epoch;
    if (buf.length === 4) {
      const td = this.tds.get(addr - 4);
      if (td && td.epoch === epoch) {
        const v = u32At(buf, 0);
        if (td.ctrl & TD_CTRL.bit.ACTIVE && !(v & TD_CTRL.bit.ACTIVE)) this.retire(addr - 4, td, v);
        td.ctrl = v;
        this.ram.write(addr, buf);
        return;
      }
      if (this.qhElements.get(addr) === epoch) {
        this.ram.write(addr, buf);
        return;
      }
    }
    for (const td of this.tds.values()) {
      if (td.epoch === epoch && td.pid === PID_IN && addr >= td.buffer && addr + buf.length <= td.buffer + td.maxLen) {
        this.ram.write(addr, buf);
        return;
      }
    }
    this.fail(`write of ${buf.length} bytes at 0x${addr.toString(16)} outside any fetched TD/QH/IN buffer`);
  }

  /** The TD at `addr` goes from Active to `v` (inactive). */
  private retire(addr: number, td: FetchedTd, v: number): void {
    const n = (this.retired.get(addr) ?? 0) + 1;
    this.retired.set(addr, n);
    if (n > 1) this.fail(`TD@0x${addr.toString(16)} retired twice`);
    // IOC (UHCI DG §3.2.2): every retire asks for it, except an isochronous TD
    // NAKed (QEMU: Active cleared by IOS, NAK returns before the IOC check).
    // The engine asks before the write-back: if nothing had asked since this
    // TD was fetched, the request must be there now.
    if (v & TD_CTRL.bit.IOC && !(v & TD_CTRL.bit.IOS && v & TD_CTRL.bit.NAK)) {
      this.expectIoc = true;
      if (!(td.pendingAtFetch & PENDING_IOC) && !(this.pendingInt() & PENDING_IOC)) {
        this.fail(`TD@0x${addr.toString(16)} retired with IOC (ctrl 0x${v.toString(16)}) without requesting the IOC interrupt`);
      }
    }
    // SPD (UHCI DG §3.2.2): an IN ACK shorter than MaxLen with SPD set (asked
    // after the write-back: the harness checks at the end of the walk).
    if (td.pid === PID_IN && v & TD_CTRL.bit.SPD && ctrlActualLength(v) < td.maxLen) {
      this.spdJustified = true;
      if (!(v & NOT_ACK) && !(td.pendingAtFetch & PENDING_SPD)) this.expectSpd = true;
    }
  }

  /** A TD the guest re-activates is a new TD for the retire-once rule. */
  guestWrite32(addr: number, v: number): void {
    this.ram.writeU32(addr, v);
    this.retired.delete(addr - 4);
    this.retired.delete(addr);
  }
}
