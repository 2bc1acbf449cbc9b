import { byteSizeOption } from '../../src/cli/byte-size.js';
import { parseArgs, UsageError } from '../../src/cli/args.js';

const size = (v?: string) => byteSizeOption(parseArgs(v === undefined ? [] : ['--record-max', v], { 'record-max': { value: true, help: '' } }), 'record-max', 7 << 20, 1 << 16, 2 ** 40);

test('--record-max sizes: bytes or K/M/G/T (binary), default when absent, refused out of range or malformed', () => {
  expect(size()).toBe(7 << 20);
  expect(size('65536')).toBe(65536);
  expect(size('512M')).toBe(512 * 2 ** 20);
  expect(size('2GiB')).toBe(2 * 2 ** 30);
  expect(size('1t')).toBe(2 ** 40);
  for (const bad of ['1k', '2T', '1.5G', '-1G', 'lots', '']) expect(() => size(bad)).toThrow(UsageError);
});
