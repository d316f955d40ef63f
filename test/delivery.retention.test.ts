import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorInternals } from '@captcha-callback-monitor/koa/internal';
import { createNoopMeter } from '@opentelemetry/api';
import { afterAll, describe, expect, it } from 'vitest';
import { DeliveryTracker } from '../packages/koa/src/delivery/DeliveryTracker.ts';
import { MemoryTaskStore } from '../packages/koa/src/delivery/stores/MemoryTaskStore.ts';
import { SqliteTaskStore } from '../packages/koa/src/delivery/stores/SqliteTaskStore.ts';
import type { TaskStore } from '../packages/koa/src/delivery/TaskStore.ts';
import { loadConfig } from '../src/server/config.ts';
import { createLogger } from '../src/server/logger.ts';
import { ReceiverServer } from '../src/server/ReceiverServer.ts';

const BASE_MS = 1_700_000_000_000;
const DAY = 24 * 3600 * 1000;

const result = (taskId: string, receivedAt: number) =>
  ({ taskId, outcome: 'solved', code: `c-${taskId}`, format: 'query', receivedAt }) as const;

const dir = mkdtempSync(join(tmpdir(), 'ccm-retention-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.each([
  ['memory', () => new MemoryTaskStore()],
  ['sqlite', () => new SqliteTaskStore(join(dir, `${Math.random().toString(36).slice(2)}.db`))],
] as Array<[string, () => TaskStore]>)('DeliveryTracker retention (%s store)', (_name, open) => {
  it('deletes settled tasks older than retentionSeconds in bounded batches, keeps pending ones and the counts', async () => {
    const store = open();
    let now = BASE_MS;
    const calls: number[] = [];
    const spied: TaskStore = {
      register: (...a) => store.register(...a),
      attachSolverTaskId: (id, solverTaskId) => store.attachSolverTaskId(id, solverTaskId),
      recordCallback: (r) => store.recordCallback(r),
      expireDue: (n, l) => store.expireDue(n, l),
      get: (id) => store.get(id),
      list: (st, l) => store.list(st, l),
      counts: () => store.counts(),
      ping: () => store.ping(),
      close: () => store.close(),
      purge: (olderThan, limit) => {
        calls.push(limit);
        expect(olderThan).toBe(now - 3600_000);
        return store.purge(olderThan, limit);
      },
    };
    const tracker = new DeliveryTracker({
      store: spied,
      deliveryTimeoutSeconds: 60,
      retentionSeconds: 3600,
      purgeBatchSize: 10,
      now: () => now,
    });
    const ids = Array.from({ length: 45 }, (_, i) => `t${i}`);
    await tracker.trackSubmitted(ids);
    for (const id of ids.slice(0, 30)) await tracker.recordCallback(result(id, now + 1000));
    await tracker.recordCallback(result('ghost', now + 1000));
    now += 2 * 60_000;
    await tracker.sweep(); // t30…t44 missed (no callback came)
    const counts = await store.counts();
    expect(counts).toEqual({ pending: 0, delivered: 30, missed: 15, late: 0 });
    await tracker.trackSubmitted('waiting'); // a pending task registered later, deadline in the future

    // Inside the retention period nothing goes.
    now += 30 * 60_000;
    expect(await tracker.purge()).toBe(0);
    // Past it, everything settled goes, 10 per store call, and the loop yields between calls.
    now += 60 * 60_000;
    calls.length = 0;
    let ticks = 0;
    let ticking = true;
    const tick = () => {
      ticks++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const deleted = await tracker.purge();
    ticking = false;
    expect(deleted).toBe(46);
    expect(calls).toEqual([10, 10, 10, 10, 10]);
    expect(await store.get('t0')).toBeUndefined();
    expect(await store.get('t44')).toBeUndefined();
    expect(await store.get('ghost')).toBeUndefined();
    expect(await store.get('waiting')).toMatchObject({ state: 'pending' });
    expect(await store.counts()).toEqual({ ...counts, pending: 1 });
    // Other work ran between the batches: the purge yielded to the event loop (4 yields between 5 batches).
    expect(ticks).toBeGreaterThanOrEqual(3);
    await tracker.close();
    await store.close();
  });
});

describe('DeliveryTracker retention', () => {
  it('defaults to 7 days, runs on start(), and reports a failing store without stopping', async () => {
    const store = new MemoryTaskStore();
    const errors: unknown[] = [];
    const tracker = new DeliveryTracker({ store, now: () => BASE_MS, onMaintenanceError: (e) => errors.push(e) });
    expect(tracker.retentionMs).toBe(7 * DAY);
    await store.register(['old'], BASE_MS - 9 * DAY, BASE_MS - 8 * DAY);
    await store.recordCallback(result('old', BASE_MS - 8 * DAY - 1));
    await store.recordCallback(result('recent', BASE_MS - 6 * DAY));
    tracker.start();
    await new Promise((r) => setTimeout(r, 50));
    expect(await store.get('old')).toBeUndefined();
    expect(await store.get('recent')).toMatchObject({ state: 'delivered' });
    await store.close();
    expect(await tracker.purge()).toBe(0);
    expect(errors.length).toBeGreaterThan(0);
    expect((errors.at(-1) as Error).name).toBe('StoreUnavailableError');
    await tracker.close();
  });

  it('takes RETENTION from the environment: default 604800, at least 60 seconds', () => {
    expect(loadConfig({}).RETENTION).toBe(604_800);
    expect(loadConfig({ RETENTION: '86400' }).RETENTION).toBe(86_400);
    expect(() => loadConfig({ RETENTION: '59' })).toThrow(/RETENTION: must be at least 60 seconds/);
    expect(() => loadConfig({ RETENTION: 'forever' })).toThrow(/RETENTION/);
  });

  it('passes RETENTION through the server and the plugin to the tracker', async () => {
    const store = new MemoryTaskStore();
    const server = new ReceiverServer({
      config: loadConfig({ RETENTION: '120', STORE_URL: 'memory:' }),
      store,
      meter: createNoopMeter(),
      scrape: async () => '',
      logger: createLogger('silent'),
    });
    expect(monitorInternals(server.monitor).tracker.retentionMs).toBe(120_000);
    await store.close();
  });
});
