/**
 * A small run of the differential oracle inside `npm test`: hand-written and
 * generated programs on QEMU 7.2 (piix3-usb-uhci + usb-tablet over qtest)
 * and on our model must observe the same things. The full run (≥ 500
 * programs) is `npm run test:oracle`.
 */
import { formatDifference } from './compare.js';
import { createModelTarget } from './model-factory.js';
import { runOracle } from './oracle.js';
import { generatedPrograms, handWrittenPrograms } from './programs.js';
import { QemuTarget } from './qemu-target.js';

// QEMU is required (CI installs qemu-system-x86): without it this suite fails, it never skips.
describe('differential oracle against QEMU 7.2', () => {
  let qemu: QemuTarget | undefined;
  beforeAll(async () => {
    qemu = await QemuTarget.start();
  });
  afterAll(async () => {
    await qemu?.close();
  });

  const hand = handWrittenPrograms().filter((p) =>
    ['hand:cfg-dump', 'hand:io-read-every-offset', 'hand:enumerate', 'hand:errors', 'hand:short-packet', 'hand:frnum'].includes(p.name),
  );
  const programs = [...hand, ...generatedPrograms(4242, 14)];

  it(`runs ${programs.length} programs with no unexplained differences`, async () => {
    const r = await runOracle(programs, qemu!, createModelTarget, () => undefined);
    expect(r.programs).toBe(programs.length);
    expect(r.differences.map(formatDifference)).toEqual([]);
  }, 120_000);

  it('is not blind: a model with a broken register disagrees with QEMU', async () => {
    const broken = async () => {
      const t = await createModelTarget();
      const realRead = t.fn.ioRead.bind(t.fn);
      // PORTSC1 reads lose the connect bit: the oracle must notice.
      t.fn.ioRead = (offset, size) => (offset === 0x10 && size === 2 ? realRead(offset, size) & ~1 : realRead(offset, size));
      return t;
    };
    const enumerate = handWrittenPrograms().filter((p) => p.name === 'hand:enumerate');
    const r = await runOracle(enumerate, qemu!, broken, () => undefined);
    expect(r.differences.some((d) => d.label.startsWith('PORTSC1') || d.label.startsWith('io[0x10]'))).toBe(true);
  }, 60_000);
});
