import type { CallbackFormat, Outcome } from '../metrics/contract.ts';

/** Where a task is in its life: registered and waiting, answered in time, past its deadline, answered too late. */
export type TaskState = 'pending' | 'delivered' | 'missed' | 'late';
export const TASK_STATES: readonly TaskState[] = ['pending', 'delivered', 'missed', 'late'];

/** One solver callback, parsed. `code` is the solution or the solver's error string: never log it. */
export interface CallbackResult {
  readonly taskId: string;
  readonly outcome: Outcome;
  readonly code: string;
  readonly format: CallbackFormat;
  /** Unix milliseconds when the receiver got it. */
  readonly receivedAt: number;
}

/** What a task looks like when read back. */
export interface TaskRecord {
  readonly id: string;
  readonly state: TaskState;
  /** False for a callback nobody registered; it is stored all the same. */
  readonly registered: boolean;
  readonly outcome: Outcome | null;
  readonly code: string | null;
  readonly format: CallbackFormat | null;
  /** Unix milliseconds; null where the event has not happened. */
  readonly submittedAt: number | null;
  readonly deadlineAt: number | null;
  readonly receivedAt: number | null;
  /** How many callbacks arrived for this task in all (more than 1 means duplicates). */
  readonly callbacks: number;
}

/** What storing a callback did, decided atomically inside the store. */
export type CallbackTransition =
  /** pending → delivered; `submittedAt` lets the caller record submit→callback time. */
  | { readonly kind: 'delivered'; readonly submittedAt: number }
  /** missed → late. */
  | { readonly kind: 'late'; readonly submittedAt: number }
  /** No task was registered under this id: stored as a delivered, unregistered task. */
  | { readonly kind: 'unregistered' }
  /** The task already had a callback: the first result is kept, this one is only counted. */
  | { readonly kind: 'duplicate' };

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
 * Durable task storage. Every method that changes state does so atomically in the store, so that several receiver
 * instances sharing one store each see a given transition happen exactly once (and only the one that made it counts
 * it). Implementations: MemoryTaskStore (tests), SqliteTaskStore (default), RedisTaskStore (shared).
 *
 * Every rejection from every method is a StoreUnavailableError (the store is closed, unreachable, or refused the
 * write); callers answer 503 and never acknowledge. Nothing else is thrown.
 */
export interface TaskStore {
  /**
   * Registers tasks as pending with the given deadline. Ids already known are left untouched.
   * Resolves to the ids this call newly registered.
   */
  register(ids: readonly string[], submittedAt: number, deadlineAt: number): Promise<string[]>;
  /** Durably stores a callback and applies its state transition. Resolves only once the result is durable. */
  recordCallback(result: CallbackResult): Promise<CallbackTransition>;
  /**
   * Moves at most `limit` pending tasks whose deadline is ≤ `now` to missed; resolves to the ids this call moved,
   * oldest deadline first (equal deadlines in an unspecified but stable order). Cost is bounded by `limit`.
   */
  expireDue(now: number, limit: number): Promise<string[]>;
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
   * callback for a deleted id later is stored as an unregistered one. Cost is bounded by `limit` (an index or sorted
   * set on the settling time, never a scan).
   */
  purge(olderThan: number, limit: number): Promise<number>;
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
