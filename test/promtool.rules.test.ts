import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { requireBinary } from './support/binaries.ts';

/*
 * `promtool test rules` on every hand-written unit test file in prometheus/tests: each alert fires at its threshold
 * and its `for` boundary and not just below, its volume guard holds, it resolves when the condition ends, and a
 * quiet pipeline raises nothing (quiet.test.yml). One vitest test per file, so a failure names the file; the
 * slowest file takes about 6 s here (3-day SLO windows over hours of 1-minute samples).
 */

const ROOT = resolve(import.meta.dirname, '..');
const DIR = resolve(ROOT, 'prometheus/tests');
const run = promisify(execFile);
const FILES = readdirSync(DIR)
  .filter((f) => f.endsWith('.test.yml'))
  .sort();

describe('promtool test rules', () => {
  it('finds the unit test files', () => {
    expect(FILES.length).toBeGreaterThanOrEqual(10);
  });

  for (const file of FILES) {
    it(file, { timeout: 45_000 }, async () => {
      const promtool = requireBinary('promtool');
      try {
        const { stdout } = await run(promtool, ['test', 'rules', file], { cwd: DIR, timeout: 40_000 });
        expect(stdout).toMatch(/SUCCESS/);
      } catch (error) {
        const e = error as { stdout?: string; stderr?: string; message: string };
        throw new Error(`promtool test rules ${file} failed:\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
      }
    });
  }
});
