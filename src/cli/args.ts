/**
 * Command-line parsing without dependencies: `--name value`, `--name=value`,
 * boolean flags, and single-dash qemu-dm style options (`-usbdevice tablet`).
 * Unknown or malformed options raise UsageError (exit code 2, no stack).
 */
export class UsageError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'UsageError';
  }
}

export interface OptionSpec {
  /** Takes a value (true) or is a boolean flag (false). */
  value: boolean;
  /** May be given several times (values collected in order). */
  multiple?: boolean;
  help: string;
}

export interface Parsed {
  options: Map<string, string[]>;
  /** Every option with its value, in command-line order (across names). */
  order: { name: string; value: string }[];
  positionals: string[];
}

export function parseArgs(argv: string[], spec: Record<string, OptionSpec>): Parsed {
  const options = new Map<string, string[]>();
  const order: { name: string; value: string }[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    let name = arg.replace(/^--?/, '');
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const s = spec[name];
    if (!s) throw new UsageError(`unknown option ${arg}`);
    if (s.value) {
      if (value === undefined) {
        value = argv[++i];
        if (value === undefined) throw new UsageError(`option ${arg} needs a value`);
      }
    } else {
      if (value !== undefined) throw new UsageError(`option --${name} takes no value`);
      value = 'true';
    }
    const list = options.get(name) ?? [];
    if (list.length && !s.multiple) throw new UsageError(`option --${name} given twice`);
    list.push(value);
    options.set(name, list);
    order.push({ name, value });
  }
  return { options, order, positionals };
}

export function optionHelp(spec: Record<string, OptionSpec>): string {
  return Object.entries(spec)
    .map(([k, s]) => `  --${k}${s.value ? ' VALUE' : ''}`.padEnd(28) + s.help)
    .join('\n');
}

export function intOption(p: Parsed, name: string, def: number, min: number, max: number): number {
  const v = p.options.get(name)?.[0];
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer in ${min}..${max}, got '${v}'`);
  return n;
}
