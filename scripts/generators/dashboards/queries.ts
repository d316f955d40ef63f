/**
 * The PromQL behind the dashboard panels, assembled from the metric contract (PROM, LABEL, JOB) and the alerting
 * module's helpers: no metric name is typed here. Every selector carries the dashboard's `$job` and `$instance`
 * variables, so one dashboard shows one service (a job: several receivers behind a load balancer) or any subset
 * of its instances.
 */

import { type FailureReason, LABEL, PROM } from '@captcha-callback-monitor/koa';
import {
  DEFAULT_MONITORING_CONFIG,
  type MonitoringConfig,
  selectorJob,
  selectorWithoutJob,
} from '../../../src/alerting/monitoringConfig.ts';
import { durationSeconds, EXTERNAL, eq, increase, ne, num, orZero, rate, sel } from '../../../src/alerting/promql.ts';
import { HANDLER_ERROR } from '../../../src/alerting/series.ts';

/** Grafana's variables and built-ins, as they appear in the queries (the live test substitutes them). */
export const VAR = {
  job: '$job',
  instance: '$instance',
  rateInterval: '$__rate_interval',
  range: '$__range',
} as const;

/** The SLO period the error budgets are measured over (the burn-rate factors in the alert table assume 30 days). */
export const SLO_PERIOD = '30d';

const UNSOLVABLE = 'ERROR_CAPTCHA_UNSOLVABLE' satisfies FailureReason;
const ZERO_BALANCE = 'ERROR_ZERO_BALANCE' satisfies FailureReason;

/**
 * The receiver's selector with its job matcher replaced by the `$job` variable (its other matchers, e.g. a
 * namespace, kept as configured), then the `$instance` variable.
 */
export function dashboardSelector(config: MonitoringConfig): string {
  return [`job="${VAR.job}"`, selectorWithoutJob(config.selector), `instance=~"${VAR.instance}"`]
    .filter((m) => m !== '')
    .join(',');
}

/** The dashboard's queries for one monitoring config. */
export function queries(config: MonitoringConfig = DEFAULT_MONITORING_CONFIG) {
  const receiver = dashboardSelector(config);
  /** A receiver series, narrowed to the selected job and instances. */
  const recv = (metric: string, ...matchers: string[]) => sel(metric, receiver, ...matchers);
  /** The blackbox probe of the receiver's /healthz (its own job; its `instance` is the probed URL). */
  const probe = (metric: string) => sel(metric, config.probeSelector);

  const w: string = VAR.rateInterval;
  const sumRate = (metric: string, window = w, ...matchers: string[]) =>
    `sum(${rate(recv(metric, ...matchers), window)})`;
  const sumIncrease = (metric: string, window: string) => `sum(${increase(recv(metric), window)})`;

  /**
   * A counter's rate that is 0 (not absent) while the counter has never been incremented: OpenTelemetry exports a
   * counter only after its first increment, and "no errors yet" must read 0 %, not "No data".
   */
  const sumRateOrZero = (metric: string, window = w, ...matchers: string[]) =>
    orZero(sumRate(metric, window, ...matchers), sumRate(PROM.callbackDurationCount, window));
  const taskRateOrZero = (metric: string) => orZero(sumRate(metric), sumRate(PROM.tasksSubmittedTotal));

  /** Delivered / (delivered + missed) registered tasks settled in the window. */
  function deliveryRatio(window: string): string {
    const zero = `${sumIncrease(PROM.tasksSubmittedTotal, window)} * 0`;
    const delivered = `(${sumIncrease(PROM.tasksDeliveredTotal, window)} or ${zero})`;
    const missed = `(${sumIncrease(PROM.tasksMissedTotal, window)} or ${zero})`;
    return `${delivered} / (${delivered} + ${missed})`;
  }

  const others = selectorWithoutJob(config.selector);
  const variables = {
    /** Every job that exports the receiver's metrics (within the selector's other matchers). */
    job: `label_values(${others ? sel(PROM.tasksPending, others) : PROM.tasksPending}, job)`,
    /** The configured job: the job variable's default. */
    defaultJob: selectorJob(config.selector),
    instance: `label_values(${sel(PROM.tasksPending, [`job="${VAR.job}"`, others].filter(Boolean).join(','))}, instance)`,
  };

  const queries = {
    callbacksByOutcome: `sum by (${LABEL.outcome}) (${rate(recv(PROM.callbacksTotal), w)})`,
    callbacksByFormat: `sum by (${LABEL.format}) (${rate(recv(PROM.callbacksTotal), w)})`,
    callbacksByInstance: `sum by (instance) (${rate(recv(PROM.callbacksTotal), w)})`,
    requests: sumRate(PROM.callbackDurationCount),
    errorsByType: `sum by (${LABEL.errorType}) (${rate(recv(PROM.callbackErrorsTotal), w)})`,

    /** Accepted callbacks that report a failed task, by the solver's error code (every reason exists at 0). */
    failuresByReason: `sum by (${LABEL.reason}) (${rate(recv(PROM.callbackFailuresTotal), w)})`,
    /** As in CaptchaSolverHighUnsolvableRate: ERROR_CAPTCHA_UNSOLVABLE failures / accepted callbacks. */
    unsolvableRatio: (window: string = w) =>
      `${sumRate(PROM.callbackFailuresTotal, window, eq(LABEL.reason, UNSOLVABLE))} / ${sumRate(PROM.callbacksTotal, window)}`,
    /** As in CaptchaSolverZeroBalance: ERROR_ZERO_BALANCE failures over its window (0 while the account has funds). */
    zeroBalanceFailures: `sum(${increase(recv(PROM.callbackFailuresTotal, eq(LABEL.reason, ZERO_BALANCE)), config.windows.zeroBalance)})`,

    /**
     * Failed callback requests / all callback requests (every request on the route is timed, so `_count` is all).
     * As in the alert: `handler_error` (the user's own hook failing after the 200) is not a failed request.
     */
    errorRatio: (window: string = w) =>
      `${sumRateOrZero(PROM.callbackErrorsTotal, window, ne(LABEL.errorType, HANDLER_ERROR))} / ${sumRate(PROM.callbackDurationCount, window)}`,

    latencyQuantile: (q: number, window: string = w) =>
      `histogram_quantile(${num(q)}, sum by (le) (${rate(recv(PROM.callbackDurationBucket), window)}))`,

    /** Service-wide: the most recent callback any instance took. */
    timeSinceLast: `min(${recv(PROM.timeSinceLast)})`,
    timeSinceLastByInstance: `max by (instance) (${recv(PROM.timeSinceLast)})`,

    /** Time since the last callback ÷ the average interval between callbacks over the interval window (1 h). */
    intervalFactor: `min(${recv(PROM.timeSinceLast)}) * ${sumIncrease(PROM.callbacksTotal, config.windows.interval)} / ${durationSeconds(config.windows.interval)}`,

    deliveryRatio,

    tasksSubmitted: sumRate(PROM.tasksSubmittedTotal),
    tasksDelivered: taskRateOrZero(PROM.tasksDeliveredTotal),
    tasksMissed: taskRateOrZero(PROM.tasksMissedTotal),
    tasksLate: taskRateOrZero(PROM.tasksLateTotal),
    duplicates: orZero(sumRate(PROM.duplicatesTotal), sumRate(PROM.callbackDurationCount)),

    /** The store-wide backlog: every instance sharing a store reports the same number, so max, never sum. */
    pending: `max(${recv(PROM.tasksPending)})`,

    /** Submit → callback time distribution, one row per bucket (Grafana's heatmap format). */
    deliveryHeatmap: `sum by (le) (${increase(recv(PROM.taskDeliveryDurationBucket), w)})`,

    /** Share of successful outside probes over the dashboard's time range. */
    uptime: `avg(avg_over_time(${probe(EXTERNAL.probeSuccess)}[${VAR.range}]))`,
    probeSuccess: `avg by (instance) (${probe(EXTERNAL.probeSuccess)})`,
    scrapeUp: `max by (instance) (${recv(EXTERNAL.up)})`,

    /** Share of the SLO period's error budget left (1 = untouched, 0 = spent, below 0 = overspent). */
    uptimeBudget: `1 - (1 - avg(avg_over_time(${probe(EXTERNAL.probeSuccess)}[${SLO_PERIOD}]))) / ${num(1 - config.healthy.uptimeRatio)}`,
    deliveryBudget: `1 - (1 - (${deliveryRatio(SLO_PERIOD)})) / ${num(1 - config.healthy.deliveryRatio)}`,
  } as const;

  return { recv, probe, variables, queries };
}

export type Queries = ReturnType<typeof queries>;

/** `ALERTS` series of this project's alerts (Prometheus-evaluated rules), given the alert names. */
export function alertsQuery(alertNames: readonly string[], state?: 'firing' | 'pending'): string {
  const matchers = [`alertname=~"${alertNames.join('|')}"`];
  if (state) matchers.push(eq('alertstate', state));
  return `ALERTS{${matchers.join(',')}}`;
}

export const firingAlertCount = (alertNames: readonly string[]) =>
  `count(${alertsQuery(alertNames, 'firing')}) or vector(0)`;
