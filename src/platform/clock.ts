/**
 * Time as the transport defines it. The controller asks for one timer at a
 * time (its next frame batch) and reads the current time when the guest does
 * I/O, so that it can catch up on frames that are due.
 */
export interface Clock {
  /** Monotonic nanoseconds. */
  nowNs(): number;
  /** Call `cb` once at or after `atNs`. Replaces nothing: returns a handle. */
  setTimer(atNs: number, cb: () => void): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}

export type TimerHandle = { readonly id: number };

/** A deterministic clock advanced by hand (tests, replay, oracle model side). */
export class ManualClock implements Clock {
  private now = 0;
  private nextId = 1;
  private timers = new Map<number, { at: number; cb: () => void }>();

  nowNs(): number {
    return this.now;
  }
  setTimer(atNs: number, cb: () => void): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { at: atNs, cb });
    return { id };
  }
  clearTimer(handle: TimerHandle): void {
    this.timers.delete(handle.id);
  }
  /** Advance to `now + ns`, firing due timers in time order. */
  advance(ns: number): void {
    const target = this.now + ns;
    for (;;) {
      let best: number | undefined;
      let bestAt = Infinity;
      for (const [id, t] of this.timers) {
        if (t.at <= target && t.at < bestAt) {
          bestAt = t.at;
          best = id;
        }
      }
      if (best === undefined) break;
      const t = this.timers.get(best)!;
      this.timers.delete(best);
      if (t.at > this.now) this.now = t.at;
      t.cb();
    }
    this.now = target;
  }
  pendingTimers(): number {
    return this.timers.size;
  }
}

/** Wall-clock time from the Node event loop (live transports). */
export class RealClock implements Clock {
  private readonly origin = process.hrtime.bigint();
  private nextId = 1;
  private handles = new Map<number, NodeJS.Timeout>();
  nowNs(): number {
    return Number(process.hrtime.bigint() - this.origin);
  }
  setTimer(atNs: number, cb: () => void): TimerHandle {
    const id = this.nextId++;
    const delayMs = Math.max(0, (atNs - this.nowNs()) / 1e6);
    const h = setTimeout(() => {
      this.handles.delete(id);
      cb();
    }, delayMs);
    this.handles.set(id, h);
    return { id };
  }
  clearTimer(handle: TimerHandle): void {
    const h = this.handles.get(handle.id);
    if (h) clearTimeout(h);
    this.handles.delete(handle.id);
  }
}
