/**
 * The tasks the recovery poller watches: which solver holds each one's result, when to ask next, and which instance
 * is asking now (a lease). Kept beside the TaskStore rather than in it for now: the stores are being extended by
 * another change (the forwarding outbox); once it has landed this moves into the stores' own transactions, with
 * the task's `solver` column. The state that decides a task's fate (pending or not) stays in the TaskStore: the
 * poller reads it before every ask and stores a recovered result through DeliveryTracker.recordCallback.
 */

export interface RecoveryEntry {
  /** The task's app id. */
  readonly id: string;
  /** A configured solver name. */
  readonly solver: string;
  readonly solverTaskId: string;
  /** Unix ms: no ask after this (the task's own delivery deadline). */
  readonly deadlineAt: number;
  /** Unix ms of the next ask. */
  readonly dueAt: number;
  /** Asks made so far (over every instance). */
  readonly polls: number;
}

/** A task registered with a solver before the solver's task id is known: never claimed until `attach`. */
export type ParkedEntry = Omit<RecoveryEntry, 'polls' | 'solverTaskId'>;

export interface RecoveryQueue {
  /**
   * Adds tasks to watch; an id already queued is left as it is (its schedule and lease untouched). A parked entry
   * for the id is replaced.
   */
  add(entries: readonly Omit<RecoveryEntry, 'polls'>[]): Promise<void>;
  /**
   * Remembers tasks registered with a solver but no solver task id yet (the app registers before its createTask
   * answers): kept until `attach` or their deadline, never claimed. An id already queued or parked is left as it is.
   */
  park(entries: readonly ParkedEntry[]): Promise<void>;
  /**
   * The solver task id of a parked task: it is queued with the schedule it was parked with. False when no entry
   * was parked under the id (nothing to do).
   */
  attach(id: string, solverTaskId: string): Promise<boolean>;
  /**
   * At most `limit` entries due at `now` (dueAt ≤ now) that no live lease holds, each leased to `owner` until
   * `now + leaseMs`: until then no other claim returns it. A lease that runs out (its holder died) frees the entry.
   * Atomic across instances sharing the queue. Cost bounded by `limit`.
   */
  claim(now: number, limit: number, owner: string, leaseMs: number): Promise<RecoveryEntry[]>;
  /** Releases `owner`'s lease with the next due time and the asks so far; false (no change) when the lease was lost. */
  reschedule(id: string, owner: string, dueAt: number, polls: number): Promise<boolean>;
  /** Stops watching the task (a result, a final error, the deadline, or it is no longer pending); parked too. */
  remove(id: string): Promise<void>;
  /** Queued entries (parked ones not counted). */
  size(): Promise<number>;
  close(): Promise<void>;
}

/**
 * In-process RecoveryQueue for one instance and tests. `claim` scans the entries (O(n)): fine for an in-process
 * queue of pending tasks, where the store's own pending count bounds n; the Redis and SQLite queues are indexed.
 */
export class MemoryRecoveryQueue implements RecoveryQueue {
  readonly #entries = new Map<string, { entry: RecoveryEntry; owner: string | null; leaseUntil: number }>();
  readonly #parked = new Map<string, ParkedEntry>();

  async add(entries: readonly Omit<RecoveryEntry, 'polls'>[]): Promise<void> {
    for (const e of entries) {
      this.#parked.delete(e.id);
      if (!this.#entries.has(e.id)) this.#entries.set(e.id, { entry: { ...e, polls: 0 }, owner: null, leaseUntil: 0 });
    }
  }

  async park(entries: readonly ParkedEntry[]): Promise<void> {
    for (const e of entries) {
      if (!this.#entries.has(e.id) && !this.#parked.has(e.id)) this.#parked.set(e.id, { ...e });
    }
  }

  async attach(id: string, solverTaskId: string): Promise<boolean> {
    const parked = this.#parked.get(id);
    if (!parked) return false;
    await this.add([{ ...parked, solverTaskId }]);
    return true;
  }

  async claim(now: number, limit: number, owner: string, leaseMs: number): Promise<RecoveryEntry[]> {
    // Parked tasks whose solver id never came are of no use after their deadline.
    for (const [id, p] of this.#parked) if (p.deadlineAt <= now) this.#parked.delete(id);
    const due = [...this.#entries.values()]
      .filter((s) => s.entry.dueAt <= now && (s.owner === null || s.leaseUntil <= now))
      .sort((a, b) => a.entry.dueAt - b.entry.dueAt)
      .slice(0, limit);
    for (const s of due) {
      s.owner = owner;
      s.leaseUntil = now + leaseMs;
    }
    return due.map((s) => s.entry);
  }

  async reschedule(id: string, owner: string, dueAt: number, polls: number): Promise<boolean> {
    const s = this.#entries.get(id);
    if (!s || s.owner !== owner) return false;
    s.entry = { ...s.entry, dueAt, polls };
    s.owner = null;
    s.leaseUntil = 0;
    return true;
  }

  async remove(id: string): Promise<void> {
    this.#entries.delete(id);
    this.#parked.delete(id);
  }

  async size(): Promise<number> {
    return this.#entries.size;
  }

  async close(): Promise<void> {}
}
