/**
 * Collections with a fixed number of entries, for what the inspector
 * remembers per guest address: a hostile guest can make the schedule touch
 * millions of distinct TDs, QHs and pages, and inspection (live inside the
 * device model) must not grow with that. When full, adding a new key
 * forgets the oldest one (insertion order) and counts it in `dropped`, so
 * reports can say that some history was lost.
 */

/** Entries each bounded collection of the decoder and the anomaly checks keeps by default. */
export const DEFAULT_MEMORY_CAP = 1 << 18;

/** Counts what bounded collections dropped; shared by all collections of one decoder or detector. */
export class DropCounter {
  dropped = 0;
}

export class BoundedSet<K> extends Set<K> {
  constructor(
    readonly cap: number,
    private readonly counter: DropCounter,
  ) {
    super();
    if (!Number.isInteger(cap) || cap < 1) throw new RangeError(`cap must be a positive integer (got ${cap})`);
  }

  override add(key: K): this {
    if (this.size >= this.cap && !this.has(key)) {
      this.delete(this.values().next().value as K);
      this.counter.dropped++;
    }
    return super.add(key);
  }
}

export class BoundedMap<K, V> extends Map<K, V> {
  constructor(
    readonly cap: number,
    private readonly counter: DropCounter,
  ) {
    super();
    if (!Number.isInteger(cap) || cap < 1) throw new RangeError(`cap must be a positive integer (got ${cap})`);
  }

  override set(key: K, value: V): this {
    if (this.size >= this.cap && !this.has(key)) {
      this.delete(this.keys().next().value as K);
      this.counter.dropped++;
    }
    return super.set(key, value);
  }
}
