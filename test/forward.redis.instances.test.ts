import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from './support/ports.ts';
import { type RedisServer, startRedis } from './support/redis.ts';
import { parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';
import { type RunningSink, startSink } from './support/sink.ts';

/*
 * Several instances: two receiver processes on one Redis forward to one app sink process; one is SIGKILLed mid-way.
 * Every acknowledged result must reach the app, and no forward may be sent by two instances at once: the sink answers
 * every request after SLOW ms, so two attempts of one webhook-id less than SLOW apart would have overlapped.
 */

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const SLOW = 300;
const dir = mkdtempSync(join(tmpdir(), 'ccm-forward-redis-'));
let redis: RedisServer;
const running: Array<{ kill(): Promise<void> }> = [];
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const p of running) await p.kill();
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('forwarding from two instances on one Redis', () => {
  it('forwards every result once one instance is SIGKILLed, each forward worked by one instance at a time', async () => {
    const app: RunningSink = await startSink({ log: join(dir, 'sink.jsonl'), rules: { slowAll: SLOW } });
    running.push(app);
    const env = {
      STORE_URL: `${redis.url}?prefix=two:`,
      FORWARD_URL: app.url,
      FORWARD_SECRET: SECRET,
      FORWARD_TIMEOUT_MS: '2000',
      FORWARD_CONCURRENCY: '4',
      FORWARD_RETRY_MIN_MS: '200',
      FORWARD_RETRY_MAX_MS: '1000',
    };
    const a: RunningServer = await startServer(env);
    const b: RunningServer = await startServer(env);
    running.push(a, b);
    const ids = Array.from({ length: 240 }, (_, i) => `r-${i}`);
    const acked: string[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = w; i < ids.length; i += 8) {
          const res = await fetch(`${(i % 2 ? a : b).publicUrl}/callback?id=${ids[i]}&code=tok-${ids[i]}`);
          await res.text();
          if (res.status === 200) acked.push(ids[i]!);
        }
      }),
    );
    expect(acked).toHaveLength(ids.length);
    await waitFor(() => app.records().length >= 40, 60_000, 'the first forwards from both instances');
    await a.kill();
    await waitFor(
      async () => parseMetrics(await scrape(b)).get('captcha_forward_backlog') === 0,
      90_000,
      'the survivor to empty the outbox',
    );
    const records = app.records();
    const ok = new Set(records.filter((r) => r.status === 200).map((r) => r.taskId));
    expect(acked.filter((id) => !ok.has(id))).toEqual([]);
    const wh = new Webhook(SECRET);
    for (const r of records) wh.verify(r.body, r.headers);

    // Per webhook-id, attempts never overlapped: each came after the previous one had its answer (SLOW ms later).
    const byId = new Map<string, number[]>();
    for (const r of records) {
      const list = byId.get(r.headers['webhook-id']!) ?? [];
      list.push(r.at);
      byId.set(r.headers['webhook-id']!, list);
    }
    expect(byId.size).toBe(ids.length);
    let repeated = 0;
    for (const times of byId.values()) {
      times.sort((x, y) => x - y);
      for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(SLOW - 20);
      if (times.length > 1) repeated++;
    }
    // Both instances worked the outbox: the survivor alone did not send them all.
    const sentByB = parseMetrics(await scrape(b)).get('captcha_forward_attempts_total{outcome="success"}') ?? 0;
    expect(sentByB).toBeGreaterThan(0);
    expect(sentByB).toBeLessThan(ids.length);
    console.log(
      `two instances: ${ids.length} results, ${records.length} requests, ${sentByB} by the survivor, ` +
        `${repeated} sent twice (attempts cut by the SIGKILL, taken over after the lease)`,
    );
  });
});
