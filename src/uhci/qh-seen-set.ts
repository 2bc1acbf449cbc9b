/**
 * The walk's QH loop detector: the QHs visited since the last loop reset,
 * in an open-addressing hash set whose slots are valid only while their
 * epoch matches (clearing = epoch + 1, no per-frame work or allocation).
 * Like QEMU's qhdb it holds at most MAX_QH_SEEN entries and reports a full
 * table as "seen", which ends an idle loop.
 */

/** QH loop detector size (QEMU: UHCI_MAX_QUEUES 128). */
const MAX_QH_SEEN = 128;
/** Hash table slots (power of two, at least 2 × MAX_QH_SEEN). */
const QH_TABLE_SIZE = 256;

export class QhSeenSet {
  private readonly keys = new Uint32Array(QH_TABLE_SIZE);
  private readonly epochs = new Uint32Array(QH_TABLE_SIZE);
  private epoch = 1;
  private count = 0;

  /** Forget every visit. */
  reset(): void {
    this.count = 0;
    if (++this.epoch === 0xffffffff) {
      this.epochs.fill(0);
      this.epoch = 1;
    }
  }

  /** Record a QH visit; true if it was already visited (or the table is full). */
  visit(addr: number): boolean {
    const keys = this.keys;
    const epochs = this.epochs;
    const epoch = this.epoch;
    let i = (Math.imul(addr >>> 4, 0x9e3779b1) >>> 24) & (QH_TABLE_SIZE - 1);
    for (;;) {
      if (epochs[i] !== epoch) break;
      if (keys[i] === addr) return true;
      i = (i + 1) & (QH_TABLE_SIZE - 1);
    }
    if (this.count >= MAX_QH_SEEN) return true;
    epochs[i] = epoch;
    keys[i] = addr;
    this.count++;
    return false;
  }
}
