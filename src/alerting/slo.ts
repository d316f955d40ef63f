import { DEFAULT_MONITORING_CONFIG, type MonitoringConfig } from './monitoringConfig.ts';
import { durationSeconds, EXTERNAL, num, scope } from './promql.ts';
import type { AlertRow, RecordingRow, Severity } from './rules.ts';
import { pct, series } from './series.ts';
import { BURN_WINDOWS, type BurnWindow, type HealthyRangeName } from './thresholds.ts';

/*
 * Multi-window multi-burn-rate SLO alerts in the shape Sloth generates (SRE workbook, ch. 5): recording rules
 * `slo:sli_error:ratio_rate<window>` per SLO, and one alert per SLO with a page rule (1h & 5m at 14.4×,
 * 6h & 30m at 6×, critical) and a ticket rule (1d & 2h at 3×, 3d & 6h at 1×, warning) under the same alertname, so
 * Alertmanager's "critical silences the same alertname's warning" inhibition applies.
 *
 * One deliberate difference from Sloth: the delivery SLO counts tasks, and a quiet pipeline settles few of them.
 * Two missed tasks out of two are a 100 % error ratio in every window; the workbook's answer for low-traffic
 * services is a minimum event count, so each delivery window pair also needs ≥ minSettledTasks settled tasks in its
 * long window (`slo:sli_events:increase<window>`). The uptime SLI comes from the outside probe, whose sample rate
 * is fixed, so it needs no such guard.
 */

export const SLO_RECORD = {
  errorRatio: (w: string) => `slo:sli_error:ratio_rate${w}`,
  events: (w: string) => `slo:sli_events:increase${w}`,
} as const;

interface SloSpec {
  /** Value of the `slo` label on the recorded series. */
  readonly slo: string;
  /** Capitalised name for summaries. */
  readonly title: string;
  readonly alert: string;
  readonly objective: number;
  readonly what: string;
  readonly errorRatio: (w: string) => string;
  readonly events?: (w: string) => string;
  readonly healthy: HealthyRangeName;
}

/** The SLOs; their objectives are the healthy ranges (the config's `healthy.uptimeRatio` / `deliveryRatio`). */
export function slos(config: MonitoringConfig = DEFAULT_MONITORING_CONFIG): readonly SloSpec[] {
  const s = scope(config);
  const { deliveredOrZero, missedOrZero } = series(s);
  return [
    {
      slo: 'uptime',
      title: 'Uptime',
      alert: 'CaptchaCallbackSLOBurnUptime',
      objective: config.healthy.uptimeRatio,
      what: 'outside probes of the callback endpoint succeed',
      // Share of failed probes in the window, averaged over probe targets.
      errorRatio: (w) => `1 - ${s.agg('avg', `avg_over_time(${s.probe(EXTERNAL.probeSuccess)}[${w}])`)}`,
      healthy: 'uptimeRatio',
    },
    {
      slo: 'delivery',
      title: 'Delivery',
      alert: 'CaptchaCallbackSLOBurnDelivery',
      objective: config.healthy.deliveryRatio,
      what: 'registered tasks get their callback before the deadline',
      errorRatio: (w) => `${missedOrZero(w)}\n/\n(${deliveredOrZero(w)} + ${missedOrZero(w)})`,
      events: (w) => `${deliveredOrZero(w)} + ${missedOrZero(w)}`,
      healthy: 'deliveryRatio',
    },
  ];
}

/** Every window any burn pair reads, shortest first. */
export const SLO_WINDOWS: readonly string[] = [
  ...new Set(Object.values(BURN_WINDOWS).flatMap((pairs) => pairs.flatMap((p: BurnWindow) => [p.short, p.long]))),
].sort((a, b) => durationSeconds(a) - durationSeconds(b));

export function sloRecordings(config: MonitoringConfig = DEFAULT_MONITORING_CONFIG): readonly RecordingRow[] {
  return slos(config).flatMap((s) =>
    SLO_WINDOWS.flatMap((w) => [
      { record: SLO_RECORD.errorRatio(w), expr: s.errorRatio(w), labels: { slo: s.slo } },
      ...(s.events ? [{ record: SLO_RECORD.events(w), expr: s.events(w), labels: { slo: s.slo } }] : []),
    ]),
  );
}

/** The recording rules with the default config. */
export const SLO_RECORDINGS: readonly RecordingRow[] = sloRecordings();

const budgetText = (s: SloSpec) => num(1 - s.objective);

function pairExpr(s: SloSpec, p: BurnWindow, minSettledTasks: number): string {
  const m = `{slo="${s.slo}"}`;
  const over = `(${num(p.factor)} * ${budgetText(s)})`;
  const parts = [
    `${SLO_RECORD.errorRatio(p.short)}${m} > ${over}`,
    `${SLO_RECORD.errorRatio(p.long)}${m} > ${over}`,
    ...(s.events ? [`${SLO_RECORD.events(p.long)}${m} >= ${num(minSettledTasks)}`] : []),
  ];
  return `(\n  ${parts.join('\n  and\n  ')}\n)`;
}

function burnAlert(s: SloSpec, kind: keyof typeof BURN_WINDOWS, severity: Severity, minSettledTasks: number): AlertRow {
  const pairs: readonly BurnWindow[] = BURN_WINDOWS[kind];
  const how = pairs.map((p) => `${num(p.factor)}× (${p.long} and ${p.short})`).join(' or ');
  const slowest = Math.min(...pairs.map((p) => p.factor));
  return {
    name: s.alert,
    expr: pairs.map((p) => pairExpr(s, p, minSettledTasks)).join('\nor\n'),
    // The short window is the confirmation (Sloth and the workbook use no `for`): it also makes the alert reset
    // within minutes once the cause is fixed.
    for: '0m',
    severity,
    summary: `${s.title} SLO (${pct(s.objective)}) error budget burning ${kind === 'page' ? 'fast' : 'steadily'}`,
    description:
      `The ${pct(s.objective)} objective (${s.what}) on {{ $labels.job }} is burning its 30-day error budget at ${how} ` +
      `the sustainable rate${s.events ? ` (at least ${minSettledTasks} settled tasks)` : ''}; ` +
      `error ratio in the short window: {{ $value | humanizePercentage }}. At ${num(slowest)}× the budget lasts ` +
      `${num(30 / slowest)} days.`,
    runbookAnchor: s.alert.toLowerCase(),
    threshold: slowest * (1 - s.objective),
    healthy: s.healthy,
    labels: { slo: s.slo },
  };
}

export function sloAlerts(config: MonitoringConfig = DEFAULT_MONITORING_CONFIG): readonly AlertRow[] {
  const min = config.thresholds.minSettledTasks;
  return slos(config).flatMap((s) => [burnAlert(s, 'page', 'critical', min), burnAlert(s, 'ticket', 'warning', min)]);
}
