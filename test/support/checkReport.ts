import type { HealthReport } from '../../packages/koa/src/health/healthReport.ts';
import { ERROR_TYPES, type ErrorType } from '../../packages/koa/src/metrics/contract.ts';

export interface ReportFields {
  status?: HealthReport['status'];
  received?: number;
  /** Refused requests (counted as invalid_request). */
  refused?: number;
  handlerErrors?: number;
  p95_latency_ms?: number;
  seconds_since_last_callback?: number;
  delivered?: number;
  missed?: number;
}

/**
 * A `/health/callbacks` body with the given totals, for unit tests of the evaluation (the CLI tests read real
 * receivers). Totals are made consistent the way the receiver counts them: errors include hook failures.
 */
export function report(f: ReportFields = {}): HealthReport {
  const refused = f.refused ?? 0;
  const handler = f.handlerErrors ?? 0;
  const received = f.received ?? 0;
  const breakdown = Object.fromEntries(ERROR_TYPES.map((t) => [t, 0])) as Record<ErrorType, number>;
  breakdown.invalid_request = refused;
  breakdown.handler_error = handler;
  const delivered = f.delivered ?? 0;
  const missed = f.missed ?? 0;
  return {
    status: f.status ?? 'healthy',
    total_received: received,
    total_errors: refused + handler,
    error_rate: received === 0 ? 0 : refused / received,
    avg_latency_ms: 1,
    p95_latency_ms: f.p95_latency_ms ?? 2,
    seconds_since_last_callback: f.seconds_since_last_callback ?? 1,
    error_breakdown: breakdown,
    delivery: {
      delivered,
      recovered: 0,
      missed,
      pending: 0,
      late: 0,
      delivery_rate: delivered + missed === 0 ? null : delivered / (delivered + missed),
      missed_task_ids: [],
    },
  };
}
