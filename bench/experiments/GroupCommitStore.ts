/**
 * PROTOTYPE, bench only (written before SqliteTaskStore had either feature; the store now has both, 59551fb and
 * 149521f, and this stays as an independent cross-check of its numbers): what SqliteTaskStore would gain from (1) group commit — every callback that arrives in the
 * same event-loop turn is stored in ONE `BEGIN IMMEDIATE … COMMIT`, and each caller's promise resolves only after
 * that COMMIT, so a result is still durable before its 200 — and (2) WAL checkpoints off the event loop
 * (`wal_autocheckpoint = 0` on the writing connection; a worker thread with its own connection runs
 * `wal_checkpoint(PASSIVE)` every 250 ms).
 *
 * It wraps the real SqliteTaskStore (which creates the schema and serves every other method) and stores callbacks
 * through a second connection to the same WAL file, with the same SQL as SqliteTaskStore.recordCallback. Not product
 * code: it exists so the recommendation in bench/RESULTS.md is measured end to end, not guessed. A production
 * version belongs inside SqliteTaskStore (one connection; a SAVEPOINT per callback so one bad row cannot fail the
 * batch; a cap on the batch size).
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import {
  type CallbackResult,
  type CallbackTransition,
  StoreUnavailableError,
  type TaskCounts,
  type TaskRecord,
  type TaskState,
  type TaskStore,
} from '../../src/delivery/TaskStore.ts';

interface Pending {
  readonly result: CallbackResult;
  readonly resolve: (t: CallbackTransition) => void;
  readonly reject: (e: unknown) => void;
}

const CHECKPOINTER = `
const { DatabaseSync } = require('node:sqlite');
const { workerData, parentPort } = require('node:worker_threads');
const db = new DatabaseSync(workerData.path, { timeout: 1000 });
const timer = setInterval(() => { try { db.exec('PRAGMA wal_checkpoint(PASSIVE)'); } catch {} }, 250);
parentPort.on('message', () => { clearInterval(timer); db.close(); process.exit(0); });
`;

export class GroupCommitStore implements TaskStore {
  readonly #inner: TaskStore;
  readonly #db: DatabaseSync;
  readonly #begin: StatementSync;
  readonly #commit: StatementSync;
  readonly #rollback: StatementSync;
  readonly #select: StatementSync;
  readonly #insertUnregistered: StatementSync;
  readonly #countDuplicate: StatementSync;
  readonly #settle: StatementSync;
  readonly #addCounts: StatementSync;
  readonly #checkpointer: Worker;
  #queue: Pending[] = [];
  #scheduled = false;
  /** Largest batch committed, for the report. */
  largestBatch = 0;

  constructor(inner: TaskStore, path: string) {
    this.#inner = inner;
    const db = new DatabaseSync(path, { timeout: 1000 });
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;');
    this.#db = db;
    this.#begin = db.prepare('BEGIN IMMEDIATE');
    this.#commit = db.prepare('COMMIT');
    this.#rollback = db.prepare('ROLLBACK');
    this.#select = db.prepare('SELECT state, submitted_at FROM tasks WHERE id = ?');
    this.#insertUnregistered = db.prepare(
      `INSERT INTO tasks (id, state, registered, outcome, code, format, received_at, callbacks)
       VALUES (?, 'delivered', 0, ?, ?, ?, ?, 1)`,
    );
    this.#countDuplicate = db.prepare('UPDATE tasks SET callbacks = callbacks + 1 WHERE id = ?');
    this.#settle = db.prepare(
      `UPDATE tasks SET state = ?, outcome = ?, code = ?, format = ?, received_at = ?, callbacks = callbacks + 1
       WHERE id = ?`,
    );
    this.#addCounts = db.prepare(
      `UPDATE counts SET pending = pending + ?, delivered = delivered + ?, missed = missed + ?, late = late + ?
       WHERE one = 1`,
    );
    this.#checkpointer = new Worker(CHECKPOINTER, { eval: true, workerData: { path } });
    this.#checkpointer.unref();
  }

  recordCallback(result: CallbackResult): Promise<CallbackTransition> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ result, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        // After this turn's I/O callbacks: every request parsed in the same poll phase joins the batch.
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    const batch = this.#queue;
    this.#queue = [];
    this.#scheduled = false;
    if (batch.length > this.largestBatch) this.largestBatch = batch.length;
    const transitions: CallbackTransition[] = [];
    try {
      this.#begin.run();
      try {
        let pending = 0;
        let delivered = 0;
        let missed = 0;
        let late = 0;
        for (const { result: r } of batch) {
          const row = this.#select.get(r.taskId) as { state: TaskState; submitted_at: number | null } | undefined;
          if (!row) {
            this.#insertUnregistered.run(r.taskId, r.outcome, r.code, r.format, r.receivedAt);
            transitions.push({ kind: 'unregistered' });
          } else if (row.state === 'delivered' || row.state === 'late') {
            this.#countDuplicate.run(r.taskId);
            transitions.push({ kind: 'duplicate' });
          } else if (row.state === 'pending') {
            this.#settle.run('delivered', r.outcome, r.code, r.format, r.receivedAt, r.taskId);
            pending--;
            delivered++;
            transitions.push({ kind: 'delivered', submittedAt: row.submitted_at ?? r.receivedAt });
          } else {
            this.#settle.run('late', r.outcome, r.code, r.format, r.receivedAt, r.taskId);
            missed--;
            late++;
            transitions.push({ kind: 'late', submittedAt: row.submitted_at ?? r.receivedAt });
          }
        }
        if (pending || delivered || missed || late) this.#addCounts.run(pending, delivered, missed, late);
        this.#commit.run();
      } catch (error) {
        if (this.#db.isTransaction) this.#rollback.run();
        throw error;
      }
    } catch (error) {
      const e = new StoreUnavailableError(`group commit failed: ${(error as Error).message}`, { cause: error });
      for (const p of batch) p.reject(e);
      return;
    }
    batch.forEach((p, i) => {
      p.resolve(transitions[i]!);
    });
  }

  register(ids: readonly string[], submittedAt: number, deadlineAt: number): Promise<string[]> {
    return this.#inner.register(ids, submittedAt, deadlineAt);
  }
  expireDue(now: number, limit: number): Promise<string[]> {
    return this.#inner.expireDue(now, limit);
  }
  get(id: string): Promise<TaskRecord | undefined> {
    return this.#inner.get(id);
  }
  list(state: TaskState, limit: number): Promise<TaskRecord[]> {
    return this.#inner.list(state, limit);
  }
  counts(): Promise<TaskCounts> {
    return this.#inner.counts();
  }
  purge(olderThan: number, limit: number): Promise<number> {
    return this.#inner.purge(olderThan, limit);
  }
  ping(): Promise<void> {
    return this.#inner.ping();
  }
  async close(): Promise<void> {
    this.#checkpointer.postMessage('stop');
    this.#db.close();
    await this.#inner.close();
  }
}
