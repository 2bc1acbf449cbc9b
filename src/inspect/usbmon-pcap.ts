/**
 * pcap export in Linux usbmon's binary format, so Wireshark/tshark decode
 * the transfers as if they had been captured on the guest's usbmon: link
 * type LINKTYPE_USB_LINUX_MMAPPED (220), each packet a 64-byte
 * `struct usbmon_packet` (Linux Documentation/usb/usbmon.rst, "Raw binary
 * format and API"; Wireshark epan/dissectors/packet-usb.c) followed by the
 * captured data. Every transfer is a submission ('S') and a completion
 * ('C') record with the same id, as usbmon shows an URB.
 *
 *   off  size  field
 *    0    8    id           URB tag, same for S and C
 *    8    1    type         'S' submission, 'C' callback, 'E' error
 *    9    1    xfer_type    0 isochronous, 1 interrupt, 2 control, 3 bulk
 *   10    1    epnum        endpoint number, bit 7 = IN
 *   11    1    devnum       device address
 *   12    2    busnum
 *   14    1    flag_setup   0 when setup[] holds a setup packet, else '-'
 *   15    1    flag_data    0 when data follows, else '<' / '>'
 *   16    8    ts_sec
 *   24    4    ts_usec
 *   28    4    status       -EINPROGRESS (-115) on submission, URB status on completion
 *   32    4    length       bytes asked for (S) / transferred (C)
 *   36    4    len_cap      bytes of data in this record
 *   40    8    setup[8]     (isochronous: error_count, numdesc)
 *   48    4    interval
 *   52    4    start_frame
 *   56    4    xfer_flags
 *   60    4    ndesc
 *
 * Fields are in host byte order; the file is little-endian (pcap magic
 * 0xa1b2c3d4 written little-endian), as a capture on x86 would be.
 *
 * Two ways out share one encoder: `usbmonPcap` (a whole trace, records in
 * time order) and `UsbmonPcapWriter` (a live run: each transfer's S and C
 * records appended as it completes, so a submission can carry an earlier
 * timestamp than the completion written before it; pcap allows that and
 * Wireshark shows the packets in file order).
 */
import { UserFacingError } from '../platform/user-facing-error.js';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { appendWhole } from '../trace/sink.js';
import type { Urb } from './transfers.js';
import { ERRNO } from './usb-requests.js';

export const LINKTYPE_USB_LINUX_MMAPPED = 220;
export const USBMON_HEADER_LEN = 64;
const XFER_TYPE = { isochronous: 0, interrupt: 1, control: 2, bulk: 3 } as const;

/** One usbmon packet (64-byte header + data) of `u`'s submission or completion. */
export function usbmonPacket(u: Urb, type: 'S' | 'C', epochNs: bigint, busnum: number): Uint8Array {
  const dirIn = (u.endpoint & 0x80) !== 0;
  const ns = type === 'S' ? u.submitNs : u.completeNs;
  // Data travels with the submission for OUT transfers and with the completion for IN.
  const data = (type === 'S') !== dirIn ? u.data : new Uint8Array(0);
  const buf = new Uint8Array(USBMON_HEADER_LEN + data.length);
  const dv = new DataView(buf.buffer);
  dv.setBigUint64(0, BigInt(u.id), true);
  buf[8] = type.charCodeAt(0);
  buf[9] = XFER_TYPE[u.type];
  buf[10] = u.endpoint & 0x8f;
  buf[11] = u.devaddr & 0x7f;
  dv.setUint16(12, busnum, true);
  const hasSetup = type === 'S' && u.setupBytes !== null;
  buf[14] = hasSetup ? 0 : 0x2d; // '-'
  buf[15] = data.length ? 0 : dirIn ? 0x3c /* '<' */ : 0x3e; /* '>' */
  const t = epochNs + BigInt(Math.round(ns));
  dv.setBigInt64(16, t / 1_000_000_000n, true);
  dv.setInt32(24, Number((t % 1_000_000_000n) / 1000n), true);
  dv.setInt32(28, type === 'S' ? -ERRNO.EINPROGRESS : u.status, true);
  const length = type === 'S' ? (dirIn ? u.requested : u.data.length) : u.data.length;
  dv.setUint32(32, length, true);
  dv.setUint32(36, data.length, true);
  if (hasSetup) buf.set(u.setupBytes!.subarray(0, 8), 40);
  dv.setInt32(48, u.type === 'interrupt' ? Math.max(1, u.interval) : u.type === 'isochronous' ? 1 : 0, true);
  dv.setInt32(52, 0, true);
  dv.setUint32(56, 0, true);
  dv.setUint32(60, 0, true);
  buf.set(data, USBMON_HEADER_LEN);
  return buf;
}

/** Wall-clock ns of trace time 0 from `startUnixMs`. */
function epochOf(startUnixMs: number): bigint {
  return BigInt(Math.round(startUnixMs)) * 1_000_000n;
}

/** Size of the pcap global header (pcap-savefile(5)). */
export const PCAP_HEADER_LEN = 24;
/** Size of each packet's record header. */
const PCAP_RECORD_HEADER_LEN = 16;

/** The pcap global header: microsecond timestamps, link type usbmon (mmapped). */
export function pcapFileHeader(): Uint8Array {
  const out = new Uint8Array(PCAP_HEADER_LEN);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 0xa1b2c3d4, true);
  dv.setUint16(4, 2, true);
  dv.setUint16(6, 4, true);
  dv.setInt32(8, 0, true);
  dv.setUint32(12, 0, true);
  dv.setUint32(16, 262144, true);
  dv.setUint32(20, LINKTYPE_USB_LINUX_MMAPPED, true);
  return out;
}

/** Write record header + packet at `out[o]`; returns the offset after it. */
function putRecord(out: Uint8Array, o: number, ns: number, packet: Uint8Array, epochNs: bigint): number {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const t = epochNs + BigInt(Math.round(ns));
  dv.setUint32(o, Number(t / 1_000_000_000n), true);
  dv.setUint32(o + 4, Number((t % 1_000_000_000n) / 1000n), true);
  dv.setUint32(o + 8, packet.length, true);
  dv.setUint32(o + 12, packet.length, true);
  out.set(packet, o + PCAP_RECORD_HEADER_LEN);
  return o + PCAP_RECORD_HEADER_LEN + packet.length;
}

interface Rec {
  ns: number;
  order: number;
  bytes: Uint8Array;
}

function record(u: Urb, type: 'S' | 'C', epochNs: bigint, busnum: number): Rec {
  return { ns: type === 'S' ? u.submitNs : u.completeNs, order: u.id * 2 + (type === 'S' ? 0 : 1), bytes: usbmonPacket(u, type, epochNs, busnum) };
}

/** pcap records (with their record headers) for recs, in the given order. */
function records(recs: readonly Rec[], epochNs: bigint, headerLen: number): Uint8Array {
  let total = headerLen;
  for (const r of recs) total += PCAP_RECORD_HEADER_LEN + r.bytes.length;
  const out = new Uint8Array(total);
  let o = headerLen;
  for (const r of recs) o = putRecord(out, o, r.ns, r.bytes, epochNs);
  return out;
}

/**
 * The pcap file for `urbs`. `startUnixMs` is the wall-clock time of trace
 * time 0 (the trace header's `created`).
 */
export function usbmonPcap(urbs: readonly Urb[], startUnixMs: number, busnum = 1): Uint8Array {
  const epochNs = epochOf(startUnixMs);
  const recs: Rec[] = [];
  for (const u of urbs) {
    recs.push(record(u, 'S', epochNs, busnum));
    recs.push(record(u, 'C', epochNs, busnum));
  }
  recs.sort((a, b) => a.ns - b.ns || a.order - b.order);
  const out = records(recs, epochNs, PCAP_HEADER_LEN);
  out.set(pcapFileHeader(), 0);
  return out;
}

/** The pcap file cannot be written. */
export class PcapWriteError extends UserFacingError {}

/** Bytes a live pcap may reach by default (`--pcap-max`). */
export const DEFAULT_PCAP_MAX_BYTES = 1024 * 1024 * 1024;

/**
 * A usbmon pcap written while a run goes on: the file header when opened,
 * then each transfer (S and C record) with one synchronous write as it
 * completes. Whatever was written is a valid pcap at any moment (after a
 * SIGTERM or a crash too): no record is ever half-written by us (a write
 * the disk refuses part-way is cut off again), and the file needs no
 * closing trailer. A transfer that would take the file past `maxBytes` is
 * refused (PcapWriteError) and the file stays as it is: the caller stops
 * capturing.
 */
export class UsbmonPcapWriter {
  private fd: number | null;
  private epochNs: bigint = 0n;
  /** Transfers written. */
  transfers = 0;
  bytesWritten = 0;

  constructor(
    readonly path: string,
    private readonly busnum = 1,
    readonly maxBytes = DEFAULT_PCAP_MAX_BYTES,
  ) {
    try {
      this.fd = openSync(path, 'w');
      writeSync(this.fd, pcapFileHeader());
    } catch (e) {
      throw new PcapWriteError(`cannot write pcap ${path}: ${(e as Error).message}`);
    }
    this.bytesWritten = PCAP_HEADER_LEN;
  }

  /** Wall-clock time (ms since the epoch) of recording time 0; set before the first transfer. */
  setStart(startUnixMs: number): void {
    this.epochNs = epochOf(startUnixMs);
  }

  /** Append one completed transfer. */
  write(u: Urb): void {
    if (this.fd === null) return;
    const recs = [record(u, 'S', this.epochNs, this.busnum), record(u, 'C', this.epochNs, this.busnum)];
    const bytes = records(recs, this.epochNs, 0);
    if (this.bytesWritten + bytes.length > this.maxBytes) throw new PcapWriteError(`pcap ${this.path} reached its size limit of ${this.maxBytes} bytes`);
    // One buffer per transfer, written whole or not at all.
    try {
      appendWhole(this.fd, bytes, this.bytesWritten);
    } catch (e) {
      throw new PcapWriteError(`cannot write pcap ${this.path}: ${(e as Error).message}`);
    }
    this.bytesWritten += bytes.length;
    this.transfers++;
  }

  close(): void {
    if (this.fd === null) return;
    try {
      fsyncSync(this.fd);
    } catch {
      // not every file supports fsync (pipes); the data is written either way
    }
    closeSync(this.fd);
    this.fd = null;
  }
}
