import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import {
  type AttachResult,
  type CallbackResult,
  type CallbackTransition,
  type ForwardOutbox,
  type NewTask,
  type RegisterResult,
  StoreUnavailableError,
  type TaskCounts,
  type TaskRecord,
  type TaskState,
  type TaskStore,
} from '../TaskStore.ts';
import type { Checkpointer, CheckpointerOptions } from './sqliteCheckpointer.ts';
import { SqliteCommitQueue, startWalCheckpoints } from './sqliteCommitQueue.ts';
import { SqliteForwardOutbox } from './sqliteForwardOutbox.ts';
import { createOrMigrateSchema } from './sqliteSchema.ts';
import {
  type CallbackRow,
  parseJson,
  prepareStatements,
  type SqliteStatements,
  type TaskRow,
  toRecord,
} from './sqliteStatements.ts';

export { SQLITE_SCHEMA } from './sqliteSchema.ts';

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

/**
 * The default store: one SQLite file in WAL mode through the built-in `node:sqlite` (no native build). Every
 * transition runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's single write lock before reading, so the
 * read-decide-write of a transition is atomic against other connections and other processes on the same file.
 * Every SQLite error is rethrown as StoreUnavailableError: the caller answers 503 and never acknowledges.
 *
 * The schema and its migrations are in sqliteSchema.ts, the SQL in sqliteStatements.ts, when writes commit (group
 * commit, WAL holds) in sqliteCommitQueue.ts, and the forwarding outbox in sqliteForwardOutbox.ts; this class
 * decides each transition.
 */
export class SqliteTaskStore implements TaskStore {
  readonly #db: DatabaseSync;
  readonly #sql: SqliteStatements;
  readonly #queue = new SqliteCommitQueue(
    (op, fn) => this.#write(op, fn),
    (results) => this.#applyBatch(results),
  );
  readonly #checkpointer: Checkpointer | undefined;
  readonly #outbox: SqliteForwardOutbox;
  readonly forwards: ForwardOutbox;
  #closed = false;
  /** Forwards the current group commit left waiting on their tasks' rows (see #applyBatch). */
  #unclaimedAdded = 0;

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
      createOrMigrateSchema(db);
    } catch (error) {
      db.close();
      throw new StoreUnavailableError(`cannot open SQLite store at ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (path !== ':memory:') {
      this.#checkpointer = startWalCheckpoints(db, path, this.#queue, () => this.#closed, options.checkpoint);
    }
    this.#sql = prepareStatements(db);
    this.#outbox = new SqliteForwardOutbox(this.#sql, this.#queue, (op, fn) => this.#read(op, fn));
    this.forwards = this.#outbox;
  }

  async register(
    tasks: readonly (string | NewTask)[],
    submittedAt: number,
    deadlineAt: number,
  ): Promise<RegisterResult> {
    return this.#queue.writeWhenResumed('register', () => {
      const added: string[] = [];
      const merged: RegisterResult['merged'][number][] = [];
      const counts = { delivered: 0, late: 0 };
      for (const task of tasks) {
        // A plain id is inserted as it is: no object per id (see the server's POST /tasks).
        if (typeof task === 'string') {
          if (this.#sql.insertPending.run(task, submittedAt, deadlineAt).changes === 1) added.push(task);
          continue;
        }
        if (this.#sql.insertPending.run(task.id, submittedAt, task.deadlineAt ?? deadlineAt).changes !== 1) continue;
        added.push(task.id);
        if (task.solverTaskId === undefined) continue;
        const linked = this.#linkSolverId(task.id, task.solverTaskId);
        if (linked.kind !== 'merged') continue;
        merged.push({ transition: linked.transition, result: linked.result });
        if (linked.transition.kind === 'delivered') counts.delivered++;
      }
      if (added.length > 0) this.#sql.addCounts.run(added.length - counts.delivered, counts.delivered, 0, 0);
      return { added, merged };
    });
  }

  async attachSolverTaskId(id: string, solverTaskId: string): Promise<AttachResult> {
    return this.#queue.writeWhenResumed('attachSolverTaskId', () => {
      const result = this.#linkSolverId(id, solverTaskId);
      if (result.kind === 'merged') {
        const kind = result.transition.kind;
        if (kind === 'delivered') this.#sql.addCounts.run(-1, 1, 0, 0);
        else if (kind === 'late') this.#sql.addCounts.run(0, 0, -1, 1);
      }
      return result;
    });
  }

  /**
   * Links a solver id to a registered task inside the caller's transaction, merging the unregistered callback stored
   * under it (the row is deleted first, which frees the solver id for the UNIQUE index). The caller updates counts.
   */
  #linkSolverId(id: string, solverTaskId: string): AttachResult {
    const task = this.#sql.selectLinkTarget.get(id) as
      | { registered: number; state: TaskState; submitted_at: number | null; solver_task_id: string | null }
      | undefined;
    if (task?.registered !== 1) return { kind: 'unknown' };
    if (task.solver_task_id === solverTaskId) return { kind: 'unchanged' };
    if (task.solver_task_id !== null) return { kind: 'conflict' };
    const holder = this.#sql.selectHolder.get(solverTaskId) as TaskRow | undefined;
    if (!holder) {
      this.#sql.link.run(solverTaskId, id);
      return { kind: 'attached' };
    }
    if (holder.registered === 1) return { kind: 'conflict' };
    // The callback came before the app told us the solver's id: it becomes this task's callback.
    this.#sql.deleteOne.run(holder.id);
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
      this.#sql.mergeDuplicate.run(solverTaskId, holder.callbacks, id);
      return { kind: 'merged', transition: { kind: 'duplicate', id }, result };
    }
    const kind = task.state === 'pending' ? 'delivered' : 'late';
    this.#sql.mergeSettle.run(
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
    this.#outbox.add(id, kind, result.receivedAt);
    return { kind: 'merged', transition: { kind, id, submittedAt: task.submitted_at ?? result.receivedAt }, result };
  }

  /** Queued for the next group commit (see SqliteCommitQueue): resolves only once that COMMIT has succeeded. */
  recordCallback(r: CallbackResult): Promise<CallbackTransition> {
    if (this.#closed) return Promise.reject(new StoreUnavailableError('SQLite store is closed'));
    // Refused here, alone: inside the batch it would fail the group's transaction and every callback with it.
    if (r.taskId === undefined && r.solverTaskId === undefined) {
      return Promise.reject(new StoreUnavailableError('SQLite store: a callback needs a task id or a solver id'));
    }
    return this.#queue.addCallback(r);
  }

  /** One group commit's row changes, inside its transaction, and one counts update from the transitions it made. */
  #applyBatch(results: readonly CallbackResult[]): CallbackTransition[] {
    this.#unclaimedAdded = 0;
    const applied = results.map((r) => this.#applyCallback(r));
    let delivered = 0;
    let late = 0;
    for (const t of applied) {
      if (t.kind === 'delivered') delivered++;
      else if (t.kind === 'late') late++;
    }
    if (delivered + late + this.#unclaimedAdded > 0) {
      this.#sql.addBatchCounts.run(-delivered, delivered, -late, late, this.#unclaimedAdded);
    }
    return applied;
  }

  /** One callback's row change, inside the caller's transaction; the caller updates the counts row. */
  #applyCallback(r: CallbackResult): CallbackTransition {
    // A read, then a plain UPDATE: inside the write transaction nothing can change the row in between. Against one
    // `UPDATE … RETURNING` (which SQLite runs through a temporary table of the returned rows) this is the cheaper
    // shape now that the CHECK no longer builds a b-tree per row (the A/B and its figures: docs/benchmarks.md, "What
    // changed"). A callback with the app's id reads by primary key only; the solver
    // id index is read only when that id is unknown, or when the callback carries no app id (then one statement
    // tries the solver id's link, then the solver id as an app id: apps that register the solver's id as their own).
    let id: string;
    let row: CallbackRow | undefined;
    const solverTaskId = r.solverTaskId;
    if (r.taskId !== undefined) {
      id = r.taskId;
      const byId = this.#sql.selectById.get(id) as [TaskState, number | null, string | null] | undefined;
      if (byId) row = [id, byId[0], byId[1], byId[2]];
      else if (solverTaskId !== undefined) row = this.#sql.selectBySolver.get(solverTaskId) as CallbackRow | undefined;
    } else {
      id = solverTaskId!;
      row = this.#sql.selectBySolverOrId.get(id) as CallbackRow | undefined;
    }
    const solution = r.solution == null ? null : JSON.stringify(r.solution);
    const metadata = r.metadata == null ? null : JSON.stringify(r.metadata);
    const recovered = r.recovered === true ? 1 : 0;
    if (!row) {
      // Nothing holds the solver id (the lookups above would have found it): it is linked to the stored result.
      const solver = solverTaskId ?? null;
      const forwarding = this.#outbox.enabled && this.#outbox.enabledFor('delivered');
      if (forwarding) this.#unclaimedAdded++;
      (forwarding ? this.#sql.insertUnregisteredForwarding : this.#sql.insertUnregistered).run(
        id,
        r.outcome,
        r.code,
        r.format,
        r.receivedAt,
        solver,
        solution,
        metadata,
        recovered,
      );
      return { kind: 'unregistered', id };
    }
    const [taskId, state, submittedAt, linked] = row;
    // Found by the app's id with no solver id yet: the callback's solver id is linked in the same UPDATE.
    const link = linked === null && solverTaskId !== undefined && taskId === r.taskId;
    if (state === 'delivered' || state === 'late') {
      if (link) this.#sql.countDuplicateLink.run(solverTaskId, taskId);
      else this.#sql.countDuplicate.run(taskId);
      return { kind: 'duplicate', id: taskId };
    }
    const kind = state === 'pending' ? 'delivered' : 'late';
    // With forwarding on, the forward waits on the task's row, written by this same UPDATE (see sqliteSchema.ts);
    // both statements of a pair bind the same arguments. They are written out: this runs once per callback, so no
    // array per call.
    const forwarding = this.#outbox.enabled && this.#outbox.enabledFor(kind);
    if (forwarding) this.#unclaimedAdded++;
    const { outcome, code, format, receivedAt } = r;
    if (link) {
      (forwarding ? this.#sql.settleLinkForwarding : this.#sql.settleLink).run(
        solverTaskId,
        kind,
        outcome,
        code,
        format,
        receivedAt,
        solution,
        metadata,
        recovered,
        taskId,
      );
    } else {
      (forwarding ? this.#sql.settleForwarding : this.#sql.settle).run(
        kind,
        outcome,
        code,
        format,
        receivedAt,
        solution,
        metadata,
        recovered,
        taskId,
      );
    }
    return { kind, id: taskId, submittedAt: submittedAt ?? r.receivedAt };
  }

  async expireDue(now: number, limit: number): Promise<string[]> {
    if (limit <= 0) {
      this.#assertOpen();
      return [];
    }
    return this.#queue.writeWhenResumed('expireDue', () => {
      const rows = this.#sql.expire.all(now, limit) as Array<{ id: string; deadline_at: number }>;
      if (rows.length > 0) this.#sql.addCounts.run(-rows.length, 0, rows.length, 0);
      if (this.#outbox.enabledFor('missed'))
        for (const row of rows) this.#outbox.add(row.id, 'missed', row.deadline_at);
      // RETURNING comes back in key order; callers (and the health report's "recently missed") want deadline order.
      rows.sort((a, b) => a.deadline_at - b.deadline_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      return rows.map((row) => row.id);
    });
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    const row = this.#read('get', () => this.#sql.selectOne.get(id)) as TaskRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  async list(state: TaskState, limit: number): Promise<TaskRecord[]> {
    if (limit <= 0) {
      this.#assertOpen();
      return [];
    }
    const rows = this.#read('list', () =>
      state === 'pending' ? this.#sql.selectPending.all(limit) : this.#sql.selectSettled.all(state, limit),
    ) as unknown as TaskRow[];
    return rows.map(toRecord);
  }

  async counts(): Promise<TaskCounts> {
    const row = this.#read('counts', () => this.#sql.selectCounts.get()) as TaskCounts | undefined;
    if (!row) throw new StoreUnavailableError('SQLite store: counts row is missing');
    return { pending: row.pending, delivered: row.delivered, missed: row.missed, late: row.late };
  }

  async purge(olderThan: number, limit: number): Promise<number> {
    if (limit <= 0) {
      this.#assertOpen();
      return 0;
    }
    return this.#queue.writeWhenResumed('purge', () => Number(this.#sql.purge.run(olderThan, limit).changes));
  }

  /**
   * Commits a one-row write. Only a real commit proves the store can take writes: `BEGIN IMMEDIATE; ROLLBACK` only
   * takes the lock and succeeds on a read-only or full file system, since nothing reaches the disk. Costs one WAL
   * frame per ping (a probe every few seconds). A full disk is caught only once the WAL must grow; until then writes
   * still succeed, so the ping is right to pass.
   */
  async ping(): Promise<void> {
    await this.#queue.writeWhenResumed('ping', () => this.#sql.beat.run());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#queue.drain();
    this.#closed = true;
    await this.#checkpointer?.stop();
    this.#db.close();
  }

  /** Runs `fn` in a write transaction; any failure rolls it back and rejects with StoreUnavailableError. */
  #write<T>(op: string, fn: () => T): T {
    this.#assertOpen();
    try {
      this.#sql.begin.run();
      try {
        const result = fn();
        this.#sql.commit.run();
        return result;
      } catch (error) {
        // A failed COMMIT may already have rolled back (SQLITE_FULL, IOERR); only roll back what is still open.
        if (this.#db.isTransaction) {
          try {
            this.#sql.rollback.run();
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
