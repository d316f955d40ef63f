import { createHash, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import { TASK_STATES, type TaskRecord, type TaskState } from '../delivery/TaskStore.ts';
import type { CallbackMonitor } from '../plugin/CallbackMonitor.ts';
import { TASK_ID as ID } from '../plugin/parseCallback.ts';
import { readBody } from '../plugin/readBody.ts';

const MAX_TASKS_PER_REQUEST = 10_000;
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_WAIT_SECONDS = 120;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The JSON shape of a task on the API; `code` is the solver's answer. */
export function taskJson(t: TaskRecord) {
  return {
    id: t.id,
    state: t.state,
    registered: t.registered,
    outcome: t.outcome,
    code: t.code,
    format: t.format,
    submitted_at: iso(t.submittedAt),
    deadline_at: iso(t.deadlineAt),
    received_at: iso(t.receivedAt),
    callbacks: t.callbacks,
  };
}

function badRequest(ctx: Context, reason: string): void {
  ctx.status = 400;
  ctx.body = { error: 'invalid_request', reason };
}

/** Accepts `{ "id": "…" }`, `[{ "id": "…" }, …]`, `["…", …]` or `{ "ids": ["…"] }`. */
function idsFrom(value: unknown): string[] | string {
  const list = Array.isArray(value)
    ? value
    : typeof value === 'object' && value !== null && Array.isArray((value as { ids?: unknown }).ids)
      ? (value as { ids: unknown[] }).ids
      : [value];
  if (list.length === 0) return 'no task ids given';
  if (list.length > MAX_TASKS_PER_REQUEST) return `at most ${MAX_TASKS_PER_REQUEST} tasks per request`;
  const ids: string[] = [];
  for (const item of list) {
    const raw = typeof item === 'object' && item !== null ? (item as { id?: unknown }).id : item;
    const id = typeof raw === 'number' ? String(raw) : raw;
    if (typeof id !== 'string' || !ID.test(id))
      return 'each task needs an id of 1-128 characters of A-Z a-z 0-9 . _ : -';
    ids.push(id);
  }
  return ids;
}

function bearerGuard(token: string | undefined) {
  if (token === undefined) return async (_ctx: Context, next: Next) => next();
  const expected = createHash('sha256').update(token).digest();
  return async (ctx: Context, next: Next) => {
    const header = ctx.get('authorization');
    // The auth scheme name is case-insensitive (RFC 9110 §11.1).
    const given = /^bearer /i.test(header) ? header.slice(7) : '';
    if (!timingSafeEqual(createHash('sha256').update(given).digest(), expected)) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer');
      ctx.body = { error: 'unauthorized', reason: 'missing or wrong bearer token' };
      return;
    }
    return next();
  };
}

/** `POST /tasks`, `GET /tasks/:id[?wait=S]`, `GET /tasks?state=…&limit=N`, for the management listener. */
export function taskApi(monitor: CallbackMonitor, apiToken: string | undefined): Router {
  const router = new Router();
  router.use(['/tasks', '/tasks/{*rest}'], bearerGuard(apiToken));

  router.post('/tasks', async (ctx) => {
    const type = ctx.get('content-type').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/json') {
      ctx.status = 415;
      ctx.body = { error: 'unsupported_media_type', reason: 'use application/json' };
      return;
    }
    const read = await readBody(ctx.req, MAX_BODY_BYTES);
    if (!read.ok) {
      ctx.status = 413;
      ctx.body = { error: 'payload_too_large', reason: `body over ${MAX_BODY_BYTES} bytes` };
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(read.body.toString('utf8'));
    } catch {
      return badRequest(ctx, 'body is not valid JSON');
    }
    const ids = idsFrom(value);
    if (typeof ids === 'string') return badRequest(ctx, ids);
    try {
      const added = await monitor.trackSubmitted(ids);
      ctx.status = 201;
      ctx.body = { submitted: added.length, already_known: ids.length - added.length };
    } catch {
      ctx.status = 503;
      ctx.body = { error: 'store_unavailable', reason: 'tasks could not be registered' };
    }
  });

  router.get('/tasks', async (ctx) => {
    const state = String(ctx.query.state ?? 'missed');
    if (!TASK_STATES.includes(state as TaskState))
      return badRequest(ctx, `state must be one of ${TASK_STATES.join(', ')}`);
    const limit = Number(ctx.query.limit ?? 100);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) return badRequest(ctx, 'limit must be 1-1000');
    const tasks = await monitor.tracker.store.list(state as TaskState, limit);
    ctx.body = { state, tasks: tasks.map(taskJson) };
  });

  router.get('/tasks/:id', async (ctx) => {
    const id = ctx.params.id ?? '';
    if (!ID.test(id)) return badRequest(ctx, 'bad task id');
    const wait = ctx.query.wait === undefined ? 0 : Number(ctx.query.wait);
    if (!Number.isFinite(wait) || wait < 0 || wait > MAX_WAIT_SECONDS) {
      return badRequest(ctx, `wait must be 0-${MAX_WAIT_SECONDS} seconds`);
    }
    const task = wait > 0 ? await monitor.waitForResult(id, wait * 1000) : await monitor.getTask(id);
    if (!task) {
      ctx.status = 404;
      ctx.body = { error: 'not_found', reason: 'no task with this id' };
      return;
    }
    ctx.body = taskJson(task);
  });

  return router;
}
