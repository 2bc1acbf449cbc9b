/**
 * The decoded form of a trace (trace-decoder.ts produces it): frames with
 * their schedule walk, each TD visit with what became of it, and the
 * boundary events between frames. Plain data, read by the inspector, the
 * anomaly checks, the transfer assembler and the reports.
 */
import type { DeviceIdentity, TraceHeader, TraceSummary } from '../trace/format.js';
import type { Td } from '../uhci/descriptors.js';

/** What became of a TD the walk fetched, as the trace shows it. */
export type TdResult =
  /** Completed: ACK with the full length (or an OUT/SETUP). */
  | 'ok'
  /** Completed: IN with fewer bytes than MaxLen. */
  | 'short'
  | 'nak'
  | 'stall'
  | 'babble'
  | 'crc-timeout'
  | 'data-buffer-error'
  | 'bitstuff'
  /** CRC/timeout counted against C_ERR, the TD stays active for a retry. */
  | 'retry'
  /** Not active: the walk moved on. */
  | 'inactive'
  /** Handed to a device that answers later (async). */
  | 'async'
  /** The device is still working on it. */
  | 'in-flight'
  /** Fetched but not executed this frame (no bus time left, endpoint busy, or the walk was aborted). */
  | 'not-run';

export const COMPLETED_RESULTS: ReadonlySet<TdResult> = new Set<TdResult>(['ok', 'short', 'stall', 'babble', 'crc-timeout', 'data-buffer-error', 'bitstuff']);

export interface TdVisit {
  addr: number;
  /** The TD as fetched. */
  td: Td;
  /** The walk fetched this TD before and now got other bytes: the guest rewrote it since. */
  changed: boolean;
  /** What the trace knew at that address before (all zeros if never seen); set when `changed`. */
  previous: Td | null;
  /** QH whose queue (element chain) holds the TD, or -1 (linked from the frame list or a horizontal link). */
  via: number;
  /** Control/status dword the model wrote back, or null. */
  ctrlAfter: number | null;
  result: TdResult;
  /** Root port (0-based) of the device that got the packet, when one did. */
  port: number | null;
  /** OUT/SETUP data sent. */
  out: Uint8Array | null;
  /** IN data received (written to the buffer). */
  in: Uint8Array | null;
  /** New QH element pointer written after the TD completed. */
  elementAdvance: number | null;
  /** First time (ns) / frame the walk saw this TD active with this token (a "submission" time). */
  activeSinceNs: number;
  activeSinceFrame: number;
}

export type WalkStep =
  | { kind: 'fl'; index: number; addr: number; link: number; changed: boolean }
  | { kind: 'qh'; addr: number; head: number; element: number; changed: boolean }
  | { kind: 'td'; visit: TdVisit }
  | {
      kind: 'fault';
      addr: number;
      length: number;
      write: boolean;
      what: 'frame list entry' | 'QH' | 'TD' | 'data buffer' | 'memory';
      from: number;
      /** The page was accessed without a fault earlier in the trace: the mapping went away (teardown, unplugged RAM), not a bad pointer. */
      wasMapped: boolean;
    }
  | { kind: 'mem'; addr: number; length: number; write: boolean; hex: string }
  | { kind: 'cancel'; port: number; asyncId: number };

export interface FrameRecord {
  /** 1-based count of frames the controller processed since the trace began. */
  serial: number;
  /** FRNUM (11 bits) of the frame. */
  frnum: number;
  tNs: number;
  /** 1-based event line the frame ran in. */
  event: number;
  steps: WalkStep[];
  /** INTx edge at the end of the frame (null: none). */
  irq: 0 | 1 | null;
  /** End-of-frame interrupt causes (UHCI DG §2.1.2): IOC, short packet, error. */
  ioc: boolean;
  spd: boolean;
  error: boolean;
  /** Something happened (not only NAKs / inactive TDs / unchanged links). */
  busy: boolean;
}

export interface EventBase {
  tNs: number;
  event: number;
  /** Frames processed before this event (the serial of the last frame). */
  frame: number;
}

export type BoundaryEvent = EventBase &
  (
    | { kind: 'io'; write: boolean; offset: number; size: number; value: number; claimed: boolean }
    | { kind: 'config'; write: boolean; offset: number; size: number; value: number }
    | { kind: 'attach'; port: number; identity: DeviceIdentity }
    | { kind: 'detach'; port: number; hadDevice: boolean }
    | { kind: 'pci-reset' }
    | { kind: 'save' }
    | { kind: 'load' }
    | { kind: 'complete'; port: number; asyncId: number; status: string; actualLength: number; data: string }
    | { kind: 'wakeup'; port: number }
    | { kind: 'activity'; port: number }
    | { kind: 'device-reset'; port: number; address: number }
    | { kind: 'cancel'; port: number; asyncId: number }
    | { kind: 'irq'; level: 0 | 1 }
    | { kind: 'io-window'; base: number | null }
    | { kind: 'orphan' }
  );

export interface DecoderSink {
  frame(f: FrameRecord): void;
  event(e: BoundaryEvent): void;
}

export interface DecodedTrace {
  header: TraceHeader;
  summary: TraceSummary;
  events: number;
  frames: number;
}
