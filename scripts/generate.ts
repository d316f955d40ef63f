/**
 * `npm run generate`: writes every generated file (see scripts/generators/outputs.ts) from its source of truth.
 * `--check` writes nothing and exits 1 when a committed file is out of date (what the test does, for CI logs).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GENERATED_OUTPUTS } from './generators/outputs.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');

let stale = 0;
for (const output of GENERATED_OUTPUTS) {
  const file = resolve(ROOT, output.path);
  const text = await output.render();
  const current = await readFile(file, 'utf8').catch(() => undefined);
  if (current === text) {
    console.log(`up to date  ${output.path}`);
    continue;
  }
  if (check) {
    stale++;
    console.log(`OUT OF DATE ${output.path}`);
    continue;
  }
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, text);
  console.log(`wrote       ${output.path}`);
}
if (stale > 0) {
  console.error(`${stale} generated file(s) out of date: run npm run generate`);
  process.exit(1);
}
