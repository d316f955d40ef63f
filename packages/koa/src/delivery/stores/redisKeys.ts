import { TASK_STATES, type TaskState } from '../TaskStore.ts';

/*
 * Key layout (P = key prefix):
 *   P task:<id>        hash: state, registered (1/0), outcome, code, format, submittedAt, deadlineAt, receivedAt,
 *                      callbacks, solverTaskId, solution and metadata (JSON text; absent when null), recovered
 *                      ('1' when the stored result came from recovery polling; absent otherwise); firstToken
 *                      and firstKind (delivered | late | unregistered): the token of the recordCallback call that
 *                      settled the task and what it did; lastDupToken: the token of its latest duplicate. They are
 *                      written by the same script as the transition and deleted with the hash, for `reconcile`
 *   P solver:<sid>     string: the app id of the task (or unregistered record) the solver task id is linked to; set
 *                      and deleted together with the hash's solverTaskId field, so the two always agree
 *   P state:<state>    sorted set of ids per state: pending scored by deadline (it doubles as the deadline queue
 *                      that expiry pops from), settled states by settling time (the callback's receipt, or the
 *                      deadline when missed)
 *   P settled          sorted set of every settled id (delivered, missed, late, unregistered), scored by its
 *                      settling time: the callback's receipt, or the deadline when missed. The retention queue.
 *   P counts           hash: pending, delivered, missed, late (registered tasks only)
 *   P fwd:<event>:<id> hash: one forward (outbox row): webhookId, state, createdAt, since, attempts, nextAttemptAt,
 *                      lease, lastAttemptAt, lastStatus, lastError, doneAt; written by the script of the transition
 *                      that makes it (only while forwarding is enabled), deleted with its task
 *   P fwd:due          sorted set of pending forwards (`<event>:<id>`) by next attempt time; a claim moves a member
 *                      to its lease's end, so a lease that runs out makes it due again
 *   P fwd:created:<s>  sorted sets of forwards per forward state by event time: the oldest pending one, replay
 *   P ping             written by ping()
 *
 * Scripts that discover ids inside Redis (a task by its solver id, register, expire, list, purge) build keys from the
 * prefix, so this store needs one Redis (primary), not Redis Cluster.
 */
export interface RedisKeys {
  readonly prefix: string;
  /** Prefixes of the per-id keys, which the scripts complete with an id. */
  readonly taskPrefix: string;
  readonly solverPrefix: string;
  readonly forwardPrefix: string;
  readonly counts: string;
  readonly ping: string;
  readonly settled: string;
  readonly state: Record<TaskState, string>;
  /** The keys every script that changes states receives first, in the order its STATE_KEYS header names them. */
  readonly stateKeys: string[];
}

export function redisKeys(prefix: string): RedisKeys {
  const state = Object.fromEntries(TASK_STATES.map((s) => [s, `${prefix}state:${s}`])) as Record<TaskState, string>;
  const counts = `${prefix}counts`;
  const settled = `${prefix}settled`;
  return {
    prefix,
    taskPrefix: `${prefix}task:`,
    solverPrefix: `${prefix}solver:`,
    forwardPrefix: `${prefix}fwd:`,
    counts,
    ping: `${prefix}ping`,
    settled,
    state,
    stateKeys: [counts, state.pending, state.delivered, state.missed, state.late, settled],
  };
}
