/**
 * Declarative bit layouts: each hardware register or descriptor word is
 * declared once (field name, position, width, access, reset value) and
 * everything else is derived from that declaration: the per-field masks and
 * shifts the code uses, decode/encode, the guest-write semantics (writable,
 * write-1-to-clear and read-only masks), the bits a saved state carries,
 * the reset value and pretty printing. Modelled on crosvm's `register!`
 * (reset value, guest-writeable and write-1-to-clear masks) and
 * `#[bitfield]` (generated field accessors).
 */

/**
 * How a guest write treats a field:
 *  - RW: takes the written value;
 *  - RW1C: set by the hardware, cleared where the guest writes 1;
 *  - RO: set by the hardware, guest writes ignored;
 *  - WO: a command: acted on when written, never stored (reads 0);
 *  - RSVD: reserved, never stored (reads 0, writes ignored).
 */
export type Access = 'RO' | 'RW' | 'RW1C' | 'WO' | 'RSVD';

export interface FieldSpec {
  /** Lowest bit index. */
  readonly lsb: number;
  /** Width in bits (default 1). */
  readonly width?: number;
  readonly access: Access;
  /** Field value after reset (default 0). */
  readonly reset?: number;
  /**
   * Reserved by the specification but stored as written (QEMU keeps the
   * whole written word): behaves as `access`, hidden when printing.
   */
  readonly reserved?: boolean;
  /** Computed when read (not stored, not saved): e.g. PORTSC line status. */
  readonly computed?: boolean;
  /** Short description for pretty printing (spec wording summarised). */
  readonly doc?: string;
}

export interface Field {
  readonly name: string;
  readonly lsb: number;
  readonly width: number;
  readonly mask: number;
  readonly access: Access;
  readonly reset: number;
  readonly reserved: boolean;
  readonly computed: boolean;
  readonly doc: string;
}

type PerField<N extends string> = { readonly [K in N]: number };

export class Layout<N extends string> {
  readonly fields: readonly Field[];
  readonly byName: { readonly [K in N]: Field };
  /** Mask of each field, e.g. `USBCMD.bit.RS` (1 << 0) or `TD_CTRL.bit.CERR` (3 << 27). */
  readonly bit: PerField<N>;
  /** Lowest bit of each field, e.g. `TD_CTRL.lsb.CERR` (27). */
  readonly lsb: PerField<N>;
  /** Bits a guest write sets to the written value (RW). */
  readonly writableMask: number;
  /** Bits cleared by writing 1 (RW1C). */
  readonly clearMask: number;
  /** Bits the hardware sets and a guest write cannot change (RO). */
  readonly readOnlyMask: number;
  /** Bits that hold state: everything but WO, RSVD and computed fields (what a saved state carries). */
  readonly storedMask: number;
  /** Value after reset, from the fields' reset values. */
  readonly reset: number;

  constructor(
    readonly name: string,
    readonly width: number,
    spec: { readonly [K in N]: FieldSpec },
  ) {
    const fields: Field[] = [];
    const byName = {} as { [K in N]: Field };
    const bit = {} as { [K in N]: number };
    const lsb = {} as { [K in N]: number };
    let writable = 0;
    let clear = 0;
    let ro = 0;
    let stored = 0;
    let reset = 0;
    for (const key of Object.keys(spec) as N[]) {
      const s = spec[key];
      const w = s.width ?? 1;
      if (s.lsb < 0 || s.lsb + w > width) throw new RangeError(`${name}.${key} outside ${width} bits`);
      const mask = w === 32 ? 0xffffffff : ((((1 << w) >>> 0) - 1) << s.lsb) >>> 0;
      for (const f of fields) {
        if ((f.mask & mask) !== 0) throw new RangeError(`${name}.${key} overlaps ${f.name}`);
      }
      const r = s.reset ?? 0;
      if (r < 0 || r > mask >>> s.lsb) throw new RangeError(`${name}.${key} reset value ${r} does not fit`);
      if (r !== 0 && (s.access === 'WO' || s.access === 'RSVD' || s.computed)) throw new RangeError(`${name}.${key} is not stored`);
      const field: Field = {
        name: key,
        lsb: s.lsb,
        width: w,
        mask,
        access: s.access,
        reset: r,
        reserved: s.reserved ?? false,
        computed: s.computed ?? false,
        doc: s.doc ?? '',
      };
      fields.push(field);
      byName[key] = field;
      bit[key] = mask;
      lsb[key] = s.lsb;
      if (s.access === 'RW') writable |= mask;
      if (s.access === 'RW1C') clear |= mask;
      if (s.access === 'RO') ro |= mask;
      if (s.access !== 'WO' && s.access !== 'RSVD' && !s.computed) stored |= mask;
      reset |= (r << s.lsb) >>> 0;
    }
    fields.sort((a, b) => b.lsb - a.lsb);
    this.fields = fields;
    this.byName = byName;
    this.bit = Object.freeze(bit);
    this.lsb = Object.freeze(lsb);
    this.writableMask = writable >>> 0;
    this.clearMask = clear >>> 0;
    this.readOnlyMask = ro >>> 0;
    this.storedMask = stored >>> 0;
    this.reset = reset >>> 0;
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
   * Apply a guest write to a stored register value: RW bits take the
   * written value, RW1C bits written as 1 are cleared, everything else
   * keeps its old value (RO) or stays 0 (WO, RSVD: never stored).
   */
  applyWrite(old: number, written: number): number {
    const kept = old & this.storedMask & ~this.writableMask & ~(written & this.clearMask);
    return (kept | (written & this.writableMask)) >>> 0;
  }

  /**
   * Apply a 16-bit guest write to half `half` (0: bits 15:0, 1: bits 31:16)
   * of a 32-bit register; the other half keeps its value.
   */
  applyHalfWrite(old: number, half: 0 | 1, written: number): number {
    const shift = half * 16;
    const lane = (0xffff << shift) >>> 0;
    const merged = ((old & ~lane) | ((written & 0xffff) << shift)) >>> 0;
    // Only the written lane changes; the other keeps the stored value.
    return ((this.applyWrite(old, merged) & lane) | (old & ~lane)) >>> 0;
  }

  /** Human-readable form, e.g. `USBSTS[HCHALTED USBINT]` or `TD.token[PID=0x69 MAXLEN=7]`. */
  format(word: number): string {
    const parts: string[] = [];
    for (const f of this.fields) {
      if (f.access === 'RSVD' || f.reserved) continue;
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
