/**
 * The uhci-dm trace file format, version 1 (described for people in
 * traces/README.md). A trace is gzip-compressed text, one JSON value per
 * line:
 *
 *   line 1     header object  {"format":"uhci-dm-trace","version":1,...}
 *   lines 2..  events         arrays, one per input that crossed into the model
 *   last line  summary object {"summary":{"events":E,"frames":F,...}}
 *
 * An event is `[kind, dt, ...args, result, items]`: `dt` is the clock time
 * (ns) since the previous event, `result` what the call returned to its
 * caller (0 for void, `{"e":message}` when it threw) and `items` everything
 * the model did while handling it, in order: guest-memory reads (with the
 * bytes it got) and writes, IRQ level changes, timers armed and cleared,
 * packets handed to devices (with the device's answer), and nested inputs
 * (a device completing a packet while the model is inside a call). The
 * model sees the clock stand still during an event (the recorder latches
 * it), so the event's time is the only time it can have read.
 */

export const TRACE_FORMAT = 'uhci-dm-trace';
export const TRACE_VERSION = 1;
export const TRACE_FILE_EXTENSION = '.uhcitrace.gz';

/** Options the model was built with: replay must build the same model. */
export interface TraceModelOptions {
  variant: 'piix3' | 'piix4';
  maxBatch?: number;
  idleCoalesce?: number;
}

export interface TraceHeader {
  format: typeof TRACE_FORMAT;
  version: typeof TRACE_VERSION;
  /** ISO 8601 time the recording started. */
  created: string;
  /** Model that recorded it, e.g. "uhci-dm 0.1.0". */
  model: string;
  options: TraceModelOptions;
  notes: string;
}

export interface TraceSummary {
  /** Event lines between header and summary. */
  events: number;
  /** Output items recorded (statistics). */
  items: number;
  /** Frames the controller processed (UhciController.framesProcessed). */
  frames: number;
  /** Frames skipped because the host fell behind (UhciController.framesSkipped). */
  skipped: number;
  /** Clock time of the last event, ns. */
  endNs: number;
}

/**
 * What a trace may hold. A trace is often a file someone was handed, so the
 * reader refuses anything beyond these limits before it is parsed further,
 * and the recorder stops recording rather than write a line beyond them.
 * Each is far above what the checked-in traces need (their maxima in
 * brackets, from traces/*.gz) and above what the model can produce per event
 * (at most max(maxBatch, idleCoalesce) + 1 frames of at most
 * MAX_LINKS_PER_FRAME = 1024 link fetches each, schedule.ts).
 */
export const TRACE_LIMITS = {
  /** Characters of one decompressed line (a trace is ASCII: bytes) [116,833]. */
  lineChars: 16 * 1024 * 1024,
  /** Items of one event, nested ones included [10,782]. */
  eventItems: 1_000_000,
  /** Levels of item lists inside an event (device calls inside inputs inside ...) [2]. */
  nesting: 8,
  /** Bytes of one memory access or packet's data [36]; a TD moves at most 1280 (UHCI DG §3.2.3). */
  itemBytes: 4096,
  /** Characters of any other string in an event (a device name, an error message) [45]. */
  stringChars: 1024,
  /** 4 KiB pages of guest memory a trace may touch [22]: 256 MiB of shadow memory. */
  shadowPages: 65536,
  /**
   * Beyond the first `ratioAfterBytes` decompressed bytes, at most this many
   * decompressed bytes per compressed byte read [18]: a gzip bomb is
   * refused after reading a little more than its own size.
   */
  ratio: 256,
  ratioAfterBytes: 64 * 1024 * 1024,
} as const;

/** The trace file cannot be used: not a trace, corrupt, truncated, or an unsupported version. */
export class TraceFormatError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'TraceFormatError';
  }
}

/** Reject a trace whose content does not hold together (a field of the wrong type, a bad reference). */
export function corruptTrace(msg: string): never {
  throw new TraceFormatError(`corrupt trace: ${msg}`);
}

/** A record field that must be a finite number. */
export function traceNumber(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x)) corruptTrace(`${what} is not a number`);
  return x;
}

/**
 * Input event kinds (what the transport, the clock or a device does to the
 * model). They appear as lines, or as items when nested inside another event.
 */
export const INPUT_KINDS = {
  /** Construction of the function: `[N, dt, 0, items]`. */
  construct: 'N',
  /** Config read `[cr, dt, offset, size, value, items]`. */
  configRead: 'cr',
  /** Config write `[cw, dt, offset, size, value, 0, items]`. */
  configWrite: 'cw',
  /** I/O read inside BAR4 `[ir, dt, offset, size, value, items]`. */
  ioRead: 'ir',
  /** I/O write inside BAR4 `[iw, dt, offset, size, value, 0, items]`. */
  ioWrite: 'iw',
  /** Absolute port read `[pr, dt, port, size, value|null, items]` (null: not ours). */
  portRead: 'pr',
  /** Absolute port write `[pw, dt, port, size, value, claimed, items]`. */
  portWrite: 'pw',
  /** Device plugged `[A, dt, port, identity, 0, items]`. */
  attach: 'A',
  /** Device unplugged `[D, dt, port, hadDevice, items]`. */
  detach: 'D',
  /** PCI reset `[X, dt, 0, items]`. */
  reset: 'X',
  /** Snapshot `[S, dt, {config,controller,ports}, items]`. */
  save: 'S',
  /** Restore `[L, dt, state, addressesAfter, items]`. */
  load: 'L',
  /** Timer fired `[t, dt, serial, 0, items]`. */
  timer: 't',
  /** Device completed an async packet `[C, dt, port, asyncId, status, actualLength, inHex, address, 0, items]`. */
  complete: 'C',
  /** Device asked for remote wakeup `[W, dt, port, 0, items]`. */
  wakeup: 'W',
  /** Device reported activity `[K, dt, port, 0, items]`. */
  activity: 'K',
  /** Outputs the model made outside any input (cannot be replayed) `[o, dt, 0, items]`. */
  orphan: 'o',
} as const;

const INPUT_SET = new Set<string>(Object.values(INPUT_KINDS));
export function isInputKind(k: unknown): boolean {
  return typeof k === 'string' && INPUT_SET.has(k);
}

/**
 * Output item kinds. Guest-memory reads are the common case and are coded
 * without a kind: a bare number `a` is a 4-byte read at `a` that returned
 * what the trace already knew to be there (the last bytes read or written at
 * that address, zeros if never seen); `[a, n]` the same for n bytes;
 * `[a, "hex"]` a read that returned new bytes.
 */
export const OUTPUT_KINDS = {
  /** `[w, addr, hex]` guest-memory write. */
  write: 'w',
  /** `[rf, addr, length]` read that faulted (GuestMemoryFault). */
  readFault: 'rf',
  /** `[wf, addr, hex]` write that faulted. */
  writeFault: 'wf',
  /** `[i, 0|1]` INTx level. */
  irq: 'i',
  /** `[T, serial, atNs - nowNs]` timer armed. */
  setTimer: 'T',
  /** `[U, serial]` timer cleared. */
  clearTimer: 'U',
  /** `[b, base|null]` BAR4 I/O window moved / enabled / disabled. */
  ioWindow: 'b',
  /**
   * `[p, port, pid, devaddr, endpoint, iso, outHex|inLength, status,
   * actualLength, inHex, addressAfter, asyncId, nested]` packet handed to a device.
   */
  packet: 'p',
  /** `[x, port, asyncId, nested]` async packet cancelled. */
  cancel: 'x',
  /** `[r, port, addressAfter, nested]` USB reset of a device. */
  deviceReset: 'r',
} as const;

/** Identity of an attached device as recorded in an attach event. */
export interface DeviceIdentity {
  speed: 'low' | 'full';
  vendorId: number;
  productId: number;
  name: string;
  address: number;
}

const HEX_DIGITS = '0123456789abcdef';

/** Lower-case hex of bytes (Buffer-free for small arrays). */
export function toHex(b: Uint8Array): string {
  if (b.length > 32) return Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
  let s = '';
  for (let i = 0; i < b.length; i++) {
    const v = b[i]!;
    s += HEX_DIGITS[v >> 4]! + HEX_DIGITS[v & 15]!;
  }
  return s;
}

export function fromHex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-f]*$/i.test(s)) throw new TraceFormatError(`bad hex string '${s.slice(0, 40)}'`);
  return Uint8Array.from(Buffer.from(s, 'hex'));
}

export function hex32(n: number): string {
  return '0x' + (n >>> 0).toString(16);
}
