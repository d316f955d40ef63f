import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { watch } from '../src/check/command.ts';
import { checkOptions } from '../src/check/options.ts';
import { freePort } from './support/ports.ts';

const dir = mkdtempSync(join(tmpdir(), 'ccm-check-watch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('check --watch', () => {
  it('a stop that comes while a check is under way ends the loop after that check, not after the next interval', async () => {
    // A closed port: the check finds the receiver down at once. The stop arrives as its finding is printed, while the
    // check still has its state to save: the moment a SIGTERM after the first output line lands in.
    const port = await freePort();
    const options = checkOptions([
      '--url',
      `http://127.0.0.1:${port}/health/callbacks`,
      '--state',
      join(dir, 'state.json'),
      '--watch',
      '1h',
    ]);
    const stop = new AbortController();
    const lines: string[] = [];
    const io = {
      out: (line: string) => {
        lines.push(line);
        stop.abort();
      },
      err: () => {},
      now: Date.now,
    };
    const ended = watch(options, stop.signal, io).then(() => 'ended' as const);
    const waited = new Promise<'still waiting'>((resolve) =>
      setTimeout(() => resolve('still waiting'), 20_000).unref(),
    );
    expect(await Promise.race([ended, waited])).toBe('ended');
    expect(lines.length).toBeGreaterThan(0);
    expect(lines[0]).toContain('CRITICAL');
  });
});
