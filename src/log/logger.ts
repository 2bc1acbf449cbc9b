/**
 * Structured logging: every record has a level, a component and optional
 * fields (frame number, port, ...). Text for people on stderr, or JSON lines
 * for machines.
 */
import type { Logger, LogLevel } from '../uhci/controller.js';

export type { Logger, LogLevel };

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
  /** Messages logged once per key (see `once`). */
  private readonly onceKeys = new Set<string>();

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

  /** Log a message only the first time `key` is seen (e.g. malformed requests). */
  once(key: string, level: LogLevel, component: string, msg: string, fields?: Record<string, unknown>): void {
    if (this.onceKeys.has(key)) return;
    this.onceKeys.add(key);
    this.log(level, component, msg, fields);
  }
}

/** A logger that keeps records in memory (tests). */
export class MemoryLogger implements Logger {
  readonly records: { level: LogLevel; component: string; msg: string; fields?: Record<string, unknown> }[] = [];
  log(level: LogLevel, component: string, msg: string, fields?: Record<string, unknown>): void {
    this.records.push({ level, component, msg, fields });
  }
}
