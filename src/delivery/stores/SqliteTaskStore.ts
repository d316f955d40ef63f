import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { CallbackFormat, Outcome } from '../../metrics/contract.ts';
import {
  type CallbackResult,
  type CallbackTransition,
  StoreUnavailableError,
  type TaskCounts,
  type TaskRecord,
  type TaskState,
  type TaskStore,
} from '../TaskStore.ts';
import { type Checkpointer, startCheckpointer } from './sqliteCheckpointer.ts';

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
}

/** Bump with a migration when the schema changes. */
const SCHEMA_VERSION = 3;

/*
 * One row per task. Two partial indexes, chosen so that a delivery (the hot path) touches as few pages as possible:
 *
 * - `tasks_due` covers pending tasks only, by deadline. It serves `expireDue` (a bounded range scan of its oldest
 *   end) and `list('pending')`. A delivery deletes one entry from it.
 * - `tasks_settled_at` covers settled tasks (delivered, missed, late, and stored callbacks nobody registered), by
 *   state and settling time: the callback's receipt, or the deadline for a missed task, which has no receipt. It
 *   serves `list()` of a settled state and retention (`purge`), both bounded range scans. A delivery adds one entry
 *   at its newest end, which every delivery of a burst shares.
 *
 * Up to version 2 one (state, deadline) index served both, so a delivery also inserted an entry at its deadline's
 * place among the delivered (a page of its own per callback), and a third index served retention. Opening an older
 * file swaps the indexes (a one-time rebuild); the table is unchanged (version 2's virtual `sort_at` column stays,
 * unused).
 *
 * `counts` is one row updated inside the same transaction as every transition, so `counts()` is a single-row read
 * however many tasks there are, and can never drift from the rows it summarises.
 */
export const SQLITE_SCHEMA = `
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'missed', 'late')),
  registered INTEGER NOT NULL,
  outcome TEXT,
  code TEXT,
  format TEXT,
  submitted_at INTEGER,
  deadline_at INTEGER,
  received_at INTEGER,
  callbacks INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
DROP INDEX IF EXISTS tasks_state_sort;
DROP INDEX IF EXISTS tasks_settled;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (deadline_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS tasks_settled_at ON tasks (state, coalesce(received_at, deadline_at)) WHERE state <> 'pending';
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
`;

/** The settling time, exactly as `tasks_settled_at` indexes it (queries must repeat the expression to use it). */
const SETTLED_AT = 'coalesce(received_at, deadline_at)';
/** The oldest settled tasks of one state older than ?1, at most ?2: a range scan of `tasks_settled_at`. */
const oldestSettled = (state: TaskState) =>
  `SELECT * FROM (SELECT id, ${SETTLED_AT} AS at FROM tasks
     WHERE state = '${state}' AND state <> 'pending' AND ${SETTLED_AT} < ?1 ORDER BY at, id LIMIT ?2)`;

const COLUMNS = 'id, state, registered, outcome, code, format, submitted_at, deadline_at, received_at, callbacks';

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
}

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
  readonly #selectForCallback: StatementSync;
  readonly #countDuplicate: StatementSync;
  readonly #deliver: StatementSync;
  readonly #markLate: StatementSync;
  readonly #expire: StatementSync;
  readonly #selectOne: StatementSync;
  readonly #selectPending: StatementSync;
  readonly #selectSettled: StatementSync;
  readonly #selectCounts: StatementSync;
  readonly #addCounts: StatementSync;
  readonly #beat: StatementSync;
  readonly #purge: StatementSync;
  #closed = false;
  readonly #checkpointer: Checkpointer | undefined;
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
      db.exec(`BEGIN IMMEDIATE; ${SQLITE_SCHEMA} PRAGMA user_version = ${SCHEMA_VERSION}; COMMIT;`);
    } catch (error) {
      db.close();
      throw new StoreUnavailableError(`cannot open SQLite store at ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (path !== ':memory:') {
      // journal_size_limit truncates the WAL after a checkpoint reset, so it does not keep its high-water size.
      db.exec('PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 8388608;');
      this.#checkpointer = startCheckpointer(path, () => {
        if (!this.#closed) db.exec('PRAGMA wal_autocheckpoint = 1000;');
      });
    }
    this.#begin = db.prepare('BEGIN IMMEDIATE');
    this.#commit = db.prepare('COMMIT');
    this.#rollback = db.prepare('ROLLBACK');
    this.#insertPending = db.prepare(
      `INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks)
       VALUES (?, 'pending', 1, ?, ?, 0) ON CONFLICT (id) DO NOTHING`,
    );
    this.#insertUnregistered = db.prepare(
      `INSERT INTO tasks (id, state, registered, outcome, code, format, received_at, callbacks)
       VALUES (?, 'delivered', 0, ?, ?, ?, ?, 1)`,
    );
    this.#selectForCallback = db.prepare('SELECT state, submitted_at FROM tasks WHERE id = ?');
    this.#countDuplicate = db.prepare('UPDATE tasks SET callbacks = callbacks + 1 WHERE id = ?');
    this.#deliver = db.prepare(
      `UPDATE tasks SET state = 'delivered', outcome = ?, code = ?, format = ?, received_at = ?, callbacks = callbacks + 1
       WHERE id = ? AND state = 'pending' RETURNING submitted_at`,
    );
    this.#deliver.setReturnArrays(true);
    this.#markLate = db.prepare(
      `UPDATE tasks SET state = 'late', outcome = ?, code = ?, format = ?, received_at = ?, callbacks = callbacks + 1
       WHERE id = ?`,
    );
    // The inner SELECT is the bounded index range scan; the outer UPDATE then touches each chosen row by key.
    // (Repeating `state = 'pending'` in the outer WHERE makes SQLite scan every pending row instead.)
    this.#expire = db.prepare(
      `UPDATE tasks SET state = 'missed' WHERE id IN (
         SELECT id FROM tasks WHERE state = 'pending' AND deadline_at <= ? ORDER BY deadline_at, id LIMIT ?
       ) RETURNING id, deadline_at`,
    );
    this.#selectOne = db.prepare(`SELECT ${COLUMNS} FROM tasks WHERE id = ?`);
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
    // One bounded range scan of `tasks_settled_at` per settled state, merged oldest first; the outer DELETE then
    // removes each chosen row by key.
    this.#purge = db.prepare(
      `DELETE FROM tasks WHERE id IN (
         SELECT id FROM (${(['delivered', 'missed', 'late'] as const).map(oldestSettled).join(' UNION ALL ')})
         ORDER BY at, id LIMIT ?2
       )`,
    );
  }

  async register(ids: readonly string[], submittedAt: number, deadlineAt: number): Promise<string[]> {
    return this.#write('register', () => {
      const added: string[] = [];
      for (const id of ids) {
        if (this.#insertPending.run(id, submittedAt, deadlineAt).changes === 1) added.push(id);
      }
      if (added.length > 0) this.#addCounts.run(added.length, 0, 0, 0);
      return added;
    });
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
    return new Promise((resolve, reject) => {
      this.#batch.push({ result: r, resolve, reject });
      if (this.#batch.length === 1) setImmediate(this.#flushBatch);
    });
  }

  readonly #flushBatch = (): void => {
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
    // The common case, a pending task's first callback, is one statement whose row comes back as an array (no object
    // to build); anything else reads the row first. Against SELECT then UPDATE: 10.5 → 8.8 µs of CPU per callback
    // (A/B of the two shapes on this schema, 200,000 pending, transactions of 24).
    const delivered = this.#deliver.get(r.outcome, r.code, r.format, r.receivedAt, r.taskId) as
      | [submittedAt: number | null]
      | undefined;
    if (delivered) return { kind: 'delivered', submittedAt: delivered[0] ?? r.receivedAt };
    const row = this.#selectForCallback.get(r.taskId) as { state: TaskState; submitted_at: number | null } | undefined;
    if (!row) {
      this.#insertUnregistered.run(r.taskId, r.outcome, r.code, r.format, r.receivedAt);
      return { kind: 'unregistered' };
    }
    if (row.state === 'delivered' || row.state === 'late') {
      this.#countDuplicate.run(r.taskId);
      return { kind: 'duplicate' };
    }
    // Missed (a pending row would have been delivered above, in this same transaction).
    this.#markLate.run(r.outcome, r.code, r.format, r.receivedAt, r.taskId);
    return { kind: 'late', submittedAt: row.submitted_at ?? r.receivedAt };
  }

  async expireDue(now: number, limit: number): Promise<string[]> {
    if (limit <= 0) {
      this.#assertOpen();
      return [];
    }
    return this.#write('expireDue', () => {
      const rows = this.#expire.all(now, limit) as Array<{ id: string; deadline_at: number }>;
      if (rows.length > 0) this.#addCounts.run(-rows.length, 0, rows.length, 0);
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
    return this.#write('purge', () => Number(this.#purge.run(olderThan, limit).changes));
  }

  /**
   * Commits a one-row write. Only a real commit proves the store can take writes: `BEGIN IMMEDIATE; ROLLBACK` only
   * takes the lock and succeeds on a read-only or full file system, since nothing reaches the disk. Costs one WAL
   * frame per ping (a probe every few seconds). A full disk is caught only once the WAL must grow; until then writes
   * still succeed, so the ping is right to pass.
   */
  async ping(): Promise<void> {
    this.#write('ping', () => this.#beat.run());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // Callbacks already queued get their commit (or their error) before the connection goes.
    if (this.#batch.length > 0) this.#flushBatch();
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
  };
}
