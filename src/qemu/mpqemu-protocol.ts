/**
 * QEMU's multi-process PCI protocol (`-device x-pci-proxy-dev,fd=N`), as
 * QEMU 7.2 speaks it over a UNIX stream socket. Pure codec: byte layouts
 * in, typed messages out, and a reassembler that turns partial reads (plus
 * the file descriptors that rode along as SCM_RIGHTS) into whole messages.
 *
 * Layout facts (QEMU 7.2 include/hw/remote/mpqemu-link.h, x86-64 ABI):
 * - MPQemuMsg starts with `int cmd; size_t size;` so the header on the
 *   wire is cmd (i32 LE), 4 bytes of padding, size (u64 LE): 16 bytes
 *   (MPQEMU_MSG_HDR_SIZE = offsetof(MPQemuMsg, data.u64)).
 * - `size` payload bytes follow, at most sizeof(data) = 192 (the
 *   SyncSysmemMsg member: 3 arrays of 8 x 64-bit); the receiver rejects
 *   larger sizes (mpqemu_msg_recv).
 * - File descriptors travel with the header's sendmsg (at most
 *   REMOTE_MAX_FDS = 8).
 * - PciConfDataMsg {u32 addr; u32 val; int len} = 12 bytes.
 * - BarAccessMsg {hwaddr addr; u64 val; unsigned size; bool memory} = 24
 *   bytes (21 used, 3 bytes tail padding).
 * - SyncSysmemMsg {hwaddr gpas[8]; u64 sizes[8]; off_t offsets[8]} = 192
 *   bytes; entry i describes fds[i] (hw/remote/proxy-memory-listener.c).
 * - SET_IRQFD carries no payload and two fds: the interrupt eventfd and the
 *   resample eventfd (hw/remote/proxy.c setup_irqfd).
 * - Replies are MPQEMU_CMD_RET with an 8-byte u64 payload
 *   (mpqemu_msg_send_and_await_reply reads data.u64).
 */

export const MPQEMU_CMD = {
  SYNC_SYSMEM: 0,
  RET: 1,
  PCI_CFGWRITE: 2,
  PCI_CFGREAD: 3,
  BAR_WRITE: 4,
  BAR_READ: 5,
  SET_IRQFD: 6,
  DEVICE_RESET: 7,
} as const;

export const MPQEMU_HEADER_SIZE = 16;
/** sizeof(MPQemuMsg.data) in QEMU 7.2: the largest payload accepted. */
export const MPQEMU_MAX_PAYLOAD = 192;
export const MPQEMU_MAX_FDS = 8;
export const PCI_CONF_MSG_SIZE = 12;
export const BAR_ACCESS_MSG_SIZE = 24;
export const SYNC_SYSMEM_MSG_SIZE = 192;

/** The peer sent something that is not a valid message. */
export class MpqemuProtocolError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'MpqemuProtocolError';
  }
}

export interface SysmemRegion {
  /** Guest physical address of the region. */
  gpa: number;
  size: number;
  /** Offset of the region inside its file. */
  offset: number;
  fd: number;
}

export type MpqemuMessage =
  | { cmd: 'sync-sysmem'; regions: SysmemRegion[] }
  | { cmd: 'config-write'; addr: number; value: number; len: number }
  | { cmd: 'config-read'; addr: number; len: number }
  | { cmd: 'bar-write'; addr: number; value: bigint; size: number; memory: boolean }
  | { cmd: 'bar-read'; addr: number; size: number; memory: boolean }
  | { cmd: 'set-irqfd'; irqFd: number; resampleFd: number }
  | { cmd: 'device-reset' }
  /** A command this codec does not know; fds are handed over so the caller can close them. */
  | { cmd: 'unknown'; code: number; payload: Uint8Array; fds: number[] }
  | { cmd: 'ret'; value: bigint };

/** Commands whose sender blocks for a RET (hw/remote/proxy.c: send_and_await_reply). */
export function needsReply(m: MpqemuMessage): boolean {
  return (
    m.cmd === 'config-write' ||
    m.cmd === 'config-read' ||
    m.cmd === 'bar-write' ||
    m.cmd === 'bar-read' ||
    m.cmd === 'device-reset'
  );
}

export interface MpqemuHeader {
  cmd: number;
  size: number;
}

export function decodeHeader(b: Uint8Array): MpqemuHeader {
  if (b.length < MPQEMU_HEADER_SIZE) throw new MpqemuProtocolError(`short header (${b.length} bytes)`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const cmd = dv.getInt32(0, true);
  const size = dv.getBigUint64(8, true);
  if (size > BigInt(MPQEMU_MAX_PAYLOAD)) throw new MpqemuProtocolError(`payload of ${size} bytes exceeds ${MPQEMU_MAX_PAYLOAD}`);
  return { cmd, size: Number(size) };
}

export function encodeHeader(cmd: number, size: number): Uint8Array {
  const b = new Uint8Array(MPQEMU_HEADER_SIZE);
  const dv = new DataView(b.buffer);
  dv.setInt32(0, cmd, true);
  dv.setBigUint64(8, BigInt(size), true);
  return b;
}

/** The whole RET message (header + u64) answering a request. */
export function encodeRet(value: number | bigint): Uint8Array {
  const b = new Uint8Array(MPQEMU_HEADER_SIZE + 8);
  b.set(encodeHeader(MPQEMU_CMD.RET, 8));
  new DataView(b.buffer).setBigUint64(MPQEMU_HEADER_SIZE, BigInt.asUintN(64, BigInt(value)), true);
  return b;
}

function expectSize(name: string, payload: Uint8Array, size: number): DataView {
  if (payload.length < size) throw new MpqemuProtocolError(`${name}: payload of ${payload.length} bytes, need ${size}`);
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
}

function safeNumber(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new MpqemuProtocolError(`${what} 0x${v.toString(16)} out of range`);
  return Number(v);
}

function expectFds(name: string, fds: number[], n: number): void {
  if (fds.length !== n) throw new MpqemuProtocolError(`${name}: expected ${n} file descriptors, got ${fds.length}`);
}

/**
 * Decode one message from its command, payload and received fds. On a
 * protocol error the caller still owns (and must close) the fds.
 */
export function decodeMessage(cmd: number, payload: Uint8Array, fds: number[]): MpqemuMessage {
  switch (cmd) {
    case MPQEMU_CMD.SYNC_SYSMEM: {
      const dv = expectSize('SYNC_SYSMEM', payload, SYNC_SYSMEM_MSG_SIZE);
      if (fds.length === 0 || fds.length > MPQEMU_MAX_FDS) {
        throw new MpqemuProtocolError(`SYNC_SYSMEM: ${fds.length} file descriptors`);
      }
      const regions: SysmemRegion[] = fds.map((fd, i) => ({
        gpa: safeNumber(dv.getBigUint64(i * 8, true), 'gpa'),
        size: safeNumber(dv.getBigUint64(64 + i * 8, true), 'size'),
        offset: safeNumber(dv.getBigInt64(128 + i * 8, true), 'offset'),
        fd,
      }));
      return { cmd: 'sync-sysmem', regions };
    }
    case MPQEMU_CMD.PCI_CFGWRITE:
    case MPQEMU_CMD.PCI_CFGREAD: {
      const name = cmd === MPQEMU_CMD.PCI_CFGWRITE ? 'PCI_CFGWRITE' : 'PCI_CFGREAD';
      const dv = expectSize(name, payload, PCI_CONF_MSG_SIZE);
      expectFds(name, fds, 0);
      const addr = dv.getUint32(0, true);
      const len = dv.getInt32(8, true);
      if (cmd === MPQEMU_CMD.PCI_CFGWRITE) return { cmd: 'config-write', addr, value: dv.getUint32(4, true), len };
      return { cmd: 'config-read', addr, len };
    }
    case MPQEMU_CMD.BAR_WRITE:
    case MPQEMU_CMD.BAR_READ: {
      const name = cmd === MPQEMU_CMD.BAR_WRITE ? 'BAR_WRITE' : 'BAR_READ';
      const dv = expectSize(name, payload, 21);
      expectFds(name, fds, 0);
      const addr = safeNumber(dv.getBigUint64(0, true), 'BAR address');
      const size = dv.getUint32(16, true);
      const memory = dv.getUint8(20) !== 0;
      if (cmd === MPQEMU_CMD.BAR_WRITE) return { cmd: 'bar-write', addr, value: dv.getBigUint64(8, true), size, memory };
      return { cmd: 'bar-read', addr, size, memory };
    }
    case MPQEMU_CMD.SET_IRQFD:
      expectFds('SET_IRQFD', fds, 2);
      return { cmd: 'set-irqfd', irqFd: fds[0]!, resampleFd: fds[1]! };
    case MPQEMU_CMD.DEVICE_RESET:
      expectFds('DEVICE_RESET', fds, 0);
      return { cmd: 'device-reset' };
    case MPQEMU_CMD.RET: {
      const dv = expectSize('RET', payload, 8);
      return { cmd: 'ret', value: dv.getBigUint64(0, true) };
    }
    default:
      return { cmd: 'unknown', code: cmd, payload: payload.slice(), fds };
  }
}

/** Encoders for the QEMU side of the protocol (tests, fakes). */
export function encodeConfigMsg(write: boolean, addr: number, value: number, len: number): Uint8Array {
  const b = new Uint8Array(MPQEMU_HEADER_SIZE + PCI_CONF_MSG_SIZE);
  b.set(encodeHeader(write ? MPQEMU_CMD.PCI_CFGWRITE : MPQEMU_CMD.PCI_CFGREAD, PCI_CONF_MSG_SIZE));
  const dv = new DataView(b.buffer, MPQEMU_HEADER_SIZE);
  dv.setUint32(0, addr >>> 0, true);
  dv.setUint32(4, write ? value >>> 0 : 0, true);
  dv.setInt32(8, len, true);
  return b;
}

export function encodeBarMsg(write: boolean, addr: number, value: bigint, size: number, memory: boolean): Uint8Array {
  const b = new Uint8Array(MPQEMU_HEADER_SIZE + BAR_ACCESS_MSG_SIZE);
  b.set(encodeHeader(write ? MPQEMU_CMD.BAR_WRITE : MPQEMU_CMD.BAR_READ, BAR_ACCESS_MSG_SIZE));
  const dv = new DataView(b.buffer, MPQEMU_HEADER_SIZE);
  dv.setBigUint64(0, BigInt(addr), true);
  dv.setBigUint64(8, write ? value : 0n, true);
  dv.setUint32(16, size, true);
  dv.setUint8(20, memory ? 1 : 0);
  return b;
}

export function encodeSyncSysmem(regions: { gpa: number; size: number; offset: number }[]): Uint8Array {
  const b = new Uint8Array(MPQEMU_HEADER_SIZE + SYNC_SYSMEM_MSG_SIZE);
  b.set(encodeHeader(MPQEMU_CMD.SYNC_SYSMEM, SYNC_SYSMEM_MSG_SIZE));
  const dv = new DataView(b.buffer, MPQEMU_HEADER_SIZE);
  regions.forEach((r, i) => {
    dv.setBigUint64(i * 8, BigInt(r.gpa), true);
    dv.setBigUint64(64 + i * 8, BigInt(r.size), true);
    dv.setBigInt64(128 + i * 8, BigInt(r.offset), true);
  });
  return b;
}

/**
 * Reassembles messages from a byte stream read in arbitrary pieces. Like
 * QEMU's own receiver, the reader should ask for exactly `wanted()` bytes
 * per read, so that fds (which the kernel hands out with the bytes of the
 * sendmsg that carried them) land on the message whose header they came
 * with.
 */
export class MessageAssembler {
  private header = new Uint8Array(MPQEMU_HEADER_SIZE);
  private headerFill = 0;
  private hdr: MpqemuHeader | null = null;
  private payload = new Uint8Array(0);
  private payloadFill = 0;
  private fds: number[] = [];

  /** Bytes to read next to complete the current header or payload. */
  wanted(): number {
    if (!this.hdr) return MPQEMU_HEADER_SIZE - this.headerFill;
    return this.payload.length - this.payloadFill;
  }

  /** True while part of a message has been received. */
  get midMessage(): boolean {
    return this.headerFill > 0 || this.fds.length > 0;
  }

  /**
   * Add bytes (at most `wanted()`) and fds from one read. Returns a whole
   * message when this read completed one. Throws MpqemuProtocolError on a bad
   * header; any fds it held are returned in the error's `fds` via takeFds().
   */
  push(bytes: Uint8Array, fds: readonly number[] = []): MpqemuMessage | null {
    this.fds.push(...fds);
    if (bytes.length > this.wanted()) throw new MpqemuProtocolError(`read of ${bytes.length} bytes past the wanted ${this.wanted()}`);
    if (!this.hdr) {
      this.header.set(bytes, this.headerFill);
      this.headerFill += bytes.length;
      if (this.headerFill < MPQEMU_HEADER_SIZE) return null;
      this.hdr = decodeHeader(this.header);
      this.payload = new Uint8Array(this.hdr.size);
      this.payloadFill = 0;
      if (this.hdr.size > 0) return null;
    } else {
      this.payload.set(bytes, this.payloadFill);
      this.payloadFill += bytes.length;
      if (this.payloadFill < this.payload.length) return null;
    }
    const { cmd } = this.hdr;
    const payload = this.payload;
    const got = this.takeFds();
    this.headerFill = 0;
    this.hdr = null;
    try {
      return decodeMessage(cmd, payload, got);
    } catch (e) {
      this.fds = got;
      throw e;
    }
  }

  /** Fds received but not (yet) handed out; the caller closes them on errors. */
  takeFds(): number[] {
    const f = this.fds;
    this.fds = [];
    return f;
  }
}
