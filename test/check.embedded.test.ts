import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorInternals } from '@captcha-callback-monitor/koa/internal';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryTaskStore } from '../packages/koa/src/delivery/stores/MemoryTaskStore.ts';
import { CallbackMonitor, type CallbackMonitorOptions } from '../packages/koa/src/plugin/CallbackMonitor.ts';
import { burst, runCheckCli } from './support/check.ts';
import { waitFor } from './support/ports.ts';

/*
 * The real check CLI against the receiver embedded as a library (CallbackMonitor.requestListener on node:http), where
 * a test can own the store and the clock: a store whose writes are slow, a store that is gone, a clock that moves.
 */

/** A store whose callback writes really take 1.2 s (a disk or network store having a bad time). */
class SlowStore extends MemoryTaskStore {
  override async recordCallback(...args: Parameters<MemoryTaskStore['recordCallback']>) {
    await new Promise((r) => setTimeout(r, 1200));
    return super.recordCallback(...args);
  }
}

let dir: string;
let n = 0;
const state = () => join(dir, `embedded-${++n}.json`);
const running: (() => Promise<void>)[] = [];

async function host(options: CallbackMonitorOptions) {
  const monitor = new CallbackMonitor({ metrics: false, ...options }).start();
  const server: Server = createServer(monitor.requestListener());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  running.push(async () => {
    await monitor.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { monitor, base, health: `${base}/health/callbacks` };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'check-embedded-'));
});
afterEach(async () => {
  for (const stop of running.splice(0)) await stop();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('check against an embedded receiver', () => {
  it('a p95 over 1 s (a store whose writes take 1.2 s) is a WARNING; the same callbacks on a fast store are OK', async () => {
    const slow = await host({ store: new SlowStore() });
    const statuses = await burst(8, (i) => `${slow.base}/callback?id=slow-${i}&code=ok`, 8);
    expect(statuses.every((s) => s === 200)).toBe(true);
    const run = await runCheckCli(['--url', slow.health, '--state', state()]);
    expect(run.code).toBe(1);
    expect(run.stdout.trim()).toMatch(/^WARNING CaptchaCallbackSlowResponses: p95 latency 1\.\d+ s > 1 s/);

    const fast = await host({ store: new MemoryTaskStore() });
    await burst(8, (i) => `${fast.base}/callback?id=fast-${i}&code=ok`, 8);
    const ok = await runCheckCli(['--url', fast.health, '--state', state()]);
    expect(ok.stdout).toMatch(/^OK /);
    expect(ok.code).toBe(0);
  });

  it('callbacks expected and none for the stale window is a WARNING, over when the callback comes', async () => {
    let clock = Date.now();
    const r = await host({ now: () => clock, deliveryTimeoutSeconds: 3600 });
    await r.monitor.trackSubmitted('waiting-1');
    const file = state();
    expect((await runCheckCli(['--url', r.health, '--state', file])).code).toBe(0);
    clock += 301_000;
    const stale = await runCheckCli(['--url', r.health, '--state', file]);
    expect(stale.code).toBe(1);
    expect(stale.stdout).toMatch(/^WARNING CaptchaCallbackEndpointStale: no callback yet while callbacks are expected/);
    expect((await fetch(`${r.base}/callback?id=waiting-1&code=ok`)).status).toBe(200);
    expect((await runCheckCli(['--url', r.health, '--state', file])).code).toBe(0);
  });

  it('a store that cannot take writes (/healthz 503) is CRITICAL endpoint down', async () => {
    const store = new MemoryTaskStore();
    const r = await host({ store });
    const file = state();
    expect((await runCheckCli(['--url', r.health, '--state', file])).code).toBe(0);
    await store.close();
    const down = await runCheckCli(['--url', r.health, '--state', file]);
    expect(down.code).toBe(2);
    expect(down.stdout).toMatch(/^CRITICAL CaptchaCallbackEndpointDown: \/healthz answered HTTP 503/);
  });

  it('fewer than 90 % of at least 20 settled tasks delivered is CRITICAL', async () => {
    // A deadline long enough for 20 loopback callbacks on a busy machine, short enough to wait out.
    const r = await host({ deliveryTimeoutSeconds: 5 });
    const ids = Array.from({ length: 25 }, (_, i) => `d-${i}`);
    await r.monitor.trackSubmitted(ids);
    // 20 callbacks arrive; 5 tasks miss their deadline (the sweeper runs every second).
    await burst(20, (i) => `${r.base}/callback?id=d-${i}&code=ok`);
    expect(r.monitor.health().delivery.delivered).toBe(20);
    await waitFor(() => r.monitor.health().delivery.missed === 5, 30_000, 'five missed tasks');
    const run = await runCheckCli(['--url', r.health, '--state', state()]);
    expect(run.code).toBe(2);
    expect(run.stdout.trim()).toMatch(
      /^CRITICAL CaptchaCallbackLowDeliveryRate: delivery rate 80 % < 90 % \(20 of 25 settled tasks/,
    );
  });

  it('a result hook failing for over 5 % of at least 100 accepted callbacks is a WARNING', async () => {
    const r = await host({
      onResult: (result) => {
        if (Number((result.taskId ?? '').slice(2)) % 10 === 7) throw new Error('app bug');
      },
    });
    await burst(100, (i) => `${r.base}/callback?id=h-${i}&code=ok`);
    await waitFor(
      () => monitorInternals(r.monitor).stats.errorBreakdown.handler_error === 10,
      30_000,
      'ten hook failures',
    );
    const run = await runCheckCli(['--url', r.health, '--state', state()]);
    expect(run.code).toBe(1);
    expect(run.stdout.trim()).toMatch(/^WARNING CaptchaCallbackHandlerErrors: result hook failed for 10 % > 5 %/);
  });
});
