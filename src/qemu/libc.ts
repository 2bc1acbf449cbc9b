/**
 * The few libc calls the QEMU proxy needs and Node does not offer: UNIX
 * socket pairs, sendmsg/recvmsg with SCM_RIGHTS file descriptors, poll,
 * mmap of the guest RAM file descriptors, eventfds. Bound with the `koffi`
 * FFI package (x86-64 Linux, glibc). Structure layouts below are the
 * x86-64 Linux ABI (<sys/socket.h>, <poll.h>).
 */
import { UserFacingError } from '../platform/user-facing-error.js';
import { createRequire } from 'node:module';

/** koffi is missing or libc could not be bound (user-facing). */
export class NativeUnavailableError extends UserFacingError {}

/** A libc call failed; `errno` is the C errno. */
export class SyscallError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    super(`${call} failed: errno ${errno}`);
    this.name = 'SyscallError';
  }
}

export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SCM_RIGHTS = 1;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_CTRUNC = 0x8;
export const MSG_CMSG_CLOEXEC = 0x40000000;
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
export const EAGAIN = 11;
export const EINTR = 4;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
const MFD_CLOEXEC = 1;

/** The opaque pointer type koffi hands out for native memory. */
export type NativePointer = object;

// The subset of koffi's API used here (koffi's own .d.ts types functions as `any`).
interface KoffiFn {
  (...args: unknown[]): unknown;
  async(...args: unknown[]): void;
}
interface KoffiLib {
  func(decl: string): KoffiFn;
}
interface KoffiModule {
  load(path: string): KoffiLib;
  alloc(type: string, len: number): NativePointer;
  free(p: NativePointer): void;
  address(p: NativePointer): bigint;
  view(p: NativePointer, len: number): ArrayBuffer;
  errno(): number;
}

interface Bindings {
  k: KoffiModule;
  socketpair: KoffiFn;
  recvmsg: KoffiFn;
  sendmsg: KoffiFn;
  send: KoffiFn;
  poll: KoffiFn;
  close: KoffiFn;
  read: KoffiFn;
  write: KoffiFn;
  mmap: KoffiFn;
  munmap: KoffiFn;
  eventfd: KoffiFn;
  memfd_create: KoffiFn;
  ftruncate: KoffiFn;
}

let bindings: Bindings | null = null;

function lib(): Bindings {
  if (bindings) return bindings;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new NativeUnavailableError(`the QEMU proxy needs Linux on x86-64 (this is ${process.platform}/${process.arch})`);
  }
  let k: KoffiModule;
  try {
    k = createRequire(import.meta.url)('koffi') as KoffiModule;
  } catch (e) {
    throw new NativeUnavailableError(`the QEMU proxy needs the 'koffi' package (npm install koffi): ${(e as Error).message}`);
  }
  const c = k.load('libc.so.6');
  bindings = {
    k,
    socketpair: c.func('int socketpair(int, int, int, int *sv)'),
    recvmsg: c.func('long recvmsg(int, void *msg, int)'),
    sendmsg: c.func('long sendmsg(int, void *msg, int)'),
    send: c.func('long send(int, const void *buf, size_t, int)'),
    poll: c.func('int poll(void *fds, unsigned long, int)'),
    close: c.func('int close(int)'),
    read: c.func('long read(int, void *buf, size_t)'),
    write: c.func('long write(int, const void *buf, size_t)'),
    mmap: c.func('void *mmap(void *addr, size_t, int, int, int, int64_t)'),
    munmap: c.func('int munmap(void *addr, size_t)'),
    eventfd: c.func('int eventfd(unsigned int, int)'),
    memfd_create: c.func('int memfd_create(const char *name, unsigned int)'),
    ftruncate: c.func('int ftruncate(int, int64_t)'),
  };
  return bindings;
}

/** Check (without side effects) that the native layer can be used. */
export function nativeAvailable(): void {
  lib();
}

function errno(): number {
  return lib().k.errno();
}

function check(call: string, r: unknown): number {
  const n = Number(r);
  if (n < 0) throw new SyscallError(call, errno());
  return n;
}

/** A connected AF_UNIX stream socket pair (both ends close-on-exec). */
export function socketPair(): [number, number] {
  const sv = new Int32Array(2);
  check('socketpair', lib().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  return [sv[0]!, sv[1]!];
}

export function closeFd(fd: number): void {
  if (fd >= 0) lib().close(fd);
}

/**
 * recvmsg/sendmsg with native buffers: a msghdr (56 bytes), one iovec
 * (16 bytes), a control buffer for up to 16 fds and a data buffer. The
 * buffers live in native memory so that koffi passes their addresses
 * unchanged, also across async calls.
 */
export class FdSocket {
  static readonly MAX_DATA = 4096;
  private static readonly CONTROL = 256;
  private readonly block: NativePointer;
  private readonly bytes: Uint8Array;
  private readonly dv: DataView;
  private readonly base: bigint;
  private readonly pollBlock: NativePointer;
  private readonly pollView: DataView;
  private closed = false;

  // Offsets inside `block`.
  private static readonly MSGHDR = 0;
  private static readonly IOV = 64;
  private static readonly CTRL = 128;
  private static readonly DATA = 384;

  constructor(readonly fd: number) {
    const l = lib();
    this.block = l.k.alloc('uint8', FdSocket.DATA + FdSocket.MAX_DATA);
    const ab = l.k.view(this.block, FdSocket.DATA + FdSocket.MAX_DATA);
    this.bytes = new Uint8Array(ab);
    this.dv = new DataView(ab);
    this.base = l.k.address(this.block);
    this.pollBlock = l.k.alloc('uint8', 8 * 4);
    this.pollView = new DataView(l.k.view(this.pollBlock, 8 * 4));
  }

  private setupMsg(dataLen: number, controlLen: number): void {
    const dv = this.dv;
    const m = FdSocket.MSGHDR;
    this.bytes.fill(0, 0, FdSocket.CTRL);
    dv.setBigUint64(m + 16, this.base + BigInt(FdSocket.IOV), true); // msg_iov
    dv.setBigUint64(m + 24, 1n, true); // msg_iovlen
    if (controlLen > 0) {
      dv.setBigUint64(m + 32, this.base + BigInt(FdSocket.CTRL), true); // msg_control
      dv.setBigUint64(m + 40, BigInt(controlLen), true); // msg_controllen
    }
    dv.setBigUint64(FdSocket.IOV, this.base + BigInt(FdSocket.DATA), true); // iov_base
    dv.setBigUint64(FdSocket.IOV + 8, BigInt(dataLen), true); // iov_len
  }

  /**
   * Non-blocking read of at most `max` bytes. Returns null when nothing is
   * available (EAGAIN), `{ eof: true }` at end of stream.
   */
  recv(max: number): { data: Uint8Array; fds: number[]; eof: boolean } | null {
    if (max > FdSocket.MAX_DATA) max = FdSocket.MAX_DATA;
    this.setupMsg(max, FdSocket.CONTROL);
    this.bytes.fill(0, FdSocket.CTRL, FdSocket.DATA);
    const r = Number(lib().recvmsg(this.fd, this.block /* msghdr at offset 0 */, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
    if (r < 0) {
      const e = errno();
      if (e === EAGAIN || e === EINTR) return null;
      throw new SyscallError('recvmsg', e);
    }
    const fds = this.parseControl();
    const flags = this.dv.getInt32(FdSocket.MSGHDR + 48, true);
    if (flags & MSG_CTRUNC) {
      fds.forEach(closeFd);
      throw new SyscallError('recvmsg (control data truncated)', 0);
    }
    return { data: this.bytes.slice(FdSocket.DATA, FdSocket.DATA + r), fds, eof: r === 0 && fds.length === 0 };
  }

  private parseControl(): number[] {
    const dv = this.dv;
    const controlLen = Number(dv.getBigUint64(FdSocket.MSGHDR + 40, true));
    const fds: number[] = [];
    let off = 0;
    // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; data... } (16-byte header).
    while (off + 16 <= controlLen) {
      const p = FdSocket.CTRL + off;
      const len = Number(dv.getBigUint64(p, true));
      if (len < 16) break;
      const level = dv.getInt32(p + 8, true);
      const type = dv.getInt32(p + 12, true);
      if (level === SOL_SOCKET && type === SCM_RIGHTS) {
        for (let i = 16; i + 4 <= len; i += 4) fds.push(dv.getInt32(p + i, true));
      }
      off += (len + 7) & ~7;
    }
    return fds;
  }

  /** Blocking send of the whole buffer, with optional fds (SCM_RIGHTS) on the first byte. */
  send(data: Uint8Array, fds: readonly number[] = []): void {
    let sent = 0;
    while (sent < data.length) {
      const chunk = data.subarray(sent, sent + FdSocket.MAX_DATA);
      let r: number;
      if (sent === 0 && fds.length > 0) {
        const ctrlLen = 16 + fds.length * 4;
        const space = (ctrlLen + 7) & ~7;
        this.setupMsg(chunk.length, space);
        this.bytes.fill(0, FdSocket.CTRL, FdSocket.CTRL + space);
        this.dv.setBigUint64(FdSocket.CTRL, BigInt(ctrlLen), true);
        this.dv.setInt32(FdSocket.CTRL + 8, SOL_SOCKET, true);
        this.dv.setInt32(FdSocket.CTRL + 12, SCM_RIGHTS, true);
        fds.forEach((fd, i) => this.dv.setInt32(FdSocket.CTRL + 16 + i * 4, fd, true));
        this.bytes.set(chunk, FdSocket.DATA);
        r = Number(lib().sendmsg(this.fd, this.block /* msghdr at offset 0 */, MSG_NOSIGNAL));
      } else {
        r = Number(lib().send(this.fd, chunk, chunk.length, MSG_NOSIGNAL));
      }
      if (r < 0) {
        const e = errno();
        if (e === EINTR) continue;
        throw new SyscallError('send', e);
      }
      sent += r;
    }
  }

  /**
   * Wait (on a libuv worker thread) until one of `fds` is readable or hung
   * up; calls back with the revents of each fd, in order.
   */
  pollAsync(fds: readonly number[], timeoutMs: number, cb: (err: Error | null, revents: number[]) => void): void {
    const n = Math.min(fds.length, 4);
    for (let i = 0; i < n; i++) {
      this.pollView.setInt32(i * 8, fds[i]!, true);
      this.pollView.setInt16(i * 8 + 4, POLLIN, true);
      this.pollView.setInt16(i * 8 + 6, 0, true);
    }
    lib().poll.async(this.pollBlock, n, timeoutMs, (err: Error | null, r: number) => {
      if (err) return cb(err, []);
      if (r < 0) return cb(new SyscallError('poll', errno()), []);
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push(this.pollView.getInt16(i * 8 + 6, true));
      cb(null, out);
    });
  }

  /** Close the socket fd and release the native buffers (not while a pollAsync is pending). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeFd(this.fd);
  }

  /** Free the native buffers (after close, once no poll is pending). */
  dispose(): void {
    const k = lib().k;
    k.free(this.block);
    k.free(this.pollBlock);
  }
}

/** A shared mapping of `size` bytes of `fd` at `offset`. */
export interface Mapping {
  readonly bytes: Uint8Array;
  unmap(): void;
}

export function mapShared(fd: number, size: number, offset: number): Mapping {
  const l = lib();
  const p = l.mmap(null, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset) as NativePointer | null;
  if (p === null || l.k.address(p) === 0xffffffffffffffffn) throw new SyscallError('mmap', errno());
  const bytes = new Uint8Array(l.k.view(p, size));
  let mapped = true;
  return {
    bytes,
    unmap() {
      if (!mapped) return;
      mapped = false;
      l.munmap(p, size);
    },
  };
}

/** eventfd(2), non-blocking, close-on-exec. */
export function eventFd(): number {
  return check('eventfd', lib().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

/** Add 1 to an eventfd counter (signals it). */
export function eventFdSignal(fd: number): void {
  const one = new Uint8Array(8);
  one[0] = 1;
  lib().write(fd, one, 8);
}

/** Read and reset an eventfd counter; 0 if it was not signalled. */
export function eventFdDrain(fd: number): bigint {
  const b = new Uint8Array(8);
  const r = Number(lib().read(fd, b, 8));
  if (r !== 8) return 0n;
  return new DataView(b.buffer).getBigUint64(0, true);
}

/** An anonymous shared-memory file of `size` bytes (tests, fakes). */
export function memFd(name: string, size: number): number {
  const l = lib();
  const fd = check('memfd_create', l.memfd_create(name, MFD_CLOEXEC));
  check('ftruncate', l.ftruncate(fd, size));
  return fd;
}
