/**
 * The `demo` subcommand as a new user runs it: started before the receiver listens it waits (bounded) instead of
 * failing its first requests; with no receiver it says so and exits non-zero; `--duration` is the run's length
 * within a second, not its registration phase; a run with failed requests exits non-zero. Real receiver, real CLI.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { TrafficStats } from '../src/demo/trafficGenerator.ts';
import { freePort } from './support/ports.ts';
import { type ProcessRun, type RunningServer, runCli, startServer } from './support/server.ts';

interface DemoRun extends ProcessRun {
  /** Wall-clock milliseconds from spawn to exit (includes Node's start-up). */
  readonly wallMs: number;
  readonly stats?: TrafficStats;
}

async function runDemo(args: string[], timeoutMs = 60_000): Promise<DemoRun> {
  const started = performance.now();
  const run = await runCli(['demo', ...args], {}, { timeoutMs });
  const wallMs = performance.now() - started;
  const last = run.stdout.trim().split('\n').at(-1) ?? '';
  return { ...run, wallMs, ...(last.startsWith('{') ? { stats: JSON.parse(last) as TrafficStats } : {}) };
}

const servers: RunningServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

const targets = (s: { publicPort: number; managementPort: number }) => [
  `--management-url=http://127.0.0.1:${s.managementPort}`,
  `--callback-url=http://127.0.0.1:${s.publicPort}/callback`,
];

describe('demo: readiness, duration and exit codes', () => {
  it('started before the receiver, it waits for /healthz and /metrics, then runs without a failed request', async () => {
    const [publicPort, managementPort] = [await freePort(), await freePort()];
    const demo = runDemo([
      ...targets({ publicPort, managementPort }),
      '--wait=45s',
      '--duration=2s',
      '--rate=20',
      '--latency=0.1-0.3',
    ]);
    // The receiver comes up well after the demo started asking.
    await new Promise((r) => setTimeout(r, 1500));
    servers.push(await startServer({ PORT: String(publicPort), MANAGEMENT_PORT: String(managementPort) }));
    const run = await demo;
    expect(run.code, run.stderr).toBe(0);
    expect(run.stats?.httpErrors, run.stderr).toBe(0);
    expect(run.stats?.submitted).toBeGreaterThan(0);
    expect(run.stats?.callbacks).toBeGreaterThan(0);
    expect(run.stderr).not.toContain('http errors');
  });

  it('with no receiver it says which URLs did not answer and exits 1 after the wait', async () => {
    const [publicPort, managementPort] = [await freePort(), await freePort()];
    const run = await runDemo([...targets({ publicPort, managementPort }), '--wait=1s', '--duration=5s']);
    expect(run.code).toBe(1);
    const lines = run.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines.at(-1)).toContain('no receiver answered within 1 s');
    expect(lines.at(-1)).toContain(`http://127.0.0.1:${publicPort}/healthz (connection refused)`);
    expect(lines.at(-1)).toContain(`http://127.0.0.1:${managementPort}/metrics (connection refused)`);
    // Nothing was sent: no summary, no progress lines.
    expect(run.stats).toBeUndefined();
    expect(run.stderr).not.toMatch(/^demo: \d+ s, submitted/m);
    // Bounded: the 1 s wait plus Node's start-up, with generous slack for a busy machine.
    expect(run.wallMs).toBeLessThan(15_000);
  });

  it('--duration ends the run within a second, abandoning callbacks still to come, and accounts for every task', async () => {
    const server = await startServer({});
    servers.push(server);
    // Every callback is due 5-8 s after its task: a run that waited for them would last ≥ 5 s past the duration.
    const run = await runDemo([...targets(server), '--duration=2s', '--rate=20', '--latency=5-8', '--quiet']);
    expect(run.code, run.stderr).toBe(0);
    const s = run.stats!;
    expect(s.elapsedSeconds).toBeGreaterThanOrEqual(2);
    expect(s.elapsedSeconds).toBeLessThan(3);
    expect(s.abandoned).toBeGreaterThan(0);
    expect(s.httpErrors).toBe(0);
    // Every registered task ended one way: called back (first callback), deliberately lost, or abandoned.
    expect(s.solved + s.failed + s.lost + s.abandoned).toBe(s.submitted);
    // Wall clock includes Node's start-up; a run waiting for its callbacks would take ≥ 7 s.
    expect(run.wallMs).toBeLessThan(7000);
  });

  it('a run with failed requests exits 1 and names the last failure once, not on every progress line', async () => {
    const server = await startServer({ API_TOKEN: 'demo-test-token-0123456789' });
    servers.push(server);
    // No --api-token: every POST /tasks is refused with 401.
    const run = await runDemo([...targets(server), '--duration=3s', '--rate=5']);
    expect(run.code).toBe(1);
    expect(run.stats?.httpErrors).toBeGreaterThan(0);
    expect(run.stats?.submitted).toBe(0);
    const last = run.stderr.trim().split('\n').at(-1) ?? '';
    expect(last).toMatch(/^captcha-callback-monitor demo: \d+ request\(s\) failed \(last: POST \/tasks answered 401/);
    // Progress lines carry "(last: …)" only when errors are new since the line before.
    const progress = run.stderr.split('\n').filter((l) => l.startsWith('demo: ') && l.includes('http errors'));
    const counts = progress.map((l) => Number(/http errors (\d+)/.exec(l)?.[1]));
    progress.forEach((line, i) => {
      const fresh = i === 0 || counts[i]! > counts[i - 1]!;
      expect(line.includes('(last: '), line).toBe(fresh);
    });
  });
});
