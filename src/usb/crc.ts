/**
 * USB CRCs (USB 2.0 §8.3.5), table driven and allocation free.
 *
 * Bit order: USB sends every field least significant bit first (§8.1), so
 * both functions work on values in *wire order*: bit 0 is the first bit on
 * the bus. In that representation
 * - a token's 16 bits after the PID are `addr | endp << 7 | crc5 << 11`, and
 * - a data packet's CRC16 goes out as two bytes, low byte first.
 * The USB-IF white paper "Cyclic Redundancy Checks in USB" writes fields
 * most significant bit = first bit sent; its examples therefore appear
 * bit-reversed relative to the values here (see the tests).
 *
 * CRC5: generator x^5 + x^2 + 1, register seeded with ones, remainder
 * inverted (§8.3.5.1). CRC16: generator x^16 + x^15 + x^2 + 1, same seeding
 * and inversion (§8.3.5.2); in the CRC catalogue this is CRC-16/USB
 * (reflected, init 0xFFFF, xorout 0xFFFF, check("123456789") = 0xB4C8).
 */

/** CRC5 of every 11-bit token/SOF field value (wire order), precomputed. */
const CRC5_TABLE: Uint8Array = (() => {
  const table = new Uint8Array(1 << 11);
  for (let v = 0; v < table.length; v++) {
    let crc = 0x1f;
    for (let i = 0; i < 11; i++) {
      const bit = (v >>> i) & 1;
      // Reflected form of generator 0b00101: 0b10100.
      crc = (crc ^ bit) & 1 ? (crc >>> 1) ^ 0x14 : crc >>> 1;
    }
    table[v] = crc ^ 0x1f;
  }
  return table;
})();

/** One-byte step of the reflected CRC16 (reflected generator 0xA001); shared with the wire-time model. */
export const CRC16_TABLE: Uint16Array = (() => {
  const table = new Uint16Array(256);
  for (let b = 0; b < 256; b++) {
    let crc = b;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
    table[b] = crc;
  }
  return table;
})();

/**
 * CRC5 of an 11-bit field in wire order (token: `addr | endp << 7`; SOF: the
 * frame number). Returns the 5-bit CRC in wire order (bit 0 sent first).
 */
export function crc5(field11: number): number {
  return CRC5_TABLE[field11 & 0x7ff]!;
}

/**
 * CRC16 over `length` bytes of `data` starting at `offset`, in wire order:
 * the low byte is sent first, each byte LSB first.
 */
export function crc16(data: Uint8Array, offset = 0, length = data.length - offset): number {
  let crc = 0xffff;
  const end = offset + length;
  for (let i = offset; i < end; i++) crc = (crc >>> 8) ^ CRC16_TABLE[(crc ^ data[i]!) & 0xff]!;
  return (crc ^ 0xffff) & 0xffff;
}

/**
 * The CRC16 register (before the final inversion) after a receiver has
 * clocked in data *and* its transmitted CRC. A correct packet always leaves
 * this constant (§8.3.5.2 residual 0x800D, written MSB-first; 0xB001 in
 * wire order).
 */
export const CRC16_RESIDUAL = 0xb001;

/** Raw register after `length` bytes (no final inversion); for residual checks. */
export function crc16Register(data: Uint8Array, offset = 0, length = data.length - offset): number {
  return crc16(data, offset, length) ^ 0xffff;
}
