import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { DEFAULTS, MAX_TASK_TIMEOUT_SECONDS } from '../defaults.ts';
import type { ReceiverMetrics } from '../metrics/instruments.ts';
import type {
  AttachResult,
  CallbackResult,
  CallbackTransition,
  NewTask,
  TaskCounts,
  TaskRecord,
  TaskStore,
} from './TaskStore.ts';
import { REGISTER_BATCH_SIZE } from './TaskStore.ts';

/** A task as the app registers it: its own id, optionally the solver's task id and its own deadline. */
export interface TaskSubmission {
  readonly id: string;
  readonly solverTaskId?: string | undefined;
  /** Seconds this task may wait for its callback; overrides the tracker's `deliveryTimeoutSeconds`. */
  readonly timeoutSeconds?: number | undefined;
}

export { MAX_TASK_TIMEOUT_SECONDS };

export interface DeliveryTrackerOptions {
  readonly store: TaskStore;
  /** Seconds a registered task may wait for its callback before it counts as missed. Default 300. */
  readonly deliveryTimeoutSeconds?: number;
  /** How often the deadline sweeper runs, in milliseconds. Default 1000 (a missed task shows within ~1 s). */
  readonly sweepIntervalMs?: number;
  /** Tasks expired per store call; the sweeper yields to the event loop between batches. Default 500. */
  readonly sweepBatchSize?: number;
  /** Poll interval for waiters, so a callback stored by another instance wakes them too. Default 250 ms. */
  readonly waitPollIntervalMs?: number;
  /**
   * Seconds a settled task (delivered, missed, late, or a stored unregistered callback) is kept after its callback
   * (or its deadline, when missed); older ones are deleted so storage stays bounded. Pending tasks are never deleted.
   * Default 604800 (7 days).
   */
  readonly retentionSeconds?: number;
  /** How often the retention purge runs, in ms. Default 60000. */
  readonly purgeIntervalMs?: number;
  /** Tasks deleted per store call; the purge yields to the event loop between batches. Default 500. */
  readonly purgeBatchSize?: number;
  /**
   * Called after this instance stored a transition that may have written a forward (a result, a merge, an expiry),
   * so the forwarder can pick it up at once instead of at its next poll. Must be cheap and must not throw.
   */
  readonly onTransition?: () => void;
  /** Called when the sweeper or the retention purge fails (store down); both keep running. */
  readonly onMaintenanceError?: (error: unknown) => void;
  readonly now?: () => number;
}

/** At most this many recently missed ids are kept for the health report. */
const RECENT_MISSED_LIMIT = 10;
const EMPTY_COUNTS: TaskCounts = Object.freeze({ pending: 0, delivered: 0, missed: 0, late: 0 });

type Waiter = (record: TaskRecord | undefined) => void;

/**
 * Knows which registered tasks got their callback. Every transition happens atomically in the TaskStore; this class
 * counts the transitions *this* instance made (so counters summed over instances are exact), runs the deadline
 * sweeper and wakes `waitForResult` callers. Everything the health report reads is kept here as O(1) aggregates.
 */
export class DeliveryTracker {
  readonly store: TaskStore;
  readonly timeoutMs: number;
  readonly retentionMs: number;
  readonly #metrics: ReceiverMetrics | undefined;
  readonly #sweepIntervalMs: number;
  readonly #batch: number;
  readonly #pollMs: number;
  readonly #purgeIntervalMs: number;
  readonly #purgeBatch: number;
  readonly #onMaintenanceError: (error: unknown) => void;
  readonly #onTransition: () => void;
  readonly #now: () => number;
  readonly #waiters = new Map<string, Set<Waiter>>();
  readonly #recentMissed: string[] = [];
  #counts: TaskCounts = EMPTY_COUNTS;
  #lastSubmittedAt: number | null = null;
  #waitingSince: number | null = null;
  #sweepTimer: NodeJS.Timeout | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  #purgeTimer: NodeJS.Timeout | undefined;
  #purging: Promise<number> | undefined;
  #closed = false;

  constructor(options: DeliveryTrackerOptions, metrics?: ReceiverMetrics) {
    this.store = options.store;
    this.timeoutMs = (options.deliveryTimeoutSeconds ?? DEFAULTS.deliveryTimeoutSeconds) * 1000;
    this.#metrics = metrics;
    this.#sweepIntervalMs = options.sweepIntervalMs ?? DEFAULTS.sweepIntervalMs;
    this.#batch = options.sweepBatchSize ?? 500;
    this.#pollMs = options.waitPollIntervalMs ?? 250;
    this.retentionMs = (options.retentionSeconds ?? DEFAULTS.retentionSeconds) * 1000;
    this.#purgeIntervalMs = options.purgeIntervalMs ?? 60_000;
    this.#purgeBatch = options.purgeBatchSize ?? 500;
    this.#onMaintenanceError = options.onMaintenanceError ?? (() => {});
    this.#onTransition = options.onTransition ?? (() => {});
    this.#now = options.now ?? Date.now;
  }

  /** Store-wide counts as of the last sweep or local transition (refreshed at least every sweep interval). */
  get counts(): TaskCounts {
    return this.#counts;
  }

  /** Unix ms of the last registration this instance made, or null. */
  get lastSubmittedAt(): number | null {
    return this.#lastSubmittedAt;
  }

  /** Unix ms of the first registration since the last callback this instance stored, or null. */
  get waitingSince(): number | null {
    return this.#waitingSince;
  }

  /** Up to 10 ids this instance most recently marked missed, newest last. */
  get recentMissedIds(): readonly string[] {
    return this.#recentMissed;
  }

  /**
   * Registers tasks; resolves to the ids that were new. Ids already known are ignored (idempotent). A task given with
   * the solver's task id is linked to it; if that solver's callback came first (stored as unregistered under the
   * solver id), it becomes this task's callback right away and is counted as its delivery.
   */
  async trackSubmitted(tasks: string | readonly (string | TaskSubmission)[]): Promise<string[]> {
    const list = typeof tasks === 'string' ? [tasks] : tasks;
    const now = this.#now();
    this.#lastSubmittedAt = now;
    this.#waitingSince ??= now;
    const added: string[] = [];
    const toNew = (t: string | TaskSubmission): string | NewTask =>
      typeof t === 'string'
        ? t
        : {
            id: t.id,
            solverTaskId: t.solverTaskId,
            deadlineAt: t.timeoutSeconds === undefined ? undefined : now + t.timeoutSeconds * 1000,
          };
    // In batches, yielding between them: one large registration in a single synchronous SQLite transaction blocks
    // the event loop (and every callback) for as long as it takes. Each batch is counted as soon as it is stored.
    for (let i = 0; i < list.length; i += REGISTER_BATCH_SIZE) {
      if (i > 0) await yieldToEventLoop();
      const chunk = list.slice(i, i + REGISTER_BATCH_SIZE).map(toNew);
      const result = await this.store.register(chunk, now, now + this.timeoutMs);
      if (result.added.length > 0) {
        this.#metrics?.submitted(result.added.length);
        this.#adjust({ pending: result.added.length });
        added.push(...result.added);
      }
      for (const m of result.merged) this.#count(m.transition, m.result);
    }
    return added;
  }

  /**
   * Links the solver's task id to a registered task (after the solver's createTask answered), so a callback that
   * carries only the solver's id finds it. A callback that came first under that solver id is merged and counted.
   */
  async attachSolverTaskId(id: string, solverTaskId: string): Promise<AttachResult> {
    const result = await this.store.attachSolverTaskId(id, solverTaskId);
    if (result.kind === 'merged') this.#count(result.transition, result.result);
    return result;
  }

  /**
   * Stores a callback durably and counts its transition. Rejects when the store cannot write: the caller must not
   * acknowledge the callback then.
   */
  async recordCallback(result: CallbackResult): Promise<CallbackTransition> {
    const transition = await this.store.recordCallback(result);
    this.#waitingSince = null;
    this.#count(transition, result);
    return transition;
  }

  /** Counts one transition this instance made and wakes the task's waiters. */
  #count(transition: CallbackTransition, result: CallbackResult): void {
    const m = this.#metrics;
    switch (transition.kind) {
      case 'delivered':
        m?.delivered(result.outcome, Math.max(0, result.receivedAt - transition.submittedAt) / 1000);
        this.#adjust({ pending: -1, delivered: 1 });
        break;
      case 'late':
        m?.late();
        this.#adjust({ missed: -1, late: 1 });
        break;
      case 'duplicate':
        m?.duplicate();
        break;
      case 'unregistered':
        break;
    }
    if (transition.kind !== 'duplicate') {
      this.#wake(transition.id);
      this.#onTransition();
    }
  }

  /** Reads a task by app id, or else by solver task id; undefined when nothing is known under that id. */
  get(id: string): Promise<TaskRecord | undefined> {
    return this.store.get(id);
  }

  /**
   * Resolves with the task once it is settled (delivered, late, or missed at its deadline), or with its current
   * record (pending or undefined) when `timeoutMs` passes first.
   */
  async waitForResult(given: string, timeoutMs: number): Promise<TaskRecord | undefined> {
    const current = await this.store.get(given);
    if (hasResult(current) || timeoutMs <= 0 || this.#closed) return current;
    // Waiters wait under the app id, which is what a transition names, even when asked by the solver's id.
    const id = current?.id ?? given;
    return new Promise<TaskRecord | undefined>((resolve) => {
      let set = this.#waiters.get(id);
      if (!set) {
        set = new Set();
        this.#waiters.set(id, set);
      }
      const waiters = set;
      const finish: Waiter = (record) => {
        clearTimeout(timer);
        waiters.delete(finish);
        if (waiters.size === 0) this.#waiters.delete(id);
        resolve(record);
      };
      const timer = setTimeout(() => {
        this.store.get(id).then(finish, () => finish(current));
      }, timeoutMs);
      set.add(finish);
      this.#ensurePolling();
    });
  }

  /** Starts the deadline sweeper and the retention purge. */
  start(): void {
    if (this.#sweepTimer || this.#closed) return;
    this.#sweepTimer = setInterval(() => void this.sweep(), this.#sweepIntervalMs);
    this.#sweepTimer.unref();
    this.#purgeTimer = setInterval(() => void this.purge(), this.#purgeIntervalMs);
    this.#purgeTimer.unref();
    void this.sweep();
    void this.purge();
  }

  /**
   * Deletes settled tasks older than the retention period, in batches, yielding to the event loop between batches
   * so a large backlog never stalls callbacks. Concurrent calls share one run. Resolves to how many were deleted
   * (0 when the store failed; the failure goes to `onMaintenanceError`). Counts are unaffected.
   */
  purge(): Promise<number> {
    this.#purging ??= this.#purgeOnce().finally(() => {
      this.#purging = undefined;
    });
    return this.#purging;
  }

  async #purgeOnce(): Promise<number> {
    let deleted = 0;
    try {
      const olderThan = this.#now() - this.retentionMs;
      for (;;) {
        const n = await this.store.purge(olderThan, this.#purgeBatch);
        deleted += n;
        if (n < this.#purgeBatch || this.#closed) break;
        await yieldToEventLoop();
      }
    } catch (error) {
      this.#onMaintenanceError(error);
    }
    return deleted;
  }

  /**
   * Expires every overdue pending task, in batches, yielding to the event loop between batches so a large backlog
   * never stalls callbacks. Concurrent calls share one run. Also refreshes the cached counts.
   */
  sweep(): Promise<void> {
    this.#sweeping ??= this.#sweepOnce().finally(() => {
      this.#sweeping = undefined;
    });
    return this.#sweeping;
  }

  async #sweepOnce(): Promise<void> {
    try {
      // Callbacks whose store call failed although the write happened: counted now, by the instance that took them.
      const reconciled = (await this.store.reconcile?.()) ?? [];
      for (const r of reconciled) this.#count(r.transition, r.result);
      for (;;) {
        const moved = await this.store.expireDue(this.#now(), this.#batch);
        if (moved.length > 0) {
          this.#metrics?.missed(moved.length);
          this.#adjust({ pending: -moved.length, missed: moved.length });
          for (const id of moved.slice(-RECENT_MISSED_LIMIT)) this.#recentMissed.push(id);
          if (this.#recentMissed.length > RECENT_MISSED_LIMIT) {
            this.#recentMissed.splice(0, this.#recentMissed.length - RECENT_MISSED_LIMIT);
          }
          for (const id of moved) this.#wake(id);
          this.#onTransition();
        }
        if (moved.length < this.#batch || this.#closed) break;
        await yieldToEventLoop();
      }
      this.#counts = await this.store.counts();
    } catch (error) {
      this.#onMaintenanceError(error);
    }
  }

  /** Stops the sweeper and releases waiters with their current record. Does not close the store. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    clearInterval(this.#pollTimer);
    clearInterval(this.#purgeTimer);
    this.#sweepTimer = undefined;
    this.#pollTimer = undefined;
    this.#purgeTimer = undefined;
    await this.#sweeping;
    await this.#purging;
    for (const id of [...this.#waiters.keys()]) await this.#wakeWith(id);
  }

  #adjust(delta: Partial<TaskCounts>): void {
    const c = this.#counts;
    this.#counts = {
      pending: Math.max(0, c.pending + (delta.pending ?? 0)),
      delivered: c.delivered + (delta.delivered ?? 0),
      missed: Math.max(0, c.missed + (delta.missed ?? 0)),
      late: c.late + (delta.late ?? 0),
    };
  }

  #wake(id: string): void {
    if (this.#waiters.has(id)) void this.#wakeWith(id);
  }

  async #wakeWith(id: string): Promise<void> {
    const set = this.#waiters.get(id);
    if (!set) return;
    const record = await this.store.get(id).catch(() => undefined);
    if (!hasResult(record) && !this.#closed && record?.state !== 'missed') return;
    for (const w of [...set]) w(record);
  }

  /** Cross-instance wake-up: a callback stored by another instance only shows in the shared store. */
  #ensurePolling(): void {
    if (this.#pollTimer) return;
    this.#pollTimer = setInterval(() => {
      if (this.#waiters.size === 0) {
        clearInterval(this.#pollTimer);
        this.#pollTimer = undefined;
        return;
      }
      for (const id of this.#waiters.keys()) void this.#wakeWith(id);
    }, this.#pollMs);
    this.#pollTimer.unref();
  }
}

function hasResult(record: TaskRecord | undefined): boolean {
  return record?.state === 'delivered' || record?.state === 'late';
}
