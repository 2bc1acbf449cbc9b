/**
 * CPU time of a process from /proc, in nanoseconds: the sum over its threads
 * of the first field of /proc/PID/task/TID/schedstat (time on CPU, ns
 * resolution), falling back to utime+stime from /proc/PID/stat (clock ticks).
 */
import { readdirSync, readFileSync } from 'node:fs';

export function processCpuNs(pid: number): number {
  try {
    let total = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // thread ended between readdir and read
      }
    }
    if (total > 0) return total;
  } catch {
    // fall through
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e9) / 100;
}

/** Resident set size in bytes (VmRSS). */
export function processRssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}
