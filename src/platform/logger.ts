/**
 * Structured logging: every record has a level, a component and optional
 * fields (frame number, port, ...). Text for people on stderr, or JSON lines
 * for machines. `LogLimiter` bounds what an untrusted party (the guest, a
 * device, a peer process) can make us write.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  log(level: LogLevel, component: string, msg: string, fields?: Record<string, unknown>): void;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface StreamLoggerOptions {
  level?: LogLevel;
  json?: boolean;
  write?: (line: string) => void;
  now?: () => Date;
}

export class StreamLogger implements Logger {
  private readonly min: number;
  private readonly json: boolean;
  private readonly out: (line: string) => void;
  private readonly now: () => Date;

  constructor(opts: StreamLoggerOptions = {}) {
    this.min = ORDER[opts.level ?? 'info'];
    this.json = opts.json ?? false;
    this.out = opts.write ?? ((l) => process.stderr.write(l + '\n'));
    this.now = opts.now ?? (() => new Date());
  }

  log(level: LogLevel, component: string, msg: string, fields?: Record<string, unknown>): void {
    if (ORDER[level] < this.min) return;
    if (this.json) {
      this.out(JSON.stringify({ ts: this.now().toISOString(), level, component, msg, ...fields }));
      return;
    }
    const extra = fields
      ? Object.entries(fields)
          .map(([k, v]) => `${k}=${typeof v === 'number' && k !== 'frame' ? v : String(v)}`)
          .join(' ')
      : '';
    this.out(`${level.padEnd(5)} ${component}: ${msg}${extra ? ' [' + extra + ']' : ''}`);
  }
}

/** A logger that keeps records in memory (tests). */
export class MemoryLogger implements Logger {
  readonly records: { level: LogLevel; component: string; msg: string; fields?: Record<string, unknown> }[] = [];
  log(level: LogLevel, component: string, msg: string, fields?: Record<string, unknown>): void {
    this.records.push({ level, component, msg, fields });
  }
}

/**
 * Lines a key may log at once (the bucket's size): enough to show how a
 * problem starts, with its fields, before the rest is counted instead.
 */
export const LOG_BURST = 10;
/**
 * One more line per key every 6 s (10 a minute) once the burst is spent: an
 * ongoing problem stays visible, and a guest that triggers a logged event a
 * million times a minute gets at most 10 lines (plus 10 summaries) a minute
 * per key out of it.
 */
export const LOG_REFILL_NS = 6_000_000_000;
/**
 * Distinct keys a limiter tracks. Keys are fixed strings chosen by our code
 * (never guest values), so real use stays far below; past the bound, further
 * keys share one bucket rather than grow the table.
 */
export const LOG_MAX_KEYS = 256;
const OVERFLOW_KEY = '(other)';

interface Bucket {
  tokens: number;
  refilledAt: number;
  suppressed: number;
}

export interface LogLimiterOptions {
  /** Monotonic time in ns (the transport's clock; default the process's). */
  nowNs?: () => number;
  burst?: number;
  refillNs?: number;
}

/**
 * A token bucket per key in front of a Logger: each key may log `burst`
 * lines at once and one more every `refillNs`; lines beyond that are counted,
 * and the next line the key may log again is preceded by one summary
 * "suppressed K similar lines". Every guest-triggerable log call goes through
 * one of these with a fixed key naming the condition.
 */
export class LogLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly nowNs: () => number;
  private readonly burst: number;
  private readonly refillNs: number;
  private stackLogged = false;

  constructor(
    private readonly logger: Logger | undefined,
    opts: LogLimiterOptions = {},
  ) {
    this.nowNs = opts.nowNs ?? (() => Number(process.hrtime.bigint()));
    this.burst = opts.burst ?? LOG_BURST;
    this.refillNs = opts.refillNs ?? LOG_REFILL_NS;
  }

  log(key: string, level: LogLevel, component: string, msg: string, fields?: Record<string, unknown>): void {
    const logger = this.logger;
    if (!logger) return;
    const now = this.nowNs();
    const b = this.bucket(key, now);
    const refills = Math.floor((now - b.refilledAt) / this.refillNs);
    if (refills > 0) {
      b.tokens = Math.min(this.burst, b.tokens + refills);
      b.refilledAt += refills * this.refillNs;
    }
    if (b.tokens < 1) {
      b.suppressed++;
      return;
    }
    b.tokens--;
    if (b.suppressed > 0) {
      logger.log(level, component, `suppressed ${b.suppressed} similar lines`, { key });
      b.suppressed = 0;
    }
    logger.log(level, component, msg, fields);
  }

  /**
   * An internal error (a bug, not bad input): one error line under `key`
   * (rate limited like any other) naming the error, and its stack at debug
   * level the first time this limiter sees an error only.
   */
  error(key: string, component: string, msg: string, error: unknown, fields?: Record<string, unknown>): void {
    const e = error instanceof Error ? error : new Error(String(error));
    this.log(key, 'error', component, msg, { ...fields, error: `${e.name}: ${e.message}` });
    if (!this.stackLogged && e.stack) {
      this.stackLogged = true;
      this.logger?.log('debug', component, 'stack of the first internal error', { stack: e.stack });
    }
  }

  private bucket(key: string, now: number): Bucket {
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= LOG_MAX_KEYS) key = OVERFLOW_KEY;
      b = this.buckets.get(key);
      if (!b) {
        b = { tokens: this.burst, refilledAt: now, suppressed: 0 };
        this.buckets.set(key, b);
      }
    }
    return b;
  }
}
