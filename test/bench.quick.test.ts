import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { BenchReport } from '../bench/report/types.ts';
import { runNode } from './support/server.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * Keeps the benchmark harness from rotting: `node bench/run.ts --quick` must start every peer, drive each with the
 * load generator, run the scale and sweeper checks and report numbers for all of them. Nothing here judges speed
 * (two shared cores, other tests running): only that it ran and measured.
 */
describe('bench/run.ts --quick', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ccm-bench-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('measures every peer, the scale checks and the sweeper', { timeout: 300_000 }, async () => {
    const json = join(dir, 'report.json');
    const md = join(dir, 'RESULTS.md');
    // Killed (and failed) short of the test's own time-out, so no benchmark process outlives it.
    const { code, output } = await runNode(['bench/run.ts', '--quick', '--json', json, '--out', md], {
      cwd: ROOT,
      timeoutMs: 290_000,
    });
    expect(code, output).toBe(0);

    const report = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;
    expect(report.quick).toBe(true);
    const keys = report.peers.map((p) => p.key);
    expect(keys).toEqual(
      expect.arrayContaining([
        'raw',
        'koa',
        'seed',
        'receiver-memory',
        'receiver-sqlite',
        'sqlite-metrics-on',
        'sqlite-metrics-off',
      ]),
    );
    for (const peer of report.peers) {
      expect(peer.error, `${peer.key}: ${peer.error}`).toBeUndefined();
      expect(peer.runs.length, peer.key).toBeGreaterThanOrEqual(1);
      for (const run of peer.runs) {
        expect(run.ok, peer.key).toBeGreaterThan(0);
        expect(run.non2xx, peer.key).toBe(0);
        expect(run.rps, peer.key).toBeGreaterThan(0);
        expect(run.p50, peer.key).toBeGreaterThan(0);
        expect(run.p99, peer.key).toBeGreaterThanOrEqual(run.p50);
        expect(run.cpuUsPerRequest, peer.key).toBeGreaterThan(0);
      }
    }
    // Receivers were driven with registered ids: their callbacks were pending → delivered transitions.
    for (const peer of report.peers.filter((p) => p.delivery)) {
      expect(peer.delivery!.delivered, peer.key).toBeGreaterThan(0);
    }

    const s = report.scale;
    expect(s.error).toBeUndefined();
    for (const m of [s.metricsSmall, s.metricsLarge, s.healthSmall, s.healthLarge]) {
      expect(m?.p50).toBeGreaterThan(0);
      expect(m?.rps).toBeGreaterThan(0);
      expect(m?.cpuUs).toBeGreaterThan(0);
    }
    expect(s.rssLarge).toBeGreaterThan(0);

    expect(report.sweep.error).toBeUndefined();
    expect(report.sweep.runs.length).toBeGreaterThanOrEqual(1);
    for (const run of report.sweep.runs) {
      expect(run.moved).toBe(run.tasks);
      expect(run.maxStallMs).toBeGreaterThan(0);
    }

    const text = readFileSync(md, 'utf8');
    expect(text).toContain('QUICK MODE');
    expect(text).toContain('## Targets');
    expect(text).toContain(report.machine.node);
  });
});
