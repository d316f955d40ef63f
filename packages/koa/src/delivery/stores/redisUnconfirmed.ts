import type { CallbackResult, CallbackTransition } from '../TaskStore.ts';
import { toTransition } from './redisCommands.ts';

/** Unconfirmed callbacks asked about per (read-only) script call in `reconcile`. */
const RECONCILE_CHUNK = 1000;

/** A callback whose `recordCallback` rejected: Redis may have applied it all the same. */
interface Unconfirmed {
  readonly token: string;
  readonly result: CallbackResult;
  /** Date.now() when the call rejected. */
  readonly failedAt: number;
}

/** One RECONCILE reply per asked call: the transition it made, or [] while no task carries its token. */
type Answers = Array<[string, string, string?] | []>;

export interface UnconfirmedCallbacksOptions {
  /** How many are remembered; beyond it the oldest is forgotten (see RedisTaskStoreOptions.unconfirmedLimit). */
  readonly limit: number;
  readonly commandTimeoutMs: number;
  readonly onWarning: ((message: string) => void) | undefined;
  readonly assertOpen: () => void;
  /** Runs RECONCILE for (token, app id, solver id) triples, flattened; rejects with StoreUnavailableError. */
  readonly ask: (triples: string[]) => Promise<Answers>;
}

/**
 * A RedisTaskStore's rejected recordCallback calls, kept in memory (bounded, oldest first) with their tokens until
 * `reconcile` learns from Redis whether each was applied (see RedisTaskStore.reconcile).
 */
export class UnconfirmedCallbacks {
  readonly #options: UnconfirmedCallbacksOptions;
  /** Oldest first. */
  #unconfirmed: Unconfirmed[] = [];
  #dropped = 0;
  /** reconcile() calls run one after another, so a token is never reported by two of them. */
  #reconciling: Promise<unknown> = Promise.resolve();

  constructor(options: UnconfirmedCallbacksOptions) {
    this.#options = options;
  }

  get count(): number {
    return this.#unconfirmed.length;
  }

  get dropped(): number {
    return this.#dropped;
  }

  remember(entry: Unconfirmed): void {
    const limit = this.#options.limit;
    this.#unconfirmed.push(entry);
    const excess = this.#unconfirmed.length - limit;
    if (excess <= 0) return;
    this.#unconfirmed.splice(0, excess);
    this.#dropped += excess;
    this.#options.onWarning?.(
      `Redis store: ${excess} unconfirmed callback(s) forgotten (limit ${limit}); if Redis applied ` +
        `them, no instance counts them (${this.#dropped} so far)`,
    );
  }

  reconcile(): Promise<ReadonlyArray<{ readonly transition: CallbackTransition; readonly result: CallbackResult }>> {
    const run = this.#reconciling.then(
      () => this.#reconcileOnce(),
      () => this.#reconcileOnce(),
    );
    this.#reconciling = run.catch(() => undefined);
    return run;
  }

  async #reconcileOnce(): Promise<Array<{ transition: CallbackTransition; result: CallbackResult }>> {
    this.#options.assertOpen();
    const asked = this.#unconfirmed.slice();
    if (asked.length === 0) return [];
    // Read before the question goes out: a token missing from an answer to a question sent after this moment.
    const askedAt = Date.now();
    const answers: Answers = [];
    for (let i = 0; i < asked.length; i += RECONCILE_CHUNK) {
      const triples: string[] = [];
      for (const u of asked.slice(i, i + RECONCILE_CHUNK)) {
        triples.push(u.token, u.result.taskId ?? '', u.result.solverTaskId ?? '');
      }
      answers.push(...(await this.#options.ask(triples)));
    }
    // Unanswered tokens are forgotten only past this (see RedisTaskStore.reconcile): a hung Redis may still run them.
    const grace = 2 * this.#options.commandTimeoutMs;
    const settled = new Set<Unconfirmed>();
    const applied: Array<{ transition: CallbackTransition; result: CallbackResult }> = [];
    for (const [i, entry] of asked.entries()) {
      const answer = answers[i];
      if (answer !== undefined && answer.length > 0) {
        applied.push({ transition: toTransition(answer as [string, string, string?]), result: entry.result });
        settled.add(entry);
      } else if (askedAt - entry.failedAt > grace) {
        settled.add(entry);
      }
    }
    // Entries added while the question was out are not in `asked` and stay.
    if (settled.size > 0) this.#unconfirmed = this.#unconfirmed.filter((u) => !settled.has(u));
    return applied;
  }
}
