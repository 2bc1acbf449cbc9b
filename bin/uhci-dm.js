#!/usr/bin/env node
// Entry point: the compiled CLI lives in dist/ (npm run build).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, '..', 'dist', 'src', 'cli', 'main.js');
if (!existsSync(main)) {
  process.stderr.write('uhci-dm: not built yet; run `npm run build` first\n');
  process.exit(2);
}
// A closed stdout (e.g. `uhci-dm demo | head`) ends the program quietly.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});
const { run } = await import(main);
process.exitCode = await run(process.argv.slice(2));
