/**
 * PC scancodes (set 1) ↔ HID keyboard usages, as QEMU 7.2's HID keyboard
 * translates them (hw/input/hid.c hid_usage_keys, ui/input-keymap.c
 * qemu_input_key_value_to_scancode).
 *
 * Table index: the scancode without its release bit (0x00-0x7f), or 0x80 |
 * scancode for codes that follow an 0xE0 prefix (and the E1 1D sequence).
 * Value: the HID usage (keyboard page 0x07); 0xE8/0xE9 mark the E0/E1 prefix
 * bytes themselves; 0 = ignored.
 */
const TABLE_HEX = [
  '00291e1f20212223242526272d2e2a2b', // 0x00
  '141a0815171c180c12132f3028e00416', // 0x10
  '07090a0b0d0e0f333435e1311d1b0619', // 0x20
  '051110363738e555e22c393a3b3c3d3e', // 0x30
  '3f4041424353475f6061565c5d5e5759', // 0x40
  '5a5b6263460064444568696a6b6c6d6e', // 0x50
  'e8e97172730000000000008500000000', // 0x60
  '8800008700000000008a008b0089e765', // 0x70
  '00000000000000000000000000000000', // 0x80
  '00000000000000000000000058e40000', // 0x90
  '7f000000000000000000000000008100', // 0xa0
  '8000000000540046e600000000000000', // 0xb0
  '000000000048484a524b0050004f004d', // 0xc0
  '514e494c00000000000000e3e7656600', // 0xd0
  '00000000000000000000000000000000', // 0xe0
  '00000000000000000000000000000000', // 0xf0
].join('');

function parseTable(): Uint8Array {
  const t = Uint8Array.from(Buffer.from(TABLE_HEX, 'hex'));
  if (t.length !== 256) throw new Error(`scancode table has ${t.length} entries`);
  return t;
}

/** QEMU hid_usage_keys (256 entries). */
export const HID_USAGE_BY_SCANCODE: Uint8Array = parseTable();

export function usageForScancodeIndex(index: number): number {
  return HID_USAGE_BY_SCANCODE[index & 0xff]!;
}

export class UnsupportedKeyError extends Error {
  override name = 'UnsupportedKeyError';
}

/** Usages whose scancode is not the table's first match (QEMU's qcode → scancode choice). */
const SCANCODE_OVERRIDES: Record<number, number> = {
  0xe7: 0xdc, // Right GUI: E0 5C
  0x65: 0xdd, // Application (Menu): E0 5D
};
const USAGE_PAUSE = 0x48;

const SCANCODE_BY_USAGE: Map<number, number> = (() => {
  const m = new Map<number, number>();
  for (let i = 1; i < 256; i++) {
    const u = HID_USAGE_BY_SCANCODE[i]!;
    if (u === 0 || u === 0xe8 || u === 0xe9 || m.has(u)) continue;
    m.set(u, i);
  }
  for (const [u, i] of Object.entries(SCANCODE_OVERRIDES)) m.set(Number(u), i);
  return m;
})();

/** Whether keyDown/keyUp accept this usage. */
export function isSupportedUsage(usage: number): boolean {
  return usage === USAGE_PAUSE || SCANCODE_BY_USAGE.has(usage);
}

/**
 * The scancodes QEMU queues for one press or release of the key with this
 * usage: 1 byte, E0 + 1 byte for extended keys, and E1 1D 45 (release
 * E1 9D C5) for Pause.
 */
export function scancodesForUsage(usage: number, down: boolean): number[] {
  const up = down ? 0 : 0x80;
  if (usage === USAGE_PAUSE) return [0xe1, 0x1d | up, 0x45 | up];
  const idx = SCANCODE_BY_USAGE.get(usage);
  if (idx === undefined) throw new UnsupportedKeyError(`HID usage 0x${usage.toString(16)} has no PC scancode`);
  return idx & 0x80 ? [0xe0, (idx & 0x7f) | up] : [idx | up];
}

/** HID modifier usages. */
export const USAGE_LEFT_SHIFT = 0xe1;

/** US layout: character → [usage, shift]. */
const US_LAYOUT: Map<string, [number, boolean]> = (() => {
  const m = new Map<string, [number, boolean]>();
  for (let k = 0; k < 26; k++) {
    m.set(String.fromCharCode(0x61 + k), [0x04 + k, false]);
    m.set(String.fromCharCode(0x41 + k), [0x04 + k, true]);
  }
  '1234567890'.split('').forEach((c, k) => m.set(c, [0x1e + k, false]));
  '!@#$%^&*()'.split('').forEach((c, k) => m.set(c, [0x1e + k, true]));
  const pairs: [string, string, number][] = [
    ['-', '_', 0x2d], ['=', '+', 0x2e], ['[', '{', 0x2f], [']', '}', 0x30], ['\\', '|', 0x31],
    [';', ':', 0x33], ["'", '"', 0x34], ['`', '~', 0x35], [',', '<', 0x36], ['.', '>', 0x37], ['/', '?', 0x38],
  ];
  for (const [a, b, u] of pairs) {
    m.set(a, [u, false]);
    m.set(b, [u, true]);
  }
  m.set('\n', [0x28, false]);
  m.set('\t', [0x2b, false]);
  m.set(' ', [0x2c, false]);
  m.set('\b', [0x2a, false]);
  return m;
})();

/** Key strokes for `text` on a US keyboard layout. */
export function usagesForText(text: string): { usage: number; shift: boolean }[] {
  return [...text].map((c) => {
    const e = US_LAYOUT.get(c);
    if (!e) throw new UnsupportedKeyError(`no US-layout key for ${JSON.stringify(c)}`);
    return { usage: e[0], shift: e[1] };
  });
}
