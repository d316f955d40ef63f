/**
 * Recovery with the real server: the CLI as a child process configured with two loopback solver simulators (one
 * res.php, one createTask) at their documented limits, tasks registered over POST /tasks with `solver` (with the
 * solver task id in the same item, attached later by PATCH, or by registering again), some callbacks sent and the
 * others never. Every missing result is recovered by asking the solver before the task's deadline and is stored as a
 * callback would be: a long-poll started before it wakes, GET /tasks/:id shows it delivered with the solver's token,
 * it is forwarded to the app, counted by captcha_tasks_recovered_total and shown in /health/callbacks; a real callback
 * afterwards is a duplicate. On the default SQLite store and on Redis.
 *
 * Only RECOVERY_AFTER is short (5 s, configuration allows ≥ 1 s); the simulators' limits are the documented ones.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import type { SinkRecord } from './support/appSink.ts';
import { waitFor } from './support/ports.ts';
import { type RedisServer, startRedis } from './support/redis.ts';
import { health, parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';
import { type RunningSink, startSink } from './support/sink.ts';
import { type SimulatorFlavor, startSolverSimulator, WITHIN_LIMITS } from './support/solverSimulator.ts';

const RECOVERY_AFTER_S = 5;
const TIMEOUT_SECONDS = 90;
const KEY_2C = `2c${randomBytes(15).toString('hex')}`;
const KEY_CS = `CAP-${randomBytes(16).toString('hex').toUpperCase()}`;
const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const dir = mkdtempSync(join(tmpdir(), 'ccm-solver-e2e-'));

const running: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close().catch(() => {});
});
let redis: RedisServer | undefined;
afterAll(async () => {
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** How a task is registered with its solver: all in one item, the solver id by PATCH, or by registering again. */
type How = 'item' | 'patch' | 'again';
interface Task {
  id: string;
  solver: 'twoc' | 'cs';
  flavor: SimulatorFlavor;
  solverTaskId: string;
  token: string;
  lost: boolean;
  /** Still being solved at the first ask: recovered at a later one. */
  slow: boolean;
  /** Its (real) callback's JSON body carries `"recovered": true`, as any solver's body could: it must not count. */
  forged: boolean;
  how: How;
}

/** The parts of GET /tasks/:id (and /health/callbacks) this test reads. */
interface Body {
  reason?: string;
  metadata?: Record<string, unknown> | null;
  recovered?: boolean;
  submitted_at: string;
  deadline_at: string;
  received_at: string;
  delivery?: unknown;
}

const post = (url: string, body: unknown, method = 'POST') =>
  fetch(url, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

/**
 * What the solver would POST: 2Captcha a form with `id` and `code`; CapSolver its getTaskResult JSON (for a forged
 * task, with a `recovered` field of its own besides).
 */
async function sendCallback(receiver: RunningServer, t: Task, token: string): Promise<void> {
  const res =
    t.flavor === '2captcha'
      ? await fetch(`${receiver.publicUrl}/callback/${t.id}`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ id: t.solverTaskId, code: token }).toString(),
        })
      : await post(`${receiver.publicUrl}/callback/${t.id}`, {
          errorId: 0,
          status: 'ready',
          taskId: t.solverTaskId,
          solution: { gRecaptchaResponse: token },
          ...(t.forged ? { recovered: true } : {}),
        });
  expect(res.status).toBe(200);
}

async function scenario(storeUrl: string): Promise<void> {
  const twoc = await startSolverSimulator({ flavor: '2captcha', key: KEY_2C, balance: 10 });
  const cs = await startSolverSimulator({ flavor: 'capsolver', key: KEY_CS, balance: 10 });
  running.push(twoc, cs);
  const sims = { twoc, cs };
  const app: RunningSink = await startSink({ log: join(dir, `sink-${randomBytes(4).toString('hex')}.jsonl`) });
  running.push({ close: () => app.kill() });
  const receiver = await startServer({
    STORE_URL: storeUrl,
    RECOVERY_AFTER: String(RECOVERY_AFTER_S),
    SOLVER_TWOC_PROTOCOL: 'res.php',
    SOLVER_TWOC_URL: twoc.url,
    SOLVER_TWOC_KEY: KEY_2C,
    SOLVER_CS_PROTOCOL: 'createTask',
    SOLVER_CS_URL: cs.url,
    SOLVER_CS_KEY: KEY_CS,
    FORWARD_URL: app.url,
    FORWARD_SECRET: SECRET,
  });
  running.push({ close: () => receiver.stop() });
  const api = receiver.managementUrl;

  // Registration is checked: an unknown solver is refused, naming it and the configured ones.
  const refused = await post(`${api}/tasks`, [{ id: 'x-1', solver: 'nosuch', solver_task_id: '1' }]);
  expect(refused.status).toBe(400);
  expect(((await refused.json()) as Body).reason).toMatch(
    /unknown solver "nosuch" \(configured: (cs, twoc|twoc, cs)\)/,
  );
  const refusedPatch = await post(`${api}/tasks/x-1`, { solver_task_id: '1', solver: 'nosuch' }, 'PATCH');
  expect(refusedPatch.status).toBe(400);

  const hows: How[] = ['item', 'patch', 'again'];
  const start = Date.now();
  const tasks: Task[] = Array.from({ length: 24 }, (_, i) => {
    const solver = i % 2 === 0 ? 'twoc' : 'cs';
    const lost = i % 3 === 0;
    return {
      id: `order-${i}`,
      solver,
      flavor: solver === 'twoc' ? '2captcha' : 'capsolver',
      solverTaskId: solver === 'twoc' ? String(8_000_000 + i) : `cs-${i}-0000-4000-8000-000000000000`,
      token: `03AGdBq-${i}-${randomBytes(4).toString('hex')}`,
      lost,
      slow: i === 3 || i === 12,
      forged: solver === 'cs' && !lost && i % 4 === 1,
      how: hows[Math.floor(i / 3) % 3]!,
    };
  });
  for (const t of tasks) {
    // A slow task becomes ready only after its first ask, so it needs a second one, at the solver's pace.
    sims[t.solver].addTask(t.solverTaskId, {
      answer: t.flavor === '2captcha' ? t.token : { gRecaptchaResponse: t.token },
      readyAt: t.slow ? start + RECOVERY_AFTER_S * 1000 + 2000 : start,
    });
  }
  const item = (t: Task) => ({ id: t.id, solver: t.solver, timeout_seconds: TIMEOUT_SECONDS });
  const first = await post(
    `${api}/tasks`,
    tasks.map((t) => (t.how === 'item' ? { ...item(t), solver_task_id: t.solverTaskId } : item(t))),
  );
  expect(first.status).toBe(201);
  expect(await first.json()).toMatchObject({ submitted: tasks.length, already_known: 0 });
  // The solver's createTask answered: its id reaches the tasks registered without one.
  for (const t of tasks.filter((x) => x.how === 'patch')) {
    const res = await post(`${api}/tasks/${t.id}`, { solver_task_id: t.solverTaskId }, 'PATCH');
    expect(res.status).toBe(200);
  }
  const again = await post(
    `${api}/tasks`,
    tasks.filter((t) => t.how === 'again').map((t) => ({ id: t.id, solver_task_id: t.solverTaskId })),
  );
  expect(again.status).toBe(201);

  const lost = tasks.filter((t) => t.lost);
  expect(lost.length).toBe(8);
  expect(new Set(lost.map((t) => t.how))).toEqual(new Set(hows));
  // Long-polls started before anything was recovered: recovery must wake them as a callback would.
  const waits = lost.map((t) =>
    fetch(`${api}/tasks/${t.id}?wait=60`).then(async (r) => ({ id: t.id, body: (await r.json()) as Body })),
  );
  for (const t of tasks.filter((x) => !x.lost)) await sendCallback(receiver, t, t.token);
  // The real callbacks landed before the first recovery ask was due (if not, a task below could show a poll).
  expect(Date.now() - start).toBeLessThan(RECOVERY_AFTER_S * 1000);

  const woken = await Promise.all(waits);
  for (const w of woken) {
    const t = lost.find((x) => x.id === w.id)!;
    expect(w.body, t.id).toMatchObject({ id: t.id, state: 'delivered', code: t.token, solver_task_id: t.solverTaskId });
    // Marked on the task, not inside the solver's metadata.
    expect(w.body.recovered, t.id).toBe(true);
    expect(w.body.metadata?.recovered, t.id).toBeUndefined();
    expect(Date.parse(w.body.received_at)).toBeLessThan(Date.parse(w.body.deadline_at));
    // Never before RECOVERY_AFTER: a callback still had its chance.
    expect(Date.parse(w.body.received_at)).toBeGreaterThanOrEqual(Date.parse(w.body.submitted_at) + 5000);
  }
  const forged = tasks.filter((t) => t.forged);
  expect(forged.length).toBeGreaterThan(0);
  for (const t of tasks) {
    const body = (await (await fetch(`${api}/tasks/${t.id}`)).json()) as Body;
    expect(body, t.id).toMatchObject({ state: 'delivered', code: t.token, recovered: t.lost });
    // A body's own `recovered` is kept whole as the solver's metadata, and does not make the task recovered.
    if (t.forged) expect(body.metadata, t.id).toMatchObject({ recovered: true });
    const asks = sims[t.solver].polls(t.solverTaskId).length;
    if (!t.lost) expect(asks, `${t.id} had its callback`).toBe(0);
    else if (t.slow) expect(asks, t.id).toBeGreaterThanOrEqual(2);
    else expect(asks, t.id).toBe(1);
  }
  for (const [name, sim] of Object.entries(sims))
    expect({ name, ...sim.overLimit }).toEqual({ name, ...WITHIN_LIMITS });

  let m = parseMetrics(await scrape(receiver));
  expect(m.get(PROM.tasksRecoveredTotal)).toBe(lost.length);
  expect(m.get(PROM.tasksDeliveredTotal)).toBe(tasks.length);
  expect((await health(receiver)).delivery).toMatchObject({
    delivered: tasks.length,
    recovered: lost.length,
    pending: 0,
  });

  // Each recovered result reached the app, with the solver's token, as a callback's would.
  await waitFor(
    () => lost.every((t) => app.records().some((r: SinkRecord) => r.taskId === t.id && r.status === 200)),
    30_000,
    'the recovered results forwarded',
  );
  for (const t of lost) {
    const record = app.records().find((r) => r.taskId === t.id)!;
    expect(JSON.parse(record.body).data).toMatchObject({
      id: t.id,
      state: 'delivered',
      code: t.token,
      recovered: true,
    });
  }
  for (const t of forged) {
    await waitFor(() => app.records().some((r) => r.taskId === t.id), 30_000, `${t.id} forwarded`);
    const record = app.records().find((r) => r.taskId === t.id)!;
    expect(JSON.parse(record.body).data, t.id).toMatchObject({ id: t.id, recovered: false });
  }

  // The real callback, late: a duplicate, the recovered result kept, nothing recovered twice.
  const late = lost[0]!;
  await sendCallback(receiver, late, 'ANOTHER-TOKEN');
  m = parseMetrics(await scrape(receiver));
  expect(m.get(PROM.duplicatesTotal)).toBe(1);
  expect(m.get(PROM.tasksRecoveredTotal)).toBe(lost.length);
  expect(await (await fetch(`${api}/tasks/${late.id}`)).json()).toMatchObject({
    state: 'delivered',
    code: late.token,
    callbacks: 2,
    recovered: true,
  });
  const logs = receiver.logs();
  for (const key of [KEY_2C, KEY_CS]) expect(logs.includes(key), 'an API key in the logs').toBe(false);
}

describe('registration with a solver', () => {
  it('with no solver configured, any solver name is refused, saying so; tasks without one register as before', async () => {
    const receiver = await startServer({});
    running.push({ close: () => receiver.stop() });
    const res = await post(`${receiver.managementUrl}/tasks`, [{ id: 'a-1' }, { id: 'a-2', solver: 'twoc' }]);
    expect(res.status).toBe(400);
    expect(((await res.json()) as Body).reason).toBe('task 2: unknown solver "twoc" (no solver is configured)');
    expect((await fetch(`${receiver.managementUrl}/tasks/a-1`)).status).toBe(404);
    expect((await post(`${receiver.managementUrl}/tasks`, [{ id: 'a-1' }])).status).toBe(201);
    const typed = await post(`${receiver.managementUrl}/tasks`, [{ id: 'a-3', solver: 7 }]);
    expect(((await typed.json()) as Body).reason).toBe(
      "task 1: solver must be a configured solver's name (no solver is configured)",
    );
  });
});

describe('registration entries', () => {
  it('plain ids, numbers and items in one list each register; a bad plain id is refused by its place, none stored', async () => {
    const receiver = await startServer({});
    running.push({ close: () => receiver.stop() });
    const tasks = `${receiver.managementUrl}/tasks`;
    const bad = await post(tasks, ['b-1', 'b-2', 'not valid!']);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as Body).reason).toMatch(/^task 3: id must be /);
    expect((await fetch(`${tasks}/b-1`)).status).toBe(404);
    const mixed = await post(tasks, ['b-1', 42, { id: 'b-3', solver_task_id: 'S-3' }, 'b-4']);
    expect(mixed.status).toBe(201);
    expect(await mixed.json()).toEqual({ submitted: 4, already_known: 0 });
    for (const id of ['b-1', '42', 'b-3', 'b-4']) expect((await fetch(`${tasks}/${id}`)).status, id).toBe(200);
    expect(await (await fetch(`${tasks}/S-3`)).json()).toMatchObject({ id: 'b-3', solver_task_id: 'S-3' });
    // Again, with a solver id for a known plain id: attached, and counted as known.
    const again = await post(tasks, ['b-1', { id: 'b-4', solver_task_id: 'S-4' }, 'b-5']);
    expect(await again.json()).toEqual({ submitted: 1, already_known: 2 });
    expect(await (await fetch(`${tasks}/S-4`)).json()).toMatchObject({ id: 'b-4', solver_task_id: 'S-4' });
  });
});

describe('recovery through the real server', () => {
  it('SQLite (the default store): every missing result recovered before its deadline, within the limits', async () => {
    await scenario(`sqlite:${join(dir, 'recv.db')}`);
  }, 120_000);

  it('Redis: the same', async () => {
    redis = await startRedis();
    await scenario(`${redis.url}?prefix=e2e:`);
  }, 120_000);
});
