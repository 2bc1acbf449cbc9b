import { LOG_BURST, LOG_MAX_KEYS, LOG_REFILL_NS, LogLimiter, MemoryLogger } from '../../src/platform/logger.js';

function rig() {
  let t = 0;
  const logger = new MemoryLogger();
  const limiter = new LogLimiter(logger, { nowNs: () => t });
  return { logger, limiter, advance: (ns: number) => (t += ns) };
}

describe('LogLimiter', () => {
  test('a key logs its burst, then counts; the next allowed line is preceded by one summary', () => {
    const { logger, limiter, advance } = rig();
    for (let i = 0; i < 1000; i++) limiter.log('k', 'warn', 'c', 'same thing', { i });
    expect(logger.records).toHaveLength(LOG_BURST);
    expect(logger.records.map((r) => r.fields?.i)).toEqual([...Array(LOG_BURST).keys()]);
    advance(LOG_REFILL_NS - 1);
    limiter.log('k', 'warn', 'c', 'same thing', { i: 1000 });
    expect(logger.records).toHaveLength(LOG_BURST); // no token yet
    advance(1);
    limiter.log('k', 'warn', 'c', 'same thing', { i: 1001 });
    expect(logger.records.slice(LOG_BURST)).toEqual([
      { level: 'warn', component: 'c', msg: `suppressed ${1000 - LOG_BURST + 1} similar lines`, fields: { key: 'k' } },
      { level: 'warn', component: 'c', msg: 'same thing', fields: { i: 1001 } },
    ]);
  });

  test('keys are independent and the bucket refills up to the burst only', () => {
    const { logger, limiter, advance } = rig();
    for (let i = 0; i < 50; i++) limiter.log('a', 'info', 'c', 'a');
    for (let i = 0; i < 50; i++) limiter.log('b', 'info', 'c', 'b');
    expect(logger.records).toHaveLength(2 * LOG_BURST);
    advance(100 * LOG_REFILL_NS);
    logger.records.length = 0;
    for (let i = 0; i < 50; i++) limiter.log('a', 'info', 'c', 'a');
    // One summary of the 40 suppressed earlier, then a full burst (not 100 lines).
    expect(logger.records).toHaveLength(LOG_BURST + 1);
  });

  test('the key table is bounded: keys past LOG_MAX_KEYS share one bucket', () => {
    const { logger, limiter } = rig();
    for (let k = 0; k < LOG_MAX_KEYS + 1000; k++) limiter.log(`k${k}`, 'info', 'c', 'x');
    expect(logger.records).toHaveLength(LOG_MAX_KEYS + LOG_BURST);
  });
});
