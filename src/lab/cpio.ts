/**
 * A writer for the cpio "newc" format the Linux kernel unpacks as an
 * initramfs (Documentation/driver-api/early-userspace/buffer-format.rst):
 * each entry is the magic "070701", thirteen 8-digit hex fields (ino, mode,
 * uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
 * rdevminor, namesize including the NUL, check), the NUL-terminated name
 * padded to a multiple of 4, then the data padded to a multiple of 4. The
 * archive ends with an entry named "TRAILER!!!".
 */

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Uint8Array; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;

/** Build an archive; entries are written in order (parents before children). */
export function buildCpio(entries: readonly CpioEntry[]): Uint8Array {
  const chunks: Uint8Array[] = [];
  const enc = new TextEncoder();
  let ino = 1;
  const push = (name: string, mode: number, data: Uint8Array, nlink: number, rmaj = 0, rmin = 0) => {
    const nameBytes = enc.encode(name + '\0');
    const header =
      '070701' +
      [ino++, mode, 0, 0, nlink, 0, data.length, 0, 0, rmaj, rmin, nameBytes.length, 0].map(hex8).join('');
    chunks.push(enc.encode(header), nameBytes, new Uint8Array(pad4(110 + nameBytes.length)));
    chunks.push(data, new Uint8Array(pad4(data.length)));
  };
  for (const e of entries) {
    const path = e.path.replace(/^\/+/, '');
    switch (e.type) {
      case 'dir':
        push(path, S_IFDIR | (e.mode ?? 0o755), new Uint8Array(0), 2);
        break;
      case 'file':
        push(path, S_IFREG | (e.mode ?? 0o644), e.data, 1);
        break;
      case 'symlink':
        push(path, S_IFLNK | 0o777, enc.encode(e.target), 1);
        break;
      case 'chardev':
        push(path, S_IFCHR | (e.mode ?? 0o600), new Uint8Array(0), 1, e.major, e.minor);
        break;
    }
  }
  push('TRAILER!!!', 0, new Uint8Array(0), 1);
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

export interface CpioMember {
  name: string;
  mode: number;
  data: Uint8Array;
  rdevmajor: number;
  rdevminor: number;
}

/** Read a newc archive back (tests, inspection). */
export function parseCpio(buf: Uint8Array): CpioMember[] {
  const dec = new TextDecoder();
  const out: CpioMember[] = [];
  let off = 0;
  for (;;) {
    if (off + 110 > buf.length) throw new RangeError('truncated cpio archive');
    const h = dec.decode(buf.subarray(off, off + 110));
    if (!h.startsWith('070701')) throw new RangeError(`bad cpio magic at ${off}`);
    const f = (i: number) => parseInt(h.slice(6 + i * 8, 14 + i * 8), 16);
    const namesize = f(11);
    const filesize = f(6);
    const name = dec.decode(buf.subarray(off + 110, off + 110 + namesize - 1));
    off += 110 + namesize;
    off += pad4(off);
    const data = buf.slice(off, off + filesize);
    off += filesize;
    off += pad4(off);
    if (name === 'TRAILER!!!') return out;
    out.push({ name, mode: f(1), data, rdevmajor: f(9), rdevminor: f(10) });
  }
}
