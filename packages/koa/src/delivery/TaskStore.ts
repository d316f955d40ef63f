import type { CallbackFormat, Outcome } from '../metrics/contract.ts';

/** Where a task is in its life: registered and waiting, answered in time, past its deadline, answered too late. */
export type TaskState = 'pending' | 'delivered' | 'missed' | 'late';
export const TASK_STATES: readonly TaskState[] = ['pending', 'delivered', 'missed', 'late'];

/** The solver's own fields besides the token, kept whole: never log them (they may carry tokens and cookies). */
export type ResultDetails = Readonly<Record<string, unknown>>;

/**
 * One solver callback, parsed. `code` is the solution or the solver's error string: never log it.
 *
 * A callback names its task by the app's id (`taskId`, from the `<prefix>/<id>` path segment), by the solver's task
 * id (`solverTaskId`, from the query or body), or both; at least one is set. When both are set the app's id decides
 * which task it is, and the solver's id is kept on the task.
 */
export interface CallbackResult {
  /** The app's id, from the callback URL's path; undefined when the URL carries none. */
  readonly taskId?: string | undefined;
  /** The solver's task id, from the query or body; undefined when the request carries none. */
  readonly solverTaskId?: string | undefined;
  readonly outcome: Outcome;
  readonly code: string;
  readonly format: CallbackFormat;
  /** Unix milliseconds when the receiver got it. */
  readonly receivedAt: number;
  /** The solver's whole `solution` object (token solvers: token, `userAgent`, `respKey`, cookies…), or null. */
  readonly solution?: ResultDetails | null;
  /** The solver's other fields (`cost`, `createTime`, `endTime`, `solveCount`, `errorCode`, uCaptcha `status`…). */
  readonly metadata?: ResultDetails | null;
  /**
   * True when the result was fetched from the solver's API by recovery polling rather than delivered by its callback;
   * absent or false for a callback. Set only by the receiver itself, never from anything the solver sent.
   */
  readonly recovered?: boolean;
}

/** A task to register: its app id, optionally the solver's task id and its own deadline. */
export interface NewTask {
  readonly id: string;
  readonly solverTaskId?: string | undefined;
  /** Unix ms; overrides the `deadlineAt` given to `register` for this task. */
  readonly deadlineAt?: number | undefined;
}

/** What a task looks like when read back. */
export interface TaskRecord {
  /** The app's id (for a callback nobody registered: the id the callback carried, the path's first). */
  readonly id: string;
  /** The solver's task id, once known (registered, attached, or carried by the callback); null before. */
  readonly solverTaskId: string | null;
  readonly state: TaskState;
  /** False for a callback nobody registered; it is stored all the same. */
  readonly registered: boolean;
  readonly outcome: Outcome | null;
  readonly code: string | null;
  readonly format: CallbackFormat | null;
  readonly solution: ResultDetails | null;
  readonly metadata: ResultDetails | null;
  /**
   * True when the task's stored result was fetched from the solver's API by recovery polling rather than delivered by
   * its callback; false otherwise (a callback's result, or no result yet). Fixed by the first (settling) result: a
   * duplicate never changes it.
   */
  readonly recovered: boolean;
  /** Unix milliseconds; null where the event has not happened. */
  readonly submittedAt: number | null;
  readonly deadlineAt: number | null;
  readonly receivedAt: number | null;
  /** How many callbacks arrived for this task in all (more than 1 means duplicates). */
  readonly callbacks: number;
}

/**
 * What storing a callback did, decided atomically inside the store. `id` is the app id of the task the callback was
 * filed under (for an unregistered callback: the id it was stored under).
 */
export type CallbackTransition =
  /** pending → delivered; `submittedAt` lets the caller record submit→callback time. */
  | { readonly kind: 'delivered'; readonly id: string; readonly submittedAt: number }
  /** missed → late. */
  | { readonly kind: 'late'; readonly id: string; readonly submittedAt: number }
  /** No task was registered under this id: stored as a delivered, unregistered task. */
  | { readonly kind: 'unregistered'; readonly id: string }
  /** The task already had a callback: the first result is kept, this one is only counted. */
  | { readonly kind: 'duplicate'; readonly id: string };

/**
 * What linking a solver task id to a registered task did (`attachSolverTaskId`, or `register` with a solver id).
 * - `attached`: the task now carries the solver id.
 * - `unchanged`: it already carried exactly this solver id.
 * - `merged`: a callback carrying only this solver id had arrived first and was stored as unregistered; its result
 *   now belongs to the task (the unregistered record is gone) and `transition` is what that did to the task
 *   (`delivered`, `late`, or `duplicate` when the task already had a result).
 * - `unknown`: no task with this app id.
 * - `conflict`: the task carries another solver id, or this solver id belongs to another registered task; nothing
 *   changed.
 */
export type AttachResult =
  | { readonly kind: 'attached' | 'unchanged' | 'unknown' | 'conflict' }
  | { readonly kind: 'merged'; readonly transition: CallbackTransition; readonly result: CallbackResult };

/** What `register` did: the ids it newly registered and the merges it made for their solver ids. */
export interface RegisterResult {
  readonly added: string[];
  readonly merged: ReadonlyArray<{ readonly transition: CallbackTransition; readonly result: CallbackResult }>;
}

/**
 * Store-wide counts of registered tasks (unregistered callbacks are not counted), read in O(1) from aggregates the
 * store keeps in step with every transition.
 */
export interface TaskCounts {
  readonly pending: number;
  readonly delivered: number;
  readonly missed: number;
  readonly late: number;
}

/**
 * What a forward hands to the app: `delivered` (the first result of a task that was pending, or of a callback nobody
 * registered), `late` (the first result of a task already marked missed), `missed` (the deadline passed with no
 * callback). The webhook's event type is `task.<event>`.
 */
export type ForwardEvent = 'delivered' | 'late' | 'missed';
export const FORWARD_EVENTS: readonly ForwardEvent[] = ['delivered', 'late', 'missed'];

/**
 * A forward's state: `pending` (due at `nextAttemptAt`, or being attempted while leased), `delivered` (the app answered
 * 2xx), `gone` (the app answered 410: never sent again unless redelivered), `dead` (no 2xx within the maximum age: a
 * dead letter, replayable).
 */
export type ForwardState = 'pending' | 'delivered' | 'gone' | 'dead';
export const FORWARD_STATES: readonly ForwardState[] = ['pending', 'delivered', 'gone', 'dead'];

/** One outbox row: one event of one task, to be handed to the app at least once. */
export interface ForwardRecord {
  /** The task's app id (for a callback nobody registered, the id it was stored under). */
  readonly taskId: string;
  readonly event: ForwardEvent;
  /** `msg_…`, random, fixed when the row is written: the `webhook-id` of every attempt, so the app can deduplicate. */
  readonly webhookId: string;
  readonly state: ForwardState;
  /** Unix ms of the event (the callback's receipt, or the deadline for `missed`). */
  readonly createdAt: number;
  /** Unix ms the current round began: the event, or the last redeliver/replay. The maximum age counts from here. */
  readonly since: number;
  /** Attempts started in the current round (an attempt cut short by a crash counts). */
  readonly attempts: number;
  /** Unix ms of the next attempt while pending (while an attempt runs: when its lease expires); null otherwise. */
  readonly nextAttemptAt: number | null;
  /** True while an instance holds the lease (an attempt is running, or its holder died and the lease is running out). */
  readonly leased: boolean;
  readonly lastAttemptAt: number | null;
  /** HTTP status of the last attempt, null when it got none (timeout, network error) or none was made. */
  readonly lastStatus: number | null;
  /** A short, fixed-form reason (`HTTP 503`, `timeout`, `network error: ECONNREFUSED`); never a URL or a body. */
  readonly lastError: string | null;
  /** Unix ms it became delivered, gone or dead; null while pending. */
  readonly doneAt: number | null;
}

/** A claimed forward: its row (attempts already counting this one), the lease token to settle it with, and the task. */
export interface ForwardJob {
  readonly forward: ForwardRecord;
  readonly lease: string;
  /** The task as stored now; undefined if it was purged meanwhile (the forward is then settled as dead). */
  readonly task: TaskRecord | undefined;
}

/** How an attempt ended, as the worker settles it. */
export type ForwardSettlement =
  | { readonly state: 'delivered' | 'gone' | 'dead'; readonly status: number | null; readonly error: string | null }
  | {
      readonly state: 'pending';
      readonly nextAttemptAt: number;
      readonly status: number | null;
      readonly error: string | null;
    };

/** One attempt's end, for `settle`: which forward, under which lease, when, and how. */
export interface ForwardSettleItem {
  readonly taskId: string;
  readonly event: ForwardEvent;
  readonly lease: string;
  /** Unix ms the attempt ended. */
  readonly at: number;
  readonly result: ForwardSettlement;
}

/** Which forwards a bulk replay picks: by state, and by event time in `[from, to)`. */
export interface ReplayFilter {
  /** `dead` (the default use), `gone`, `delivered`, or `all` settled ones (pending forwards are never touched). */
  readonly state: Exclude<ForwardState, 'pending'> | 'all';
  readonly from: number;
  readonly to: number;
  readonly limit: number;
}

/**
 * The forwarding outbox, kept by the store itself so that a forward is written in the SAME atomic operation as the
 * transition that makes it: once `recordCallback` (or a merge, or `expireDue` for `missed`) resolves, the forward is as
 * durable as the result. Off until `enable` is called (nothing is written then, so the hot path is unchanged).
 *
 * Forwards are worked under a lease: `claimDue` takes due rows for `leaseMs` (the row's next attempt time moves to the
 * lease's end, so a holder that dies simply lets the row fall due again and another instance takes it over), and only
 * the holder of the current lease token can settle it. Forwards are deleted with their task (retention, merges).
 */
export interface ForwardOutbox {
  /** From now on, transitions of these kinds write a pending forward. Call before serving callbacks. */
  enable(events: readonly ForwardEvent[]): void;
  /**
   * Leases at most `limit` pending forwards due at `now` (next attempt ≤ now), oldest due first, for `leaseMs`; each
   * claim counts one attempt. Cost bounded by `limit`.
   */
  claimDue(now: number, limit: number, leaseMs: number): Promise<ForwardJob[]>;
  /**
   * Settles claimed forwards, each only if its lease token is still the current one (a forward whose lease expired and
   * was claimed again is left to its new holder). Resolves to how many were settled.
   */
  settle(items: readonly ForwardSettleItem[]): Promise<number>;
  /** The task's forwards (at most one per event), by event. */
  forwardsOf(taskId: string): Promise<ForwardRecord[]>;
  /**
   * Makes every settled forward of the task pending again, due at `now`, as a new round (attempts 0, max age from
   * `now`), keeping its webhook id; a pending one is made due at `now`, unless an attempt holds a live lease (it is
   * left to finish). Resolves to how many it changed (0: no forwards, or all in flight).
   */
  redeliver(taskId: string, now: number): Promise<number>;
  /** The same for at most `filter.limit` settled forwards picked by state and event time, oldest first. */
  replay(filter: ReplayFilter, now: number): Promise<number>;
  /**
   * Pending forwards, counted up to `cap` (the count stops there), and the event time of the oldest one (null when
   * none). Cost bounded by `cap`.
   */
  backlog(cap: number): Promise<{ readonly pending: number; readonly oldestCreatedAt: number | null }>;
}

/**
 * Durable task storage. Every method that changes state does so atomically in the store, so that several receiver
 * instances sharing one store each see a given transition happen exactly once (and only the one that made it counts
 * it). Implementations: MemoryTaskStore (tests), SqliteTaskStore (default), RedisTaskStore (shared).
 *
 * Every rejection from every method is a StoreUnavailableError (the store is closed, unreachable, or refused the
 * write); callers answer 503 and never acknowledge. Nothing else is thrown.
 */
/**
 * The most ids one `register` call should carry: the tracker splits larger registrations into calls of this size
 * (yielding between them), and a store that sends a call to a server (Redis) splits larger ones the same way.
 */
export const REGISTER_BATCH_SIZE = 1000;

export interface TaskStore {
  /**
   * Registers tasks as pending, each with its own `deadlineAt` or else the one given here. Ids already known are left
   * untouched (their registration is not repeated; a solver id given for them is not attached: use
   * `attachSolverTaskId`). A solver id is linked to the new task as `attachSolverTaskId` would; one that belongs to
   * another registered task is left off. Resolves to the ids this call newly registered, and the merges it made (a
   * callback that had come first under the solver id; see AttachResult).
   */
  register(tasks: readonly (string | NewTask)[], submittedAt: number, deadlineAt: number): Promise<RegisterResult>;
  /**
   * Links the solver's task id to a registered task, so a callback carrying only the solver id finds it, atomically
   * (see AttachResult).
   */
  attachSolverTaskId(id: string, solverTaskId: string): Promise<AttachResult>;
  /**
   * Durably stores a callback and applies its state transition. Resolves only once the result is durable.
   * The task is found by `taskId` (its app id), or else by `solverTaskId` (the task registered or attached with it),
   * or else, for a callback without `taskId`, by `solverTaskId` as an app id: apps that register the id the solver
   * returned as their own keep working (that solver id is not linked then; the app id already finds the task). When
   * `taskId` finds a task that has no solver id yet, the callback's `solverTaskId` is linked to it (if no other task
   * holds it). A callback that finds no task is stored as unregistered under `taskId ?? solverTaskId`, with its
   * solver id linked, so a later `attachSolverTaskId` or `register` with that solver id can merge it.
   */
  recordCallback(result: CallbackResult): Promise<CallbackTransition>;
  /**
   * Moves at most `limit` pending tasks whose deadline is ≤ `now` to missed; resolves to the ids this call moved,
   * oldest deadline first (equal deadlines in an unspecified but stable order). Cost is bounded by `limit`.
   */
  expireDue(now: number, limit: number): Promise<string[]>;
  /** The task with this app id; else the task linked to this solver task id; else undefined. */
  get(id: string): Promise<TaskRecord | undefined>;
  /**
   * Tasks in one state, at most `limit`: pending ones by deadline, settled ones by settling time (the first callback's
   * receipt, or the deadline for missed tasks), oldest first. Cost is bounded by `limit`.
   */
  list(state: TaskState, limit: number): Promise<TaskRecord[]>;
  counts(): Promise<TaskCounts>;
  /**
   * Retention: deletes at most `limit` settled tasks whose settling event is older than `olderThan` (unix ms,
   * exclusive), oldest first, and resolves to how many it deleted. Settled means delivered, missed or late, and
   * includes stored callbacks nobody registered. The settling event is the (first) callback's receipt time for
   * delivered, late and unregistered tasks, and the deadline for missed ones. Pending tasks are never deleted.
   * `counts()` is left as it is: the counts are running totals of transitions, not a census of stored rows. A
   * callback for a deleted id later is stored as an unregistered one. A deleted task's solver id is unlinked with it.
   * Cost is bounded by `limit` (an index or sorted set on the settling time, never a scan).
   */
  purge(olderThan: number, limit: number): Promise<number>;
  /**
   * Optional, for stores whose call can fail after the write happened (a Redis reply lost when the connection dropped
   * or the command timed out mid-script): the callbacks whose `recordCallback` rejected although the store applied
   * them, with what they did. Each is reported exactly once over all calls, so the caller can count it then; the
   * callback itself was answered 503, so its solver was never told 200. Rejects like any other method while the store
   * is unreachable (the unconfirmed callbacks are kept for a later call, in a bounded list).
   */
  reconcile?(): Promise<ReadonlyArray<{ readonly transition: CallbackTransition; readonly result: CallbackResult }>>;
  /** The forwarding outbox (see ForwardOutbox); stores without one cannot forward. */
  readonly forwards?: ForwardOutbox;
  /**
   * Resolves when the store can take writes; rejects otherwise. May write (a heartbeat row or key), since only a
   * real write proves that writes work.
   */
  ping(): Promise<void>;
  /** Idempotent. After it, every other method rejects with StoreUnavailableError. */
  close(): Promise<void>;
}

/** Thrown by a store when it cannot durably write; the receiver answers 503 and never acknowledges. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}
