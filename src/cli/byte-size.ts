/**
 * Size options (`--record-max 512M`): a whole number of bytes, or with a
 * K, M, G or T suffix (binary: 1K = 1024 bytes), optionally followed by
 * "iB" or "B".
 */
import { UsageError, type Parsed } from './args.js';

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

export function byteSizeOption(p: Parsed, name: string, def: number, min: number, max: number): number {
  const v = p.options.get(name)?.[0];
  if (v === undefined) return def;
  const m = /^(\d+)\s*([kmgt]?)(?:i?b)?$/i.exec(v.trim());
  const n = m ? Number(m[1]) * UNITS[m[2]!.toLowerCase()]! : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be a size from ${min} bytes to ${max / 2 ** 40} TiB (e.g. 512M, 2G), not '${v}'`);
  return n;
}
