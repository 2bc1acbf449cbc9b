/** The function's INTx line (level triggered, active high from the model's view). */
export interface IrqLine {
  set(level: boolean): void;
}

/** An IRQ line that remembers its level and counts edges (tests, oracle). */
export class LatchedIrq implements IrqLine {
  level = false;
  raises = 0;
  set(level: boolean): void {
    if (level && !this.level) this.raises++;
    this.level = level;
  }
}
