import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { health, parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';

/*
 * Reliability: "SIGKILL under load loses no acknowledged callback; a restart keeps pending tasks and delivery
 * accounting." The real CLI on a SQLite file takes callbacks at 64-way concurrency over keep-alive connections, is
 * SIGKILLed mid-stream, and is started again on the same file.
 */

const REGISTERED = 3000;
const CALLBACKS = 2000;
const KILL_AFTER_ACKS = 800;
const CONCURRENCY = 64;

const ids = Array.from({ length: REGISTERED }, (_, i) => `rs-${String(i).padStart(4, '0')}`);
const codeOf = (id: string) => `ans-${id}`;

/** Runs `fn` over `items` with at most `concurrency` calls in flight; stops taking new items once `stop()` is true. */
async function pool<T>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T) => Promise<void>,
  stop: () => boolean = () => false,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length && !stop()) await fn(items[next++] as T);
    }),
  );
}

async function json<T>(url: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const res = await fetch(url, init);
  return { status: res.status, body: (await res.json()) as T };
}

const metric = (text: string, name: string) => parseMetrics(text).get(name) ?? 0;

/** Reads every task's state through GET /tasks/:id. */
async function states(s: RunningServer): Promise<Map<string, { state: string; code: string | null }>> {
  const out = new Map<string, { state: string; code: string | null }>();
  await pool(ids, CONCURRENCY, async (id) => {
    const { status, body } = await json<{ state: string; code: string | null }>(`${s.managementUrl}/tasks/${id}`);
    expect(status, id).toBe(200);
    out.set(id, { state: body.state, code: body.code });
  });
  return out;
}

describe('SQLite store: SIGKILL mid-stream, then restart on the same file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ccm-restart-'));
  const env = { STORE_URL: `sqlite:${join(dir, 'cb.db')}`, DELIVERY_TIMEOUT: '3600' };
  const servers: RunningServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps every acknowledged callback, every pending task and the accounting, with no double counting', async () => {
    const first = await startServer(env);
    servers.push(first);
    const reg = await json<{ submitted: number }>(`${first.managementUrl}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ids }),
    });
    expect(reg).toEqual({ status: 201, body: { submitted: REGISTERED, already_known: 0 } });

    // 2,000 callbacks, 64 in flight; SIGKILL once 800 have been acknowledged.
    const acked = new Set<string>();
    const sent = new Set<string>();
    let killed: Promise<void> | undefined;
    let failedAfterKill = 0;
    const started = performance.now();
    await pool(
      ids.slice(0, CALLBACKS),
      CONCURRENCY,
      async (id) => {
        sent.add(id);
        try {
          const res = await fetch(`${first.publicUrl}/callback?id=${id}&code=${codeOf(id)}`);
          await res.arrayBuffer();
          if (res.status === 200) acked.add(id);
          else expect.fail(`callback ${id} got ${res.status} before the kill`);
        } catch {
          // Connection refused or reset: only possible once the process is gone.
          expect(killed, `callback ${id} failed before the kill`).toBeDefined();
          failedAfterKill++;
        }
        if (acked.size >= KILL_AFTER_ACKS && !killed) killed = first.kill();
      },
      () => killed !== undefined,
    );
    await killed;
    const streamMs = performance.now() - started;
    expect(first.process.signalCode).toBe('SIGKILL');
    expect(acked.size).toBeGreaterThanOrEqual(KILL_AFTER_ACKS);
    expect(acked.size).toBeLessThan(CALLBACKS);

    // Restart on the same file.
    const second = await startServer(env);
    servers.push(second);
    const before = await states(second);
    const deliveredBefore = new Set([...before].filter(([, t]) => t.state === 'delivered').map(([id]) => id));
    // Every acknowledged callback is there, with its code.
    for (const id of acked) expect(before.get(id), id).toEqual({ state: 'delivered', code: codeOf(id) });
    // Beyond those, only callbacks in flight at the kill may have been stored (stored, but the 200 never arrived).
    for (const id of deliveredBefore) expect(sent.has(id), `${id} delivered but never sent`).toBe(true);
    expect(deliveredBefore.size - acked.size).toBeLessThanOrEqual(CONCURRENCY);
    // Everything else is still pending: the 1,000 tasks never called back and the unsent or unstored ones.
    for (const [id, t] of before) {
      if (!deliveredBefore.has(id)) expect(t, id).toEqual({ state: 'pending', code: null });
    }
    // The store-wide accounting survived (the health block reads it at the first sweep after start).
    expect((await health(second)).delivery).toMatchObject({
      delivered: deliveredBefore.size,
      pending: REGISTERED - deliveredBefore.size,
      missed: 0,
      late: 0,
    });
    // Registering again changes nothing.
    const again = await json(`${second.managementUrl}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(ids.map((id) => ({ id }))),
    });
    expect(again.body).toEqual({ submitted: 0, already_known: REGISTERED });

    // The solver side re-sends ALL 2,000 callbacks to the restarted process.
    const statuses = new Map<number, number>();
    await pool(ids.slice(0, CALLBACKS), CONCURRENCY, async (id) => {
      const res = await fetch(`${second.publicUrl}/callback?id=${id}&code=${codeOf(id)}-again`);
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    });
    expect(Object.fromEntries(statuses)).toEqual({ 200: CALLBACKS });

    const m = await scrape(second);
    expect(metric(m, 'captcha_callback_duplicates_total')).toBe(deliveredBefore.size);
    expect(metric(m, 'captcha_tasks_delivered_total')).toBe(CALLBACKS - deliveredBefore.size);
    expect(metric(m, 'captcha_tasks_submitted_total')).toBe(0);
    expect(metric(m, 'captcha_tasks_missed_total')).toBe(0);
    expect(metric(m, 'captcha_tasks_late_total')).toBe(0);
    expect(metric(m, 'captcha_tasks_pending')).toBe(REGISTERED - CALLBACKS);

    // Store-wide: exactly the distinct delivered ids, and delivered + pending == registered.
    const after = (await health(second)).delivery;
    expect(after).toMatchObject({ delivered: CALLBACKS, pending: REGISTERED - CALLBACKS, missed: 0, late: 0 });
    expect(after.delivered + after.pending).toBe(REGISTERED);
    // The first result is kept: a re-sent callback never overwrites what was acknowledged.
    const final = await states(second);
    for (const id of acked) expect(final.get(id)?.code, id).toBe(codeOf(id));
    for (const id of ids.slice(CALLBACKS)) expect(final.get(id)?.state, id).toBe('pending');

    console.log(
      `restart: ${acked.size} acknowledged before SIGKILL (${sent.size} sent, ${failedAfterKill} cut off) in ` +
        `${Math.round(streamMs)} ms; ${deliveredBefore.size} delivered in the file after restart ` +
        `(${deliveredBefore.size - acked.size} stored but unacknowledged); re-send: ` +
        `${deliveredBefore.size} duplicates, ${CALLBACKS - deliveredBefore.size} deliveries`,
    );
    expect(await second.stop()).toBe(0);
  });
});
