import type { CallbackMonitor } from '@captcha-callback-monitor/koa';
import {
  forwardJson,
  TASK_ID as ID,
  MAX_TASK_TIMEOUT_SECONDS,
  readBody,
  secretMatcher,
  TASK_ID_RULE,
  TASK_STATES,
  type TaskRecord,
  type TaskState,
  type TaskSubmission,
  taskJson,
} from '@captcha-callback-monitor/koa/internal';
import Router from '@koa/router';
import type { Context, Next } from 'koa';

const MAX_TASKS_PER_REQUEST = 10_000;
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_WAIT_SECONDS = 120;
/** Forwards one bulk replay may schedule: one bounded store call. */
const MAX_REPLAY = 1000;

export { taskJson };

function badRequest(ctx: Context, reason: string): void {
  ctx.status = 400;
  ctx.body = { error: 'invalid_request', reason };
}

const ITEM_KEYS = new Set(['id', 'solver_task_id', 'timeout_seconds', 'solver']);

/**
 * Recovery of missed results (src/solver/RecoveryPoller.ts), when solvers are configured: tasks registered with a
 * `solver` are watched; a solver task id attached later reaches a task parked without one.
 */
export interface TaskRecovery {
  /** The configured solver names. */
  readonly solvers: ReadonlySet<string>;
  watch(tasks: readonly { id: string; solver: string; solverTaskId?: string | undefined }[]): Promise<void>;
  attached(id: string, solverTaskId: string): Promise<void>;
}

/** A registration item: a TaskSubmission and the configured solver holding its result, if any. */
type Item = TaskSubmission & { readonly solver?: string | undefined };
/**
 * What one registration entry becomes: a plain id stays a string all the way to the store. An object per id kept
 * 10,000 of them alive across the store's batches of one request, which grew V8's young generation, and so the
 * process's RSS, for as long as the receiver then stayed idle (docs/benchmarks.md, "RSS at 1,000,000 pending").
 */
type Entry = string | Item;
/** Why an entry was refused. */
interface Refusal {
  readonly refused: string;
}
const refusal = (index: number, why: string): Refusal => ({ refused: `task ${index + 1}: ${why}` });

/** `solver` must name a configured solver: the message names the value and what is configured (names only). */
function solverProblem(solver: unknown, solvers: ReadonlySet<string>): string | undefined {
  if (typeof solver === 'string' && solvers.has(solver)) return undefined;
  const configured = solvers.size === 0 ? 'no solver is configured' : `configured: ${[...solvers].join(', ')}`;
  return typeof solver === 'string'
    ? `unknown solver "${solver.slice(0, 40)}" (${configured})`
    : `solver must be a configured solver's name (${configured})`;
}

/** One registration entry: `"id"`, or `{ "id", "solver_task_id"?, "timeout_seconds"?, "solver"? }`. */
function entryFrom(item: unknown, index: number, solvers: ReadonlySet<string>): Entry | Refusal {
  if (typeof item === 'string' || typeof item === 'number') {
    // String() of a string is that string: a valid id comes back as parsed, nothing allocated for it.
    const id = String(item);
    return ID.test(id) ? id : refusal(index, `id must be ${TASK_ID_RULE}`);
  }
  if (typeof item !== 'object' || item === null || Array.isArray(item))
    return refusal(index, 'must be an id or an object');
  const fields = item as Record<string, unknown>;
  const unknown = Object.keys(fields).find((k) => !ITEM_KEYS.has(k));
  if (unknown !== undefined) return refusal(index, `unknown field ${JSON.stringify(unknown.slice(0, 40))}`);
  const id = typeof fields.id === 'number' ? String(fields.id) : fields.id;
  if (typeof id !== 'string' || !ID.test(id)) return refusal(index, `id must be ${TASK_ID_RULE}`);
  const rawSolverId = fields.solver_task_id;
  const solverTaskId = typeof rawSolverId === 'number' ? String(rawSolverId) : rawSolverId;
  if (solverTaskId !== undefined && (typeof solverTaskId !== 'string' || !ID.test(solverTaskId)))
    return refusal(index, `solver_task_id must be ${TASK_ID_RULE}`);
  const timeout = fields.timeout_seconds;
  if (
    timeout !== undefined &&
    (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 1 || timeout > MAX_TASK_TIMEOUT_SECONDS)
  )
    return refusal(index, `timeout_seconds must be a number from 1 to ${MAX_TASK_TIMEOUT_SECONDS}`);
  if (fields.solver !== undefined) {
    const problem = solverProblem(fields.solver, solvers);
    if (problem !== undefined) return refusal(index, problem);
  }
  return { id, solverTaskId, timeoutSeconds: timeout, solver: fields.solver as string | undefined };
}

/** Accepts one item, a list of items, or `{ "ids": [...] }`. */
function tasksFrom(value: unknown, solvers: ReadonlySet<string>): Entry[] | string {
  const list = Array.isArray(value)
    ? value
    : typeof value === 'object' && value !== null && Array.isArray((value as { ids?: unknown }).ids)
      ? (value as { ids: unknown[] }).ids
      : [value];
  if (list.length === 0) return 'no task ids given';
  if (list.length > MAX_TASKS_PER_REQUEST) return `at most ${MAX_TASKS_PER_REQUEST} tasks per request`;
  // A list of plain ids is registered as it was parsed: no copy of it is made unless an entry changes.
  let tasks: Entry[] | undefined;
  for (let i = 0; i < list.length; i++) {
    const task = entryFrom(list[i], i, solvers);
    if (typeof task === 'object' && 'refused' in task) return task.refused;
    if (tasks) tasks.push(task);
    else if (task !== list[i]) {
      tasks = list.slice(0, i) as Entry[];
      tasks.push(task);
    }
  }
  return tasks ?? (list as Entry[]);
}

/**
 * Reads a JSON request body of at most `maxBytes`; on a wrong content type, an oversized body or bad JSON it answers
 * the request itself (415, 413, 400) and resolves to undefined.
 */
async function readJson(ctx: Context, maxBytes: number): Promise<{ value: unknown } | undefined> {
  const type = ctx.get('content-type').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') {
    ctx.status = 415;
    ctx.body = { error: 'unsupported_media_type', reason: 'use application/json' };
    return undefined;
  }
  const read = await readBody(ctx.req, maxBytes);
  if (!read.ok) {
    ctx.status = 413;
    ctx.body = { error: 'payload_too_large', reason: `body over ${maxBytes} bytes` };
    return undefined;
  }
  try {
    return { value: JSON.parse(read.body.toString('utf8')) };
  } catch {
    badRequest(ctx, 'body is not valid JSON');
    return undefined;
  }
}

function bearerGuard(token: string | undefined) {
  if (token === undefined) return async (_ctx: Context, next: Next) => next();
  const matches = secretMatcher(token);
  return async (ctx: Context, next: Next) => {
    const header = ctx.get('authorization');
    // The auth scheme name is case-insensitive (RFC 9110 §11.1).
    const given = /^bearer /i.test(header) ? header.slice(7) : '';
    if (!matches(given)) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer');
      ctx.body = { error: 'unauthorized', reason: 'missing or wrong bearer token' };
      return;
    }
    return next();
  };
}

/** `POST /tasks`, `GET /tasks/:id[?wait=S]`, `GET /tasks?state=…&limit=N`, for the management listener. */
export function taskApi(monitor: CallbackMonitor, apiToken: string | undefined, recovery?: TaskRecovery): Router {
  const solvers = recovery?.solvers ?? new Set<string>();
  const router = new Router();
  router.use(['/tasks', '/tasks/{*rest}', '/forwards/{*rest}'], bearerGuard(apiToken));

  /** The task's JSON, with its forwards when forwarding is on: `forward` (the latest event's) and `forwards` (all). */
  const answer = async (task: TaskRecord) => {
    if (!monitor.forwarding || !monitor.store.forwards) return taskJson(task);
    const forwards = (await monitor.store.forwards.forwardsOf(task.id)).sort((a, b) => a.createdAt - b.createdAt);
    const list = forwards.map(forwardJson);
    return { ...taskJson(task), forward: list.at(-1) ?? null, forwards: list };
  };

  router.post('/tasks', async (ctx) => {
    const body = await readJson(ctx, MAX_BODY_BYTES);
    if (!body) return;
    const value = body.value;
    const tasks = tasksFrom(value, solvers);
    if (typeof tasks === 'string') return badRequest(ctx, tasks);
    try {
      const added = await monitor.trackSubmitted(tasks);
      const items = tasks.filter((t): t is Item => typeof t !== 'string');
      // Registering a known task again with its solver id attaches the id: the usual order is register, then
      // createTask, then register again with what createTask returned.
      const withSolverId = items.filter((t) => t.solverTaskId !== undefined);
      const isNew = withSolverId.length > 0 ? new Set(added) : undefined;
      const attach = withSolverId.filter((t) => !isNew?.has(t.id));
      const conflicts: string[] = [];
      for (const t of attach) {
        const result = await monitor.attachSolverTaskId(t.id, t.solverTaskId!);
        if (result.kind === 'conflict') conflicts.push(t.id);
        else if (recovery && t.solver === undefined) await recovery.attached(t.id, t.solverTaskId!);
      }
      // After the ids are stored: the watch takes the solver id the task has (never an item's conflicting one); a
      // task without one yet waits for it, parked.
      const watched = items.filter((t) => t.solver !== undefined);
      if (recovery && watched.length > 0) await recovery.watch(watched.map((t) => ({ id: t.id, solver: t.solver! })));
      ctx.status = 201;
      ctx.body = {
        submitted: added.length,
        already_known: tasks.length - added.length,
        ...(conflicts.length > 0 ? { solver_task_id_conflicts: conflicts.slice(0, 100) } : {}),
      };
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
    const tasks = await monitor.store.list(state as TaskState, limit);
    ctx.body = { state, tasks: tasks.map(taskJson) };
  });

  // The solver's task id, once its createTask has answered: `{ "solver_task_id": "…", "solver"?: "…" }`.
  router.patch('/tasks/:id', async (ctx) => {
    const id = ctx.params.id ?? '';
    if (!ID.test(id)) return badRequest(ctx, `task id must be ${TASK_ID_RULE}`);
    const body = await readJson(ctx, 4096);
    if (!body) return;
    const value = body.value;
    const raw = (value as { solver_task_id?: unknown } | null)?.solver_task_id;
    const solverTaskId = typeof raw === 'number' ? String(raw) : raw;
    if (typeof solverTaskId !== 'string' || !ID.test(solverTaskId))
      return badRequest(ctx, `solver_task_id must be ${TASK_ID_RULE}`);
    const solver = (value as { solver?: unknown }).solver;
    const problem = solver === undefined ? undefined : solverProblem(solver, solvers);
    if (problem !== undefined) return badRequest(ctx, problem);
    let result: Awaited<ReturnType<CallbackMonitor['attachSolverTaskId']>>;
    try {
      result = await monitor.attachSolverTaskId(id, solverTaskId);
      if (recovery && result.kind !== 'unknown' && result.kind !== 'conflict') {
        if (typeof solver === 'string') await recovery.watch([{ id, solver }]);
        else await recovery.attached(id, solverTaskId);
      }
    } catch {
      ctx.status = 503;
      ctx.body = { error: 'store_unavailable', reason: 'the solver task id could not be stored' };
      return;
    }
    if (result.kind === 'unknown') {
      ctx.status = 404;
      ctx.body = { error: 'not_found', reason: 'no registered task with this id' };
      return;
    }
    if (result.kind === 'conflict') {
      ctx.status = 409;
      ctx.body = {
        error: 'conflict',
        reason: 'the task has another solver task id, or this solver task id belongs to another task',
      };
      return;
    }
    const task = await monitor.getTask(id);
    ctx.body = task ? await answer(task) : { id };
  });

  router.get('/tasks/:id', async (ctx) => {
    const id = ctx.params.id ?? '';
    if (!ID.test(id)) return badRequest(ctx, `task id must be ${TASK_ID_RULE}`);
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
    ctx.body = await answer(task);
  });

  // Sends the task's forwards again, as a new round of retries with the same webhook id.
  router.post('/tasks/:id/redeliver', async (ctx) => {
    const id = ctx.params.id ?? '';
    if (!ID.test(id)) return badRequest(ctx, `task id must be ${TASK_ID_RULE}`);
    if (!monitor.forwarding) {
      ctx.status = 409;
      ctx.body = { error: 'forwarding_off', reason: 'FORWARD_URL is not set' };
      return;
    }
    let n: number | undefined;
    try {
      n = await monitor.redeliver(id);
    } catch {
      ctx.status = 503;
      ctx.body = { error: 'store_unavailable', reason: 'the redelivery could not be stored' };
      return;
    }
    if (n === undefined) {
      ctx.status = 404;
      ctx.body = { error: 'not_found', reason: 'no task with this id' };
      return;
    }
    ctx.status = 202;
    ctx.body = { redelivered: n };
  });

  // Bounded bulk replay: `{ "state": "dead"|"gone"|"delivered"|"all", "from"?, "to"?, "limit"? }` (ISO times).
  router.post('/forwards/replay', async (ctx) => {
    if (!monitor.forwarding) {
      ctx.status = 409;
      ctx.body = { error: 'forwarding_off', reason: 'FORWARD_URL is not set' };
      return;
    }
    const body = await readJson(ctx, 4096);
    if (!body) return;
    const value = body.value as Record<string, unknown>;
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      return badRequest(ctx, 'body must be an object');
    const state = value.state ?? 'dead';
    if (state !== 'dead' && state !== 'gone' && state !== 'delivered' && state !== 'all')
      return badRequest(ctx, 'state must be one of dead, gone, delivered, all');
    const time = (v: unknown, fallback: number) =>
      v === undefined ? fallback : typeof v === 'string' ? Date.parse(v) : Number.NaN;
    const from = time(value.from, 0);
    const to = time(value.to, Date.now() + 1);
    if (!Number.isFinite(from) || !Number.isFinite(to) || from > to)
      return badRequest(ctx, 'from and to must be ISO 8601 times, from ≤ to');
    const limit = value.limit ?? 100;
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_REPLAY)
      return badRequest(ctx, `limit must be 1-${MAX_REPLAY}`);
    try {
      const replayed = await monitor.replayForwards({ state, from, to, limit });
      ctx.status = 202;
      ctx.body = { replayed, state, from: new Date(from).toISOString(), to: new Date(to).toISOString(), limit };
    } catch {
      ctx.status = 503;
      ctx.body = { error: 'store_unavailable', reason: 'the replay could not be stored' };
    }
  });

  return router;
}
