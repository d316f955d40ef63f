import { randomUUID } from 'node:crypto';
import type {
  CallbackResult,
  CallbackTransition,
  DeliveryTracker,
  OnResult,
  ReceiverMetrics,
} from '@captcha-callback-monitor/koa/internal';
import type { SolverPacing } from './config.ts';
import type { ParkedEntry, RecoveryEntry, RecoveryQueue } from './RecoveryQueue.ts';
import type { SolverClient } from './types.ts';

/** The longest wait between two asks about one task once backoff has grown (never shorter than the solver's own). */
const MAX_BACKOFF_MS = 30_000;

export interface RecoveryPollerOptions {
  readonly tracker: DeliveryTracker;
  readonly queue: RecoveryQueue;
  readonly clients: ReadonlyMap<string, SolverClient>;
  /** Each solver's pacing (SOLVER_<NAME>_POLL_INTERVAL / _MAX_POLLS; the documented values unless configured). */
  readonly pacing: (solver: string) => SolverPacing;
  /** RECOVERY_AFTER in ms: how long after registration the first ask waits. */
  readonly recoveryAfterMs: number;
  readonly metrics?: ReceiverMetrics;
  /** The app's result hook, called for a recovered result exactly as for a callback (after it is stored). */
  readonly onResult?: OnResult;
  readonly onError?: (error: unknown) => void;
  /** This instance's lease owner id (default: a random UUID). */
  readonly owner?: string;
  /** How long a claimed task is this instance's alone; longer than one ask can take (client timeout 10 s). */
  readonly leaseMs?: number;
  /** How often the poller looks for due tasks. Default 500 ms. */
  readonly tickMs?: number;
  /** Asks in flight at once, per solver. Default 4. */
  readonly concurrencyPerSolver?: number;
  readonly now?: () => number;
}

/**
 * Recovers missed results by asking the solver. A task registered with a solver and the solver's task id is asked
 * about from RECOVERY_AFTER after its registration, at the solver's pace (the first interval is the configured one,
 * at least the documented minimum; each further ask waits 1.5× longer, up to 30 s), measured from the previous
 * answer so that no two asks reach the solver closer than the interval; at most the solver's asks per task; until
 * a result, a final error (the solver no longer knows the task) or the task's deadline. Before each ask it reads
 * the task: one that is no longer pending (its callback came) is dropped. A result is stored through
 * DeliveryTracker.recordCallback, exactly as a callback would be (same adapters, same transition, waiters woken),
 * with `recovered: true` (the store keeps it on the task; a callback's metadata cannot set it, unlike a field inside
 * the solver's own metadata); a callback arriving afterwards is a duplicate. With several instances the queue's
 * lease makes each task asked about by one instance at a time.
 */
export class RecoveryPoller {
  readonly #o: RecoveryPollerOptions;
  readonly #owner: string;
  readonly #leaseMs: number;
  readonly #now: () => number;
  readonly #inFlight = new Map<string, number>();
  readonly #running = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  #stopped = false;
  #recovered = 0;

  constructor(options: RecoveryPollerOptions) {
    this.#o = options;
    this.#owner = options.owner ?? randomUUID();
    this.#leaseMs = options.leaseMs ?? 30_000;
    this.#now = options.now ?? Date.now;
  }

  /** The configured solver names a task may name. */
  get solvers(): ReadonlySet<string> {
    return new Set(this.#o.clients.keys());
  }

  /** Tasks this instance recovered (the same number `captcha.tasks.recovered` counts). */
  get recovered(): number {
    return this.#recovered;
  }

  /**
   * Starts watching registered tasks for recovery: each must have a configured solver; the solver's task id is the
   * one given, else the one the task already has. The first ask is due RECOVERY_AFTER after the task's registration;
   * the deadline is the task's own. A task with no solver task id yet is parked until `attached` gives it one.
   * Tasks no longer pending are skipped.
   */
  async watch(tasks: readonly { id: string; solver: string; solverTaskId?: string | undefined }[]): Promise<void> {
    const entries: Omit<RecoveryEntry, 'polls'>[] = [];
    const parked: ParkedEntry[] = [];
    for (const t of tasks) {
      if (!this.#o.clients.has(t.solver)) throw new Error(`unknown solver "${t.solver.slice(0, 40)}"`);
      const record = await this.#o.tracker.get(t.id);
      if (record?.state !== 'pending' || record.submittedAt === null || record.deadlineAt === null) continue;
      const schedule = {
        id: record.id,
        solver: t.solver,
        deadlineAt: record.deadlineAt,
        dueAt: record.submittedAt + this.#o.recoveryAfterMs,
      };
      const solverTaskId = t.solverTaskId ?? record.solverTaskId ?? undefined;
      if (solverTaskId === undefined) parked.push(schedule);
      else entries.push({ ...schedule, solverTaskId });
    }
    await this.#o.queue.add(entries);
    await this.#o.queue.park(parked);
  }

  /** The solver task id attached to a task after registration: a parked task is queued with it. */
  async attached(id: string, solverTaskId: string): Promise<void> {
    await this.#o.queue.attach(id, solverTaskId);
  }

  start(): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setInterval(() => void this.tick(), this.#o.tickMs ?? 500);
    this.#timer.unref();
  }

  /** One look for due tasks; asks run in the background, bounded per solver. Exposed for tests. */
  async tick(): Promise<void> {
    if (this.#ticking || this.#stopped) return;
    this.#ticking = true;
    try {
      const perSolver = this.#o.concurrencyPerSolver ?? 4;
      const free = this.#o.clients.size * perSolver - [...this.#inFlight.values()].reduce((a, b) => a + b, 0);
      if (free <= 0) return;
      const claimed = await this.#o.queue.claim(this.#now(), free, this.#owner, this.#leaseMs);
      for (const entry of claimed) {
        const busy = this.#inFlight.get(entry.solver) ?? 0;
        if (busy >= perSolver) {
          // This solver is at its concurrency: hand the entry back at once rather than hold its lease idle.
          await this.#o.queue.reschedule(entry.id, this.#owner, entry.dueAt, entry.polls);
          continue;
        }
        this.#inFlight.set(entry.solver, busy + 1);
        const run = this.#process(entry)
          .catch((error) => this.#o.onError?.(error))
          .finally(() => {
            this.#inFlight.set(entry.solver, (this.#inFlight.get(entry.solver) ?? 1) - 1);
            this.#running.delete(run);
          });
        this.#running.add(run);
      }
    } catch (error) {
      this.#o.onError?.(error);
    } finally {
      this.#ticking = false;
    }
  }

  async #process(entry: RecoveryEntry): Promise<void> {
    const { queue, tracker } = this.#o;
    const client = this.#o.clients.get(entry.solver);
    const pacing = this.#o.pacing(entry.solver);
    if (!client || this.#now() >= entry.deadlineAt || entry.polls >= pacing.maxPollsPerTask) {
      return queue.remove(entry.id);
    }
    const record = await tracker.get(entry.id);
    if (record?.state !== 'pending') return queue.remove(entry.id);
    const answer = await client.getResult(entry.solverTaskId, entry.id);
    const polls = entry.polls + 1;
    if (answer.kind === 'gone') return queue.remove(entry.id);
    if (answer.kind === 'ready') {
      const result: CallbackResult = {
        ...answer.result,
        receivedAt: this.#now(),
        recovered: true,
      };
      let transition: CallbackTransition;
      try {
        transition = await tracker.recordCallback(result);
      } catch (error) {
        // The store could not write: the solver still holds the result; ask again at the next step.
        await queue.reschedule(entry.id, this.#owner, this.#now() + pacing.pollIntervalMs, polls);
        throw error;
      }
      if (transition.kind === 'delivered') {
        this.#recovered++;
        this.#o.metrics?.recovered();
      }
      await queue.remove(entry.id);
      if (transition.kind !== 'duplicate') this.#runHook(result, transition);
      return;
    }
    // Not ready, or no answer: ask again after the backoff step, counted from now (the answer's arrival).
    const wait = Math.max(pacing.pollIntervalMs, Math.min(MAX_BACKOFF_MS, pacing.pollIntervalMs * 1.5 ** (polls - 1)));
    const next = this.#now() + wait;
    if (next >= entry.deadlineAt || polls >= pacing.maxPollsPerTask) return queue.remove(entry.id);
    await queue.reschedule(entry.id, this.#owner, next, polls);
  }

  #runHook(result: CallbackResult, transition: CallbackTransition): void {
    const hook = this.#o.onResult;
    if (!hook) return;
    setImmediate(() => {
      try {
        const p = hook(result, transition);
        if (p && typeof p.then === 'function') p.then(undefined, (e) => this.#o.onError?.(e));
      } catch (error) {
        this.#o.onError?.(error);
      }
    });
  }

  /** Stops looking for due tasks and waits for the asks under way. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    await Promise.all(this.#running);
  }
}
