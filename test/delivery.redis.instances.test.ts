import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pool } from './support/hostile.ts';
import { type RedisServer, startRedis } from './support/redis.ts';
import { health, parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';

/*
 * Two receiver processes share one real Redis. Each counts only the transitions it made, so the counters summed over
 * both are exact ("Prometheus sums them"), while the /health/callbacks delivery block and the pending gauge are
 * store-wide on each instance.
 */

const ON_A = 300;
const ON_B = 200;
const SUBMITTED = ON_A + ON_B;
const ids = [
  ...Array.from({ length: ON_A }, (_, i) => `ia-${i}`),
  ...Array.from({ length: ON_B }, (_, i) => `ib-${i}`),
];
/** Every third task gets no callback and expires. */
const answered = ids.filter((_, i) => i % 3 !== 2);
const unanswered = ids.filter((_, i) => i % 3 === 2);

async function register(s: RunningServer, list: readonly string[]) {
  const res = await fetch(`${s.managementUrl}/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(list),
  });
  expect(res.status).toBe(201);
  return (await res.json()) as { submitted: number; already_known: number };
}

async function callback(s: RunningServer, id: string): Promise<number> {
  const res = await fetch(`${s.publicUrl}/callback?id=${id}&code=c-${id}`);
  await res.arrayBuffer();
  return res.status;
}

const COUNTERS = ['submitted', 'delivered', 'missed', 'late'] as const;
type Counters = Record<(typeof COUNTERS)[number] | 'duplicates' | 'pending', number>;
async function counters(s: RunningServer): Promise<Counters> {
  const m = parseMetrics(await scrape(s));
  const get = (name: string) => m.get(name) ?? 0;
  return {
    submitted: get('captcha_tasks_submitted_total'),
    delivered: get('captcha_tasks_delivered_total'),
    missed: get('captcha_tasks_missed_total'),
    late: get('captcha_tasks_late_total'),
    duplicates: get('captcha_callback_duplicates_total'),
    pending: get('captcha_tasks_pending'),
  };
}
const sum = (a: Counters, b: Counters) =>
  Object.fromEntries(Object.keys(a).map((k) => [k, a[k as keyof Counters] + b[k as keyof Counters]])) as Counters;

describe('two receivers on one Redis', () => {
  let redis: RedisServer;
  let a: RunningServer;
  let b: RunningServer;
  beforeAll(async () => {
    redis = await startRedis();
    const env = { STORE_URL: redis.url, DELIVERY_TIMEOUT: '2' };
    // Started one after the other, so their once-a-second sweepers are out of phase and both expire some tasks.
    a = await startServer(env);
    await new Promise((r) => setTimeout(r, 500));
    b = await startServer(env);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  it('counts every task exactly once over both instances: delivered + missed == submitted', async () => {
    // Registered on A (300) and on B (200), in five waves 250 ms apart so the deadlines spread over more than one
    // sweep period of each instance. Each wave's callbacks go out at once, alternating between the instances
    // whatever instance registered the task.
    const registeredAt = Date.now();
    const via = new Map<string, RunningServer>();
    const waves: Array<[RunningServer, string[]]> = [
      [a, ids.slice(0, 100)],
      [b, ids.slice(300, 400)],
      [a, ids.slice(100, 200)],
      [b, ids.slice(400, 500)],
      [a, ids.slice(200, 300)],
    ];
    for (const [w, [target, wave]] of waves.entries()) {
      if (w > 0) await new Promise((r) => setTimeout(r, 250));
      expect(await register(target, wave)).toEqual({ submitted: wave.length, already_known: 0 });
      await pool(
        wave.filter((id) => answered.includes(id)),
        32,
        async (id, i) => {
          const to = i % 2 === 0 ? a : b;
          via.set(id, to);
          expect(await callback(to, id), id).toBe(200);
        },
      );
    }
    // Registering the other instance's tasks again adds nothing.
    expect(await register(b, ids.slice(0, 50))).toEqual({ submitted: 0, already_known: 50 });
    const callbacksMs = Date.now() - registeredAt;

    // Duplicates, each sent to the instance that did NOT take the first callback.
    const dupes = answered.slice(0, 60);
    await pool(dupes, 16, async (id) => {
      expect(await callback(via.get(id) === a ? b : a, id)).toBe(200);
    });

    // The deadline is 2 s and each instance sweeps every second: wait until the unanswered ones are all missed.
    const until = Date.now() + 15_000;
    let ca: Counters;
    let cb: Counters;
    for (;;) {
      [ca, cb] = await Promise.all([counters(a), counters(b)]);
      if (ca.missed + cb.missed + ca.late + cb.late >= unanswered.length && ca.pending === 0 && cb.pending === 0) {
        break;
      }
      expect(Date.now(), 'sweep finished within 15 s').toBeLessThan(until);
      await new Promise((r) => setTimeout(r, 200));
    }
    // Let both finish a sweep that refreshes their store-wide view.
    await new Promise((r) => setTimeout(r, 1200));
    [ca, cb] = await Promise.all([counters(a), counters(b)]);
    const total = sum(ca, cb);

    // Where each task ended up, read back from the shared store.
    const stateCount: Record<string, number> = {};
    await pool(ids, 32, async (id) => {
      const t = (await (await fetch(`${a.managementUrl}/tasks/${id}`)).json()) as { state: string };
      stateCount[t.state] = (stateCount[t.state] ?? 0) + 1;
    });
    const late = stateCount.late ?? 0;
    // A callback can only turn late if the 2 s deadline passed while it was under way (a slow, loaded machine);
    // it was missed first, so the counters below stay exact either way.
    expect(stateCount).toEqual({
      delivered: answered.length - late,
      missed: unanswered.length,
      ...(late > 0 ? { late } : {}),
    });

    // Counters: each instance its own transitions, the sum exact.
    expect(ca.submitted).toBe(ON_A);
    expect(cb.submitted).toBe(ON_B);
    expect(total.submitted).toBe(SUBMITTED);
    expect(total.delivered).toBe(answered.length - late);
    expect(total.missed).toBe(unanswered.length + late);
    expect(total.late).toBe(late);
    expect(total.delivered + total.missed).toBe(total.submitted);
    expect(total.duplicates).toBe(dupes.length);
    // Both instances did some of the work (callbacks alternate; both sweep).
    expect(ca.delivered).toBeGreaterThan(0);
    expect(cb.delivered).toBeGreaterThan(0);
    // The pending gauge is store-wide: each instance shows the same value (aggregate with max, not sum).
    expect(ca.pending).toBe(0);
    expect(cb.pending).toBe(0);

    // The health block is store-wide on each instance.
    for (const s of [a, b]) {
      const d = (await health(s)).delivery;
      expect(d).toEqual({
        ...d,
        delivered: answered.length - late,
        // Late tasks missed their deadline: counted as missed, as the counters and the delivery-rate alert do.
        missed: unanswered.length + late,
        late,
        pending: 0,
      });
      expect(d.delivered + d.missed).toBe(SUBMITTED);
    }

    // More duplicates, now after the sweep: still acknowledged, still never a second delivery.
    await pool(answered.slice(0, 40), 16, async (id, i) => {
      expect(await callback(i % 2 ? a : b, id)).toBe(200);
    });
    const again = sum(await counters(a), await counters(b));
    expect(again.delivered).toBe(total.delivered);
    expect(again.duplicates).toBe(dupes.length + 40);
    expect(again.delivered + again.missed).toBe(SUBMITTED);

    console.log(
      `redis instances: callbacks for ${answered.length} tasks within ${callbacksMs} ms of registration; ` +
        `A made ${ca.delivered} deliveries and ${ca.missed} misses, B ${cb.delivered} and ${cb.missed}; late ${late}`,
    );
  });

  it('correlates one task reached by different ids on the two instances exactly once', async () => {
    // Each task is registered on A with its solver id; its callback reaches A by the app id in the path and, at the
    // same moment, B by the solver id alone (a solver that called twice, one URL each). One delivery, one duplicate.
    const before = sum(await counters(a), await counters(b));
    const tasks = Array.from({ length: 40 }, (_, i) => ({ id: `app-${i}`, solver_task_id: `solver-${i}` }));
    const res = await fetch(`${a.managementUrl}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(tasks.map((t) => ({ ...t, timeout_seconds: 120 }))),
    });
    expect(res.status).toBe(201);
    await pool(tasks, 8, async (t) => {
      const [byApp, bySolver] = await Promise.all([
        fetch(`${a.publicUrl}/callback/${t.id}?id=${t.solver_task_id}&code=via-a`),
        fetch(`${b.publicUrl}/callback?id=${t.solver_task_id}&code=via-b`),
      ]);
      expect([byApp.status, bySolver.status]).toEqual([200, 200]);
    });
    const after = sum(await counters(a), await counters(b));
    expect(after.delivered - before.delivered).toBe(tasks.length);
    expect(after.duplicates - before.duplicates).toBe(tasks.length);
    for (const t of tasks.slice(0, 10)) {
      const viaSolverId = (await (await fetch(`${b.managementUrl}/tasks/${t.solver_task_id}`)).json()) as {
        id: string;
        state: string;
        callbacks: number;
      };
      expect(viaSolverId).toMatchObject({ id: t.id, state: 'delivered', callbacks: 2 });
    }
  });
});
