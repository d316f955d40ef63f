import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { CallbackFormat, Outcome } from '../../metrics/contract.ts';
import {
  type AttachResult,
  type CallbackResult,
  type CallbackTransition,
  type ForwardEvent,
  type ForwardJob,
  type ForwardOutbox,
  type ForwardRecord,
  type ForwardState,
  type NewTask,
  type RegisterResult,
  type ReplayFilter,
  type ResultDetails,
  StoreUnavailableError,
  type TaskCounts,
  type TaskRecord,
  type TaskState,
  type TaskStore,
} from '../TaskStore.ts';
import { newWebhookId } from '../webhookId.ts';
import {
  type Checkpointer,
  type CheckpointerOptions,
  DEFAULT_REWIND_FRAMES,
  startCheckpointer,
} from './sqliteCheckpointer.ts';

export interface SqliteTaskStoreOptions {
  /**
   * How long a write waits for another connection's write lock, in ms. node:sqlite is synchronous, so this wait
   * blocks the event loop: keep it short. Transactions here last microseconds, and a callback answered after the
   * solver's 2 s give-up is worthless anyway, so a lock held longer than this is reported as unavailable (503).
   * Default 1000.
   */
  readonly busyTimeoutMs?: number;
  /**
   * `NORMAL` (default): in WAL mode every commit is in the OS before the call resolves, so a process crash or
   * SIGKILL loses nothing acknowledged; a power loss or kernel panic may lose the last commits. `FULL` fsyncs the
   * WAL on every commit and is needed for power-loss durability, at a large throughput cost.
   */
  readonly synchronous?: 'NORMAL' | 'FULL';
  /** WAL checkpoints on the worker thread (file stores): how often, and the log size that triggers a rewind. */
  readonly checkpoint?: CheckpointerOptions;
}

/** Bump with a migration when the schema changes. */
const SCHEMA_VERSION = 7;

/*
 * One row per task. The state CHECK spells its four values out with OR on purpose: SQLite evaluates `state IN (…)`
 * with a list by building a temporary b-tree every time the constraint runs, which made the CHECK a fifth of the
 * cost of a delivery (version 3 and older; opening such a file rebuilds the table once, see #migrate).
 *
 * Version 5 added the last three columns: the solver's task id, and the solver's whole `solution` object and its
 * other fields as JSON text (null when the callback had none). They come last because a version 4 file gets them by
 * `ALTER TABLE … ADD COLUMN`, which appends; a new file must have the same column order as an upgraded one.
 *
 * Version 7 added `recovered` (1 when the stored result was fetched from the solver's API by recovery polling rather
 * than delivered by its callback), last for the same reason; NOT NULL DEFAULT 0 lets `ADD COLUMN` give every existing
 * row 0 without rewriting it.
 */
const TASKS_TABLE = `tasks (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state = 'pending' OR state = 'delivered' OR state = 'missed' OR state = 'late'),
  registered INTEGER NOT NULL,
  outcome TEXT,
  code TEXT,
  format TEXT,
  submitted_at INTEGER,
  deadline_at INTEGER,
  received_at INTEGER,
  callbacks INTEGER NOT NULL DEFAULT 0,
  solver_task_id TEXT,
  solution TEXT,
  metadata TEXT,
  recovered INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID`;

/*
 * Version 6: the forwarding outbox, one row per task and event, written in the transaction of the transition that
 * makes it (only while forwarding is enabled, so a receiver without FORWARD_URL writes nothing more per callback).
 *
 * - `forwards_due` (pending only, by next attempt time) serves the worker's bounded claim. A claim moves the row's
 *   next attempt time to its lease's end, so a lease that runs out makes the row due again: no separate lease index.
 * - `forwards_created` (state, event time) serves bulk replay by time range and the oldest pending forward.
 * - The trigger deletes a task's forwards with it: retention, and an unregistered record merged into its task.
 */
const FORWARDS_SCHEMA = `
CREATE TABLE IF NOT EXISTS forwards (
  task_id TEXT NOT NULL,
  event TEXT NOT NULL,
  webhook_id TEXT NOT NULL,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  since INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  lease TEXT,
  last_attempt_at INTEGER,
  last_status INTEGER,
  last_error TEXT,
  done_at INTEGER,
  PRIMARY KEY (task_id, event)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS forwards_due ON forwards (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS forwards_created ON forwards (state, created_at);
CREATE TRIGGER IF NOT EXISTS forwards_with_task AFTER DELETE ON tasks BEGIN
  DELETE FROM forwards WHERE task_id = old.id;
END;`;

interface ForwardRow {
  task_id: string;
  event: ForwardEvent;
  webhook_id: string;
  state: ForwardState;
  created_at: number;
  since: number;
  attempts: number;
  next_attempt_at: number | null;
  lease: string | null;
  last_attempt_at: number | null;
  last_status: number | null;
  last_error: string | null;
  done_at: number | null;
}

/*
 * Two partial indexes, chosen so that a delivery (the hot path) touches as few pages as possible:
 *
 * - `tasks_due` covers pending tasks only, by deadline. It serves `expireDue` (a bounded range scan of its oldest
 *   end) and `list('pending')`. A delivery deletes one entry from it.
 * - `tasks_settled_at` covers settled tasks (delivered, missed, late, and stored callbacks nobody registered), by
 *   state and settling time: the callback's receipt, or the deadline for a missed task, which has no receipt. It
 *   serves `list()` of a settled state and retention (`purge`), both bounded range scans. A delivery adds one entry
 *   at its newest end, which every delivery of a burst shares.
 *
 * - `tasks_solver` (version 5) maps a solver task id to its row and makes it unique across tasks. Partial: most
 *   tasks have none (or get one only with their callback), and a NULL entry would cost a delivery an index write.
 *   A callback that carries the app's id never reads it unless that id is unknown.
 *
 * Up to version 2 one (state, deadline) index served both, so a delivery also inserted an entry at its deadline's
 * place among the delivered (a page of its own per callback), and a third index served retention.
 *
 * `counts` is one row updated inside the same transaction as every transition, so `counts()` is a single-row read
 * however many tasks there are, and can never drift from the rows it summarises.
 */
const INDEXES_AND_AGGREGATES = `
DROP INDEX IF EXISTS tasks_state_sort;
DROP INDEX IF EXISTS tasks_settled;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (deadline_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS tasks_settled_at ON tasks (state, coalesce(received_at, deadline_at)) WHERE state <> 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS tasks_solver ON tasks (solver_task_id) WHERE solver_task_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS counts (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  pending INTEGER NOT NULL,
  delivered INTEGER NOT NULL,
  missed INTEGER NOT NULL,
  late INTEGER NOT NULL
);
INSERT OR IGNORE INTO counts VALUES (1, 0, 0, 0, 0);
CREATE TABLE IF NOT EXISTS heartbeat (one INTEGER PRIMARY KEY CHECK (one = 1), beats INTEGER NOT NULL);
INSERT OR IGNORE INTO heartbeat VALUES (1, 0);
${FORWARDS_SCHEMA}
`;

/** The whole schema of a new file (also used by the statement micro-benchmark). */
export const SQLITE_SCHEMA = `CREATE TABLE IF NOT EXISTS ${TASKS_TABLE};${INDEXES_AND_AGGREGATES}`;

/** The settling time, exactly as `tasks_settled_at` indexes it (queries must repeat the expression to use it). */
const SETTLED_AT = 'coalesce(received_at, deadline_at)';
/** The oldest settled tasks of one state older than ?1, at most ?2: a range scan of `tasks_settled_at`. */
const oldestSettled = (state: TaskState) =>
  `SELECT * FROM (SELECT id, ${SETTLED_AT} AS at FROM tasks
     WHERE state = '${state}' AND state <> 'pending' AND ${SETTLED_AT} < ?1 ORDER BY at, id LIMIT ?2)`;

const COLUMNS =
  'id, state, registered, outcome, code, format, submitted_at, deadline_at, received_at, callbacks, ' +
  'solver_task_id, solution, metadata, recovered';

interface Row {
  id: string;
  state: TaskState;
  registered: number;
  outcome: Outcome | null;
  code: string | null;
  format: CallbackFormat | null;
  submitted_at: number | null;
  deadline_at: number | null;
  received_at: number | null;
  callbacks: number;
  solver_task_id: string | null;
  solution: string | null;
  metadata: string | null;
  recovered: number;
}

/** What a callback's lookup reads: enough to decide its transition and whether to link the solver id. */
type CallbackRow = [id: string, state: TaskState, submittedAt: number | null, solverTaskId: string | null];

/**
 * The default store: one SQLite file in WAL mode through the built-in `node:sqlite` (no native build). Every
 * transition runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's single write lock before reading, so the
 * read-decide-write of a transition is atomic against other connections and other processes on the same file.
 * Every SQLite error is rethrown as StoreUnavailableError: the caller answers 503 and never acknowledges.
 */
export class SqliteTaskStore implements TaskStore {
  readonly #db: DatabaseSync;
  readonly #begin: StatementSync;
  readonly #commit: StatementSync;
  readonly #rollback: StatementSync;
  readonly #insertPending: StatementSync;
  readonly #insertUnregistered: StatementSync;
  /** A callback's task by the app's id (the path): state, submitted_at, solver_task_id. */
  readonly #selectById: StatementSync;
  /** A callback's task by the solver's id, when the app's id is unknown. */
  readonly #selectBySolver: StatementSync;
  /** A callback with only the solver's id: the task linked to it, else the task whose app id it is. */
  readonly #selectBySolverOrId: StatementSync;
  readonly #countDuplicate: StatementSync;
  /** A callback's first result on a pending (→ delivered) or missed (→ late) task. */
  readonly #settle: StatementSync;
  /** The same two, also linking the callback's solver id to a task that has none, unless another task holds it. */
  readonly #countDuplicateLink: StatementSync;
  readonly #settleLink: StatementSync;
  readonly #selectLinkTarget: StatementSync;
  readonly #selectHolder: StatementSync;
  readonly #link: StatementSync;
  readonly #deleteOne: StatementSync;
  readonly #mergeSettle: StatementSync;
  readonly #mergeDuplicate: StatementSync;
  readonly #expire: StatementSync;
  readonly #selectOne: StatementSync;
  readonly #selectPending: StatementSync;
  readonly #selectSettled: StatementSync;
  readonly #selectCounts: StatementSync;
  readonly #addCounts: StatementSync;
  readonly #beat: StatementSync;
  readonly #purge: StatementSync;
  #closed = false;
  /** Events that write a forward; empty while forwarding is off. */
  #forwardEvents: ReadonlySet<ForwardEvent> = new Set();
  readonly #insertForward: StatementSync;
  readonly #selectDueForwards: StatementSync;
  readonly #leaseForward: StatementSync;
  readonly #selectTaskById: StatementSync;
  readonly #settleForward: StatementSync;
  readonly #selectForwardsOf: StatementSync;
  readonly #redeliver: StatementSync;
  readonly #replayState: StatementSync;
  readonly #replayAll: StatementSync;
  readonly #countPendingForwards: StatementSync;
  readonly #oldestPendingForward: StatementSync;
  readonly #checkpointer: Checkpointer | undefined;
  #flushScheduled = false;
  /** The checkpointer is rewinding the WAL: callbacks queue instead of committing (see sqliteCheckpointer.ts). */
  #paused = false;
  /** Other writes (register, expireDue, purge, ping) that arrived during a hold; run on resume, after the batch. */
  #heldWrites: Array<() => void> = [];
  #closing = false;
  /** Callbacks waiting for the next group commit. */
  #batch: Array<{
    readonly result: CallbackResult;
    readonly resolve: (t: CallbackTransition) => void;
    readonly reject: (e: unknown) => void;
  }> = [];

  /** `path` is a file (its directory is created) or `:memory:`. */
  constructor(path: string, options: SqliteTaskStoreOptions = {}) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const db = new DatabaseSync(path, { timeout: options.busyTimeoutMs ?? 1000 });
    this.#db = db;
    try {
      const { journal_mode: mode } = db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode: string };
      // WAL needs shared memory between processes (it fails on network file systems); the durability and
      // multi-process guarantees above assume it, so refuse to run without it rather than degrade silently.
      if (path !== ':memory:' && mode !== 'wal') throw new Error(`journal_mode is ${mode}, WAL could not be enabled`);
      db.exec(`PRAGMA synchronous = ${options.synchronous ?? 'NORMAL'};`);
      // Schema creation takes the write lock too, so two processes opening a new file at once cannot interleave.
      db.exec('BEGIN IMMEDIATE');
      migrate(db);
      db.exec(`${SQLITE_SCHEMA} PRAGMA user_version = ${SCHEMA_VERSION}; COMMIT;`);
    } catch (error) {
      db.close();
      throw new StoreUnavailableError(`cannot open SQLite store at ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (path !== ':memory:') {
      // The checkpointer rewinds the log at `rewindFrames`, so the file is reused from its start at about that size.
      // journal_size_limit cuts it back after a rewind only beyond twice that (after a burst of registrations, say):
      // the first commit after a rewind does the cut, and freeing tens of MB of page cache there stalls the loop.
      const { page_size: pageSize } = db.prepare('PRAGMA page_size').get() as { page_size: number };
      // A WAL file is a 32-byte header, then frames of a 24-byte header and one page.
      const limit = 32 + 2 * (pageSize + 24) * (options.checkpoint?.rewindFrames ?? DEFAULT_REWIND_FRAMES);
      db.exec(`PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = ${Math.min(limit, 2 ** 40)};`);
      this.#checkpointer = this.#startCheckpointer(db, path, options.checkpoint);
    }
    this.#begin = db.prepare('BEGIN IMMEDIATE');
    this.#commit = db.prepare('COMMIT');
    this.#rollback = db.prepare('ROLLBACK');
    this.#insertPending = db.prepare(
      `INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks)
       VALUES (?, 'pending', 1, ?, ?, 0) ON CONFLICT (id) DO NOTHING`,
    );
    this.#insertUnregistered = db.prepare(
      `INSERT INTO tasks (id, state, registered, outcome, code, format, received_at, callbacks, solver_task_id,
         solution, metadata, recovered)
       VALUES (?, 'delivered', 0, ?, ?, ?, ?, 1, ?, ?, ?, ?)`,
    );
    this.#selectById = db.prepare('SELECT state, submitted_at, solver_task_id FROM tasks WHERE id = ?');
    this.#selectById.setReturnArrays(true);
    this.#selectBySolver = db.prepare(
      'SELECT id, state, submitted_at, solver_task_id FROM tasks WHERE solver_task_id = ?',
    );
    this.#selectBySolver.setReturnArrays(true);
    // One statement for both probes: the compound's LIMIT stops it after the first arm that finds the row.
    this.#selectBySolverOrId = db.prepare(
      `SELECT id, state, submitted_at, solver_task_id FROM tasks WHERE solver_task_id = ?1
       UNION ALL SELECT id, state, submitted_at, solver_task_id FROM tasks WHERE id = ?1 LIMIT 1`,
    );
    this.#selectBySolverOrId.setReturnArrays(true);
    this.#countDuplicate = db.prepare('UPDATE tasks SET callbacks = callbacks + 1 WHERE id = ?');
    this.#settle = db.prepare(
      `UPDATE tasks SET state = ?, outcome = ?, code = ?, format = ?, received_at = ?, solution = ?, metadata = ?,
         recovered = ?, callbacks = callbacks + 1
       WHERE id = ?`,
    );
    // Used only when the task has no solver id yet, so the link is part of the UPDATE that counts or settles (no
    // statement of its own); the subquery leaves it NULL when another task holds that solver id.
    const linkIfFree = '(SELECT ?1 WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE solver_task_id = ?1))';
    this.#countDuplicateLink = db.prepare(
      `UPDATE tasks SET callbacks = callbacks + 1, solver_task_id = ${linkIfFree} WHERE id = ?2`,
    );
    this.#settleLink = db.prepare(
      `UPDATE tasks SET solver_task_id = ${linkIfFree}, state = ?2, outcome = ?3, code = ?4, format = ?5,
         received_at = ?6, solution = ?7, metadata = ?8, recovered = ?9, callbacks = callbacks + 1
       WHERE id = ?10`,
    );
    this.#selectLinkTarget = db.prepare(
      'SELECT registered, state, submitted_at, solver_task_id FROM tasks WHERE id = ?',
    );
    this.#selectHolder = db.prepare(`SELECT ${COLUMNS} FROM tasks WHERE solver_task_id = ?`);
    this.#link = db.prepare('UPDATE tasks SET solver_task_id = ? WHERE id = ?');
    this.#deleteOne = db.prepare('DELETE FROM tasks WHERE id = ?');
    this.#mergeSettle = db.prepare(
      `UPDATE tasks SET solver_task_id = ?, state = ?, outcome = ?, code = ?, format = ?, received_at = ?, solution = ?,
         metadata = ?, recovered = ?, callbacks = callbacks + ?
       WHERE id = ?`,
    );
    this.#mergeDuplicate = db.prepare('UPDATE tasks SET solver_task_id = ?, callbacks = callbacks + ? WHERE id = ?');
    // The inner SELECT is the bounded index range scan; the outer UPDATE then touches each chosen row by key.
    // (Repeating `state = 'pending'` in the outer WHERE makes SQLite scan every pending row instead.)
    this.#expire = db.prepare(
      `UPDATE tasks SET state = 'missed' WHERE id IN (
         SELECT id FROM tasks WHERE state = 'pending' AND deadline_at <= ? ORDER BY deadline_at, id LIMIT ?
       ) RETURNING id, deadline_at`,
    );
    // By the app's id first; the solver id's arm runs only when that finds nothing.
    this.#selectOne = db.prepare(
      `SELECT ${COLUMNS} FROM tasks WHERE id = ?1
       UNION ALL SELECT ${COLUMNS} FROM tasks WHERE solver_task_id = ?1 LIMIT 1`,
    );
    this.#selectPending = db.prepare(
      `SELECT ${COLUMNS} FROM tasks WHERE state = 'pending' ORDER BY deadline_at, id LIMIT ?`,
    );
    this.#selectSettled = db.prepare(
      `SELECT ${COLUMNS} FROM tasks WHERE state = ? AND state <> 'pending' ORDER BY ${SETTLED_AT}, id LIMIT ?`,
    );
    this.#selectCounts = db.prepare('SELECT pending, delivered, missed, late FROM counts WHERE one = 1');
    this.#addCounts = db.prepare(
      `UPDATE counts SET pending = pending + ?, delivered = delivered + ?, missed = missed + ?, late = late + ?
       WHERE one = 1`,
    );
    this.#beat = db.prepare('UPDATE heartbeat SET beats = beats + 1 WHERE one = 1');
    this.#insertForward = db.prepare(
      `INSERT OR IGNORE INTO forwards (task_id, event, webhook_id, state, created_at, since, next_attempt_at)
       VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?4)`,
    );
    // INDEXED BY: left to itself the planner takes forwards_created for `state = 'pending'` and sorts every pending
    // row by next attempt time (a temporary b-tree per claim: under a backlog of 12,000 it was half the process's CPU).
    this.#selectDueForwards = db.prepare(
      `SELECT task_id, event FROM forwards INDEXED BY forwards_due
       WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?`,
    );
    this.#leaseForward = db.prepare(
      `UPDATE forwards SET attempts = attempts + 1, lease = ?, next_attempt_at = ? WHERE task_id = ? AND event = ?
       RETURNING *`,
    );
    this.#selectTaskById = db.prepare(`SELECT ${COLUMNS} FROM tasks WHERE id = ?`);
    this.#settleForward = db.prepare(
      `UPDATE forwards SET state = ?, next_attempt_at = ?, done_at = ?, last_attempt_at = ?, last_status = ?,
         last_error = ?, lease = NULL
       WHERE task_id = ? AND event = ? AND lease = ? AND state = 'pending'`,
    );
    this.#selectForwardsOf = db.prepare('SELECT * FROM forwards WHERE task_id = ? ORDER BY event');
    // A new round; a pending row under a live lease (an attempt running now) is left to finish.
    const restart = `UPDATE forwards SET state = 'pending', since = ?1, next_attempt_at = ?1, attempts = 0,
      lease = NULL, done_at = NULL`;
    this.#redeliver = db.prepare(
      `${restart} WHERE task_id = ?2 AND (state <> 'pending' OR lease IS NULL OR next_attempt_at <= ?1)`,
    );
    this.#replayState = db.prepare(
      `${restart} WHERE (task_id, event) IN (SELECT task_id, event FROM forwards
         WHERE state = ?2 AND created_at >= ?3 AND created_at < ?4 ORDER BY created_at LIMIT ?5)`,
    );
    // One bounded range scan of `forwards_created` per settled state, merged oldest first.
    const settledArm = (state: ForwardState) =>
      `SELECT * FROM (SELECT task_id, event, created_at FROM forwards
         WHERE state = '${state}' AND created_at >= ?2 AND created_at < ?3 ORDER BY created_at LIMIT ?4)`;
    this.#replayAll = db.prepare(
      `${restart} WHERE (task_id, event) IN (SELECT task_id, event FROM (
         ${(['delivered', 'gone', 'dead'] as const).map(settledArm).join(' UNION ALL ')}) ORDER BY created_at LIMIT ?4)`,
    );
    this.#countPendingForwards = db.prepare(
      "SELECT count(*) AS n FROM (SELECT 1 FROM forwards WHERE state = 'pending' LIMIT ?)",
    );
    this.#oldestPendingForward = db.prepare("SELECT min(created_at) AS at FROM forwards WHERE state = 'pending'");
    // One bounded range scan of `tasks_settled_at` per settled state, merged oldest first; the outer DELETE then
    // removes each chosen row by key.
    this.#purge = db.prepare(
      `DELETE FROM tasks WHERE id IN (
         SELECT id FROM (${(['delivered', 'missed', 'late'] as const).map(oldestSettled).join(' UNION ALL ')})
         ORDER BY at, id LIMIT ?2
       )`,
    );
  }

  readonly forwards: ForwardOutbox = {
    enable: (events) => {
      this.#forwardEvents = new Set(events);
    },
    claimDue: (now, limit, leaseMs) =>
      this.#writeWhenResumed('claimDue', () => {
        const jobs: ForwardJob[] = [];
        if (limit <= 0) return jobs;
        const due = this.#selectDueForwards.all(now, limit) as Array<{ task_id: string; event: ForwardEvent }>;
        // One random draw per claim: each row's token is unique all the same.
        const base = randomUUID();
        for (const [i, d] of due.entries()) {
          const lease = `${base}_${i}`;
          const row = this.#leaseForward.get(lease, now + leaseMs, d.task_id, d.event) as ForwardRow | undefined;
          if (!row) continue;
          const task = this.#selectTaskById.get(d.task_id) as Row | undefined;
          jobs.push({ forward: toForward(row), lease, task: task ? toRecord(task) : undefined });
        }
        return jobs;
      }),
    settle: (items) =>
      this.#writeWhenResumed('settle', () => {
        let settled = 0;
        for (const item of items) {
          const r = item.result;
          const pending = r.state === 'pending';
          settled += Number(
            this.#settleForward.run(
              r.state,
              pending ? r.nextAttemptAt : null,
              pending ? null : item.at,
              item.at,
              r.status,
              r.error,
              item.taskId,
              item.event,
              item.lease,
            ).changes,
          );
        }
        return settled;
      }),
    forwardsOf: async (taskId) =>
      (this.#read('forwardsOf', () => this.#selectForwardsOf.all(taskId)) as unknown as ForwardRow[]).map(toForward),
    redeliver: (taskId, now) =>
      this.#writeWhenResumed('redeliver', () => Number(this.#redeliver.run(now, taskId).changes)),
    replay: (filter: ReplayFilter, now) =>
      this.#writeWhenResumed('replay', () =>
        Number(
          (filter.state === 'all'
            ? this.#replayAll.run(now, filter.from, filter.to, filter.limit)
            : this.#replayState.run(now, filter.state, filter.from, filter.to, filter.limit)
          ).changes,
        ),
      ),
    backlog: async (cap) =>
      this.#read('backlog', () => {
        const { n } = this.#countPendingForwards.get(cap) as { n: number };
        const { at } = this.#oldestPendingForward.get() as { at: number | null };
        return { pending: n, oldestCreatedAt: at };
      }),
  };

  /** Writes the pending forward a transition makes, inside the caller's transaction (when forwarding is on for it). */
  #addForward(taskId: string, event: ForwardEvent, at: number): void {
    if (this.#forwardEvents.has(event)) this.#insertForward.run(taskId, event, newWebhookId(), at);
  }

  #startCheckpointer(db: DatabaseSync, path: string, options: CheckpointerOptions | undefined): Checkpointer {
    try {
      return startCheckpointer(
        path,
        {
          onFailure: () => {
            this.#resume();
            if (!this.#closed) db.exec('PRAGMA wal_autocheckpoint = 1000;');
          },
          pause: () => {
            this.#paused = true;
          },
          resume: () => this.#resume(),
        },
        options,
      );
    } catch (error) {
      db.close(); // invalid checkpoint options: nothing may keep the file open
      throw error;
    }
  }

  async register(
    tasks: readonly (string | NewTask)[],
    submittedAt: number,
    deadlineAt: number,
  ): Promise<RegisterResult> {
    return this.#writeWhenResumed('register', () => {
      const added: string[] = [];
      const merged: RegisterResult['merged'][number][] = [];
      const counts = { delivered: 0, late: 0 };
      for (const item of tasks) {
        const task: NewTask = typeof item === 'string' ? { id: item } : item;
        if (this.#insertPending.run(task.id, submittedAt, task.deadlineAt ?? deadlineAt).changes !== 1) continue;
        added.push(task.id);
        if (task.solverTaskId === undefined) continue;
        const linked = this.#linkSolverId(task.id, task.solverTaskId);
        if (linked.kind !== 'merged') continue;
        merged.push({ transition: linked.transition, result: linked.result });
        if (linked.transition.kind === 'delivered') counts.delivered++;
      }
      if (added.length > 0) this.#addCounts.run(added.length - counts.delivered, counts.delivered, 0, 0);
      return { added, merged };
    });
  }

  async attachSolverTaskId(id: string, solverTaskId: string): Promise<AttachResult> {
    return this.#writeWhenResumed('attachSolverTaskId', () => {
      const result = this.#linkSolverId(id, solverTaskId);
      if (result.kind === 'merged') {
        const kind = result.transition.kind;
        if (kind === 'delivered') this.#addCounts.run(-1, 1, 0, 0);
        else if (kind === 'late') this.#addCounts.run(0, 0, -1, 1);
      }
      return result;
    });
  }

  /**
   * Links a solver id to a registered task inside the caller's transaction, merging the unregistered callback stored
   * under it (the row is deleted first, which frees the solver id for the UNIQUE index). The caller updates counts.
   */
  #linkSolverId(id: string, solverTaskId: string): AttachResult {
    const task = this.#selectLinkTarget.get(id) as
      | { registered: number; state: TaskState; submitted_at: number | null; solver_task_id: string | null }
      | undefined;
    if (task?.registered !== 1) return { kind: 'unknown' };
    if (task.solver_task_id === solverTaskId) return { kind: 'unchanged' };
    if (task.solver_task_id !== null) return { kind: 'conflict' };
    const holder = this.#selectHolder.get(solverTaskId) as Row | undefined;
    if (!holder) {
      this.#link.run(solverTaskId, id);
      return { kind: 'attached' };
    }
    if (holder.registered === 1) return { kind: 'conflict' };
    // The callback came before the app told us the solver's id: it becomes this task's callback.
    this.#deleteOne.run(holder.id);
    const result: CallbackResult = {
      taskId: id,
      solverTaskId,
      outcome: holder.outcome ?? 'solved',
      code: holder.code ?? '',
      format: holder.format ?? 'query',
      receivedAt: holder.received_at ?? 0,
      solution: parseJson(holder.solution),
      metadata: parseJson(holder.metadata),
      recovered: holder.recovered === 1,
    };
    if (task.state === 'delivered' || task.state === 'late') {
      this.#mergeDuplicate.run(solverTaskId, holder.callbacks, id);
      return { kind: 'merged', transition: { kind: 'duplicate', id }, result };
    }
    const kind = task.state === 'pending' ? 'delivered' : 'late';
    this.#mergeSettle.run(
      solverTaskId,
      kind,
      result.outcome,
      result.code,
      result.format,
      result.receivedAt,
      holder.solution,
      holder.metadata,
      holder.recovered,
      holder.callbacks,
      id,
    );
    this.#addForward(id, kind, result.receivedAt);
    return { kind: 'merged', transition: { kind, id, submittedAt: task.submitted_at ?? result.receivedAt }, result };
  }

  /**
   * Group commit: every callback that arrives in the same event-loop turn is applied in ONE transaction, and each
   * caller's promise resolves only after that COMMIT, so a result is still durable before its 200. A commit (the WAL
   * append and the lock round trip) costs far more than applying one row; sharing it is what lets the receiver keep
   * up with the solvers at full load. Callbacks for the same id in one batch apply in arrival order, exactly as they
   * would one transaction each. If the transaction fails, every callback in it is refused (none acknowledged).
   */
  recordCallback(r: CallbackResult): Promise<CallbackTransition> {
    if (this.#closed) return Promise.reject(new StoreUnavailableError('SQLite store is closed'));
    // Refused here, alone: inside the batch it would fail the group's transaction and every callback with it.
    if (r.taskId === undefined && r.solverTaskId === undefined) {
      return Promise.reject(new StoreUnavailableError('SQLite store: a callback needs a task id or a solver id'));
    }
    return new Promise((resolve, reject) => {
      this.#batch.push({ result: r, resolve, reject });
      this.#scheduleFlush();
    });
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#paused || this.#batch.length === 0) return;
    this.#flushScheduled = true;
    setImmediate(this.#flushBatch);
  }

  /**
   * The checkpointer has rewound the log (or given up): commit what queued meanwhile, callbacks first and right away,
   * so a sweep that waited cannot expire a task whose callback arrived before its deadline.
   */
  #resume(): void {
    this.#paused = false;
    if (this.#batch.length > 0) this.#flushBatch();
    for (const run of this.#heldWrites.splice(0)) run();
  }

  /** Every write waits out a hold: any commit during it would leave the log unrewound. */
  #writeWhenResumed<T>(op: string, fn: () => T): Promise<T> {
    if (!this.#paused || this.#closing) {
      try {
        return Promise.resolve(this.#write(op, fn));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return new Promise<T>((resolve, reject) => {
      this.#heldWrites.push(() => {
        try {
          resolve(this.#write(op, fn));
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  readonly #flushBatch = (): void => {
    this.#flushScheduled = false;
    // Held for a WAL rewind: the batch keeps growing and is committed on resume.
    if ((this.#paused && !this.#closing) || this.#batch.length === 0) return;
    const batch = this.#batch;
    this.#batch = [];
    let transitions: CallbackTransition[];
    try {
      transitions = this.#write('recordCallback', () => {
        const applied = batch.map((item) => this.#applyCallback(item.result));
        // One counts update per batch, from the transitions it made.
        let delivered = 0;
        let late = 0;
        for (const t of applied) {
          if (t.kind === 'delivered') delivered++;
          else if (t.kind === 'late') late++;
        }
        if (delivered + late > 0) this.#addCounts.run(-delivered, delivered, -late, late);
        return applied;
      });
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    for (const [i, item] of batch.entries()) item.resolve(transitions[i]!);
  };

  /** One callback's row change, inside the caller's transaction; the caller updates the counts row. */
  #applyCallback(r: CallbackResult): CallbackTransition {
    // A read, then a plain UPDATE: inside the write transaction nothing can change the row in between. Against one
    // `UPDATE … RETURNING` (which SQLite runs through a temporary table of the returned rows) this is the cheaper
    // shape now that the CHECK no longer builds a b-tree per row: 8.8 → 6.1 µs of CPU per callback
    // (`node bench/micro/callback-statement.ts`). A callback with the app's id reads by primary key only; the solver
    // id index is read only when that id is unknown, or when the callback carries no app id (then one statement
    // tries the solver id's link, then the solver id as an app id: apps that register the solver's id as their own).
    let id: string;
    let row: CallbackRow | undefined;
    const solverTaskId = r.solverTaskId;
    if (r.taskId !== undefined) {
      id = r.taskId;
      const byId = this.#selectById.get(id) as [TaskState, number | null, string | null] | undefined;
      if (byId) row = [id, byId[0], byId[1], byId[2]];
      else if (solverTaskId !== undefined) row = this.#selectBySolver.get(solverTaskId) as CallbackRow | undefined;
    } else {
      id = solverTaskId!;
      row = this.#selectBySolverOrId.get(id) as CallbackRow | undefined;
    }
    const solution = r.solution == null ? null : JSON.stringify(r.solution);
    const metadata = r.metadata == null ? null : JSON.stringify(r.metadata);
    const recovered = r.recovered === true ? 1 : 0;
    if (!row) {
      // Nothing holds the solver id (the lookups above would have found it): it is linked to the stored result.
      this.#insertUnregistered.run(
        id,
        r.outcome,
        r.code,
        r.format,
        r.receivedAt,
        solverTaskId ?? null,
        solution,
        metadata,
        recovered,
      );
      if (this.#forwardEvents.size > 0) this.#addForward(id, 'delivered', r.receivedAt);
      return { kind: 'unregistered', id };
    }
    const [taskId, state, submittedAt, linked] = row;
    // Found by the app's id with no solver id yet: the callback's solver id is linked in the same UPDATE.
    const link = linked === null && solverTaskId !== undefined && taskId === r.taskId;
    if (state === 'delivered' || state === 'late') {
      if (link) this.#countDuplicateLink.run(solverTaskId, taskId);
      else this.#countDuplicate.run(taskId);
      return { kind: 'duplicate', id: taskId };
    }
    const kind = state === 'pending' ? 'delivered' : 'late';
    if (link) {
      this.#settleLink.run(
        solverTaskId,
        kind,
        r.outcome,
        r.code,
        r.format,
        r.receivedAt,
        solution,
        metadata,
        recovered,
        taskId,
      );
    } else {
      this.#settle.run(kind, r.outcome, r.code, r.format, r.receivedAt, solution, metadata, recovered, taskId);
    }
    if (this.#forwardEvents.size > 0) this.#addForward(taskId, kind, r.receivedAt);
    return { kind, id: taskId, submittedAt: submittedAt ?? r.receivedAt };
  }

  async expireDue(now: number, limit: number): Promise<string[]> {
    if (limit <= 0) {
      this.#assertOpen();
      return [];
    }
    return this.#writeWhenResumed('expireDue', () => {
      const rows = this.#expire.all(now, limit) as Array<{ id: string; deadline_at: number }>;
      if (rows.length > 0) this.#addCounts.run(-rows.length, 0, rows.length, 0);
      if (this.#forwardEvents.has('missed'))
        for (const row of rows) this.#addForward(row.id, 'missed', row.deadline_at);
      // RETURNING comes back in key order; callers (and the health report's "recently missed") want deadline order.
      rows.sort((a, b) => a.deadline_at - b.deadline_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      return rows.map((row) => row.id);
    });
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    const row = this.#read('get', () => this.#selectOne.get(id)) as Row | undefined;
    return row ? toRecord(row) : undefined;
  }

  async list(state: TaskState, limit: number): Promise<TaskRecord[]> {
    if (limit <= 0) {
      this.#assertOpen();
      return [];
    }
    const rows = this.#read('list', () =>
      state === 'pending' ? this.#selectPending.all(limit) : this.#selectSettled.all(state, limit),
    ) as unknown as Row[];
    return rows.map(toRecord);
  }

  async counts(): Promise<TaskCounts> {
    const row = this.#read('counts', () => this.#selectCounts.get()) as TaskCounts | undefined;
    if (!row) throw new StoreUnavailableError('SQLite store: counts row is missing');
    return { pending: row.pending, delivered: row.delivered, missed: row.missed, late: row.late };
  }

  async purge(olderThan: number, limit: number): Promise<number> {
    if (limit <= 0) {
      this.#assertOpen();
      return 0;
    }
    return this.#writeWhenResumed('purge', () => Number(this.#purge.run(olderThan, limit).changes));
  }

  /**
   * Commits a one-row write. Only a real commit proves the store can take writes: `BEGIN IMMEDIATE; ROLLBACK` only
   * takes the lock and succeeds on a read-only or full file system, since nothing reaches the disk. Costs one WAL
   * frame per ping (a probe every few seconds). A full disk is caught only once the WAL must grow; until then writes
   * still succeed, so the ping is right to pass.
   */
  async ping(): Promise<void> {
    await this.#writeWhenResumed('ping', () => this.#beat.run());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // Callbacks already queued get their commit (or their error) before the connection goes, even mid-rewind.
    this.#closing = true;
    if (this.#batch.length > 0) this.#flushBatch();
    for (const run of this.#heldWrites.splice(0)) run();
    this.#closed = true;
    await this.#checkpointer?.stop();
    this.#db.close();
  }

  /** Runs `fn` in a write transaction; any failure rolls it back and rejects with StoreUnavailableError. */
  #write<T>(op: string, fn: () => T): T {
    this.#assertOpen();
    try {
      this.#begin.run();
      try {
        const result = fn();
        this.#commit.run();
        return result;
      } catch (error) {
        // A failed COMMIT may already have rolled back (SQLITE_FULL, IOERR); only roll back what is still open.
        if (this.#db.isTransaction) {
          try {
            this.#rollback.run();
          } catch {
            // Report the original error. A connection that cannot even roll back keeps failing every later BEGIN.
          }
        }
        throw error;
      }
    } catch (error) {
      throw unavailable(op, error);
    }
  }

  #read<T>(op: string, fn: () => T): T {
    this.#assertOpen();
    try {
      return fn();
    } catch (error) {
      throw unavailable(op, error);
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreUnavailableError('SQLite store is closed');
  }
}

/**
 * Brings an older file's `tasks` table to this version's definition, inside the caller's transaction. Versions 4 to 6
 * only lack columns (version 4: version 5's three and version 7's `recovered`; versions 5 and 6: `recovered`), which
 * `ALTER TABLE … ADD COLUMN` appends in place, in the order a new file has them (no row is rewritten). A CHECK
 * constraint cannot be altered in place, so a file from version 3 or older is copied into a new table once (about a
 * second per million tasks), taking the columns the old table has; version 2's virtual `sort_at` column stays behind.
 * The indexes are created afterwards by the schema itself.
 */
function migrate(db: DatabaseSync): void {
  const { user_version: version } = db.prepare('PRAGMA user_version').get() as { user_version: number };
  // Written by a newer receiver: its schema may mean things this code would silently get wrong.
  if (version > SCHEMA_VERSION) {
    throw new Error(`the file has schema version ${version}, newer than this receiver's ${SCHEMA_VERSION}`);
  }
  const exists = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'tasks'").get();
  if (!exists || version === SCHEMA_VERSION) return;
  // Version 5 also lacks the outbox, which the schema creates (CREATE … IF NOT EXISTS) after this.
  if (version >= 4) {
    if (version === 4) {
      db.exec(`
        ALTER TABLE tasks ADD COLUMN solver_task_id TEXT;
        ALTER TABLE tasks ADD COLUMN solution TEXT;
        ALTER TABLE tasks ADD COLUMN metadata TEXT;
      `);
    }
    db.exec('ALTER TABLE tasks ADD COLUMN recovered INTEGER NOT NULL DEFAULT 0');
    return;
  }
  // table_info lists stored columns only, so a generated column (version 2's sort_at) is never copied.
  const old = new Set(
    (db.prepare("SELECT name FROM pragma_table_info('tasks')").all() as Array<{ name: string }>).map((c) => c.name),
  );
  const copied = COLUMNS.split(', ')
    .filter((c) => old.has(c))
    .join(', ');
  db.exec(`
    CREATE TABLE tasks_next ${TASKS_TABLE.slice('tasks '.length)};
    INSERT INTO tasks_next (${copied}) SELECT ${copied} FROM tasks;
    DROP TABLE tasks;
    ALTER TABLE tasks_next RENAME TO tasks;
  `);
}

function unavailable(op: string, error: unknown): StoreUnavailableError {
  return new StoreUnavailableError(`SQLite store: ${op} failed: ${(error as Error).message}`, { cause: error });
}

function toRecord(row: Row): TaskRecord {
  return {
    id: row.id,
    state: row.state,
    registered: row.registered === 1,
    outcome: row.outcome,
    code: row.code,
    format: row.format,
    submittedAt: row.submitted_at,
    deadlineAt: row.deadline_at,
    receivedAt: row.received_at,
    callbacks: row.callbacks,
    solverTaskId: row.solver_task_id,
    solution: parseJson(row.solution),
    metadata: parseJson(row.metadata),
    recovered: row.recovered === 1,
  };
}

function parseJson(text: string | null): ResultDetails | null {
  return text === null ? null : (JSON.parse(text) as ResultDetails);
}

function toForward(row: ForwardRow): ForwardRecord {
  return {
    taskId: row.task_id,
    event: row.event,
    webhookId: row.webhook_id,
    state: row.state,
    createdAt: row.created_at,
    since: row.since,
    attempts: row.attempts,
    nextAttemptAt: row.state === 'pending' ? row.next_attempt_at : null,
    leased: row.lease !== null,
    lastAttemptAt: row.last_attempt_at,
    lastStatus: row.last_status,
    lastError: row.last_error,
    doneAt: row.done_at,
  };
}
