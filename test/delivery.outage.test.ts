import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from './support/redis.ts';
import { health, parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';

/*
 * Reliability: "A store outage never turns into a silently lost result: either spooled and replayed, or refused with
 * 5xx." redis-server (append-only, fsync always, as production should run it) is stopped under callback traffic for
 * ~2.5 s and started again on the same port and data directory; the receiver is never restarted.
 */

const REGISTERED = 8000;
const ids = Array.from({ length: REGISTERED }, (_, i) => `out-${String(i).padStart(5, '0')}`);
const codeOf = (id: string) => `ans-${id}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Phase = 'before' | 'outage' | 'after';
interface Sent {
  id: string;
  status: number;
  phase: Phase;
}

describe('Redis outage under traffic', () => {
  let redis: RedisServer;
  let server: RunningServer;
  beforeAll(async () => {
    redis = await startRedis({ appendOnly: true });
    server = await startServer({ STORE_URL: redis.url, DELIVERY_TIMEOUT: '3600' });
  });
  afterAll(async () => {
    await server?.stop();
    await redis?.stop();
  });

  it('refuses with 503 while Redis is down, loses no acknowledged callback, and recovers without a restart', async () => {
    const reg = await fetch(`${server.managementUrl}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ids }),
    });
    expect(reg.status).toBe(201);
    const pid = server.process.pid;

    let phase: Phase = 'before';
    let running = true;
    const sent: Sent[] = [];
    const healthz: Array<{ phase: Phase; status: number }> = [];
    let next = 0;
    let firstOkAfter: number | undefined;

    // Callback traffic: 6 senders, each pausing 10 ms between requests (a few hundred per second), each id once.
    const senders = Array.from({ length: 6 }, async () => {
      while (running && next < ids.length) {
        const id = ids[next++] as string;
        const at: Phase = phase;
        const res = await fetch(`${server.publicUrl}/callback?id=${id}&code=${codeOf(id)}`);
        await res.arrayBuffer();
        // A request that started before the kill may be answered during it; label by when it was answered if that
        // is the outage, so "before" really means answered before Redis went away.
        sent.push({ id, status: res.status, phase: at === 'before' && phase !== 'before' ? phase : at });
        if (at === 'after' && res.status === 200) firstOkAfter ??= Date.now();
        await sleep(10);
      }
    });
    // The outside probe: /healthz every 100 ms.
    const prober = (async () => {
      while (running) {
        const at: Phase = phase;
        const res = await fetch(`${server.publicUrl}/healthz`);
        await res.arrayBuffer();
        if (at === phase) healthz.push({ phase: at, status: res.status });
        await sleep(100);
      }
    })();

    // Each phase lasts until it has shown what it must (counts, not a wall-clock share of a machine's speed: on a busy
    // machine 1 s of traffic was 30 callbacks), within a generous bound that still fails if the mechanism is broken.
    const count = (p: Phase, status: number) => sent.filter((s) => s.phase === p && s.status === status).length;
    const until = async (what: string, done: () => boolean, boundMs: number) => {
      const started = Date.now();
      while (!done()) {
        expect(Date.now() - started, what).toBeLessThan(boundMs);
        await sleep(50);
      }
    };
    await until('51 callbacks acknowledged before the outage', () => count('before', 200) > 50, 30_000);
    phase = 'outage';
    await redis.kill();
    const outageStarted = Date.now();
    await sleep(2500);
    await until(
      'callbacks and probes refused during the outage',
      () => count('outage', 503) > 10 && healthz.filter((h) => h.phase === 'outage' && h.status === 503).length > 3,
      30_000,
    );
    await redis.resume();
    phase = 'after';
    const resumedAt = Date.now();
    // Traffic keeps flowing until the receiver has taken callbacks again for a second (it must do so by itself).
    while (firstOkAfter === undefined || Date.now() - firstOkAfter < 1000 || count('after', 200) <= 10) {
      expect(Date.now() - resumedAt, 'callbacks answered 200 again for a while within 30 s').toBeLessThan(30_000);
      await sleep(50);
    }
    expect(
      (firstOkAfter ?? Number.POSITIVE_INFINITY) - resumedAt,
      'callbacks answered 200 again within 10 s of Redis returning',
    ).toBeLessThan(10_000);
    running = false;
    await Promise.all([...senders, prober]);

    const by = (p: Phase, status: number) => sent.filter((s) => s.phase === p && s.status === status);
    const statuses = new Set(sent.map((s) => s.status));
    // Only two answers ever: stored and acknowledged, or refused.
    expect([...statuses].sort()).toEqual([200, 503]);
    expect(by('before', 200).length).toBeGreaterThan(50);
    expect(by('before', 503)).toEqual([]);
    expect(by('outage', 503).length).toBeGreaterThan(10);
    expect(by('after', 200).length).toBeGreaterThan(10);
    // The probe saw the outage and the recovery.
    expect(healthz.filter((h) => h.phase === 'before').every((h) => h.status === 200)).toBe(true);
    expect(healthz.filter((h) => h.phase === 'outage' && h.status === 503).length).toBeGreaterThan(3);
    expect(healthz.at(-1)?.status).toBe(200);

    // No acknowledged callback is missing: every 200, before, during or after the outage, is readable with its code.
    const acked = sent.filter((s) => s.status === 200);
    const refused = sent.filter((s) => s.status === 503);
    const refusedStates: Record<string, number> = {};
    for (const s of acked) {
      const res = await fetch(`${server.managementUrl}/tasks/${s.id}`);
      expect(res.status, s.id).toBe(200);
      expect(await res.json(), s.id).toMatchObject({ state: 'delivered', code: codeOf(s.id) });
    }
    // A refused callback was never acknowledged; it is normally not stored (pending), unless the connection dropped
    // while its script was already running in Redis (then it is delivered, and a re-send would be a duplicate).
    for (const s of refused) {
      const t = (await (await fetch(`${server.managementUrl}/tasks/${s.id}`)).json()) as { state: string };
      refusedStates[t.state] = (refusedStates[t.state] ?? 0) + 1;
      if (t.state === 'delivered')
        refusedStates[`delivered_${s.phase}`] = (refusedStates[`delivered_${s.phase}`] ?? 0) + 1;
      expect(['pending', 'delivered']).toContain(t.state);
    }

    // Every refusal was counted as store_unavailable, and nothing else went wrong.
    const m = parseMetrics(await scrape(server));
    expect(m.get('captcha_callback_errors_total{error_type="store_unavailable"}')).toBe(refused.length);
    const otherErrors = [...m].filter(
      ([k, v]) => k.startsWith('captcha_callback_errors_total') && !k.includes('store_unavailable') && v > 0,
    );
    expect(otherErrors).toEqual([]);
    // The store-wide accounting survived the Redis restart too.
    const delivered = acked.length + (refusedStates.delivered ?? 0);
    await sleep(1200); // one sweep refreshes the store-wide counts and reconciles the in-doubt callbacks
    // This (only) instance counted every delivery it made: the ones it acknowledged, and the refused ones whose script
    // had already run in Redis when the connection dropped (stored, answered 503, counted at the next sweep).
    expect(parseMetrics(await scrape(server)).get('captcha_tasks_delivered_total')).toBe(delivered);
    expect((await health(server)).delivery).toMatchObject({ delivered, pending: REGISTERED - delivered });

    // Same process throughout, still serving.
    expect(server.process.pid).toBe(pid);
    expect(server.process.exitCode).toBeNull();
    const fresh = ids[REGISTERED - 1] as string;
    expect((await fetch(`${server.publicUrl}/callback?id=${fresh}&code=x`)).status).toBe(200);

    console.log(
      `outage: before ${by('before', 200).length}×200; during ${by('outage', 503).length}×503 ` +
        `${by('outage', 200).length}×200; after ${by('after', 200).length}×200 ${by('after', 503).length}×503; ` +
        `first 200 ${(firstOkAfter ?? Number.NaN) - resumedAt} ms after Redis answered again ` +
        `(outage ${resumedAt - outageStarted} ms); /healthz 503 ×${healthz.filter((h) => h.status === 503).length}; ` +
        `refused callbacks now ${JSON.stringify(refusedStates)}`,
    );
  });
});
