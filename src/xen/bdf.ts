/** A PCI function address on segment 0 (the only segment an HVM guest has). */
export interface PciBdf {
  bus: number;
  device: number;
  fn: number;
}

export class BdfSyntaxError extends Error {
  constructor(text: string) {
    super(`bad PCI address '${text}' (expected BB:DD.F, e.g. 00:05.0, hexadecimal; optional 0000: segment)`);
    this.name = 'BdfSyntaxError';
  }
}

/** Parse "00:05.0" or "0000:00:05.0" (hex, as lspci and xl print them). */
export function parseBdf(text: string): PciBdf {
  const m = /^(?:(0{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$/.exec(text.trim());
  if (!m) throw new BdfSyntaxError(text);
  const bus = parseInt(m[2]!, 16);
  const device = parseInt(m[3]!, 16);
  const fn = parseInt(m[4]!, 10);
  if (device > 0x1f) throw new BdfSyntaxError(text);
  return { bus, device, fn };
}

export function formatBdf(b: PciBdf): string {
  const h = (n: number) => n.toString(16).padStart(2, '0');
  return `${h(b.bus)}:${h(b.device)}.${b.fn}`;
}
