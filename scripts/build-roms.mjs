#!/usr/bin/env node
// Rebuild roms/ from the declarative descriptor sources.
// Usage: node scripts/build-roms.mjs [--check]
//   --check: exit 1 if roms/ differs from what the sources produce.
// Compiles src/usb/rom-images.ts (and its imports) with the project's
// TypeScript into a temporary directory, then writes the images.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = mkdtempSync(join(tmpdir(), 'uhci-roms-'));
try {
  execFileSync(
    process.execPath,
    [join(root, 'node_modules/typescript/bin/tsc'), '--outDir', out, '--rootDir', root, '--module', 'NodeNext',
      '--moduleResolution', 'NodeNext', '--target', 'ES2022', '--strict', '--skipLibCheck', '--types', 'node',
      join(root, 'src/usb/rom-images.ts')],
    { stdio: 'inherit' },
  );
  writeFileSync(join(out, 'package.json'), '{"type":"module"}\n');
  const { buildRomImages } = await import(pathToFileURL(join(out, 'src/usb/rom-images.js')).href);
  const files = buildRomImages();
  const romDir = join(root, 'roms');
  const check = process.argv.includes('--check');
  let differ = 0;
  if (!check) mkdirSync(romDir, { recursive: true });
  for (const [name, bytes] of files) {
    const p = join(romDir, name);
    const same = existsSync(p) && Buffer.compare(readFileSync(p), Buffer.from(bytes)) === 0;
    if (!same) differ++;
    if (check) {
      if (!same) console.error(`roms/${name} differs from the sources`);
    } else {
      writeFileSync(p, bytes);
    }
  }
  for (const f of existsSync(romDir) ? readdirSync(romDir) : []) {
    if (!files.has(f)) console.error(`roms/${f} is not produced by the sources`);
  }
  console.log(`${files.size} ROM images, ${differ} ${check ? 'differ' : 'updated'}`);
  if (check && differ) process.exitCode = 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
