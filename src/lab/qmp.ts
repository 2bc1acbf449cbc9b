/**
 * A minimal QMP client (QEMU Machine Protocol: JSON objects, one per
 * line, over a UNIX socket; the server greets with {"QMP": ...} and
 * accepts commands after `qmp_capabilities`). The lab uses it to inject
 * input into QEMU's own USB devices in --reference mode.
 */
import { connect, type Socket } from 'node:net';

export class QmpError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'QmpError';
  }
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export class QmpClient {
  private buf = '';
  private readonly queue: Pending[] = [];
  private greeted: Promise<void>;

  private constructor(private readonly sock: Socket) {
    let greet!: () => void;
    let fail!: (e: Error) => void;
    this.greeted = new Promise<void>((res, rej) => {
      greet = res;
      fail = rej;
    });
    let gotGreeting = false;
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      this.buf += chunk;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as { QMP?: unknown; return?: unknown; error?: { desc?: string }; event?: string };
        if (msg.QMP !== undefined && !gotGreeting) {
          gotGreeting = true;
          greet();
        } else if (msg.event !== undefined) {
          // asynchronous events are not needed here
        } else {
          const p = this.queue.shift();
          if (!p) continue;
          if (msg.error) p.reject(new QmpError(msg.error.desc ?? 'QMP error'));
          else p.resolve(msg.return);
        }
      }
    });
    const onGone = (e?: Error) => {
      const err = e ?? new QmpError('QMP connection closed');
      fail(err);
      this.queue.splice(0).forEach((p) => p.reject(err));
    };
    sock.on('error', onGone);
    sock.on('close', () => onGone());
  }

  /** Connect, retrying while QEMU has not created the socket yet. */
  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const sock = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const c = new QmpClient(sock);
        await c.greeted;
        await c.execute('qmp_capabilities');
        return c;
      } catch (e) {
        if (Date.now() > deadline) throw new QmpError(`cannot connect to QMP at ${path}: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ resolve, reject });
      this.sock.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });
  }

  close(): void {
    this.sock.destroy();
  }
}
