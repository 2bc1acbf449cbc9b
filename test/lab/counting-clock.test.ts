import { ManualClock } from '../../src/platform/clock.js';
import { CountingClock } from '../../src/lab/counting-clock.js';

test('counts the timers that fire through it, not the cleared ones, and passes time and order through', () => {
  const inner = new ManualClock();
  const clock = new CountingClock(inner);
  const fired: string[] = [];
  clock.setTimer(2_000, () => fired.push('b'));
  clock.setTimer(1_000, () => fired.push('a'));
  const cleared = clock.setTimer(1_500, () => fired.push('cleared'));
  clock.clearTimer(cleared);
  expect(inner.pendingTimers()).toBe(2);
  inner.advance(1_200);
  expect(clock.nowNs()).toBe(1_200);
  expect({ fired, wakeups: clock.timerWakeups }).toEqual({ fired: ['a'], wakeups: 1 });
  inner.advance(5_000);
  expect({ fired, wakeups: clock.timerWakeups }).toEqual({ fired: ['a', 'b'], wakeups: 2 });
  expect(inner.pendingTimers()).toBe(0);
});
