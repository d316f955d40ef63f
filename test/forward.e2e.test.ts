import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { SinkRecord } from './support/appSink.ts';
import { freePort, waitFor } from './support/ports.ts';
import { parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';
import { type RunningSink, startSink } from './support/sink.ts';

/*
 * Forwarding with real processes on loopback: the receiver CLI on a SQLite file, and an app sink process
 * (test/support/appSink.ts) that records every request to a file before answering, so its record survives its own
 * SIGKILL. Timings are mechanism checks with generous slack: the machine is shared and busy, so nothing here asserts
 * speed, only order and lower bounds (a retry never comes before its delay) and loose upper bounds.
 */

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const dir = mkdtempSync(join(tmpdir(), 'ccm-forward-'));
let files = 0;
const running: Array<{ kill(): Promise<void> }> = [];
afterEach(async () => {
  for (const p of running.splice(0)) await p.kill();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function receiver(env: Record<string, string>): Promise<RunningServer> {
  const s = await startServer({ FORWARD_SECRET: SECRET, ...env });
  running.push(s);
  return s;
}
async function sink(options: Parameters<typeof startSink>[0]): Promise<RunningSink> {
  const s = await startSink(options);
  running.push(s);
  return s;
}

async function register(s: RunningServer, ids: readonly string[]): Promise<void> {
  const res = await fetch(`${s.managementUrl}/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ids }),
  });
  expect(res.status).toBe(201);
}

/** Sends a task's callback; resolves true when the receiver acknowledged it (200). */
async function callback(s: RunningServer, id: string): Promise<boolean> {
  try {
    const res = await fetch(`${s.publicUrl}/callback?id=${id}&code=tok-${id}`);
    await res.text();
    return res.status === 200;
  } catch {
    return false;
  }
}

interface ForwardJson {
  event: string;
  state: string;
  webhook_id: string;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
}
async function forwardOf(s: RunningServer, id: string): Promise<ForwardJson> {
  const res = await fetch(`${s.managementUrl}/tasks/${id}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { forward: ForwardJson }).forward;
}

/**
 * The task's forward once it is settled in `state`. The app records a request before it answers, and the receiver
 * settles only after the answer (on the worker path, after it has come back to the event loop), so an app's record
 * comes a little before the settlement.
 */
async function settledForward(s: RunningServer, id: string, state: string): Promise<ForwardJson> {
  await waitFor(async () => (await forwardOf(s, id)).state === state, 30_000, `${id}'s forward ${state}`);
  return forwardOf(s, id);
}

/** The task ids the app answered 2xx for. */
const okIds = (records: SinkRecord[]) => new Set(records.filter((r) => r.status === 200).map((r) => r.taskId));

/** Every record's signature verifies with the Standard Webhooks library; returns how many were checked. */
function verifyAll(records: SinkRecord[]): number {
  const wh = new Webhook(SECRET);
  for (const r of records) {
    const payload = wh.verify(r.body, r.headers) as { type: string; timestamp: string; data: { id: string } };
    expect(payload.data.id).toBe(r.taskId);
    expect(payload.type).toMatch(/^task\.(delivered|late|missed)$/);
  }
  // A tampered body must fail, or the check above proves nothing.
  const first = records[0];
  if (first) expect(() => wh.verify(`${first.body} `, first.headers)).toThrow();
  return records.length;
}

/** All records of one task, in arrival order. */
const attemptsOf = (records: SinkRecord[], id: string) => records.filter((r) => r.taskId === id);

describe('forwarding to the app (real receiver and app processes)', () => {
  it('reaches a flaky, slow, sometimes-down app at least once per result, signed, on the retry schedule', async () => {
    const log = join(dir, `sink-${++files}.jsonl`);
    const rules = {
      fail: { 'f-1': 2, 'f-2': 3, 'ra-1': 2 },
      retryAfter: { 'ra-1': '2' },
      slow: { 's-1': 700, 's-2': 700 },
      gone: ['g-1'],
    };
    let app = await sink({ log, rules });
    const port = app.port;
    const r = await receiver({
      STORE_URL: `sqlite:${join(dir, `recv-${++files}.db`)}`,
      FORWARD_URL: app.url,
      FORWARD_TIMEOUT_MS: '3000',
      FORWARD_RETRY_MIN_MS: '300',
      FORWARD_RETRY_MAX_MS: '2500',
    });
    const special = ['f-1', 'f-2', 'ra-1', 's-1', 's-2', 'g-1'];
    const plain = Array.from({ length: 30 }, (_, i) => `p-${i}`);
    const down = Array.from({ length: 10 }, (_, i) => `d-${i}`);
    await register(r, [...special, ...plain, ...down]);
    const acked: string[] = [];
    for (const id of [...special, ...plain]) if (await callback(r, id)) acked.push(id);
    // Everything but the 410 settled (ra-1's Retry-After makes it the slowest, about 4 s), before the app goes down.
    await waitFor(
      () => [...special, ...plain].filter((id) => id !== 'g-1').every((id) => okIds(app.records()).has(id)),
      60_000,
      'the first results',
    );

    // The app goes down: these results are acknowledged all the same and wait in the outbox.
    await app.kill();
    for (const id of down) if (await callback(r, id)) acked.push(id);
    await waitFor(
      async () => (await forwardOf(r, 'd-0')).last_error?.startsWith('network error') === true,
      30_000,
      'a refused attempt while the app is down',
    );
    await new Promise((resolve) => setTimeout(resolve, 1500));
    app = await sink({ log, rules, port });

    expect(acked).toHaveLength(special.length + plain.length + down.length);
    const expected = acked.filter((id) => id !== 'g-1');
    await waitFor(() => expected.every((id) => okIds(app.records()).has(id)), 60_000, 'every result at the app');
    const records = app.records();

    // Every acknowledged result reached the app (the 410 one excepted), every request is signed.
    expect(verifyAll(records)).toBeGreaterThanOrEqual(expected.length);
    // One webhook-id per task, the same on every attempt.
    for (const id of acked) {
      const ids = new Set(attemptsOf(records, id).map((x) => x.headers['webhook-id']));
      expect(ids.size, id).toBe(1);
    }
    // 410: one attempt, never again; the forward says gone.
    expect(attemptsOf(records, 'g-1').map((x) => x.status)).toEqual([410]);
    expect(await settledForward(r, 'g-1', 'gone')).toMatchObject({ attempts: 1, last_status: 410 });

    // The schedule: retry n waits between FORWARD_RETRY_MIN_MS and min(MAX, MIN·2^(n-1)) (full jitter), never less.
    const gaps = (id: string) => {
      const at = attemptsOf(records, id).map((x) => x.at);
      return at.slice(1).map((t, i) => t - at[i]!);
    };
    const slack = 4000; // a busy machine may run a retry late, never early
    for (const [id, fails] of [
      ['f-1', 2],
      ['f-2', 3],
    ] as const) {
      expect(attemptsOf(records, id).map((x) => x.status)).toEqual([...Array(fails).fill(500), 200]);
      const g = gaps(id);
      g.forEach((gap, i) => {
        expect(gap, `${id} retry ${i + 1}`).toBeGreaterThanOrEqual(300 - 20);
        expect(gap, `${id} retry ${i + 1}`).toBeLessThanOrEqual(Math.min(2500, 300 * 2 ** i) + slack);
      });
      expect(await settledForward(r, id, 'delivered')).toMatchObject({ attempts: fails + 1, last_status: 200 });
    }
    // Retry-After: 2 s is honoured over the shorter backoff.
    expect(attemptsOf(records, 'ra-1').map((x) => x.status)).toEqual([500, 500, 200]);
    for (const gap of gaps('ra-1')) expect(gap).toBeGreaterThanOrEqual(2000 - 20);
    // The down phase: refused attempts, then delivery once the app is back.
    const downAttempts = attemptsOf(records, 'd-0');
    expect(downAttempts.at(-1)?.status).toBe(200);

    const m = parseMetrics(await scrape(r));
    expect(m.get('captcha_forward_attempts_total{outcome="gone"}')).toBe(1);
    expect(m.get('captcha_forward_attempts_total{outcome="http_error"}')).toBe(2 + 3 + 2);
    expect(m.get('captcha_forward_attempts_total{outcome="network_error"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('captcha_forward_attempts_total{outcome="success"}')).toBeGreaterThanOrEqual(expected.length);
    await waitFor(
      async () => parseMetrics(await scrape(r)).get('captcha_forward_backlog') === 0,
      10_000,
      'an empty backlog',
    );
    expect(parseMetrics(await scrape(r)).get('captcha_forward_oldest_pending_age')).toBe(0);
    // Logs never carry the secret, the app's URL or a token.
    expect(r.logs()).not.toContain(SECRET.slice(6));
    expect(r.logs()).not.toContain(app.url);
    expect(r.logs()).not.toContain('tok-');
    const duplicates = records.filter((x) => x.status === 200).length - okIds(records).size;
    console.log(`flaky app: ${records.length} requests for ${acked.length} results, ${duplicates} duplicate 2xx`);
  });

  it('loses no acknowledged result when the receiver is SIGKILLed with forwards in flight and queued', async () => {
    const log = join(dir, `sink-${++files}.jsonl`);
    const app = await sink({ log, rules: { slowAll: 250 } });
    const db = `sqlite:${join(dir, `recv-${++files}.db`)}`;
    const env = {
      STORE_URL: db,
      FORWARD_URL: app.url,
      FORWARD_TIMEOUT_MS: '2000',
      FORWARD_CONCURRENCY: '4',
      FORWARD_RETRY_MIN_MS: '200',
      FORWARD_RETRY_MAX_MS: '1000',
    };
    const first = await receiver(env);
    const ids = Array.from({ length: 200 }, (_, i) => `k-${i}`);
    const acked: string[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = w; i < ids.length; i += 8) if (await callback(first, ids[i]!)) acked.push(ids[i]!);
      }),
    );
    expect(acked).toHaveLength(ids.length);
    // 4 in flight at 250 ms each: after ~12 answers most results are still queued, 4 are mid-request.
    await waitFor(() => app.records().length >= 12, 30_000, 'the first forwards');
    await first.kill();
    const atKill = app.records();
    const before = okIds(atKill).size;

    expect(before, 'most results were still queued at the kill').toBeLessThan(ids.length / 2);

    const second = await receiver(env);
    // In-flight forwards come back once their leases (timeout + 5 s) run out; queued ones at once.
    await waitFor(() => acked.every((id) => okIds(app.records()).has(id)), 90_000, 'every result after the restart');
    // The app saw the cut attempts already; the receiver resends them once their leases run out. Count duplicates
    // only once the outbox is empty.
    await waitFor(
      async () => parseMetrics(await scrape(second)).get('captcha_forward_backlog') === 0,
      60_000,
      'an empty outbox',
    );
    for (const id of ['k-0', 'k-199']) expect(await forwardOf(second, id)).toMatchObject({ state: 'delivered' });
    const records = app.records();
    verifyAll(records);
    const ok = records.filter((x) => x.status === 200);
    const duplicates = ok.length - okIds(records).size;
    // Only the attempts cut by the kill can repeat: at most the concurrency's worth, plus answers lost in the kill.
    expect(duplicates).toBeLessThanOrEqual(8);
    for (const id of acked) expect(new Set(attemptsOf(records, id).map((x) => x.headers['webhook-id'])).size).toBe(1);
    console.log(
      `SIGKILL: ${acked.length} acknowledged, ${before} at the app before the kill, all ${okIds(records).size} after; ` +
        `${duplicates} duplicate deliveries (same webhook-id)`,
    );
    await second.stop();
  });

  it('dead-letters forwards after FORWARD_MAX_AGE and delivers them on replay; redeliver resends one', async () => {
    const log = join(dir, `sink-${++files}.jsonl`);
    const port = await freePort(); // nothing listens here yet: the app is down
    const r = await receiver({
      STORE_URL: `sqlite:${join(dir, `recv-${++files}.db`)}`,
      FORWARD_URL: `http://127.0.0.1:${port}/hook`,
      FORWARD_MAX_AGE: '3',
      FORWARD_RETRY_MIN_MS: '200',
      FORWARD_RETRY_MAX_MS: '800',
    });
    const ids = Array.from({ length: 12 }, (_, i) => `x-${i}`);
    await register(r, ids);
    for (const id of ids) expect(await callback(r, id)).toBe(true);
    await waitFor(
      async () => (await Promise.all(ids.map((id) => forwardOf(r, id)))).every((f) => f.state === 'dead'),
      30_000,
      'every forward dead',
    );
    const dead = await forwardOf(r, 'x-0');
    expect(dead.attempts).toBeGreaterThanOrEqual(2);
    expect(dead.last_error).toMatch(/^network error: /);
    const m = parseMetrics(await scrape(r));
    expect(m.get('captcha_forward_dead_letters_total')).toBe(ids.length);
    expect(r.logs()).toContain('forward dead-lettered after FORWARD_MAX_AGE');

    const app = await sink({ log, port });
    const replay = async (body: object) => {
      const res = await fetch(`${r.managementUrl}/forwards/replay`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as { replayed?: number } };
    };
    expect((await replay({ state: 'dead', limit: 1001 })).status).toBe(400);
    expect((await replay({ state: 'pending' })).status).toBe(400);
    expect((await replay({ state: 'dead', limit: 5 })).body.replayed).toBe(5);
    expect((await replay({ state: 'dead', limit: 1000 })).body.replayed).toBe(ids.length - 5);
    await waitFor(() => ids.every((id) => okIds(app.records()).has(id)), 30_000, 'every replayed forward delivered');
    const replayed = await settledForward(r, 'x-0', 'delivered');
    expect(replayed).toMatchObject({ state: 'delivered', attempts: 1, webhook_id: dead.webhook_id });
    verifyAll(app.records());

    // Redeliver one delivered result: a new request with the same webhook-id.
    const res = await fetch(`${r.managementUrl}/tasks/x-3/redeliver`, { method: 'POST' });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ redelivered: 1 });
    await waitFor(() => attemptsOf(app.records(), 'x-3').length === 2, 30_000, 'the redelivery');
    const two = attemptsOf(app.records(), 'x-3');
    expect(two[0]!.headers['webhook-id']).toBe(two[1]!.headers['webhook-id']);
    expect((await fetch(`${r.managementUrl}/tasks/nobody/redeliver`, { method: 'POST' })).status).toBe(404);
  });

  it('refuses FORWARD_URL without FORWARD_SECRET and a malformed secret, naming the variable, never echoing it', async () => {
    const bad = 'whsec_short';
    for (const env of [
      { FORWARD_URL: 'http://127.0.0.1:1/hook', FORWARD_SECRET: '' },
      { FORWARD_URL: 'http://127.0.0.1:1/hook', FORWARD_SECRET: bad },
    ]) {
      const error = await startServer(env).then(
        (s) => {
          running.push(s);
          return '';
        },
        (e: Error) => e.message,
      );
      expect(error).toMatch(/FORWARD_SECRET: /);
      expect(error).not.toContain(bad);
    }
  });
});
