import { type ErrorType, type FailureReason, LABEL, PROM } from '@captcha-callback-monitor/koa';
import type { Thresholds } from './monitoringConfig.ts';
import { eq, increase, ne, num, orZero, type Scope } from './promql.ts';

/*
 * The building blocks of the rule expressions. Everything aggregates `without (instance)` (the config's instance
 * labels): several receiver instances behind a load balancer are one service. Counters (errors, requests, tasks) are
 * per instance and are summed after increase(); `captcha_tasks_pending` is a store-wide gauge every instance reports,
 * so it is max-ed; the time since the last callback is the minimum over instances (the service heard from a solver as
 * recently as its luckiest instance did).
 */

/**
 * `handler_error` means the user's own post-ACK hook threw. The callback was stored and answered 200, so it is not
 * a failed request: counting it in the error rate would page the receiver's on-call for application bugs, and
 * could push the ratio past 100 % of requests. It gets its own warning (CaptchaCallbackHandlerErrors) instead.
 */
export const HANDLER_ERROR = 'handler_error' as const satisfies ErrorType;

export const pct = (ratio: number) => `${num(ratio * 100)}%`;

/** A Prometheus duration for people: '5m' → '5 minutes', '1h' → 'hour'. */
export function human(d: string): string {
  const m = /^(\d+)([smhd])$/.exec(d);
  if (!m) throw new Error(`unsupported duration ${d}`);
  const unit = { s: 'second', m: 'minute', h: 'hour', d: 'day' }[m[2] as 's' | 'm' | 'h' | 'd'];
  return m[1] === '1' ? unit : `${m[1]} ${unit}s`;
}

/** The stale window as a duration: the stale threshold (whole minutes, the config validates it). */
export const staleWindow = (thresholds: Thresholds) => `${num(thresholds.staleAfterSeconds / 60)}m`;

/** The receiver's series for one monitoring config (see Scope). */
export function series(s: Scope) {
  const STALE = staleWindow(s.thresholds);
  /** Requests answered on the callback route (every status): the histogram's count. */
  const requests = (w: string) => s.agg('sum', increase(s.recv(PROM.callbackDurationCount), w), LABEL.statusCode);
  const failedRequests = (w: string) =>
    s.agg('sum', increase(s.recv(PROM.callbackErrorsTotal, ne(LABEL.errorType, HANDLER_ERROR)), w), LABEL.errorType);
  const hookFailures = (w: string) =>
    s.agg('sum', increase(s.recv(PROM.callbackErrorsTotal, eq(LABEL.errorType, HANDLER_ERROR)), w), LABEL.errorType);
  const accepted = (w: string) => s.agg('sum', increase(s.recv(PROM.callbacksTotal), w), LABEL.outcome, LABEL.format);
  /** Accepted callbacks that reported a failed task with this reason (the series exist at 0 from start-up). */
  const failures = (reason: FailureReason, w: string) =>
    s.agg('sum', increase(s.recv(PROM.callbackFailuresTotal, eq(LABEL.reason, reason)), w), LABEL.reason);
  const timeSinceLast = s.agg('min', s.recv(PROM.timeSinceLast));
  const pending = (offset = '') => s.agg('max', `${s.recv(PROM.tasksPending)}${offset}`);
  const submitted = (w: string, offset = '') =>
    s.agg('sum', `increase(${s.recv(PROM.tasksSubmittedTotal)}[${w}]${offset})`);
  const delivered = (w: string) => s.agg('sum', increase(s.recv(PROM.tasksDeliveredTotal), w));
  const missed = (w: string) => s.agg('sum', increase(s.recv(PROM.tasksMissedTotal), w));
  return {
    /** The stale window (`5m` by default). */
    STALE,
    requests,
    failedRequests,
    hookFailures,
    accepted,
    failures,
    timeSinceLast,
    pending,
    submitted,
    delivered,
    missed,
    /** Delivered and missed, each zero (not absent) while only the other has happened yet. */
    deliveredOrZero: (w: string) => orZero(delivered(w), missed(w)),
    missedOrZero: (w: string) => orZero(missed(w), delivered(w)),
    /** Callbacks are expected when tasks are pending or were submitted within the stale window (health report's rule). */
    expected: (offset = '') => `(\n  ${pending(offset)} > 0\n  or\n  ${submitted(STALE, offset)} > 0\n)`,
    /** Nothing expected: no task pending and none submitted recently (delivery tracking in use, pipeline idle). */
    idle: `(\n  ${pending()} == 0\n  and\n  ${submitted(STALE)} == 0\n)`,
  };
}
