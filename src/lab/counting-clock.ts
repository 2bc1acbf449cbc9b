/**
 * A clock that counts the timers it fires. It decorates another clock (the
 * proxy lab's RealClock), so a lab can tell how often the model and its
 * devices woke up (the autosuspend scenario reports it) without patching
 * the clock it wraps.
 */
import type { Clock, TimerHandle } from '../platform/clock.js';

export class CountingClock implements Clock {
  private fired = 0;

  constructor(private readonly inner: Clock) {}

  /** Timers fired so far (cleared ones are not counted). */
  get timerWakeups(): number {
    return this.fired;
  }

  nowNs(): number {
    return this.inner.nowNs();
  }

  setTimer(atNs: number, cb: () => void): TimerHandle {
    return this.inner.setTimer(atNs, () => {
      this.fired++;
      cb();
    });
  }

  clearTimer(handle: TimerHandle): void {
    this.inner.clearTimer(handle);
  }
}
