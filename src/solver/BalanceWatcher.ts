import type { SolverMetrics } from '@captcha-callback-monitor/koa/internal';
import type { BalanceAnswer, SolverClient } from './types.ts';

export interface BalanceWatcherOptions {
  readonly clients: readonly SolverClient[];
  /** Milliseconds between two getBalance calls per solver (the configured SOLVER_<NAME>_BALANCE_INTERVAL). */
  readonly intervalMs: (solver: string) => number;
  readonly metrics?: SolverMetrics;
  readonly onFailure?: (solver: string, answer: Extract<BalanceAnswer, { kind: 'failed' }>) => void;
}

/**
 * Asks each configured solver for its balance at start-up and then once per its interval (once a minute by
 * default, never faster than Anti-Captcha's 30 s: the configuration refuses less), and sets
 * `captcha.solver.balance{solver}`. A failed call leaves the last value and is counted by the client; the next
 * call waits the full interval (no retry storm against a failing API).
 */
export class BalanceWatcher {
  readonly #options: BalanceWatcherOptions;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #last = new Map<string, number>();
  readonly #running = new Set<Promise<void>>();
  #stopped = false;

  constructor(options: BalanceWatcherOptions) {
    this.#options = options;
  }

  /** The last balance each solver reported. */
  get balances(): ReadonlyMap<string, number> {
    return this.#last;
  }

  /** Starts the watch; resolves once every solver's first call has finished (answered or failed). */
  async start(): Promise<void> {
    const first = this.#options.clients.map((client) => {
      const timer = setInterval(() => void this.#check(client), this.#options.intervalMs(client.name));
      timer.unref();
      this.#timers.push(timer);
      return this.#check(client);
    });
    await Promise.all(first);
  }

  #check(client: SolverClient): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    const run = client.getBalance().then((answer) => {
      if (answer.kind === 'ok') {
        this.#last.set(client.name, answer.balance);
        this.#options.metrics?.balance(client.name, answer.balance);
      } else this.#options.onFailure?.(client.name, answer);
    });
    this.#running.add(run);
    return run.finally(() => this.#running.delete(run));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    await Promise.all(this.#running);
  }
}
