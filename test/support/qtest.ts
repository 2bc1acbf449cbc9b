/**
 * A small client for QEMU's qtest protocol (`-qtest stdio`), used by tests that
 * compare our model with a real QEMU 7.2.
 *
 * The protocol is line based: we write one command per line on QEMU's stdin and
 * QEMU answers each command, in order, with one line on stdout: `OK`,
 * `OK <value>`, `FAIL <reason>` or `ERR <reason>`. Lines starting with `IRQ`
 * (`IRQ raise N` / `IRQ lower N`, sent after `irq_intercept_in/out`) are
 * asynchronous notifications, not answers; they go to `onIrq` if given.
 * Source of the command set: QEMU 7.2 softmmu/qtest.c (facts only).
 *
 * Commands are pipelined: every command queues one waiter and answers are
 * matched to waiters in order, which the protocol guarantees.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

/** The QEMU process died, answered FAIL/ERR, or did not answer in time. */
export class QtestError extends Error {
  override name = 'QtestError';
}

export interface QtestStartOptions {
  /** QEMU binary; default `qemu-system-x86_64`. */
  binary?: string;
  /** Milliseconds to wait for each answer before failing; default 10000. */
  commandTimeoutMs?: number;
  /** Called for each asynchronous `IRQ raise|lower N` line. */
  onIrq?: (raised: boolean, line: number) => void;
}

interface Waiter {
  command: string;
  resolve: (line: string) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** Keep at most this much of QEMU's stderr for error messages. */
const STDERR_TAIL_CHARS = 4096;

export class QtestClient {
  private readonly waiters: Waiter[] = [];
  private stdoutBuf = '';
  private stderrTail = '';
  private exited = false;
  private readonly exitPromise: Promise<void>;

  private constructor(
    private readonly proc: ChildProcessWithoutNullStreams,
    private readonly timeoutMs: number,
    private readonly onIrq: ((raised: boolean, line: number) => void) | undefined,
  ) {
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (chunk: string) => this.onStdout(chunk));
    // QEMU logs every qtest command to stderr; drain it so QEMU never blocks on
    // a full pipe, and keep the tail for error reports.
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
    });
    // Writes after QEMU died fail with EPIPE; the waiters are rejected on exit.
    proc.stdin.on('error', () => undefined);
    // If this Node process ends without close() (an uncaught error, EPIPE on
    // stdout, process.exit), QEMU would outlive it: QEMU keeps running when
    // its qtest stdin closes. Kill it synchronously on our way out.
    const killOnExit = (): void => {
      if (!this.exited) proc.kill('SIGKILL');
    };
    process.once('exit', killOnExit);
    this.exitPromise = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        process.removeListener('exit', killOnExit);
        this.exited = true;
        this.failAll(new QtestError(`QEMU exited (code ${code}, signal ${signal}): ${this.stderrTail.trim()}`));
        resolve();
      });
    });
  }

  /**
   * Spawn QEMU with `args` plus `-qtest stdio` (added here; do not pass it) and
   * wait until it answers a first command, i.e. until the machine is built.
   */
  static async start(args: string[], opts: QtestStartOptions = {}): Promise<QtestClient> {
    const binary = opts.binary ?? 'qemu-system-x86_64';
    const proc = spawn(binary, [...args, '-qtest', 'stdio'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const spawned = new Promise<void>((resolve, reject) => {
      proc.once('spawn', () => resolve());
      proc.once('error', (err) => reject(new QtestError(`cannot start ${binary}: ${err.message}`)));
    });
    await spawned;
    const client = new QtestClient(proc, opts.commandTimeoutMs ?? 10_000, opts.onIrq);
    try {
      // `endianness` answers OK big|little; it proves the qtest channel works.
      await client.command('endianness');
    } catch (err) {
      await client.close();
      throw err;
    }
    return client;
  }

  /** Send one raw command line and return the answer after `OK` ('' for a bare OK). */
  command(line: string): Promise<string> {
    if (this.exited) return Promise.reject(new QtestError(`QEMU has exited; cannot send: ${line}`));
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.findIndex((w) => w.timer === timer);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new QtestError(`no answer to "${line}" within ${this.timeoutMs} ms`));
        // Answers are matched by order; after a lost answer the stream is out
        // of step, so the session cannot go on.
        this.proc.kill('SIGKILL');
      }, this.timeoutMs);
      this.waiters.push({
        command: line,
        timer,
        reject,
        resolve: (answer) => {
          if (answer === 'OK') resolve('');
          else if (answer.startsWith('OK ')) resolve(answer.slice(3));
          else reject(new QtestError(`"${line}" → ${answer}`));
        },
      });
      this.proc.stdin.write(line + '\n');
    });
  }

  private async value(line: string): Promise<number> {
    const answer = await this.command(line);
    const v = Number.parseInt(answer, 16);
    if (!/^0x[0-9a-f]+$/i.test(answer) || Number.isNaN(v)) {
      throw new QtestError(`"${line}" → unexpected answer "OK ${answer}"`);
    }
    return v;
  }

  async outb(port: number, v: number): Promise<void> {
    await this.command(`outb ${hex(port)} ${hex(v & 0xff)}`);
  }
  async outw(port: number, v: number): Promise<void> {
    await this.command(`outw ${hex(port)} ${hex(v & 0xffff)}`);
  }
  async outl(port: number, v: number): Promise<void> {
    await this.command(`outl ${hex(port)} ${hex(v >>> 0)}`);
  }
  inb(port: number): Promise<number> {
    return this.value(`inb ${hex(port)}`);
  }
  inw(port: number): Promise<number> {
    return this.value(`inw ${hex(port)}`);
  }
  inl(port: number): Promise<number> {
    return this.value(`inl ${hex(port)}`);
  }

  async writeb(addr: number, v: number): Promise<void> {
    await this.command(`writeb ${hex(addr)} ${hex(v & 0xff)}`);
  }
  async writew(addr: number, v: number): Promise<void> {
    await this.command(`writew ${hex(addr)} ${hex(v & 0xffff)}`);
  }
  async writel(addr: number, v: number): Promise<void> {
    await this.command(`writel ${hex(addr)} ${hex(v >>> 0)}`);
  }
  readb(addr: number): Promise<number> {
    return this.value(`readb ${hex(addr)}`);
  }
  readw(addr: number): Promise<number> {
    return this.value(`readw ${hex(addr)}`);
  }
  readl(addr: number): Promise<number> {
    return this.value(`readl ${hex(addr)}`);
  }

  /** Guest-physical read: `read ADDR LEN` → `OK 0x<2*LEN hex digits>`. */
  async readMem(addr: number, len: number): Promise<Uint8Array> {
    if (len === 0) return new Uint8Array(0);
    const answer = await this.command(`read ${hex(addr)} ${hex(len)}`);
    if (!answer.startsWith('0x') || answer.length !== 2 + 2 * len) {
      throw new QtestError(`read ${hex(addr)} ${len}: unexpected answer "${answer.slice(0, 40)}"`);
    }
    return Uint8Array.from(Buffer.from(answer.slice(2), 'hex'));
  }

  /** Guest-physical write: `write ADDR LEN 0x<hex>`. */
  async writeMem(addr: number, bytes: Uint8Array): Promise<void> {
    if (bytes.length === 0) return;
    await this.command(`write ${hex(addr)} ${hex(bytes.length)} 0x${Buffer.from(bytes).toString('hex')}`);
  }

  /** Route the named device's IRQ outputs to `IRQ` lines (see onIrq). */
  async irqInterceptIn(qomPath: string): Promise<void> {
    await this.command(`irq_intercept_in ${qomPath}`);
  }

  /** Kill QEMU and wait for it to exit. Safe to call twice. */
  async close(): Promise<void> {
    if (!this.exited) {
      this.proc.stdin.end();
      this.proc.kill('SIGKILL');
    }
    await this.exitPromise;
  }

  /** The last few KiB QEMU wrote to stderr (its qtest log and errors). */
  get stderr(): string {
    return this.stderrTail;
  }

  private onStdout(chunk: string): void {
    this.stdoutBuf += chunk;
    for (;;) {
      const nl = this.stdoutBuf.indexOf('\n');
      if (nl < 0) break;
      const line = this.stdoutBuf.slice(0, nl).replace(/\r$/, '');
      this.stdoutBuf = this.stdoutBuf.slice(nl + 1);
      this.onLine(line);
    }
  }

  private onLine(line: string): void {
    if (line.startsWith('IRQ')) {
      const m = /^IRQ (raise|lower) (\d+)$/.exec(line);
      if (m && this.onIrq) this.onIrq(m[1] === 'raise', Number(m[2]));
      return;
    }
    const w = this.waiters.shift();
    if (!w) return; // an answer nobody asked for (after a timeout): ignore
    clearTimeout(w.timer);
    w.resolve(line);
  }

  private failAll(err: Error): void {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }
}

function hex(n: number): string {
  return '0x' + n.toString(16);
}
