import type { DeliveryTracker } from '../delivery/DeliveryTracker.ts';
import type { ErrorType } from '../metrics/contract.ts';
import type { CallbackStats } from './CallbackStats.ts';

/** Callbacks are "expected" for this long after a submission, and "stale" after this long without one. */
export const STALE_AFTER_MS = 300_000;

export type HealthStatus = 'healthy' | 'idle' | 'stale';

/** The `/health/callbacks` body: the seed tutorial's keys plus the delivery block. */
export interface HealthReport {
  status: HealthStatus;
  total_received: number;
  total_errors: number;
  error_rate: number;
  avg_latency_ms: number;
  p95_latency_ms: number;
  seconds_since_last_callback: number;
  error_breakdown: Record<ErrorType, number>;
  /**
   * Registered tasks, as the metrics and the LowDeliveryRate alert count them: `delivered` got their callback in time,
   * `missed` passed their deadline without one (including the `late` ones whose callback came afterwards), so
   * `delivery_rate` is delivered / (delivered + missed). `missed_task_ids` are the latest of those `missed`.
   * `recovered` is different in scope: the deliveries *this instance* made by asking the solver after a missing
   * callback (src/solver/RecoveryPoller.ts), since it started; they are in `delivered` too. With several instances on
   * one store, sum it over the instances (as Prometheus sums `captcha_tasks_recovered_total`).
   */
  delivery: {
    delivered: number;
    recovered: number;
    missed: number;
    pending: number;
    late: number;
    delivery_rate: number | null;
    missed_task_ids: readonly string[];
  };
}

const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;

/**
 * Builds the health report from running aggregates only (O(1): no task scan, no sample sort).
 * `stale` means callbacks are expected (tasks pending, or one submitted in the last 5 minutes) and none arrived for
 * 5 minutes, counting from the later of the last callback, the first submission after it, and start-up.
 * `idle` means nothing is expected and nothing arrived recently; a quiet pipeline is not an outage.
 */
export function healthReport(
  stats: CallbackStats,
  tracker: DeliveryTracker,
  now: number = Date.now(),
  recovered = 0,
): HealthReport {
  const counts = tracker.counts;
  const lastSubmit = tracker.lastSubmittedAt;
  const last = stats.lastCallbackAt;
  const expected = counts.pending > 0 || (lastSubmit !== null && now - lastSubmit < STALE_AFTER_MS);
  const recentTraffic = last !== null && now - last < STALE_AFTER_MS;
  const waitingSince = Math.max(stats.startedAt, last ?? 0, tracker.waitingSince ?? 0);
  let status: HealthStatus;
  if (expected) status = now - waitingSince >= STALE_AFTER_MS ? 'stale' : 'healthy';
  else status = recentTraffic ? 'healthy' : 'idle';
  // A late task missed its deadline all the same: the store moves it from missed to late, the missed counter keeps it.
  const missed = counts.missed + counts.late;
  const settled = counts.delivered + missed;
  return {
    status,
    total_received: stats.totalReceived,
    total_errors: stats.totalErrors,
    // Refused requests over all requests, as the HighErrorRate alert computes it: a failing onResult hook
    // (handler_error) happens after a stored, acknowledged callback, so it is in total_errors but not in the rate.
    error_rate:
      stats.totalReceived === 0
        ? 0
        : round((stats.totalErrors - stats.errorBreakdown.handler_error) / stats.totalReceived, 4),
    avg_latency_ms: round(stats.latency.averageMs()),
    p95_latency_ms: round(stats.latency.quantileMs(0.95)),
    seconds_since_last_callback: last === null ? -1 : round((now - last) / 1000),
    error_breakdown: { ...stats.errorBreakdown },
    delivery: {
      delivered: counts.delivered,
      recovered,
      missed,
      pending: counts.pending,
      late: counts.late,
      delivery_rate: settled === 0 ? null : round(counts.delivered / settled, 4),
      missed_task_ids: [...tracker.recentMissedIds],
    },
  };
}
