#!/usr/bin/env node
// Device-model wrapper for xl.cfg's device_model_override: QEMU's arguments in, uhci-dm + QEMU out.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, '..', 'dist', 'src', 'cli', 'qemu-wrapper.js');
if (!existsSync(main)) {
  process.stderr.write('uhci-dm-qemu: not built yet; run `npm run build` first\n');
  process.exit(2);
}
const { qemuWrapperMain } = await import(main);
process.exitCode = await qemuWrapperMain(process.argv.slice(2));
