import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GENERATED_OUTPUTS } from '../scripts/generators/outputs.ts';

const ROOT = resolve(import.meta.dirname, '..');

describe('generated files are up to date (run `npm run generate` when this fails)', () => {
  for (const output of GENERATED_OUTPUTS) {
    it(output.path, async () => {
      const onDisk = await readFile(resolve(ROOT, output.path), 'utf8');
      expect(onDisk).toBe(await output.render());
    });
  }
});
