import type { SolverMetrics } from '@captcha-callback-monitor/koa/internal';
import type { SolverConfig } from './config.ts';

/** What every solver client holds: the solver's configuration, where its requests are counted, their time limit. */
export abstract class SolverClientBase {
  readonly name: string;
  protected readonly config: SolverConfig;
  protected readonly metrics: SolverMetrics | undefined;
  protected readonly timeoutMs: number | undefined;

  constructor(config: SolverConfig, metrics?: SolverMetrics, timeoutMs?: number) {
    this.name = config.name;
    this.config = config;
    this.metrics = metrics;
    this.timeoutMs = timeoutMs;
  }
}
