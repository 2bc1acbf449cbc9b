/**
 * Cycle-approximate USB 1.1 wire-time model: how many full-speed bit times
 * (12 MHz, 83.3 ns) each transaction occupies on the bus, and whether a
 * transaction may still start before the end of the frame.
 *
 * Everything is a pure function over numbers and the caller's bytes; tables
 * are built once at load time and nothing is allocated per call (the
 * schedule engine calls this for every TD of every frame).
 *
 * ## What a transaction costs (USB 2.0 ch. 7–8, §5.11.3)
 * Packets, in the packet's own bit times (§8.3, §8.4):
 * - token  = SYNC 8 + PID 8 + ADDR 7 + ENDP 4 + CRC5 5 + EOP 3 = 35 (+ stuffing)
 * - SOF    = SYNC 8 + PID 8 + FRAME 11 + CRC5 5 + EOP 3       = 35 (+ stuffing)
 * - data   = SYNC 8 + PID 8 + 8·n + CRC16 16 + EOP 3          = 35 + 8n (+ stuffing)
 * - handshake = SYNC 8 + PID 8 + EOP 3                          = 19
 * EOP is two bit times of SE0 followed by one of J (§7.1.13.2).
 *
 * Bit stuffing (§7.1.9): after six consecutive ones the transmitter inserts
 * a zero, counted over the actual bits (LSB first, §8.1) from the SYNC's last
 * bit on (the one that ends the SYNC pattern counts as the first one of a
 * run). Fields do not reset the count; a zero is still stuffed
 * if the sixth one is the last bit before EOP. The CRCs are part of the
 * stuffed stream, so they are computed (../usb/crc.ts).
 *
 * Gaps between packets, in the transaction's own bit times:
 * - HOST_GAP_BITS = 1: a host packet following any packet. The host must
 *   leave two bit times of idle (J) after the SE0 of an EOP (TIPD, §7.1.18.1);
 *   the first of those is the J already counted in EOP_BITS.
 * - TURNAROUND_BITS = 11: from the end of the host's EOP to the start of the
 *   device's reply, as seen by the host. A device must answer within 6.5
 *   (7.5 with a captive cable) bit times at its own connector (§7.1.18.1);
 *   the host waits up to 16–18 (§7.1.19.1) to cover cables and hubs. The
 *   value is calibrated, not measured: for packets without stuffing, 11 is
 *   the one integer for which the full-speed control, interrupt, bulk and
 *   isochronous transaction-limit tables of USB 2.0 §5.5.4–§5.8.4 are all
 *   met within ±1 transaction per frame (with 10, 1-byte bulk exceeds
 *   Table 5-9 by 2; with 12, 5-byte control falls 2 short of Table 5-2).
 *   See test/uhci/timing.test.ts.
 * - TIMEOUT_BITS = 17: a host that gets no answer gives up 18 bit times after
 *   the end of its EOP's SE0 (§7.1.19.1: not before 16, by 18), i.e. 17 after
 *   the EOP as counted here.
 * - between transactions the host again leaves HOST_GAP_BITS.
 *
 * Low speed (§7.1.11): every low-speed bit lasts 8 full-speed bit times, so
 * packets and gaps of a low-speed transaction are scaled by 8. When the
 * device sits behind a full-speed hub, each host-sent low-speed packet is
 * preceded by a full-speed PRE (SYNC + PRE PID = 16 FS bit times) and the
 * hub setup interval of 4 FS bit times (§8.6.5), during which the hub
 * enables its low-speed ports. A device directly on a root port needs no preamble: the
 * root port itself runs at low speed (cf. EHCI's embedded TT, which only
 * sends PRE for a low-speed endpoint behind a full-speed port).
 *
 * ## How this compares with the spec's tables
 * The tables of §5.5.4–§5.8.4 count bytes: max per frame =
 * floor(1500 / (overhead + payload)) with overheads 45 (control transfer:
 * setup + one data + status stage), 13 (interrupt, bulk) and 9
 * (isochronous), leaving bit stuffing out. Without stuffing this model
 * charges 102 + 8n bits for a non-isochronous transaction (table: 104 + 8n),
 * 72 + 8n for an isochronous OUT (table: 72 + 8n) and 370 + 8n for a control
 * transfer (table: 360 + 8n); after the SOF slot, per-frame counts stay
 * within ±1 of the tables for every payload size once the packets' real
 * stuffing is added to the table's bytes (tested; zero-filled payloads still
 * stuff where a CRC16 holds six ones). Isochronous IN pays a turnaround
 * (82 + 8n) that the 9-byte table overhead has no room for, so it falls below
 * the table for small payloads. The low-speed tables (Table 5-1, 5-6:
 * overheads 63 and 19 bytes, in low-speed bytes) budget more than the wire
 * needs (6 bytes over the full-speed 13 for an interrupt transaction, as if
 * the two full-speed PRE packets were low-speed bytes); our low-speed costs
 * follow §5.11.3's equations instead (tested within ±1 transaction per
 * frame), which fit 8 interrupt transactions of 8 bytes where Table 5-6 has
 * 6; control (3) matches Table 5-1.
 */
import { CRC16_TABLE, crc5 } from '../usb/crc.js';
import type { WireTimer } from './wire-timer.js';
import { SOFMOD } from './registers.js';

// ---------------------------------------------------------------------------
// Constants

/** Full-speed bit times in a frame at the default SOFMOD of 64. */
export const FS_BIT_TIMES_PER_FRAME = 12000;
/** Full-speed bit times per low-speed bit time (12 MHz / 1.5 MHz). */
export const LS_BIT_TIME = 8;

export const SYNC_BITS = 8;
export const PID_BITS = 8;
/** SE0 for two bit times, then J for one (§7.1.13.2). */
export const EOP_BITS = 3;
/** Idle a host leaves before its next packet, beyond the EOP's J (§7.1.18.1). */
export const HOST_GAP_BITS = 1;
/** Host EOP end → device SOP, calibrated to the §5.5.4–§5.8.4 tables (see above). */
export const TURNAROUND_BITS = 11;
/** Host EOP end → host gives up on a reply (§7.1.19.1, 18 after SE0 → J). */
export const TIMEOUT_BITS = 17;
/** Full-speed PRE packet: SYNC + PRE PID, no EOP (§8.6.5). */
export const PRE_PACKET_FS_BITS = 16;
/** Hub setup interval after PRE before the low-speed SYNC (§8.6.5). */
export const HUB_SETUP_FS_BITS = 4;

/** PID bytes as sent (low nibble: type; high nibble: its complement; Table 8-1). */
export const PID_OUT = 0xe1;
export const PID_IN = 0x69;
export const PID_SOF = 0xa5;
export const PID_SETUP = 0x2d;
export const PID_DATA0 = 0xc3;
export const PID_DATA1 = 0x4b;
export const PID_ACK = 0xd2;
export const PID_NAK = 0x5a;
export const PID_STALL = 0x1e;
export const PID_PRE = 0x3c;

/**
 * How a transaction ended, as far as the wire is concerned:
 * - `data`: the data packet moved (and, unless isochronous, was handshaked);
 * - `nak` / `stall`: the device answered with that handshake (IN: instead of
 *   data; OUT/SETUP: after the data packet);
 * - `timeout`: no answer; the host waited TIMEOUT_BITS (IN: after the token;
 *   OUT/SETUP: after the data packet).
 */
export type WireOutcome = 'data' | 'nak' | 'stall' | 'timeout';

// ---------------------------------------------------------------------------
// Bit stuffing

/**
 * STUFF[run * 256 + byte] = stuffed zeros inserted while sending `byte` (LSB
 * first) when `run` ones precede it, packed as (count << 3) | newRun.
 * run is 0..5 (a sixth one always produces a stuffed zero and resets it).
 */
const STUFF: Uint8Array = (() => {
  const table = new Uint8Array(6 * 256);
  for (let run0 = 0; run0 < 6; run0++) {
    for (let b = 0; b < 256; b++) {
      let run = run0;
      let count = 0;
      for (let i = 0; i < 8; i++) {
        if ((b >>> i) & 1) {
          run++;
          if (run === 6) {
            count++;
            run = 0; // the stuffed zero breaks the run
          }
        } else {
          run = 0;
        }
      }
      table[run0 * 256 + b] = (count << 3) | run;
    }
  }
  return table;
})();

/** Run of ones carried in from the SYNC pattern, whose last bit is a one (§7.1.9). */
const SYNC_RUN = 1;

/**
 * Stuffed bits of a 16-bit field packet (token or SOF): PID then the 11-bit
 * field and its CRC5, all LSB first.
 */
function fieldPacketStuff(pid: number, field11: number): number {
  const word = (field11 & 0x7ff) | (crc5(field11) << 11);
  let s = STUFF[SYNC_RUN * 256 + pid]!;
  let stuffed = s >>> 3;
  s = STUFF[(s & 7) * 256 + (word & 0xff)]!;
  stuffed += s >>> 3;
  s = STUFF[(s & 7) * 256 + (word >>> 8)]!;
  return stuffed + (s >>> 3);
}

/** Bit times of a token packet (own speed), SYNC to EOP, with its stuffing. */
export function tokenPacketBits(pid: number, devaddr: number, endpoint: number): number {
  const field = (devaddr & 0x7f) | ((endpoint & 0xf) << 7);
  return SYNC_BITS + PID_BITS + 16 + fieldPacketStuff(pid, field) + EOP_BITS;
}

/** Bit times of an SOF packet for `frameNumber` (its 11 low bits go on the wire). */
export function sofPacketBits(frameNumber: number): number {
  return SYNC_BITS + PID_BITS + 16 + fieldPacketStuff(PID_SOF, frameNumber & 0x7ff) + EOP_BITS;
}

/**
 * Bit times of a data packet (own speed): SYNC, `pid`, `length` bytes of
 * `data` from `offset`, CRC16, EOP, with stuffing over the real bits. Bytes
 * past the end of `data` count as zero (an IN estimate before the device has
 * answered may pass a shorter buffer).
 */
export function dataPacketBits(pid: number, data: Uint8Array, offset: number, length: number): number {
  let s = STUFF[SYNC_RUN * 256 + pid]!;
  let stuffed = s >>> 3;
  let crc = 0xffff;
  const end = offset + length;
  const have = Math.min(end, data.length);
  let i = offset;
  for (; i < have; i++) {
    const b = data[i]!;
    s = STUFF[(s & 7) * 256 + b]!;
    stuffed += s >>> 3;
    crc = (crc >>> 8) ^ CRC16_TABLE[(crc ^ b) & 0xff]!;
  }
  for (; i < end; i++) {
    s = STUFF[(s & 7) * 256]!; // a zero byte: never stuffs, resets the run
    crc = (crc >>> 8) ^ CRC16_TABLE[crc & 0xff]!;
  }
  crc = (crc ^ 0xffff) & 0xffff;
  s = STUFF[(s & 7) * 256 + (crc & 0xff)]!;
  stuffed += s >>> 3;
  s = STUFF[(s & 7) * 256 + (crc >>> 8)]!;
  stuffed += s >>> 3;
  return SYNC_BITS + PID_BITS + 8 * length + 16 + stuffed + EOP_BITS;
}

/** Handshake packets never need stuffing (longest run in ACK/NAK/STALL is four). */
export const HANDSHAKE_BITS = SYNC_BITS + PID_BITS + EOP_BITS;

/** Stuffed bits the given bytes would need inside a packet (for tests and diagnostics). */
export function stuffedBitsOf(pid: number, data: Uint8Array, offset = 0, length = data.length - offset): number {
  return dataPacketBits(pid, data, offset, length) - (SYNC_BITS + PID_BITS + 8 * length + 16 + EOP_BITS);
}

// Checked once at load: the handshake PIDs really need no stuffing.
for (const pid of [PID_ACK, PID_NAK, PID_STALL]) {
  if (STUFF[SYNC_RUN * 256 + pid]! >>> 3 !== 0) throw new Error(`handshake PID ${pid} would stuff`);
}

// ---------------------------------------------------------------------------
// Frames

/**
 * Full-speed bit times from one SOF to the next: 11936 + SOFMOD (UHCI
 * Design Guide 1.1, SOFMOD register at I/O offset 0Ch: a 7-bit SOF timing
 * value, reset 64, giving the nominal 12000).
 */
export function frameBitTimes(sofmod: number): number {
  return 11936 + SOFMOD.get(sofmod, 'SOF');
}

/** The SOF at the start of frame `frameNumber` plus the host gap after it. */
export function sofBitTimes(frameNumber: number): number {
  return sofPacketBits(frameNumber) + HOST_GAP_BITS;
}

/** SOF slot without stuffing (35 + 1); a stuffed SOF is at most 2 bits longer. */
export const SOF_SLOT_BITS = SYNC_BITS + PID_BITS + 16 + EOP_BITS + HOST_GAP_BITS;

// ---------------------------------------------------------------------------
// Transactions

/**
 * Full-speed bit times one transaction occupies, from the start of its token
 * to the start of the next transaction.
 *
 * @param pid       token PID byte (PID_SETUP, PID_OUT, PID_IN)
 * @param lowSpeed  the endpoint is low speed (everything at 1.5 Mb/s)
 * @param iso       isochronous: no handshake phase
 * @param toggle    data PID: 0 → DATA0, 1 → DATA1
 * @param data      the data packet's bytes (OUT/SETUP: sent; IN: received)
 * @param length    bytes in the data packet (from `offset`)
 * @param outcome   see WireOutcome
 * @param preamble  low-speed device behind a full-speed hub: PRE before each
 *                  host-sent packet (ignored at full speed)
 */
export function transactionBitTimes(
  pid: number,
  lowSpeed: boolean,
  iso: boolean,
  devaddr: number,
  endpoint: number,
  toggle: number,
  data: Uint8Array,
  length: number,
  outcome: WireOutcome,
  preamble = false,
  offset = 0,
): number {
  const token = tokenPacketBits(pid, devaddr, endpoint);
  let bits: number; // in the transaction's own bit times
  let hostPackets: number; // packets the host sends (each needs a PRE behind a hub)
  if (pid === PID_IN) {
    if (outcome === 'timeout') {
      bits = token + TIMEOUT_BITS;
      hostPackets = 1;
    } else if (outcome !== 'data') {
      bits = token + TURNAROUND_BITS + HANDSHAKE_BITS + HOST_GAP_BITS;
      hostPackets = 1;
    } else {
      const d = dataPacketBits(toggle ? PID_DATA1 : PID_DATA0, data, offset, length);
      if (iso) {
        bits = token + TURNAROUND_BITS + d + HOST_GAP_BITS;
        hostPackets = 1;
      } else {
        bits = token + TURNAROUND_BITS + d + HOST_GAP_BITS + HANDSHAKE_BITS + HOST_GAP_BITS;
        hostPackets = 2;
      }
    }
  } else {
    const d = dataPacketBits(toggle ? PID_DATA1 : PID_DATA0, data, offset, length);
    bits = token + HOST_GAP_BITS + d;
    hostPackets = 2;
    if (iso) bits += HOST_GAP_BITS;
    else if (outcome === 'timeout') bits += TIMEOUT_BITS;
    else bits += TURNAROUND_BITS + HANDSHAKE_BITS + HOST_GAP_BITS;
  }
  if (!lowSpeed) return bits;
  return bits * LS_BIT_TIME + (preamble ? hostPackets * (PRE_PACKET_FS_BITS + HUB_SETUP_FS_BITS) : 0);
}

// ---------------------------------------------------------------------------
// End of frame

/**
 * Bit times a full-speed OUT/IN with an FSMAX-byte data packet can need at
 * most (an upper bound on stuffing: one zero per six bits of PID, data and
 * CRC, and of the token's 24 bits): the "critical window" at the end of a
 * frame in UHCI terms.
 */
export function fsmaxWindowBits(maxp64: boolean): number {
  const n = maxp64 ? 64 : 32;
  return (
    SYNC_BITS + PID_BITS + 16 + 4 + EOP_BITS + // token, worst case stuffing of 24 bits
    HOST_GAP_BITS +
    SYNC_BITS + PID_BITS + 8 * n + 16 + Math.floor((8 * n + 24) / 6) + EOP_BITS +
    TURNAROUND_BITS + HANDSHAKE_BITS + HOST_GAP_BITS
  );
}

/**
 * May a transaction costing `costBits` start `elapsedBits` into a frame of
 * `frameBits`? Yes iff it completes before EOF.
 *
 * Interpretation. The UHCI Design Guide 1.1 (§2.1.1, USBCMD bit 7 MAXP)
 * says, in substance, that the controller uses the FSMAX packet size (64 or
 * 32 bytes) to decide from the time left in the SOF counter whether to
 * initiate another transaction, and that packets larger than FSMAX executed
 * in that critical window at the end of the frame cause Babble. Silicon thus compares
 * the time left with one fixed FSMAX-sized transaction (`canStartStrict`).
 * That idles the last window of every frame even for transactions that would
 * fit, which the USB 2.0 transaction-limit tables (§5.5.4–§5.8.4) do not
 * assume; the model therefore uses the exact form of the same rule (a
 * transaction starts iff its own time fits before EOF) so that a saturated
 * frame carries the number of transactions the tables list. `maxp64` does
 * not change the answer here: with the exact rule a packet larger than FSMAX
 * never starts unless it fits, so the Babble case of the strict rule cannot
 * arise. The engine may switch to `canStartStrict` to mimic silicon.
 */
export function canStart(elapsedBits: number, costBits: number, frameBits: number, _maxp64: boolean): boolean {
  return elapsedBits + costBits <= frameBits;
}

/** Silicon's rule: start only while at least one FSMAX transaction's time remains. */
export function canStartStrict(elapsedBits: number, frameBits: number, maxp64: boolean): boolean {
  return frameBits - elapsedBits >= fsmaxWindowBits(maxp64);
}

/**
 * The model as the schedule engine consumes it (./wire-timer.ts). Frame
 * time is counted from the end of the SOF slot; the SOF is charged at its
 * unstuffed length (a stuffed SOF is at most two bits longer). Low-speed
 * devices are assumed to sit on a root port (no preamble).
 */
export const uhciWireTimer: WireTimer = {
  frameBits: (sofmod) => frameBitTimes(sofmod) - SOF_SLOT_BITS,
  transactionBits: (pid, lowSpeed, iso, devaddr, endpoint, toggle, data, length, outcome) =>
    transactionBitTimes(pid, lowSpeed, iso, devaddr, endpoint, toggle, data, length, outcome),
  canStart,
};
