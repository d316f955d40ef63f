import { type ErrorType, type FailureReason, JOB, LABEL, PROM } from '@captcha-callback-monitor/koa';
import { eq, increase, ne, num, orZero, sel, without } from './promql.ts';
import { ALERT_THRESHOLDS as T } from './thresholds.ts';

/*
 * The building blocks of the rule expressions. Everything aggregates `without (instance)`: several receiver
 * instances behind a load balancer are one service. Counters (errors, requests, tasks) are per instance and are
 * summed after increase(); `captcha_tasks_pending` is a store-wide gauge every instance reports, so it is max-ed;
 * the time since the last callback is the minimum over instances (the service heard from a solver as recently as
 * its luckiest instance did).
 */

const R = JOB.receiver;

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

/** Requests answered on the callback route (every status): the histogram's count. */
export const requests = (w: string) =>
  without('sum', increase(sel(PROM.callbackDurationCount, R), w), LABEL.statusCode);
export const failedRequests = (w: string) =>
  without('sum', increase(sel(PROM.callbackErrorsTotal, R, ne(LABEL.errorType, HANDLER_ERROR)), w), LABEL.errorType);
export const hookFailures = (w: string) =>
  without('sum', increase(sel(PROM.callbackErrorsTotal, R, eq(LABEL.errorType, HANDLER_ERROR)), w), LABEL.errorType);
export const accepted = (w: string) =>
  without('sum', increase(sel(PROM.callbacksTotal, R), w), LABEL.outcome, LABEL.format);
/** Accepted callbacks that reported a failed task with this reason (the series exist at 0 from start-up). */
export const failures = (reason: FailureReason, w: string) =>
  without('sum', increase(sel(PROM.callbackFailuresTotal, R, eq(LABEL.reason, reason)), w), LABEL.reason);
export const timeSinceLast = without('min', sel(PROM.timeSinceLast, R));
export const pending = (offset = '') => without('max', `${sel(PROM.tasksPending, R)}${offset}`);
export const submitted = (w: string, offset = '') =>
  without('sum', `increase(${sel(PROM.tasksSubmittedTotal, R)}[${w}]${offset})`);
export const delivered = (w: string) => without('sum', increase(sel(PROM.tasksDeliveredTotal, R), w));
export const missed = (w: string) => without('sum', increase(sel(PROM.tasksMissedTotal, R), w));
/** Delivered and missed, each zero (not absent) while only the other has happened yet. */
export const deliveredOrZero = (w: string) => orZero(delivered(w), missed(w));
export const missedOrZero = (w: string) => orZero(missed(w), delivered(w));

/** Windows the rows use (kept with their length in seconds where the expression needs the number). */
export const WINDOW = {
  requests: '5m',
  delivery: '30m',
  interval: '1h',
  zeroBalance: '5m',
  unsolvable: '15m',
} as const;
export const STALE = `${num(T.staleAfterSeconds / 60)}m`;

/** Callbacks are expected when tasks are pending or were submitted within the stale window (health report's rule). */
export const expected = (offset = '') => `(\n  ${pending(offset)} > 0\n  or\n  ${submitted(STALE, offset)} > 0\n)`;
/** Nothing expected: no task pending and none submitted recently (delivery tracking in use, pipeline idle). */
export const idle = `(\n  ${pending()} == 0\n  and\n  ${submitted(STALE)} == 0\n)`;
