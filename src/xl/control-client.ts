/**
 * Client of a `uhci-dm xen --control SOCKET` (control-socket.ts): one
 * connection, commands sent one at a time, each answered by one JSON line.
 * Replies are capped (a snapshot is well under a megabyte).
 */
import { createConnection, type Socket } from 'node:net';
import { UserFacingError } from '../platform/user-facing-error.js';

const MAX_REPLY = 4 * 1024 * 1024;

/** The controller's process answered with an error, or went away. */
export class ControlCallError extends UserFacingError {
  constructor(
    message: string,
    readonly errorClass = 'GenericError',
  ) {
    super(message);
  }
}

export class ControlClient {
  private buf = '';
  private waiting: { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private gone: Error | null = null;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      if (this.buf.length > MAX_REPLY) {
        this.fail(new ControlCallError('control reply too long'));
        return;
      }
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch {
          this.fail(new ControlCallError('bad JSON from the controller process'));
          return;
        }
        this.waiting.shift()?.resolve(msg);
      }
    });
    socket.on('error', (e) => this.fail(new ControlCallError(`controller process: ${e.message}`)));
    socket.on('close', () => this.fail(new ControlCallError('controller process closed its control socket')));
  }

  private fail(e: Error): void {
    if (!this.gone) this.gone = e;
    this.socket.destroy();
    for (const w of this.waiting.splice(0)) w.reject(e);
  }

  /** Connect, read the greeting. */
  static connect(path: string): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path);
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        const c = new ControlClient(s);
        c.next().then(() => resolve(c), reject);
      });
    });
  }

  private next(): Promise<Record<string, unknown>> {
    if (this.gone) return Promise.reject(this.gone);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Run one command; resolves to its `return` value, rejects with ControlCallError on an `error` reply. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const run = async () => {
      const reply = this.next();
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
      const m = await reply;
      if ('error' in m) {
        const e = m.error as { class?: string; desc?: string } | null;
        throw new ControlCallError(e?.desc ?? 'error', e?.class);
      }
      return m.return;
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  close(): void {
    this.socket.destroy();
  }
}
