import type { Meter } from '@opentelemetry/api';
import { SolverMetrics } from '../metrics/instruments.ts';
import { BalanceWatcher } from './BalanceWatcher.ts';
import { createSolverClient, metricsEntries } from './clients.ts';
import type { SolversConfig } from './config.ts';

interface Logger {
  warn(obj: object, msg: string): void;
}

/**
 * The standalone server's solver side: clients for the configured solvers, their metrics, and the balance watch
 * (getBalance at start-up, then per solver interval). Logs a failed balance call by solver, outcome and the
 * solver's code only: never a URL or a key.
 */
export async function startSolvers(
  config: SolversConfig,
  meter: Meter,
  logger: Logger,
): Promise<{ stop(): Promise<void> }> {
  if (config.solvers.length === 0) return { stop: async () => {} };
  const metrics = new SolverMetrics(meter, metricsEntries(config.solvers));
  const clients = config.solvers.map((s) => createSolverClient(s, metrics));
  const intervals = new Map(config.solvers.map((s) => [s.name, s.pacing.balanceIntervalMs]));
  const watcher = new BalanceWatcher({
    clients,
    metrics,
    intervalMs: (name) => intervals.get(name) ?? 60_000,
    onFailure: (solver, answer) =>
      logger.warn({ solver, outcome: answer.outcome, detail: answer.detail }, 'getBalance failed'),
  });
  await watcher.start();
  return { stop: () => watcher.stop() };
}
