import { LABEL, PROM } from '@captcha-callback-monitor/koa';
import { DEFAULT_MONITORING_CONFIG, type MonitoringConfig, MonitoringConfigError } from './monitoringConfig.ts';
import { durationSeconds, EXTERNAL, increase, num, rate, scope } from './promql.ts';
import type { AlertRow } from './rules.ts';
import { human, pct, series } from './series.ts';
import { sloAlerts } from './slo.ts';
import { solverSeries } from './solverSeries.ts';

/**
 * The always-firing alert. It watches the alerting path itself: routed to a heartbeat (dead man's switch) service
 * that pages when the notifications STOP, it reports a Prometheus that no longer evaluates rules, an Alertmanager
 * that is down or misconfigured, or a broken path from it to the notifier, none of which any other alert can report.
 * Not named CaptchaCallback*: Alertmanager's "endpoint down inhibits every CaptchaCallback* alert" must not silence it.
 */
export const WATCHDOG = 'CaptchaMonitorWatchdog';

/**
 * `numerator / denominator` above `max`, and only once `denominator` is at least `min` (a handful of events is no
 * ratio to page on): the shape of every "share of X that failed" alert.
 */
function ratioAbove(numerator: string, denominator: string, max: number, min: number): string {
  const ratio = `(\n  ${numerator}\n  /\n  ${denominator}\n) > ${num(max)}`;
  return [ratio, 'and', `${denominator} >= ${num(min)}`].join('\n');
}

/**
 * THE alert table: one row per alert, in the order of the design's table, then the SLO burn-rate alerts and the
 * watchdog. The Prometheus rule file, the Grafana-managed rules and the README table are rendered from it
 * (scripts/generate.ts); dashboards read the thresholds from the same config. `config` is the monitoring config
 * (monitoringConfig.ts): which series are the receiver's, the thresholds, windows and `for`s.
 */
export function alertTable(config: MonitoringConfig = DEFAULT_MONITORING_CONFIG): readonly AlertRow[] {
  const s = scope(config);
  const threshold = s.thresholds;
  const WINDOW = s.windows;
  const {
    STALE,
    accepted,
    deliveredOrZero,
    expected,
    failedRequests,
    failures,
    hookFailures,
    idle,
    missed,
    requests,
    timeSinceLast,
  } = series(s);
  const solver = solverSeries(s);
  const rows: AlertRow[] = [
    {
      name: 'CaptchaCallbackEndpointStale',
      // The health report's "stale": no callback for 5 min while callbacks are expected. "Expected" must hold now
      // AND 5 minutes ago: after a quiet night the first new task must not page at once because the last callback
      // was hours ago; it pages only if that task's callback has had the full 5 minutes to arrive. No `for`: the
      // 5-minute wait is in the expression itself.
      expr: [
        `${timeSinceLast} > ${num(threshold.staleAfterSeconds)}`,
        'and',
        expected(),
        'and',
        expected(` offset ${STALE}`),
      ].join('\n'),
      for: '0m',
      severity: 'warning',
      summary: `No CAPTCHA callback for ${human(STALE)} while callbacks are expected`,
      description:
        'The last callback reached {{ $labels.job }} {{ $value | humanizeDuration }} ago, although tasks have been ' +
        `pending or submitted for at least ${human(STALE)}. Solvers do not retry: a callback that does not arrive is a lost result.`,
      runbookAnchor: 'captchacallbackendpointstale',
      threshold: threshold.staleAfterSeconds,
      healthy: 'timeSinceLastSeconds',
    },
    {
      name: 'CaptchaCallbackHighErrorRate',
      expr: ratioAbove(
        failedRequests(WINDOW.requests),
        requests(WINDOW.requests),
        threshold.errorRatio,
        threshold.minRequests5m,
      ),
      for: '2m',
      severity: 'critical',
      summary: `More than ${pct(threshold.errorRatio)} of CAPTCHA callback requests fail`,
      description:
        '{{ $value | humanizePercentage }} of the callback requests to {{ $labels.job }} failed over the last ' +
        `${human(WINDOW.requests)} (at least ${threshold.minRequests5m} requests; failures of your own result hook are counted ` +
        'separately). Solvers do not retry a refused callback.',
      runbookAnchor: 'captchacallbackhigherrorrate',
      threshold: threshold.errorRatio,
      healthy: 'errorRatio',
    },
    {
      name: 'CaptchaCallbackSlowResponses',
      expr: [
        `histogram_quantile(0.95, ${s.agg('sum', rate(s.recv(PROM.callbackDurationBucket), WINDOW.requests), LABEL.statusCode)}) > ${num(threshold.latencyP95Seconds)}`,
        'and',
        `${requests(WINDOW.requests)} >= ${num(threshold.minRequests5m)}`,
      ].join('\n'),
      for: '5m',
      severity: 'warning',
      summary: `CAPTCHA callback p95 latency above ${num(threshold.latencyP95Seconds)}s`,
      description:
        'The 95th percentile of callback handling time on {{ $labels.job }} is {{ $value | humanizeDuration }} ' +
        `over the last ${human(WINDOW.requests)}. Solvers give up after 2 to 10 seconds: answers this slow risk lost callbacks.`,
      runbookAnchor: 'captchacallbackslowresponses',
      threshold: threshold.latencyP95Seconds,
      healthy: 'latencySeconds',
    },
    {
      name: 'CaptchaCallbackLowDeliveryRate',
      expr: [
        // No missed series at all means nothing was missed: the ratio is then empty, and silent, on purpose.
        `(\n  ${deliveredOrZero(WINDOW.delivery)}\n  /\n  (${deliveredOrZero(WINDOW.delivery)} + ${missed(WINDOW.delivery)})\n) < ${num(threshold.deliveryRatio)}`,
        'and',
        `(${deliveredOrZero(WINDOW.delivery)} + ${missed(WINDOW.delivery)}) >= ${num(threshold.minSettledTasks)}`,
      ].join('\n'),
      for: '5m',
      severity: 'critical',
      summary: `Fewer than ${pct(threshold.deliveryRatio)} of registered CAPTCHA tasks got their callback`,
      description:
        'Only {{ $value | humanizePercentage }} of the tasks registered with {{ $labels.job }} that settled in the ' +
        `last ${human(WINDOW.delivery)} got their callback before the deadline (at least ${threshold.minSettledTasks} settled ` +
        'tasks). The others are missed results: see GET /tasks?state=missed.',
      runbookAnchor: 'captchacallbacklowdeliveryrate',
      threshold: threshold.deliveryRatio,
      healthy: 'deliveryRatio',
    },
    {
      name: 'CaptchaCallbackEndpointDown',
      // The probe goes through the public address (the load balancer), so it keeps its instance label: that is the
      // URL that fails. `up` is per receiver instance; only "no instance can be scraped" is the service being down.
      expr: [`${s.probe(EXTERNAL.probeSuccess)} == 0`, 'or', `${s.agg('max', s.recv(EXTERNAL.up))} == 0`].join('\n'),
      for: '1m',
      severity: 'critical',
      summary: 'CAPTCHA callback endpoint is down',
      description:
        // The probe alert keeps its instance (the probed URL); the scrape alert has aggregated it away.
        '{{ if $labels.instance }}The outside probe of {{ $labels.instance }} fails (HTTP 503: the ' +
        'store is unreachable; or no answer in time){{ else }}Prometheus cannot scrape any instance of ' +
        '{{ $labels.job }}{{ end }}. Callbacks sent now are lost.',
      runbookAnchor: 'captchacallbackendpointdown',
      threshold: 0,
      healthy: 'uptimeRatio',
    },
    {
      name: 'CaptchaCallbackIrregularInterval',
      // Poisson arrivals exceed 5 × their mean gap every ~150 gaps, so at 1 callback/s a bare "> 5 × average" would
      // flap all day: the `for` makes the silence last at least 2 more minutes. `unless idle`: when tasks are
      // registered and none is pending or new, the silence is explained (the app stopped submitting).
      expr: [
        `(\n  ${timeSinceLast}\n  > ${num(threshold.intervalFactor)} * ${durationSeconds(WINDOW.interval)} / ${accepted(WINDOW.interval)}\n)`,
        'and',
        `${accepted(WINDOW.interval)} >= ${num(threshold.minCallbacksPerHour)}`,
        'unless',
        idle,
      ].join('\n'),
      for: '2m',
      severity: 'warning',
      summary: `CAPTCHA callbacks stopped arriving at their usual pace`,
      description:
        'No callback reached {{ $labels.job }} for {{ $value | humanizeDuration }}: more than ' +
        `${threshold.intervalFactor} times the average interval of the last ${human(WINDOW.interval)}, while callbacks are still expected.`,
      runbookAnchor: 'captchacallbackirregularinterval',
      threshold: threshold.intervalFactor,
      healthy: 'intervalFactor',
    },
    {
      name: 'CaptchaCallbackHandlerErrors',
      expr: ratioAbove(
        hookFailures(WINDOW.requests),
        accepted(WINDOW.requests),
        threshold.handlerErrorRatio,
        threshold.minRequests5m,
      ),
      for: '5m',
      severity: 'warning',
      summary: `Your result hook fails for more than ${pct(threshold.handlerErrorRatio)} of CAPTCHA callbacks`,
      description:
        'Your own onResult hook failed for {{ $value | humanizePercentage }} of the callbacks {{ $labels.job }} ' +
        `accepted over the last ${human(WINDOW.requests)}. The solver got its 200 and the result is stored (GET /tasks/:id), ` +
        'but your processing did not run.',
      runbookAnchor: 'captchacallbackhandlererrors',
      threshold: threshold.handlerErrorRatio,
      healthy: 'errorRatio',
    },
    {
      name: 'CaptchaSolverZeroBalance',
      // Named for the solver, not the endpoint: the receiver works, the solver account is empty. Not inhibited by
      // CaptchaCallbackEndpointDown (a different cause, and one that keeps costing tasks after the endpoint is back).
      // No `for`: one such callback already means every further task fails. It resolves 5 minutes after the last one.
      expr: `${failures('ERROR_ZERO_BALANCE', WINDOW.zeroBalance)} > ${num(threshold.zeroBalanceFailures)}`,
      for: '0m',
      severity: 'critical',
      summary: 'The CAPTCHA solver account is out of funds (ERROR_ZERO_BALANCE)',
      description:
        `Callbacks to {{ $labels.job }} reported ERROR_ZERO_BALANCE in the last ${human(WINDOW.zeroBalance)}: the ` +
        'solver refuses tasks until the account is topped up, so every task submitted now fails.',
      runbookAnchor: 'captchasolverzerobalance',
      threshold: threshold.zeroBalanceFailures,
      healthy: 'zeroBalanceFailures',
    },
    {
      name: 'CaptchaSolverHighUnsolvableRate',
      expr: ratioAbove(
        failures('ERROR_CAPTCHA_UNSOLVABLE', WINDOW.unsolvable),
        accepted(WINDOW.unsolvable),
        threshold.unsolvableRatio,
        threshold.minCallbacks15m,
      ),
      // A burst of hard captchas passes; a share that stays above the threshold for 5 more minutes does not.
      for: '5m',
      severity: 'warning',
      summary: `More than ${pct(threshold.unsolvableRatio)} of CAPTCHA callbacks report ERROR_CAPTCHA_UNSOLVABLE`,
      description:
        '{{ $value | humanizePercentage }} of the callbacks {{ $labels.job }} accepted over the last ' +
        `${human(WINDOW.unsolvable)} report that the solver could not solve the captcha (at least ${threshold.minCallbacks15m} ` +
        'callbacks). Check what the app sends with each task: the site key and page URL, the captcha type, the proxy.',
      runbookAnchor: 'captchasolverhighunsolvablerate',
      threshold: threshold.unsolvableRatio,
      healthy: 'unsolvableRatio',
    },
    {
      name: 'CaptchaSolverLowBalance',
      // Each solver against its own threshold (SOLVER_<NAME>_LOW_BALANCE, exported beside the balance), so one static
      // rule serves every configuration; a solver without a threshold has no threshold series and never matches.
      // "At or below": a balance exactly at the threshold fires. No `for`: the balance moves only when it is spent.
      expr: `${solver.balance}
<= on (${[...s.serviceLabels, LABEL.solver].join(', ')})
${solver.lowBalance}`,
      for: '0m',
      severity: 'warning',
      summary: 'A CAPTCHA solver account is running low on funds',
      description:
        'The {{ $labels.solver }} account balance is {{ $value }}, at or below its configured SOLVER_<NAME>_LOW_BALANCE. ' +
        'Top it up before it reaches zero: at ERROR_ZERO_BALANCE every task fails.',
      runbookAnchor: 'captchasolverlowbalance',
      threshold: threshold.solverBalanceFactor,
      healthy: 'solverBalanceHeadroom',
    },
    {
      name: 'CaptchaSolverApiErrors',
      expr: ratioAbove(
        solver.failedRequests(WINDOW.solverApiErrors),
        solver.requests(WINDOW.solverApiErrors),
        threshold.solverApiErrorRatio,
        threshold.minSolverRequests15m,
      ),
      for: '5m',
      severity: 'warning',
      summary: `More than ${pct(threshold.solverApiErrorRatio)} of requests to a CAPTCHA solver API fail`,
      description:
        '{{ $value | humanizePercentage }} of the requests {{ $labels.job }} made to the {{ $labels.solver }} API over ' +
        `the last ${human(WINDOW.solverApiErrors)} got no usable answer (HTTP error, timeout, network error or a ` +
        'malformed body). Missed results cannot be recovered and the balance is not watched while it lasts.',
      runbookAnchor: 'captchasolverapierrors',
      threshold: threshold.solverApiErrorRatio,
      healthy: 'solverApiErrorRatio',
    },
    {
      name: 'CaptchaForwardBacklog',
      // Store-wide gauge: every instance reports the same age, so max (not sum) over instances.
      expr: `${s.agg('max', s.recv(PROM.forwardOldestPendingAge))} > ${num(threshold.forwardPendingAgeSeconds)}`,
      for: '5m',
      severity: 'warning',
      summary: `Stored CAPTCHA results have not reached the app for over ${human(`${threshold.forwardPendingAgeSeconds / 60}m`)}`,
      description:
        'The oldest result {{ $labels.job }} has not yet handed to the app (FORWARD_URL) is {{ $value | humanizeDuration }} ' +
        'old: the app refuses or cannot be reached, and forwards are being retried. The results are stored; the app ' +
        'gets them once it answers 2xx, or they become dead letters at FORWARD_MAX_AGE.',
      runbookAnchor: 'captchaforwardbacklog',
      threshold: threshold.forwardPendingAgeSeconds,
      healthy: 'forwardPendingAgeSeconds',
    },
    {
      name: 'CaptchaForwardDeadLetters',
      // Counted by the instance that gave up, so sum over instances. No `for`: each one is a result the app never got.
      expr: `${s.agg('sum', increase(s.recv(PROM.forwardDeadLettersTotal), WINDOW.forwardDeadLetters))} > ${num(threshold.forwardDeadLetters)}`,
      for: '0m',
      severity: 'critical',
      summary: 'CAPTCHA results were dead-lettered: the app never received them',
      description:
        '{{ $value }} forward(s) from {{ $labels.job }} reached FORWARD_MAX_AGE without a 2xx from the app in the last ' +
        `${human(WINDOW.forwardDeadLetters)}. The results are still stored: fix the app, then replay them (POST /forwards/replay).`,
      runbookAnchor: 'captchaforwarddeadletters',
      threshold: threshold.forwardDeadLetters,
      healthy: 'forwardDeadLetters',
    },
    ...sloAlerts(config),
    {
      name: WATCHDOG,
      // Always one series: the alert fires from the first evaluation on and never resolves.
      expr: 'vector(1)',
      for: '0m',
      severity: 'none',
      summary: 'Always firing: the alerting pipeline works',
      description:
        "This alert fires all the time on purpose. Route it to a heartbeat (dead man's switch) service that pages " +
        'when the notifications stop: then rule evaluation, the Alertmanager or the way to the notifier is broken, ' +
        'and no other alert could reach anyone either.',
      runbookAnchor: WATCHDOG.toLowerCase(),
      threshold: 0,
    },
  ];
  const names = new Set(rows.map((r) => r.name));
  const unknown = Object.keys(config.for).filter((name) => !names.has(name));
  if (unknown.length > 0) {
    throw new MonitoringConfigError(unknown.map((name) => `for.${name}: no alert of that name in the alert table`));
  }
  return rows.map((r) => (config.for[r.name] ? { ...r, for: config.for[r.name]! } : r));
}

/** The alert table with the default monitoring config: this repository's stack, and what the check command reads. */
export const ALERT_TABLE: readonly AlertRow[] = alertTable();
