/**
 * uhci-dm's part of a domain's device-model state. libxl saves the device
 * model's state into a file QEMU writes (QMP xen-save-devices-state), carries
 * that file whole inside the `xl save` image / the `xl migrate` stream, and on
 * restore hands the new device model the same bytes (`-incoming`). uhci-dm's
 * controllers ride along as a trailer appended to QEMU's bytes:
 *
 *     QEMU's migration stream | JSON record | footer (16 bytes)
 *     footer = "UHCIDMS1" | u32 LE record length | u32 LE CRC-32 of the record
 *
 * A trailer leaves QEMU's stream first and intact: the wrapper hands QEMU
 * exactly its own bytes on restore, and an image saved through the wrapper
 * still restores (without USB state) where the wrapper is gone. Nothing needs
 * to travel beside the image, so `xl migrate` to another host carries it too
 * (that host needs the same wrapper in the domain's device_model_override).
 */
import { closeSync, fstatSync, openSync, readSync, writeSync, constants } from 'node:fs';
import { crc32 } from 'node:zlib';
import { UserFacingError } from '../platform/user-facing-error.js';

const MAGIC = Buffer.from('UHCIDMS1', 'latin1');
const FOOTER = 16;
/** Largest record read back: a few controllers' snapshots are tens of KiB. */
export const MAX_RECORD_BYTES = 4 * 1024 * 1024;

export interface SavedController {
  /** qdev id ('' for the -usb controller). */
  id: string;
  bdf: string;
  devices: { id: string; port: number }[];
  /** The controller's `save` answer (usb-ports.ts FunctionSnapshot), checked again by its restore. */
  snapshot: unknown;
}

export interface SavedUsbState {
  format: 'uhci-dm-xl-state';
  version: 1;
  controllers: SavedController[];
}

export class SavedStateError extends UserFacingError {}

export function isSavedController(v: unknown): v is SavedController {
  const c = v as Partial<SavedController> | null;
  return (
    !!c &&
    typeof c.id === 'string' &&
    c.id.length <= 128 &&
    typeof c.bdf === 'string' &&
    /^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(c.bdf) &&
    Array.isArray(c.devices) &&
    c.devices.length <= 16 &&
    c.devices.every((d) => !!d && typeof d.id === 'string' && d.id.length <= 128 && Number.isInteger(d.port) && d.port >= 1 && d.port <= 2) &&
    c.snapshot !== null &&
    typeof c.snapshot === 'object'
  );
}

export function encodeTrailer(state: SavedUsbState): Buffer {
  const record = Buffer.from(JSON.stringify(state), 'utf8');
  if (record.length > MAX_RECORD_BYTES) throw new SavedStateError(`uhci-dm state of ${record.length} bytes is over the ${MAX_RECORD_BYTES}-byte cap`);
  const footer = Buffer.alloc(FOOTER);
  MAGIC.copy(footer, 0);
  footer.writeUInt32LE(record.length, 8);
  footer.writeUInt32LE(crc32(record), 12);
  return Buffer.concat([record, footer]);
}

/**
 * Append the trailer to the file QEMU just saved into, through an open fd
 * (libxl's own, received with add-fd): written at the file's end, which is
 * where QEMU's stream stops.
 */
export function appendTrailerFd(fd: number, state: SavedUsbState): void {
  const st = fstatSync(fd);
  if (!st.isFile()) throw new SavedStateError('the device-model state fd is not a regular file');
  const bytes = encodeTrailer(state);
  let off = 0;
  while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off, st.size + off);
}

/** The same by path (a libxl that names a file): an existing regular file, symlinks refused. */
export function appendTrailer(path: string, state: SavedUsbState): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW);
  try {
    appendTrailerFd(fd, state);
  } finally {
    closeSync(fd);
  }
}

/** What a saved device-model file holds: the length of QEMU's part and uhci-dm's record, if any. */
export interface SplitState {
  qemuBytes: number;
  usb: SavedUsbState | null;
}

/**
 * Read the trailer of an open saved-state file (its size from fstat; the
 * file position is not moved). A file without the footer is QEMU's alone; a
 * footer with a bad length, CRC or record is an error (a damaged image).
 */
export function readTrailer(fd: number): SplitState {
  const size = fstatSync(fd).size;
  if (size < FOOTER) return { qemuBytes: size, usb: null };
  const footer = Buffer.alloc(FOOTER);
  readSync(fd, footer, 0, FOOTER, size - FOOTER);
  if (!footer.subarray(0, 8).equals(MAGIC)) return { qemuBytes: size, usb: null };
  const len = footer.readUInt32LE(8);
  if (len > MAX_RECORD_BYTES || len > size - FOOTER) throw new SavedStateError(`saved uhci-dm state claims ${len} bytes (file has ${size})`);
  const record = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const n = readSync(fd, record, got, len - got, size - FOOTER - len + got);
    if (n === 0) throw new SavedStateError('saved uhci-dm state is truncated');
    got += n;
  }
  if (crc32(record) !== footer.readUInt32LE(12)) throw new SavedStateError('saved uhci-dm state fails its CRC');
  let parsed: unknown;
  try {
    parsed = JSON.parse(record.toString('utf8'));
  } catch {
    throw new SavedStateError('saved uhci-dm state is not JSON');
  }
  const s = parsed as Partial<SavedUsbState> | null;
  if (!s || s.format !== 'uhci-dm-xl-state' || s.version !== 1 || !Array.isArray(s.controllers) || s.controllers.length > 8 || !s.controllers.every(isSavedController)) {
    throw new SavedStateError('saved uhci-dm state has an unknown format');
  }
  return { qemuBytes: size - FOOTER - len, usb: s as SavedUsbState };
}
