import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { ParkedEntry, RecoveryEntry, RecoveryQueue } from './RecoveryQueue.ts';

/**
 * RecoveryQueue in the SQLite store's database file, on a connection of its own (WAL lets several connections and
 * processes share the file; the TaskStore's schema and transactions are not touched). One table, `recovery_queue`:
 * `next_at` is when the row may be claimed — its next ask, or while leased the lease's end, so a leased row is simply
 * not due — indexed; `due_at` is the scheduled ask handed to the poller. A parked row (no solver task id yet) has no
 * `next_at` and is never claimed; parked rows past their deadline are deleted a bounded batch per claim.
 *
 * Every write is a `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock before reading, so two processes on
 * one file never claim one row at once. node:sqlite is synchronous, so a busy wait blocks the event loop: the busy
 * timeout is short (the store's own transactions are single-row or batched and brief); a claim that times out fails,
 * and the poller tries again at its next tick.
 */

const SCHEMA = `
CREATE TABLE IF NOT EXISTS recovery_queue (
  id TEXT PRIMARY KEY NOT NULL,
  solver TEXT NOT NULL,
  solver_task_id TEXT,
  deadline_at INTEGER NOT NULL,
  due_at INTEGER NOT NULL,
  next_at INTEGER,
  polls INTEGER NOT NULL DEFAULT 0,
  owner TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recovery_queue_next ON recovery_queue (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recovery_queue_parked ON recovery_queue (deadline_at) WHERE next_at IS NULL;
`;

/** Expired parked rows deleted per claim: the claim's cost stays bounded whatever has piled up. */
const PURGE_BATCH = 100;

export interface SqliteRecoveryQueueOptions {
  /** Milliseconds a transaction waits for another connection's write lock. Default 200. */
  readonly busyTimeoutMs?: number;
}

interface Row {
  id: string;
  solver: string;
  solver_task_id: string;
  deadline_at: number;
  due_at: number;
  polls: number;
}

export class SqliteRecoveryQueue implements RecoveryQueue {
  readonly #db: DatabaseSync;
  readonly #insert: StatementSync;
  readonly #park: StatementSync;
  readonly #attach: StatementSync;
  readonly #due: StatementSync;
  readonly #lease: StatementSync;
  readonly #purge: StatementSync;
  readonly #reschedule: StatementSync;
  readonly #remove: StatementSync;
  readonly #size: StatementSync;
  #closed = false;

  /** `path`: the SQLite store's file (the store opens it first, so it exists and is in WAL mode). */
  constructor(path: string, options: SqliteRecoveryQueueOptions = {}) {
    const db = new DatabaseSync(path, { timeout: options.busyTimeoutMs ?? 200 });
    try {
      db.exec('PRAGMA journal_mode = WAL;');
      db.exec('PRAGMA synchronous = NORMAL;');
      // The store runs the file's checkpoints itself (and rewinds the log); this connection leaves them to it.
      db.exec('PRAGMA wal_autocheckpoint = 0;');
      db.exec(`BEGIN IMMEDIATE; ${SCHEMA} COMMIT;`);
    } catch (error) {
      db.close();
      throw error;
    }
    this.#db = db;
    // An entry replaces a parked one for its id; a queued one is left as it is.
    this.#insert = db.prepare(`
      INSERT INTO recovery_queue (id, solver, solver_task_id, deadline_at, due_at, next_at, polls, owner)
      VALUES (?, ?, ?, ?, ?, ?, 0, NULL)
      ON CONFLICT (id) DO UPDATE SET solver = excluded.solver, solver_task_id = excluded.solver_task_id,
        deadline_at = excluded.deadline_at, due_at = excluded.due_at, next_at = excluded.next_at
      WHERE recovery_queue.next_at IS NULL`);
    this.#park = db.prepare(`
      INSERT INTO recovery_queue (id, solver, solver_task_id, deadline_at, due_at, next_at, polls, owner)
      VALUES (?, ?, NULL, ?, ?, NULL, 0, NULL) ON CONFLICT (id) DO NOTHING`);
    this.#attach = db.prepare(
      'UPDATE recovery_queue SET solver_task_id = ?, next_at = due_at WHERE id = ? AND next_at IS NULL',
    );
    this.#due = db.prepare(`
      SELECT id, solver, solver_task_id, deadline_at, due_at, polls FROM recovery_queue INDEXED BY recovery_queue_next
      WHERE next_at IS NOT NULL AND next_at <= ? ORDER BY next_at LIMIT ?`);
    this.#lease = db.prepare('UPDATE recovery_queue SET owner = ?, next_at = ? WHERE id = ?');
    this.#purge = db.prepare(`
      DELETE FROM recovery_queue WHERE id IN (
        SELECT id FROM recovery_queue INDEXED BY recovery_queue_parked
        WHERE next_at IS NULL AND deadline_at <= ? LIMIT ${PURGE_BATCH})`);
    this.#reschedule = db.prepare(
      'UPDATE recovery_queue SET owner = NULL, due_at = ?, next_at = ?, polls = ? WHERE id = ? AND owner = ?',
    );
    this.#remove = db.prepare('DELETE FROM recovery_queue WHERE id = ?');
    this.#size = db.prepare('SELECT count(*) AS n FROM recovery_queue WHERE next_at IS NOT NULL');
  }

  /** Runs `work` in one BEGIN IMMEDIATE transaction (rolled back when it throws). */
  #write<T>(work: () => T): T {
    if (this.#closed) throw new Error('the recovery queue is closed');
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const out = work();
      this.#db.exec('COMMIT');
      return out;
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      throw error;
    }
  }

  async add(entries: readonly Omit<RecoveryEntry, 'polls'>[]): Promise<void> {
    if (entries.length === 0) return;
    this.#write(() => {
      for (const e of entries) this.#insert.run(e.id, e.solver, e.solverTaskId, e.deadlineAt, e.dueAt, e.dueAt);
    });
  }

  async park(entries: readonly ParkedEntry[]): Promise<void> {
    if (entries.length === 0) return;
    this.#write(() => {
      for (const e of entries) this.#park.run(e.id, e.solver, e.deadlineAt, e.dueAt);
    });
  }

  async attach(id: string, solverTaskId: string): Promise<boolean> {
    return this.#write(() => Number(this.#attach.run(solverTaskId, id).changes) === 1);
  }

  async claim(now: number, limit: number, owner: string, leaseMs: number): Promise<RecoveryEntry[]> {
    if (limit <= 0) return [];
    return this.#write(() => {
      this.#purge.run(now);
      const rows = this.#due.all(now, limit) as unknown as Row[];
      for (const r of rows) this.#lease.run(owner, now + leaseMs, r.id);
      return rows.map((r) => ({
        id: r.id,
        solver: r.solver,
        solverTaskId: r.solver_task_id,
        deadlineAt: Number(r.deadline_at),
        dueAt: Number(r.due_at),
        polls: Number(r.polls),
      }));
    });
  }

  async reschedule(id: string, owner: string, dueAt: number, polls: number): Promise<boolean> {
    return this.#write(() => Number(this.#reschedule.run(dueAt, dueAt, polls, id, owner).changes) === 1);
  }

  async remove(id: string): Promise<void> {
    this.#write(() => this.#remove.run(id));
  }

  async size(): Promise<number> {
    return Number((this.#size.get() as { n: number }).n);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}
