/**
 * Stands between libxl and QEMU on the QMP socket. Each connection libxl
 * opens gets its own connection to QEMU's (private) socket; the greeting,
 * events and replies QEMU sends pass through unchanged, and every command
 * libxl sends goes to QEMU unchanged unless the handler takes it (the
 * device_add / device_del of uhci-dm's controllers and devices), in which
 * case the handler's answer is sent in QEMU's place with the command's id.
 * Commands of one connection are handled strictly in order (QMP replies come
 * in command order, qmp-spec.txt 2.4), so a local answer never overtakes a
 * reply QEMU still owes.
 *
 * libxl passes file descriptors with some commands (SCM_RIGHTS, qmp-spec.txt
 * 2.2 "out-of-band" aside; `add-fd` for `xl save`'s state file,
 * libxl_qmp.c libxl__qmp_suspend_save): libxl's side is read with recvmsg,
 * and the fds received go to QEMU with the command they came with. The
 * interposer keeps its own copy of each fd set's fd, so that uhci-dm's state
 * can be appended to the file QEMU saved into.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../platform/logger.js';
import { closeFd, FdSocket } from '../qemu/libc.js';
import { QmpFramingError, QmpSplitter, parseQmpMessage, type QmpMessage } from './qmp-framing.js';

/** A QMP error as QEMU reports it (qapi/error.json classes). */
export interface QmpErrorBody {
  class: 'GenericError' | 'DeviceNotFound' | 'CommandNotFound' | 'DeviceNotActive' | 'KVMMissingCap';
  desc: string;
}
export type QmpAnswer = { return: unknown } | { error: QmpErrorBody };

export interface QmpHandler {
  /** A local answer for this command, or null to let QEMU answer it. */
  intercept(command: string, args: Record<string, unknown>): Promise<QmpAnswer> | null;
  /** Called with QEMU's reply to a forwarded command; may replace it (e.g. an error when uhci-dm's part failed). */
  afterQemu?(command: string, args: Record<string, unknown>, reply: QmpMessage, fdsets: FdSets): Promise<QmpMessage>;
  /** Events of uhci-dm's own devices (DEVICE_DELETED) for every open connection. */
  onEvent?(send: (event: QmpMessage) => void): () => void;
}

/** The interposer's own copy of the fd of each fd set libxl added (add-fd), by fdset-id. */
export interface FdSets {
  fd(fdsetId: number): number | undefined;
}

/** Largest command accepted from libxl (its commands are a few hundred bytes). */
const MAX_CLIENT_MESSAGE = 64 * 1024;
/** Largest message accepted from QEMU (query-qmp-schema is ~200 KiB). */
const MAX_QEMU_MESSAGE = 16 * 1024 * 1024;
/** fds libxl may have in flight before a command takes them (QEMU's monitor keeps only the latest). */
const MAX_PENDING_FDS = 4;
/** fd sets remembered (libxl adds one per save). */
const MAX_FDSETS = 8;

export interface InterposerOptions {
  /** QEMU's private QMP socket. */
  qemuPath: string;
  handler: QmpHandler;
  logger: Logger;
  /** How long to retry connecting to QEMU's socket (QEMU creates it while starting). */
  connectTimeoutMs?: number;
}

function connectWithRetry(path: string, deadline: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = createConnection(path);
      s.once('connect', () => {
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        s.destroy();
        if ((e.code === 'ENOENT' || e.code === 'ECONNREFUSED') && Date.now() < deadline) setTimeout(attempt, 50);
        else reject(e);
      });
    };
    attempt();
  });
}

/** The OS fd under a connected UNIX-socket net.Socket (libuv's pipe handle). */
function socketFd(s: Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no fd');
  return fd;
}

/** fd sets by id, oldest dropped (and its fd closed) beyond MAX_FDSETS. */
class FdSetTable implements FdSets {
  private readonly sets = new Map<number, number>();
  fd(id: number): number | undefined {
    return this.sets.get(id);
  }
  add(id: number, fd: number): void {
    const old = this.sets.get(id);
    if (old !== undefined) closeFd(old);
    this.sets.delete(id);
    this.sets.set(id, fd);
    while (this.sets.size > MAX_FDSETS) {
      const [firstId, firstFd] = this.sets.entries().next().value as [number, number];
      closeFd(firstFd);
      this.sets.delete(firstId);
    }
  }
  remove(id: number): void {
    const fd = this.sets.get(id);
    if (fd !== undefined) closeFd(fd);
    this.sets.delete(id);
  }
  closeAll(): void {
    for (const fd of this.sets.values()) closeFd(fd);
    this.sets.clear();
  }
}

/** One libxl connection and its QEMU counterpart. */
class QmpSession {
  private readonly fromClient = new QmpSplitter(MAX_CLIENT_MESSAGE);
  private readonly fromQemu = new QmpSplitter(MAX_QEMU_MESSAGE);
  private readonly queue: { text: string; fds: number[] }[] = [];
  /** fds received from libxl not yet bound to a command. */
  private pendingFds: number[] = [];
  private busy = false;
  private awaitingReply: ((m: QmpMessage, text: string) => void) | null = null;
  private closed = false;
  private polling = false;
  private readonly unsubscribe: () => void;
  private readonly clientIo: FdSocket;
  private readonly qemuIo: FdSocket;

  constructor(
    private readonly client: Socket,
    private readonly qemu: Socket,
    private readonly opts: InterposerOptions,
    private readonly fdsets: FdSetTable,
  ) {
    this.clientIo = new FdSocket(socketFd(client));
    this.qemuIo = new FdSocket(socketFd(qemu));
    this.unsubscribe = opts.handler.onEvent?.((ev) => this.toClient(JSON.stringify(ev))) ?? (() => undefined);
    qemu.on('data', (d: Buffer) => this.guard('QEMU', () => {
      for (const text of this.fromQemu.push(d)) this.fromQemuMessage(text);
    }));
    for (const s of [client, qemu]) {
      s.on('error', () => this.close());
      s.on('close', () => this.close());
    }
    this.readClient();
  }

  private get logger(): Logger {
    return this.opts.logger;
  }

  /** libxl's side is read with recvmsg (fds ride along), on poll readiness from a worker thread. */
  private readClient(): void {
    if (this.closed) return;
    for (;;) {
      let got: ReturnType<FdSocket['recv']>;
      try {
        got = this.clientIo.recv(FdSocket.MAX_DATA);
      } catch (e) {
        this.logger.log('warn', 'qmp', 'reading libxl\'s QMP connection failed', { error: (e as Error).message });
        this.close();
        return;
      }
      if (!got) break;
      if (got.eof) {
        this.close();
        return;
      }
      for (const fd of got.fds) this.pendingFds.push(fd);
      while (this.pendingFds.length > MAX_PENDING_FDS) closeFd(this.pendingFds.shift()!);
      const ok = this.guard('libxl', () => {
        for (const text of this.fromClient.push(Buffer.from(got!.data))) {
          // fds sent with a command's bytes belong to that command (QEMU takes them for getfd/add-fd).
          this.queue.push({ text, fds: this.pendingFds });
          this.pendingFds = [];
        }
      });
      if (!ok) return;
      void this.pump();
    }
    this.polling = true;
    this.clientIo.pollAsync([this.clientIo.fd], 200, () => {
      this.polling = false;
      if (this.closed) this.release();
      else this.readClient();
    });
  }

  private guard(peer: string, f: () => void): boolean {
    try {
      f();
      return true;
    } catch (e) {
      if (!(e instanceof QmpFramingError)) throw e;
      this.logger.log('warn', 'qmp', `dropping QMP connection: ${peer} sent a bad message`, { error: e.message });
      this.close();
      return false;
    }
  }

  private fromQemuMessage(text: string): void {
    const m = parseQmpMessage(text);
    if (('return' in m || 'error' in m) && this.awaitingReply) {
      const done = this.awaitingReply;
      this.awaitingReply = null;
      done(m, text);
      return;
    }
    this.toClient(text);
  }

  private toClient(text: string): void {
    if (!this.closed) this.client.write(text + '\r\n');
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length && !this.closed) await this.handle(this.queue.shift()!);
    } catch (e) {
      if (!(e instanceof QmpFramingError)) throw e;
      this.logger.log('warn', 'qmp', 'dropping QMP connection: libxl sent a bad message', { error: e.message });
      this.close();
    } finally {
      this.busy = false;
    }
  }

  private async handle(item: { text: string; fds: number[] }): Promise<void> {
    const { text, fds } = item;
    const m = parseQmpMessage(text);
    const command = typeof m.execute === 'string' ? m.execute : null;
    const args = m.arguments !== null && typeof m.arguments === 'object' && !Array.isArray(m.arguments) ? (m.arguments as Record<string, unknown>) : {};
    const withId = (a: QmpMessage): QmpMessage => ('id' in m ? { ...a, id: m.id } : a);
    const local = command ? this.opts.handler.intercept(command, args) : null;
    if (local) {
      fds.forEach(closeFd);
      let answer: QmpAnswer;
      try {
        answer = await local;
      } catch (e) {
        answer = { error: { class: 'GenericError', desc: (e as Error).message } };
      }
      this.toClient(JSON.stringify(withId(answer)));
      return;
    }
    const reply = await new Promise<{ m: QmpMessage; text: string }>((resolve, reject) => {
      this.awaitingReply = (rm, rtext) => resolve({ m: rm, text: rtext });
      if (fds.length) this.sendWithFds(text + '\r\n', fds).catch(reject);
      else this.qemu.write(text + '\r\n');
    });
    this.keepFdset(command, args, reply.m, fds);
    if (command && this.opts.handler.afterQemu) {
      const after = await this.opts.handler.afterQemu(command, args, reply.m, this.fdsets).catch((e: unknown) => withId({ error: { class: 'GenericError', desc: (e as Error).message } }));
      this.toClient(after === reply.m ? reply.text : JSON.stringify(after));
      return;
    }
    this.toClient(reply.text);
  }

  /** Send bytes with fds attached, once Node's own write queue on the socket is empty (keeps the byte order). */
  private async sendWithFds(text: string, fds: number[]): Promise<void> {
    if (this.qemu.writableLength > 0) await new Promise((r) => this.qemu.once('drain', r));
    this.qemuIo.send(Buffer.from(text, 'utf8'), fds);
  }

  /** add-fd: keep our copy as the fd set's fd; otherwise our copies of sent fds are closed (QEMU has its own). */
  private keepFdset(command: string | null, args: Record<string, unknown>, reply: QmpMessage, fds: number[]): void {
    const ret = reply.return as { 'fdset-id'?: unknown } | undefined;
    if (command === 'add-fd' && fds.length === 1 && ret && typeof ret['fdset-id'] === 'number') {
      this.fdsets.add(ret['fdset-id'], fds[0]!);
      return;
    }
    if (command === 'remove-fd' && typeof args['fdset-id'] === 'number' && args.fd === undefined && 'return' in reply) this.fdsets.remove(args['fdset-id']);
    fds.forEach(closeFd);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    this.pendingFds.forEach(closeFd);
    this.pendingFds = [];
    for (const q of this.queue.splice(0)) q.fds.forEach(closeFd);
    // A command waiting for QEMU's reply is dropped with its connection.
    this.awaitingReply = null;
    this.qemu.destroy();
    if (!this.polling) this.release();
  }

  /** Close libxl's socket once no poll is pending on its fd (so the number cannot be reused under the poll). */
  private release(): void {
    this.client.destroy();
    this.clientIo.dispose();
    this.qemuIo.dispose();
  }
}

export class QmpInterposer {
  private readonly sessions = new Set<QmpSession>();
  private readonly fdsets = new FdSetTable();

  private constructor(
    private readonly server: Server,
    private readonly opts: InterposerOptions,
  ) {
    server.on('connection', (client) => void this.accept(client));
  }

  /** Listen on libxl's socket: a path to bind, or an fd libxl already bound and listens on (dm_restrict). */
  static async listen(where: { path: string } | { fd: number }, opts: InterposerOptions): Promise<QmpInterposer> {
    // pauseOnConnect: Node must not read libxl's side; the session reads it with recvmsg.
    const server = createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen('path' in where ? where.path : { fd: where.fd }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new QmpInterposer(server, opts);
  }

  private async accept(client: Socket): Promise<void> {
    let qemu: Socket;
    try {
      qemu = await connectWithRetry(this.opts.qemuPath, Date.now() + (this.opts.connectTimeoutMs ?? 30_000));
    } catch (e) {
      this.opts.logger.log('warn', 'qmp', "cannot reach QEMU's QMP socket; closing libxl's connection", { error: (e as Error).message });
      client.destroy();
      return;
    }
    const s = new QmpSession(client, qemu, this.opts, this.fdsets);
    this.sessions.add(s);
    client.once('close', () => this.sessions.delete(s));
  }

  async close(): Promise<void> {
    for (const s of this.sessions) s.close();
    this.fdsets.closeAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
