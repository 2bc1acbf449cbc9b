/**
 * A QMP client that behaves as libxl's does (greeting, qmp_capabilities, one
 * command at a time, fds with a command over SCM_RIGHTS), for tests of the
 * device-model wrapper and of QEMU itself.
 */
import { createConnection, type Socket } from 'node:net';
import { FdSocket } from '../../src/qemu/libc.js';
import { QmpSplitter, parseQmpMessage, type QmpMessage } from '../../src/xl/qmp-framing.js';

export class TestQmpClient {
  readonly events: QmpMessage[] = [];
  private readonly splitter = new QmpSplitter(1 << 24);
  private waiting: { resolve: (m: QmpMessage) => void; reject: (e: Error) => void }[] = [];
  private closed = false;
  private inbox: QmpMessage[] = [];
  greeting: QmpMessage | null = null;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      for (const t of this.splitter.push(d)) {
        const m = parseQmpMessage(t);
        if ('event' in m) this.events.push(m);
        else if (this.waiting.length) this.waiting.shift()!.resolve(m);
        else this.inbox.push(m);
      }
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w.reject(new Error('QMP connection closed'));
    });
  }

  static async connect(path: string, timeoutMs = 30_000): Promise<TestQmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const s = await new Promise<Socket>((resolve, reject) => {
          const c = createConnection(path);
          c.once('connect', () => resolve(c));
          c.once('error', reject);
        });
        const q = new TestQmpClient(s);
        q.greeting = await q.next();
        return q;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private next(): Promise<QmpMessage> {
    const m = this.inbox.shift();
    if (m) return Promise.resolve(m);
    if (this.closed) return Promise.reject(new Error('QMP connection closed'));
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Send one command (with fds, if any) and wait for its reply. */
  async execute(execute: string, args?: Record<string, unknown>, fds: number[] = []): Promise<QmpMessage> {
    const text = JSON.stringify(args ? { execute, arguments: args } : { execute }) + '\r\n';
    const reply = this.next();
    if (fds.length) {
      const fdSock = new FdSocket((this.socket as unknown as { _handle: { fd: number } })._handle.fd);
      fdSock.send(Buffer.from(text), fds);
      fdSock.dispose();
    } else this.socket.write(text);
    return reply;
  }

  async waitEvent(name: string, timeoutMs = 10_000): Promise<QmpMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.events.find((x) => x.event === name);
      if (e) return e;
      if (Date.now() > deadline) throw new Error(`no ${name} event`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
