/**
 * The overview dashboard: is the callback endpoint up, fast and error-free, do registered tasks get their callback,
 * how much error budget is left, and what is firing. Thresholds are the alert table's healthy ranges.
 */

import * as common from '@grafana/grafana-foundation-sdk/common';
import {
  type Dashboard,
  DashboardBuilder,
  DashboardCursorSync,
  DatasourceVariableBuilder,
  type Panel,
  QueryVariableBuilder,
  RowBuilder,
  VariableRefresh,
  VariableSort,
} from '@grafana/grafana-foundation-sdk/dashboard';
import {
  PanelBuilder as HeatmapBuilder,
  HeatmapColorMode,
  HeatmapColorOptionsBuilder,
  HeatmapColorScale,
  RowsHeatmapOptionsBuilder,
  YAxisConfigBuilder,
} from '@grafana/grafana-foundation-sdk/heatmap';
import { PromQueryFormat } from '@grafana/grafana-foundation-sdk/prometheus';
import { PanelBuilder as TableBuilder } from '@grafana/grafana-foundation-sdk/table';
import { alertTable, WATCHDOG } from '../../../src/alerting/alertTable.ts';
import { DEFAULT_MONITORING_CONFIG, type MonitoringConfig } from '../../../src/alerting/monitoringConfig.ts';
import { num } from '../../../src/alerting/promql.ts';
import { HEALTHY as HEALTHY_TABLE, type HealthyRangeName } from '../../../src/alerting/thresholds.ts';
import { FORWARD_PANEL_HEALTHY_RANGE, forwarding } from './forwardPanels.ts';
import { COLOR, DATASOURCE_VARIABLE, type PanelKit, panelKit, thresholds } from './panels.ts';
import { alertsQuery, firingAlertCount, type Queries, queries, SLO_PERIOD, VAR } from './queries.ts';
import { SOLVER_PANEL_HEALTHY_RANGE, solverApis } from './solverPanels.ts';

/** The overview dashboard's default uid (monitoring config `dashboard.uid`). */
export const OVERVIEW_UID = DEFAULT_MONITORING_CONFIG.dashboard.uid;

/** Panel titles, named once: the tests look panels up by these. */
export const TITLE = {
  uptime: 'Uptime (outside probe)',
  errorRate: 'Error rate',
  p95: 'p95 latency',
  sinceLast: 'Time since last callback',
  delivery: 'Delivery rate',
  pending: 'Pending tasks',
  firing: 'Firing alerts',
  budget: `Error budget remaining (${SLO_PERIOD})`,
  callbacksByOutcome: 'Callbacks/s by outcome',
  callbacksByFormat: 'Callbacks/s by format',
  errorRatio: 'Error rate over time',
  errorsByType: 'Errors/s by type',
  latency: 'Callback latency p50 / p95 / p99',
  sinceLastSeries: 'Time since last callback over time',
  interval: 'Silence vs. usual interval',
  deliverySeries: 'Delivery rate over time',
  taskFlow: 'Task flow',
  pendingSeries: 'Pending tasks over time',
  heatmap: 'Submit → callback time',
  probe: 'Uptime: probe and scrape',
  alerts: 'Alerts (pending and firing)',
  byInstance: 'Callbacks/s by instance',
  sinceLastByInstance: 'Time since last callback by instance',
  failuresByReason: 'Failed callbacks/s by reason',
  unsolvable: 'Unsolvable share',
  zeroBalance: 'Zero-balance failures (5 min)',
} as const;

/**
 * Which healthy range colours which panel. The test checks every entry against the rendered JSON and that every
 * healthy range appears on the dashboard.
 */
export const PANEL_HEALTHY_RANGE: Readonly<Partial<Record<string, HealthyRangeName>>> = {
  [TITLE.uptime]: 'uptimeRatio',
  [TITLE.probe]: 'uptimeRatio',
  [TITLE.errorRate]: 'errorRatio',
  [TITLE.errorRatio]: 'errorRatio',
  [TITLE.p95]: 'latencySeconds',
  [TITLE.latency]: 'latencySeconds',
  [TITLE.sinceLast]: 'timeSinceLastSeconds',
  [TITLE.sinceLastSeries]: 'timeSinceLastSeconds',
  [TITLE.interval]: 'intervalFactor',
  [TITLE.delivery]: 'deliveryRatio',
  [TITLE.deliverySeries]: 'deliveryRatio',
  [TITLE.unsolvable]: 'unsolvableRatio',
  [TITLE.zeroBalance]: 'zeroBalanceFailures',
  ...SOLVER_PANEL_HEALTHY_RANGE,
  ...FORWARD_PANEL_HEALTHY_RANGE,
};

const healthy = (title: string) => {
  const name = PANEL_HEALTHY_RANGE[title];
  if (!name) throw new Error(`no healthy range for panel "${title}"`);
  return name;
};

/**
 * Alert names of the Prometheus-evaluated rules, for the ALERTS panels (each name once). Not the watchdog: it fires
 * all the time, so it would make "firing alerts" read 1 on a healthy service.
 */
export const alertNames = (config: MonitoringConfig = DEFAULT_MONITORING_CONFIG): readonly string[] => [
  ...new Set(
    alertTable(config)
      .map((a) => a.name)
      .filter((name) => name !== WATCHDOG),
  ),
];
export const ALERT_NAMES: readonly string[] = alertNames();

const UNIT = {
  ratio: 'percentunit',
  seconds: 's',
  requests: 'reqps',
  tasks: 'suffix: tasks/s',
  count: 'short',
  factor: HEALTHY_TABLE.intervalFactor.unit,
} as const;

function variables(config: MonitoringConfig, { variables: v }: Queries, { ds }: PanelKit) {
  // Every panel, target and variable reads `${datasource}`: pick the Prometheus in the dashboard, or let an import
  // choose it. Its default is the configured datasource uid (this stack's provisioned Prometheus).
  const datasource = new DatasourceVariableBuilder(DATASOURCE_VARIABLE)
    .label('Data source')
    .description('The Prometheus that scrapes the receivers.')
    .type(config.datasource.type)
    .current({ selected: true, text: config.datasource.uid, value: config.datasource.uid });
  const job = new QueryVariableBuilder('job')
    .label('Job')
    .description('Prometheus scrape job of the receivers: one service, however many instances it has.')
    .datasource(ds)
    .query({ qryType: 1, query: v.job, refId: 'PrometheusVariableQueryEditor-VariableQuery' })
    .definition(v.job)
    .current({ selected: true, text: v.defaultJob, value: v.defaultJob })
    .refresh(VariableRefresh.OnTimeRangeChanged)
    .sort(VariableSort.AlphabeticalAsc);
  const instanceQuery = v.instance;
  const instance = new QueryVariableBuilder('instance')
    .label('Instance')
    .description('Receiver instances behind the load balancer (All = the whole service).')
    .datasource(ds)
    .query({ qryType: 1, query: instanceQuery, refId: 'PrometheusVariableQueryEditor-VariableQuery' })
    .definition(instanceQuery)
    .multi(true)
    .includeAll(true)
    .allValue('.*')
    .current({ selected: true, text: ['All'], value: ['$__all'] })
    .refresh(VariableRefresh.OnTimeRangeChanged)
    .sort(VariableSort.NaturalAsc);
  return [datasource, job, instance];
}

function headline({ queries }: Queries, k: PanelKit, names: readonly string[]) {
  const { HEALTHY, healthyThresholds, stat, target } = k;
  const uptime = stat(
    TITLE.uptime,
    UNIT.ratio,
    `Share of successful blackbox probes of /healthz over the time range. Healthy above ${num(HEALTHY.uptimeRatio.value * 100)} %.`,
  )
    .decimals(2)
    .thresholds(healthyThresholds(healthy(TITLE.uptime)))
    .withTarget(target('A', queries.uptime, { legend: 'uptime' }));
  const errorRate = stat(
    TITLE.errorRate,
    UNIT.ratio,
    `Failed callback requests / all callback requests. Healthy below ${num(HEALTHY.errorRatio.value * 100)} %.`,
  )
    .decimals(2)
    .thresholds(healthyThresholds(healthy(TITLE.errorRate)))
    .withTarget(target('A', queries.errorRatio(), { legend: 'error rate' }));
  const p95 = stat(
    TITLE.p95,
    UNIT.seconds,
    `95th percentile of callback handling time. Healthy below ${HEALTHY.latencySeconds.value} s.`,
  )
    .thresholds(healthyThresholds(healthy(TITLE.p95)))
    .withTarget(target('A', queries.latencyQuantile(0.95), { legend: 'p95' }));
  const sinceLast = stat(
    TITLE.sinceLast,
    UNIT.seconds,
    'Seconds since any instance accepted a callback (since start-up before the first). Long silences only matter ' +
      `while tasks are pending: the stale alert fires after ${HEALTHY.timeSinceLastSeconds.value} s of them.`,
  )
    .thresholds(healthyThresholds(healthy(TITLE.sinceLast)))
    .withTarget(target('A', queries.timeSinceLast, { legend: 'since last callback' }));
  const delivery = stat(
    TITLE.delivery,
    UNIT.ratio,
    `Delivered / (delivered + missed) registered tasks over the time range. Healthy above ${num(HEALTHY.deliveryRatio.value * 100)} %.`,
  )
    .decimals(2)
    .thresholds(healthyThresholds(healthy(TITLE.delivery)))
    .withTarget(target('A', queries.deliveryRatio(VAR.range), { legend: 'delivered' }));
  const pending = stat(
    TITLE.pending,
    UNIT.count,
    'Registered tasks waiting for their callback, store-wide (the max over instances: they share one store).',
  )
    .colorMode(common.BigValueColorMode.None)
    .thresholds(thresholds([{ value: null, color: COLOR.neutral }]))
    .withTarget(target('A', queries.pending, { legend: 'pending' }));
  const firing = stat(
    TITLE.firing,
    UNIT.count,
    'Prometheus-evaluated callback alerts firing now (with Grafana-managed alerting, see Alerting → Alert rules).',
  )
    .graphMode(common.BigValueGraphMode.None)
    .thresholds(
      thresholds([
        { value: null, color: COLOR.good },
        { value: 1, color: COLOR.bad },
      ]),
    )
    .withTarget(target('A', firingAlertCount(names), { legend: 'firing' }));
  const budget = stat(
    TITLE.budget,
    UNIT.ratio,
    `Share of the ${SLO_PERIOD} error budget left for the uptime and delivery SLOs (1 = untouched, 0 = spent).`,
  )
    .span(8)
    .decimals(1)
    .textMode(common.BigValueTextMode.ValueAndName)
    .graphMode(common.BigValueGraphMode.None)
    .thresholds(
      thresholds([
        { value: null, color: COLOR.bad },
        { value: 0, color: COLOR.warn },
        { value: 0.5, color: COLOR.good },
      ]),
    )
    .withTarget(target('A', queries.uptimeBudget, { legend: 'uptime' }))
    .withTarget(target('B', queries.deliveryBudget, { legend: 'delivery' }));
  return [uptime, errorRate, p95, sinceLast, delivery, pending, firing, budget];
}

function callbacks({ queries }: Queries, k: PanelKit) {
  const { target, timeseries, withHealthyLine } = k;
  return [
    timeseries(
      TITLE.callbacksByOutcome,
      UNIT.requests,
      'Accepted callbacks per second, solved vs. failed by the solver.',
    )
      .withTarget(target('A', queries.callbacksByOutcome, { legend: '{{outcome}}' }))
      .withTarget(target('B', queries.requests, { legend: 'all requests' })),
    timeseries(TITLE.callbacksByFormat, UNIT.requests, 'Accepted callbacks per second by solver format (adapter).')
      .stacking(new common.StackingConfigBuilder().mode(common.StackingMode.Normal))
      .withTarget(target('A', queries.callbacksByFormat, { legend: '{{format}}' })),
    withHealthyLine(
      timeseries(TITLE.errorRatio, UNIT.ratio, 'Failed / all callback requests; dashed: the healthy edge.'),
      healthy(TITLE.errorRatio),
    ).withTarget(target('A', queries.errorRatio(), { legend: 'error rate' })),
    timeseries(TITLE.errorsByType, UNIT.requests, 'Refused or failed callback requests per second, by error type.')
      .stacking(new common.StackingConfigBuilder().mode(common.StackingMode.Normal))
      .withTarget(target('A', queries.errorsByType, { legend: '{{error_type}}' })),
    withHealthyLine(
      timeseries(TITLE.latency, UNIT.seconds, 'Callback handling time quantiles; dashed: the healthy p95 edge.'),
      healthy(TITLE.latency),
    )
      .withTarget(target('A', queries.latencyQuantile(0.5), { legend: 'p50' }))
      .withTarget(target('B', queries.latencyQuantile(0.95), { legend: 'p95' }))
      .withTarget(target('C', queries.latencyQuantile(0.99), { legend: 'p99' })),
    withHealthyLine(
      timeseries(TITLE.sinceLastSeries, UNIT.seconds, 'Seconds since the service accepted a callback.'),
      healthy(TITLE.sinceLastSeries),
    ).withTarget(target('A', queries.timeSinceLast, { legend: 'since last callback' })),
  ];
}

/** What the solvers report in failed callbacks: the reason set of the contract, and the two alerts built on it. */
function solverFailures({ queries }: Queries, k: PanelKit) {
  const { HEALTHY, healthyThresholds, stat, target, timeseries, withHealthyLine } = k;
  return [
    stat(
      TITLE.zeroBalance,
      HEALTHY.zeroBalanceFailures.unit,
      'Callbacks reporting ERROR_ZERO_BALANCE in the last 5 minutes. Any at all pages (CaptchaSolverZeroBalance): ' +
        'the solver account is empty and every task fails until it is topped up.',
    )
      .graphMode(common.BigValueGraphMode.None)
      .decimals(0)
      .thresholds(healthyThresholds(healthy(TITLE.zeroBalance)))
      .withTarget(target('A', queries.zeroBalanceFailures, { legend: 'ERROR_ZERO_BALANCE' })),
    withHealthyLine(
      timeseries(
        TITLE.unsolvable,
        UNIT.ratio,
        `Callbacks reporting ERROR_CAPTCHA_UNSOLVABLE / all accepted callbacks. Healthy below ${num(HEALTHY.unsolvableRatio.value * 100)} %.`,
      ),
      healthy(TITLE.unsolvable),
    )
      .span(8)
      .withTarget(target('A', queries.unsolvableRatio(), { legend: 'unsolvable' })),
    timeseries(
      TITLE.failuresByReason,
      UNIT.requests,
      'Callbacks reporting a failed task per second, by the solver error code (any code outside the set is "other"). ' +
        'Each group needs its own action: docs/runbook.md, "Failure reasons".',
    )
      .stacking(new common.StackingConfigBuilder().mode(common.StackingMode.Normal))
      .withTarget(target('A', queries.failuresByReason, { legend: '{{reason}}' })),
  ];
}

function delivery({ queries }: Queries, k: PanelKit) {
  const { target, timeseries, withHealthyLine } = k;
  const heatmap = new HeatmapBuilder()
    .title(TITLE.heatmap)
    .description('How long solvers take from task registration to callback (delivery duration histogram).')
    .datasource(k.ds)
    .unit(UNIT.count)
    .calculate(false)
    .rowsFrame(new RowsHeatmapOptionsBuilder().layout(common.HeatmapCellLayout.Le).value('tasks'))
    .color(
      new HeatmapColorOptionsBuilder()
        .mode(HeatmapColorMode.Scheme)
        .scheme('Oranges')
        .scale(HeatmapColorScale.Exponential)
        .exponent(0.5)
        .steps(64)
        .reverse(false),
    )
    .yAxis(new YAxisConfigBuilder().unit(UNIT.seconds).axisLabel('submit → callback'))
    .height(8)
    .span(12)
    .withTarget(target('A', queries.deliveryHeatmap, { legend: '{{le}}', format: PromQueryFormat.Heatmap }));
  return [
    withHealthyLine(
      timeseries(TITLE.deliverySeries, UNIT.ratio, 'Delivered / (delivered + missed) tasks settled per interval.'),
      healthy(TITLE.deliverySeries),
    ).withTarget(target('A', queries.deliveryRatio(VAR.rateInterval), { legend: 'delivery rate' })),
    timeseries(TITLE.taskFlow, UNIT.tasks, 'Tasks registered, delivered, missed (deadline passed) and late per second.')
      .withTarget(target('A', queries.tasksSubmitted, { legend: 'submitted' }))
      .withTarget(target('B', queries.tasksDelivered, { legend: 'delivered' }))
      .withTarget(target('C', queries.tasksMissed, { legend: 'missed' }))
      .withTarget(target('D', queries.tasksLate, { legend: 'late' }))
      .withTarget(target('E', queries.duplicates, { legend: 'duplicate callbacks' })),
    timeseries(
      TITLE.pendingSeries,
      UNIT.count,
      'Registered tasks waiting for their callback (store-wide: max over instances).',
    ).withTarget(target('A', queries.pending, { legend: 'pending' })),
    heatmap,
  ];
}

function availability({ queries }: Queries, k: PanelKit, names: readonly string[]) {
  const { target, timeseries, withHealthyLine } = k;
  return [
    withHealthyLine(
      timeseries(
        TITLE.probe,
        UNIT.ratio,
        'Outside probe of /healthz (1 = up) per probed URL, and whether Prometheus can scrape each instance.',
      ),
      healthy(TITLE.probe),
    )
      .min(0)
      .max(1)
      .withTarget(target('A', queries.probeSuccess, { legend: 'probe {{instance}}' }))
      .withTarget(target('B', queries.scrapeUp, { legend: 'scrape {{instance}}' })),
    withHealthyLine(
      timeseries(
        TITLE.interval,
        UNIT.factor,
        'Time since the last callback divided by the average interval of the last hour; dashed: the irregular-interval edge.',
      ),
      healthy(TITLE.interval),
    ).withTarget(target('A', queries.intervalFactor, { legend: 'silence / usual interval' })),
    new TableBuilder()
      .title(TITLE.alerts)
      .description('Prometheus-evaluated callback alerts that are pending or firing now (the ALERTS series).')
      .datasource(k.ds)
      .unit(UNIT.count)
      .height(8)
      .span(24)
      .withTarget(target('A', alertsQuery(names), { instant: true, format: PromQueryFormat.Table }))
      .withTransformation({
        id: 'organize',
        options: { excludeByName: { Time: true, Value: true, __name__: true } },
      }),
  ];
}

function instances({ queries }: Queries, { target, timeseries }: PanelKit) {
  return [
    timeseries(TITLE.byInstance, UNIT.requests, 'Accepted callbacks per second on each receiver instance.').withTarget(
      target('A', queries.callbacksByInstance, { legend: '{{instance}}' }),
    ),
    timeseries(TITLE.sinceLastByInstance, UNIT.seconds, 'Seconds since each instance accepted a callback.').withTarget(
      target('A', queries.timeSinceLastByInstance, { legend: '{{instance}}' }),
    ),
  ];
}

/** The overview dashboard as Grafana JSON (a pure function of the monitoring config). */
export function overviewDashboard(config: MonitoringConfig = DEFAULT_MONITORING_CONFIG): Dashboard {
  const q = queries(config);
  const k = panelKit(config);
  const names = alertNames(config);
  const builder = new DashboardBuilder(config.dashboard.title)
    .uid(config.dashboard.uid)
    .description('captcha-callback-monitor: callbacks, delivery of registered tasks, uptime, SLOs and alerts.')
    .tags(['captcha-callback-monitor'])
    .editable()
    .tooltip(DashboardCursorSync.Crosshair)
    .time({ from: 'now-3h', to: 'now' })
    .refresh('30s')
    .timezone('browser');
  for (const v of variables(config, q, k)) builder.withVariable(v);

  const sections: [string, { build(): Panel }[]][] = [
    ['Service level', headline(q, k, names)],
    ['Callbacks', callbacks(q, k)],
    ['Solver failures', solverFailures(q, k)],
    ['Solver APIs and recovery', solverApis(q, k, config.windows.solverApiErrors)],
    ['Delivery of registered tasks', delivery(q, k)],
    ['Forwarding to the app', forwarding(q, k, config.windows.forwardDeadLetters)],
    ['Availability and alerts', availability(q, k, names)],
    ['Instances', instances(q, k)],
  ];
  let id = 0;
  for (const [title, panels] of sections) {
    builder.withRow(new RowBuilder(title).id(++id));
    for (const panel of panels) {
      (panel as unknown as { id(n: number): unknown }).id(++id);
      builder.withPanel(panel);
    }
  }
  return builder.build();
}
