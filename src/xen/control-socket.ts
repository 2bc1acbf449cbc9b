/**
 * The control socket: a UNIX stream socket speaking JSON lines in the shape
 * of QMP (a greeting, then one {"execute": ..., "arguments": {...}} per line,
 * answered by {"return": ...} or {"error": {"class", "desc"}}), for hot
 * add/remove (the old `xm usb-add/usb-del`), `info usb`, save/restore of the
 * function, status and quit.
 *
 * Commands: qmp_capabilities; usb_add {devname, port?}; usb_del {devname |
 * port}; query-usb (also "info usb"); save {file?}; restore {file | snapshot};
 * query-status; input-send-event {events, device?} (see input-events.ts); quit;
 * human-monitor-command {"command-line": "info usb" |
 * "usb_add NAME" | "usb_del NAME" | "inspect [N | FROM-TO | anomalies]"};
 * inspect {from?, to?, last?, json?, quiet?} (live inspection, when the
 * server runs with --inspect or --pcap: the decoded timeline of recent
 * frames and the anomalies found so far, as text or as the JSON object of
 * `uhci-dm inspect --json`).
 */
import { UserFacingError } from '../platform/user-facing-error.js';
import { chmodSync, existsSync, lstatSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from '../platform/logger.js';
import type { PortInfo, UsbPorts } from './usb-ports.js';
import { sendInputEvents } from './input-events.js';

/** Arguments of the inspect command: frames from..to, or the last N; JSON or text; anomalies only. */
export interface InspectRequest {
  from?: number;
  to?: number;
  last?: number;
  json: boolean;
  quiet: boolean;
}

export interface ControlTarget {
  ports: UsbPorts;
  /** Live inspection; absent when the server runs without it. */
  inspect?(req: InspectRequest): string | Record<string, unknown>;
  /** Status for query-status (server id, counters...). */
  status(): Record<string, unknown>;
  /** Stop serving (quit). */
  quit(): void;
}

export class ControlSocketError extends UserFacingError {}

class CommandError extends Error {}

/** Commands that only read state (logged at debug level when they succeed). */
const READ_ONLY_COMMANDS: ReadonlySet<string> = new Set(['query-usb', 'info usb', 'info_usb', 'query-status', 'inspect', 'qmp_capabilities']);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export function formatInfoUsb(list: PortInfo[]): string {
  if (!list.length) return 'no USB devices attached\n';
  const h4 = (n: number) => n.toString(16).padStart(4, '0');
  return list.map((d) => `  Device 0.${d.address}, Port ${d.port}, Speed ${d.speed === 'low' ? '1.5' : '12'} Mb/s, Product ${d.product} (${h4(d.vendorId)}:${h4(d.productId)}, ${d.kind})\n`).join('');
}

export class ControlServer {
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly path: string,
    private readonly target: ControlTarget,
    private readonly logger?: Logger,
  ) {}

  /** Listen on `path` (a stale socket file is replaced; the socket is made 0600). */
  static listen(path: string, target: ControlTarget, logger?: Logger, version = '0.1.0'): Promise<ControlServer> {
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new ControlSocketError(`${path} exists and is not a socket`);
      unlinkSync(path);
    }
    return new Promise((resolve, reject) => {
      const server = net.createServer();
      const cs = new ControlServer(server, path, target, logger);
      server.on('connection', (s) => cs.accept(s, version));
      server.once('error', (e) => reject(new ControlSocketError(`control socket ${path}: ${e.message}`)));
      server.listen(path, () => {
        chmodSync(path, 0o600);
        logger?.log('info', 'control', 'control socket listening', { path });
        resolve(cs);
      });
    });
  }

  private accept(s: net.Socket, version: string): void {
    this.sockets.add(s);
    s.setEncoding('utf8');
    const send = (o: Json) => {
      if (!s.destroyed) s.write(JSON.stringify(o) + '\n');
    };
    send({ QMP: { version: { 'uhci-dm': version }, capabilities: [] } });
    let buf = '';
    s.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 1 << 20) {
        send({ error: { class: 'GenericError', desc: 'line too long' } });
        s.destroy();
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) send(this.execute(line));
      }
    });
    s.on('error', () => s.destroy());
    s.on('close', () => this.sockets.delete(s));
  }

  /** Run one JSON command line; returns the response object. */
  execute(line: string): Json {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      return { error: { class: 'GenericError', desc: 'invalid JSON' } };
    }
    const m = msg as { execute?: unknown; arguments?: unknown; id?: Json };
    const id: { [k: string]: Json } = m && typeof m === 'object' && 'id' in m ? { id: m.id ?? null } : {};
    if (!m || typeof m !== 'object' || typeof m.execute !== 'string') {
      return { error: { class: 'GenericError', desc: 'expected {"execute": NAME, "arguments": {...}}' }, ...id };
    }
    const args = (m.arguments && typeof m.arguments === 'object' ? m.arguments : {}) as Record<string, unknown>;
    try {
      const ret = this.run(m.execute, args);
      // Queries change nothing and tools poll them (the Xen lab asks query-usb every 200 ms): debug level.
      this.logger?.log(READ_ONLY_COMMANDS.has(m.execute) ? 'debug' : 'info', 'control', m.execute, { ok: true });
      return { return: ret, ...id };
    } catch (e) {
      const desc = (e as Error).message;
      this.logger?.log('warn', 'control', m.execute, { ok: false, error: desc });
      return { error: { class: e instanceof CommandError && desc.startsWith('unknown command') ? 'CommandNotFound' : 'GenericError', desc }, ...id };
    }
  }

  private run(cmd: string, args: Record<string, unknown>): Json {
    const ports = this.target.ports;
    const str = (k: string): string => {
      const v = args[k];
      if (typeof v !== 'string' || !v) throw new CommandError(`argument '${k}' (string) is required`);
      return v;
    };
    switch (cmd) {
      case 'qmp_capabilities':
        return {};
      case 'usb_add': {
        const port = args.port === undefined ? undefined : Number(args.port);
        return { port: ports.add(str('devname'), port) };
      }
      case 'usb_del': {
        if (args.port !== undefined) return { port: ports.remove(Number(args.port)) };
        const name = str('devname');
        const m = /^(?:port:)?(\d+)$/.exec(name);
        return { port: ports.remove(m ? Number(m[1]) : name) };
      }
      case 'query-usb':
      case 'info usb':
      case 'info_usb':
        return ports.list() as unknown as Json;
      case 'save': {
        const snap = ports.snapshot() as unknown as Json;
        if (args.file === undefined) return snap;
        const file = str('file');
        writeFileSync(file, JSON.stringify(snap) + '\n', { mode: 0o600 });
        return { file };
      }
      case 'restore': {
        const snap = args.snapshot !== undefined ? args.snapshot : JSON.parse(readFileSync(str('file'), 'utf8'));
        ports.restore(snap);
        return ports.list() as unknown as Json;
      }
      case 'input-send-event': {
        const dev = args.device;
        if (dev !== undefined && !(typeof dev === 'number' || dev === 'tablet' || dev === 'mouse' || dev === 'keyboard')) {
          throw new CommandError("'device' must be a port number or tablet|mouse|keyboard");
        }
        const pick = (kind: 'abs' | 'rel' | 'key') => ports.emulated(dev ?? (kind === 'abs' ? 'tablet' : kind === 'rel' ? 'mouse' : 'keyboard'));
        return { queued: sendInputEvents(args.events, pick) };
      }
      case 'inspect': {
        const frame = (k: string): number | undefined => {
          const v = args[k];
          if (v === undefined) return undefined;
          if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new CommandError(`argument '${k}' must be a positive integer`);
          return v;
        };
        const flag = (k: string): boolean => {
          const v = args[k];
          if (v !== undefined && typeof v !== 'boolean') throw new CommandError(`argument '${k}' must be true or false`);
          return v === true;
        };
        return this.inspect({ from: frame('from'), to: frame('to'), last: frame('last'), json: flag('json'), quiet: flag('quiet') });
      }
      case 'query-status':
        return this.target.status() as Json;
      case 'quit':
        setImmediate(() => this.target.quit());
        return {};
      case 'human-monitor-command': {
        const line = str('command-line').trim();
        const [verb, ...rest] = line.split(/\s+/);
        if (line === 'info usb') return formatInfoUsb(ports.list());
        if (verb === 'usb_add' && rest[0]) return `added on port ${ports.add(rest[0])}\n`;
        if (verb === 'usb_del' && rest[0]) {
          const m = /^(?:port:)?(\d+)$/.exec(rest[0]);
          return `removed from port ${ports.remove(m ? Number(m[1]) : rest[0])}\n`;
        }
        if (verb === 'inspect') {
          const a = rest[0];
          const range = a === undefined ? null : /^(\d+)-(\d+)$/.exec(a);
          if (a === undefined || a === 'anomalies') return this.inspect({ json: false, quiet: a === 'anomalies' });
          if (range) return this.inspect({ from: Number(range[1]), to: Number(range[2]), json: false, quiet: false });
          if (/^\d+$/.test(a) && Number(a) > 0) return this.inspect({ last: Number(a), json: false, quiet: false });
          throw new CommandError(`usage: inspect [N | FROM-TO | anomalies]`);
        }
        throw new CommandError(`unknown monitor command '${line}' (info usb, usb_add NAME, usb_del NAME|PORT, inspect [N | FROM-TO | anomalies])`);
      }
      default:
        throw new CommandError(`unknown command '${cmd}'`);
    }
  }

  private inspect(req: InspectRequest): Json {
    if (!this.target.inspect) throw new CommandError('live inspection is off (start uhci-dm xen with --inspect or --pcap)');
    return this.target.inspect(req) as Json;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => {
      this.server.close(() => {
        try {
          unlinkSync(this.path);
        } catch {
          // already gone
        }
        resolve();
      });
    });
  }
}
