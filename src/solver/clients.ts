import type { SolverEndpoint } from '@captcha-callback-monitor/koa';
import type { SolverMetrics, SolverMetricsEntry } from '@captcha-callback-monitor/koa/internal';
import type { SolverConfig } from './config.ts';
import { CreateTaskClient } from './createTaskClient.ts';
import { ResPhpClient } from './resPhpClient.ts';
import type { SolverClient } from './types.ts';

/** The endpoints each protocol has (the pingback-address calls are res.php's only). */
export function protocolEndpoints(protocol: SolverConfig['protocol']): readonly SolverEndpoint[] {
  return protocol === 'res.php'
    ? ['get_result', 'get_balance', 'add_pingback', 'get_pingbacks', 'del_pingback']
    : ['get_result', 'get_balance'];
}

/** What SolverMetrics needs to create every series of the configured solvers at start-up. */
export function metricsEntries(solvers: readonly SolverConfig[]): SolverMetricsEntry[] {
  return solvers.map((s) => ({ name: s.name, endpoints: protocolEndpoints(s.protocol), lowBalance: s.lowBalance }));
}

export function createSolverClient(config: SolverConfig, metrics?: SolverMetrics, timeoutMs?: number): SolverClient {
  return config.protocol === 'res.php'
    ? new ResPhpClient(config, metrics, timeoutMs)
    : new CreateTaskClient(config, metrics, timeoutMs);
}
