import type { DeliveryTracker } from '@captcha-callback-monitor/koa/internal';
import { type ReceiverMetrics, SolverMetrics } from '@captcha-callback-monitor/koa/internal';
import type { Meter } from '@opentelemetry/api';
import { BalanceWatcher } from './BalanceWatcher.ts';
import { createSolverClient, metricsEntries } from './clients.ts';
import type { SolversConfig } from './config.ts';
import { RecoveryPoller } from './RecoveryPoller.ts';
import type { RecoveryQueue } from './RecoveryQueue.ts';

interface Logger {
  warn(obj: object, msg: string): void;
}

export interface SolverRuntime {
  /** False when no solver is configured: nothing to watch, no queue needed. */
  readonly enabled: boolean;
  /**
   * The recovery poller for the receiver's monitor (its tracker and metrics), on `queue`; started by `start`. Results
   * go through the monitor's tracker as a callback's would (waiters woken, the forward written and kicked).
   */
  recovery(monitor: { tracker: DeliveryTracker; metrics: ReceiverMetrics }, queue: RecoveryQueue): RecoveryPoller;
  /** The balance watch (getBalance at start-up, then per solver interval) and the recovery poller. */
  start(): Promise<void>;
  /** Stops both, waits for the asks under way, and closes the queue. */
  stop(): Promise<void>;
}

/** Only name and message: a stack or a whole error object could carry request data. */
const detail = (error: unknown) =>
  error instanceof Error ? { type: error.name, message: error.message } : { type: typeof error };

/**
 * The standalone server's solver side: clients for the configured solvers, their metrics, the balance watch and
 * the recovery poller. Logs a failed balance call by solver, outcome and the solver's code only, and a failed
 * recovery step by its error's name and message: never a URL or a key (the clients' errors carry neither).
 */
export function createSolverRuntime(config: SolversConfig, meter: Meter, logger: Logger): SolverRuntime {
  if (config.solvers.length === 0) {
    return {
      enabled: false,
      recovery: () => {
        throw new Error('no solver is configured');
      },
      start: async () => {},
      stop: async () => {},
    };
  }
  const metrics = new SolverMetrics(meter, metricsEntries(config.solvers));
  const clients = config.solvers.map((s) => createSolverClient(s, metrics));
  const byName = new Map(config.solvers.map((s) => [s.name, s]));
  const watcher = new BalanceWatcher({
    clients,
    metrics,
    intervalMs: (name) => byName.get(name)?.pacing.balanceIntervalMs ?? 60_000,
    onFailure: (solver, answer) =>
      logger.warn({ solver, outcome: answer.outcome, detail: answer.detail }, 'getBalance failed'),
  });
  let poller: RecoveryPoller | undefined;
  let queue: RecoveryQueue | undefined;
  return {
    enabled: true,
    recovery(monitor, q) {
      queue = q;
      poller = new RecoveryPoller({
        tracker: monitor.tracker,
        queue: q,
        clients: new Map(clients.map((c) => [c.name, c])),
        pacing: (name) => byName.get(name)!.pacing,
        recoveryAfterMs: config.recovery.recoveryAfterSeconds * 1000,
        metrics: monitor.metrics,
        onError: (error) => logger.warn({ where: 'recovery', error: detail(error) }, 'recovery step failed'),
      });
      return poller;
    },
    async start() {
      poller?.start();
      await watcher.start();
    },
    async stop() {
      await poller?.stop();
      await watcher.stop();
      await queue?.close();
    },
  };
}
