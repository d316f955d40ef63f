import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from './support/redis.ts';
import { type RunningServer, startServer } from './support/server.ts';

/* `GET /tasks/:id?wait=S` answers as soon as the task settles, or with the current record when S runs out. */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function register(s: RunningServer, ...ids: string[]): Promise<void> {
  const res = await fetch(`${s.managementUrl}/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(ids),
  });
  expect(res.status).toBe(201);
}

/** Starts a long-poll; resolves with its status, body and the time it was answered. */
function longPoll(s: RunningServer, id: string, wait: number) {
  const started = performance.now();
  return fetch(`${s.managementUrl}/tasks/${id}?wait=${wait}`).then(async (res) => ({
    status: res.status,
    body: (await res.json()) as { state: string; code: string | null; id: string },
    answeredAt: performance.now(),
    elapsed: performance.now() - started,
  }));
}

async function sendCallback(s: RunningServer, id: string, code: string): Promise<number> {
  const res = await fetch(`${s.publicUrl}/callback?id=${id}&code=${code}`);
  await res.arrayBuffer();
  expect(res.status).toBe(200);
  return performance.now();
}

/**
 * Registers `id` on `waiter` and long-polls it there (wait=10); 300 ms in, sends its callback to `sender`. The poll
 * must answer 200 with the delivered task; resolves with that answer and when the callback was acknowledged.
 */
async function callbackDuringPoll(waiter: RunningServer, sender: RunningServer, id: string, code: string) {
  await register(waiter, id);
  const polling = longPoll(waiter, id, 10);
  await sleep(300);
  const sentAt = await sendCallback(sender, id, code);
  const r = await polling;
  expect(r.status).toBe(200);
  expect(r.body).toMatchObject({ id, state: 'delivered', code });
  return { ...r, sentAt };
}

describe('long-polling GET /tasks/:id?wait=', () => {
  let single: RunningServer;
  let quick: RunningServer;
  let redis: RedisServer;
  let a: RunningServer;
  let b: RunningServer;
  const measured: string[] = [];
  beforeAll(async () => {
    redis = await startRedis();
    [single, quick, a, b] = await Promise.all([
      startServer({ STORE_URL: 'memory:', DELIVERY_TIMEOUT: '300' }),
      startServer({ STORE_URL: 'memory:', DELIVERY_TIMEOUT: '1' }),
      startServer({ STORE_URL: redis.url, DELIVERY_TIMEOUT: '300' }),
      startServer({ STORE_URL: redis.url, DELIVERY_TIMEOUT: '300' }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([single, quick, a, b].map((s) => s?.stop()));
    await redis?.stop();
    console.log(`long-poll: ${measured.join('; ')}`);
  });

  it('answers as soon as the callback lands, long before the wait runs out', async () => {
    const r = await callbackDuringPoll(single, single, 'lp-1', 'the-answer');
    expect(r.elapsed).toBeGreaterThanOrEqual(250);
    expect(r.elapsed).toBeLessThan(5000);
    measured.push(
      `same instance ${Math.round(r.elapsed)} ms (callback ack → answer ${Math.round(r.answeredAt - r.sentAt)} ms)`,
    );
  });

  it('answers with the pending record when the wait runs out', async () => {
    await register(single, 'lp-2');
    const r = await longPoll(single, 'lp-2', 1);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: 'lp-2', state: 'pending', code: null });
    expect(r.elapsed).toBeGreaterThanOrEqual(950);
    expect(r.elapsed).toBeLessThan(5000);
    measured.push(`timeout wait=1 ${Math.round(r.elapsed)} ms`);
  });

  it('answers at once for a task that already has its result, and 404 after the wait for an unknown id', async () => {
    await register(single, 'lp-3');
    await sendCallback(single, 'lp-3', 'early');
    const done = await longPoll(single, 'lp-3', 10);
    expect(done.body).toMatchObject({ state: 'delivered', code: 'early' });
    expect(done.elapsed).toBeLessThan(1000);
    const unknown = await longPoll(single, 'nobody-registered-this', 1);
    expect(unknown.status).toBe(404);
    expect(unknown.elapsed).toBeGreaterThanOrEqual(950);
  });

  it('answers when the deadline passes and the task is missed', async () => {
    await register(quick, 'lp-missed');
    const r = await longPoll(quick, 'lp-missed', 10);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ state: 'missed', code: null });
    // Deadline 1 s, sweeper once a second: missed within about 2 s, far from the 10 s wait.
    expect(r.elapsed).toBeLessThan(5000);
    measured.push(`missed at deadline 1 s after ${Math.round(r.elapsed)} ms`);
  });

  it('wakes a long-poll on instance A when the callback lands on instance B (shared Redis)', async () => {
    const r = await callbackDuringPoll(a, b, 'lp-x', 'from-b');
    // A polls the store every 250 ms for its waiters: typically ~0.2 s; the bound leaves room for a loaded machine.
    const wake = r.answeredAt - r.sentAt;
    expect(wake).toBeLessThan(1500);
    expect(r.elapsed).toBeLessThan(5000);
    measured.push(`cross-instance ${Math.round(r.elapsed)} ms (B's ack → A's answer ${Math.round(wake)} ms)`);
  });
});
