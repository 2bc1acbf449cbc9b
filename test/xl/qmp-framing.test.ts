import fc from 'fast-check';
import { parseQmpMessage, QmpFramingError, QmpSplitter } from '../../src/xl/qmp-framing.js';

const MESSAGES = [
  '{"execute":"qmp_capabilities"}',
  '{"execute":"device_add","arguments":{"driver":"usb-host","id":"a}b{","bus":"xenusb-0.0","port":"1"}}',
  '{"return":{"x":"quote \\" brace } bracket ] backslash \\\\"}}',
  '{"event":"DEVICE_DELETED","data":{"device":"t","path":"/machine/peripheral/t"},"timestamp":{"seconds":1,"microseconds":2}}',
  '{"return":[{"a":[1,2,{"b":[]}]}]}',
];

test('whole messages come out however the stream is cut (CRLF or nothing between)', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...MESSAGES), { minLength: 1, maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 50 }), fc.boolean(), (msgs, cuts, crlf) => {
      const bytes = Buffer.from(msgs.join(crlf ? '\r\n' : ''), 'utf8');
      const s = new QmpSplitter(4096);
      const out: string[] = [];
      let off = 0;
      for (let i = 0; off < bytes.length; i++) {
        const n = cuts[i % cuts.length]!;
        out.push(...s.push(bytes.subarray(off, off + n)));
        off += n;
      }
      expect(out).toEqual(msgs);
      out.forEach((t) => expect(typeof parseQmpMessage(t)).toBe('object'));
    }),
  );
});

test('a message over the cap is refused before it is buffered whole', () => {
  const s = new QmpSplitter(100);
  expect(() => s.push(Buffer.from('{"a":"' + 'x'.repeat(200)))).toThrow(QmpFramingError);
  const t = new QmpSplitter(100);
  for (let i = 0; i < 9; i++) t.push(Buffer.from('{"a":"xxxxxxxxxx'.slice(i ? 6 : 0)));
  expect(() => t.push(Buffer.from('x'.repeat(20)))).toThrow(/over 100 bytes/);
});

test('bytes outside an object, and non-objects, are protocol errors', () => {
  expect(() => new QmpSplitter(100).push(Buffer.from('x{}'))).toThrow(/unexpected byte/);
  expect(() => new QmpSplitter(100).push(Buffer.from('[1]'))).toThrow(/unexpected byte/);
  expect(() => parseQmpMessage('{"a":}')).toThrow(/bad JSON/);
});
