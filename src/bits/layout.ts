/**
 * Declarative bit layouts: each hardware register or descriptor word is
 * declared once (field name, position, width, access) and decode, encode,
 * write-masking and pretty printing are derived from that declaration.
 * Modelled on crosvm's register bitfield macros.
 */

/** RO: read only. RW: read/write. RW1C: write 1 to clear. WO: write only (reads 0). RSVD: reserved. */
export type Access = 'RO' | 'RW' | 'RW1C' | 'WO' | 'RSVD';

export interface FieldSpec {
  /** Lowest bit index. */
  readonly lsb: number;
  /** Width in bits (default 1). */
  readonly width?: number;
  readonly access: Access;
  /** Short description for pretty printing (spec wording summarised). */
  readonly doc?: string;
}

export interface Field {
  readonly name: string;
  readonly lsb: number;
  readonly width: number;
  readonly mask: number;
  readonly access: Access;
  readonly doc: string;
}

export class Layout<N extends string> {
  readonly fields: readonly Field[];
  readonly byName: { readonly [K in N]: Field };
  /** Bits software can change by writing (RW). */
  readonly writableMask: number;
  /** Bits cleared by writing 1 (RW1C). */
  readonly clearMask: number;
  readonly readOnlyMask: number;

  constructor(
    readonly name: string,
    readonly bits: number,
    spec: { readonly [K in N]: FieldSpec },
  ) {
    const fields: Field[] = [];
    const byName = {} as { [K in N]: Field };
    let writable = 0;
    let clear = 0;
    let ro = 0;
    for (const key of Object.keys(spec) as N[]) {
      const s = spec[key];
      const width = s.width ?? 1;
      if (s.lsb < 0 || s.lsb + width > bits) throw new RangeError(`${name}.${key} outside ${bits} bits`);
      const mask = width === 32 ? 0xffffffff : (((1 << width) >>> 0) - 1) << s.lsb >>> 0;
      for (const f of fields) {
        if ((f.mask & mask) !== 0) throw new RangeError(`${name}.${key} overlaps ${f.name}`);
      }
      const field: Field = { name: key, lsb: s.lsb, width, mask, access: s.access, doc: s.doc ?? '' };
      fields.push(field);
      byName[key] = field;
      if (s.access === 'RW' || s.access === 'WO') writable |= mask;
      if (s.access === 'RW1C') clear |= mask;
      if (s.access === 'RO') ro |= mask;
    }
    fields.sort((a, b) => b.lsb - a.lsb);
    this.fields = fields;
    this.byName = byName;
    this.writableMask = writable >>> 0;
    this.clearMask = clear >>> 0;
    this.readOnlyMask = ro >>> 0;
  }

  /** Value of field `name` in `word`. */
  get(word: number, name: N): number {
    const f = this.byName[name];
    return ((word & f.mask) >>> f.lsb) >>> 0;
  }

  /** `word` with field `name` replaced by `value` (truncated to the field). */
  set(word: number, name: N, value: number): number {
    const f = this.byName[name];
    return ((word & ~f.mask) | ((value << f.lsb) & f.mask)) >>> 0;
  }

  /** Test a one-bit field. */
  has(word: number, name: N): boolean {
    return (word & this.byName[name].mask) !== 0;
  }

  /** The mask of one or more fields. */
  mask(...names: N[]): number {
    let m = 0;
    for (const n of names) m |= this.byName[n].mask;
    return m >>> 0;
  }

  /** Decode into a plain record of field values. */
  decode(word: number): { [K in N]: number } {
    const out = {} as { [K in N]: number };
    for (const f of this.fields) out[f.name as N] = ((word & f.mask) >>> f.lsb) >>> 0;
    return out;
  }

  /** Encode a (partial) record of field values. */
  encode(values: Partial<{ [K in N]: number | boolean }>): number {
    let w = 0;
    for (const key of Object.keys(values) as N[]) {
      const v = values[key];
      if (v === undefined) continue;
      const f = this.byName[key];
      if (!f) throw new RangeError(`${this.name} has no field ${key}`);
      w = (w & ~f.mask) | ((Number(v) << f.lsb) & f.mask);
    }
    return w >>> 0;
  }

  /**
   * Apply a guest write to a register: RW bits take the written value, RW1C
   * bits written as 1 are cleared, RO/RSVD bits keep their old value.
   */
  applyWrite(old: number, written: number): number {
    const kept = old & ~this.writableMask & ~(written & this.clearMask);
    return (kept | (written & this.writableMask)) >>> 0;
  }

  /** Human-readable form, e.g. `USBSTS[HCHalted USBINT]` or `TD.token[PID=0x69 MaxLen=7]`. */
  format(word: number): string {
    const parts: string[] = [];
    for (const f of this.fields) {
      if (f.access === 'RSVD') continue;
      const v = ((word & f.mask) >>> f.lsb) >>> 0;
      if (f.width === 1) {
        if (v) parts.push(f.name);
      } else {
        parts.push(`${f.name}=${v > 9 ? '0x' + v.toString(16) : v}`);
      }
    }
    return `${this.name}[${parts.join(' ')}]`;
  }
}
