/**
 * The alert table's conditions that `/health/callbacks` can support, evaluated in-process. Every number here is read
 * from the alert table module: each rule holds its AlertRow (name, severity, threshold, runbook anchor, summary) and
 * its volume guard and window from ALERT_THRESHOLDS / WINDOW, so the check and the Prometheus rules cannot disagree.
 */

import type { HealthReport } from '@captcha-callback-monitor/koa/internal';
import { ALERT_TABLE } from '../alerting/alertTable.ts';
import { durationSeconds } from '../alerting/promql.ts';
import type { AlertRow, Severity } from '../alerting/rules.ts';
import { runbookUrl } from '../alerting/runbook.ts';
import { HANDLER_ERROR } from '../alerting/series.ts';
import { ALERT_THRESHOLDS, WINDOW } from '../alerting/thresholds.ts';

function row(name: string): AlertRow {
  const found = ALERT_TABLE.find((r) => r.name === name);
  if (!found) throw new Error(`alert table has no ${name}`);
  return found;
}

export type Unit = 'ratio' | 'seconds';

/** One alert condition that holds now. */
export interface Finding {
  readonly alert: string;
  readonly severity: Severity;
  /** The measured value in `unit` (null when there is no number, e.g. an unreachable receiver). */
  readonly value: number | null;
  readonly threshold: number;
  readonly unit: Unit;
  /** What was measured, for people: "error rate 12.5 % > 5 % (15 of 120 requests since the last check)". */
  readonly text: string;
  readonly summary: string;
  readonly runbookUrl: string;
}

/** The running totals a rate rule compares two checks by: `part` of `whole` (errors of requests, …). */
export interface Baseline {
  /** Unix ms of the check that took this snapshot. */
  readonly at: number;
  readonly part: number;
  readonly whole: number;
}

interface RuleBase {
  readonly row: AlertRow;
  readonly unit: Unit;
  /** The side of the threshold that fires, as in the rule expression (`>` or `<`). */
  readonly fires: 'above' | 'below';
}

/** A condition on the current report alone. */
export interface LevelRule extends RuleBase {
  readonly kind: 'level';
  /** The measured value, or null when the rule does not apply (then it does not fire). */
  measure(report: HealthReport): number | null;
  /** Extra condition the value alone does not say (stale: callbacks expected); default true. */
  holds?(report: HealthReport): boolean;
  describe(value: number | null, threshold: number): string;
}

/** A ratio of counter increases between two checks, judged only with the alert's minimum volume. */
export interface RateRule extends RuleBase {
  readonly kind: 'rate';
  /** The alert's own window: a baseline with too little volume is kept at most this long (seconds). */
  readonly windowSeconds: number;
  /** The alert's volume guard: `whole` must have grown by at least this much. */
  readonly minVolume: number;
  totals(report: HealthReport): { part: number; whole: number };
  describe(ratio: number, threshold: number, part: number, whole: number, since: string): string;
}

export type CheckRule = LevelRule | RateRule;

const pct = (ratio: number) => `${Number((ratio * 100).toPrecision(3))} %`;
const secs = (s: number) => (s < 1 ? `${Math.round(s * 1000)} ms` : `${Number(s.toPrecision(3))} s`);
/** A span for people: 45 s, 3 min, 2 h. */
export const span = (ms: number) =>
  ms < 90_000
    ? `${Math.round(ms / 1000)} s`
    : ms < 5_400_000
      ? `${Math.round(ms / 60_000)} min`
      : `${Math.round(ms / 3_600_000)} h`;
const refused = (r: HealthReport) => r.total_errors - (r.error_breakdown[HANDLER_ERROR] ?? 0);

export const STALE_RULE: LevelRule = {
  kind: 'level',
  row: row('CaptchaCallbackEndpointStale'),
  unit: 'seconds',
  fires: 'above',
  // The report's own `stale` already means "no callback for the stale window while callbacks are expected", with
  // the same edge (ALERT_THRESHOLDS.staleAfterSeconds is the report's STALE_AFTER_MS); the value is for people.
  holds: (r) => r.status === 'stale',
  measure: (r) => (r.seconds_since_last_callback < 0 ? null : r.seconds_since_last_callback),
  describe: (v, t) =>
    v === null
      ? `no callback yet while callbacks are expected, for over ${secs(t)}`
      : `last callback ${secs(v)} ago > ${secs(t)} while callbacks are expected`,
};

export const ERROR_RATE_RULE: RateRule = {
  kind: 'rate',
  row: row('CaptchaCallbackHighErrorRate'),
  unit: 'ratio',
  fires: 'above',
  windowSeconds: durationSeconds(WINDOW.requests),
  minVolume: ALERT_THRESHOLDS.minRequests5m,
  // Refused requests over all requests, as the alert and the report's error_rate count them (no handler_error).
  totals: (r) => ({ part: refused(r), whole: r.total_received }),
  describe: (ratio, t, part, whole, since) =>
    `error rate ${pct(ratio)} > ${pct(t)} (${part} of ${whole} requests refused ${since})`,
};

export const SLOW_RULE: LevelRule = {
  kind: 'level',
  row: row('CaptchaCallbackSlowResponses'),
  unit: 'seconds',
  fires: 'above',
  // p95_latency_ms covers the last 5 to 10 minutes of requests (LatencyWindow): already a recent window.
  measure: (r) => r.p95_latency_ms / 1000,
  describe: (v, t) => `p95 latency ${secs(v ?? 0)} > ${secs(t)} (recent requests)`,
};

export const DELIVERY_RULE: RateRule = {
  kind: 'rate',
  row: row('CaptchaCallbackLowDeliveryRate'),
  unit: 'ratio',
  fires: 'below',
  windowSeconds: durationSeconds(WINDOW.delivery),
  minVolume: ALERT_THRESHOLDS.minSettledTasks,
  totals: (r) => ({ part: r.delivery.delivered, whole: r.delivery.delivered + r.delivery.missed }),
  describe: (ratio, t, part, whole, since) =>
    `delivery rate ${pct(ratio)} < ${pct(t)} (${part} of ${whole} settled tasks got their callback ${since})`,
};

export const HANDLER_ERRORS_RULE: RateRule = {
  kind: 'rate',
  row: row('CaptchaCallbackHandlerErrors'),
  unit: 'ratio',
  fires: 'above',
  windowSeconds: durationSeconds(WINDOW.requests),
  minVolume: ALERT_THRESHOLDS.minRequests5m,
  totals: (r) => ({
    part: r.error_breakdown[HANDLER_ERROR] ?? 0,
    whole: r.total_received - refused(r),
  }),
  describe: (ratio, t, part, whole, since) =>
    `result hook failed for ${pct(ratio)} > ${pct(t)} (${part} of ${whole} accepted callbacks ${since})`,
};

/** Evaluated when the receiver cannot be read or cannot store (probe failure); see health.ts. */
export const DOWN_ROW: AlertRow = row('CaptchaCallbackEndpointDown');

/** Every rule the check evaluates on a report, in the alert table's order. */
export const CHECK_RULES: readonly CheckRule[] = [
  STALE_RULE,
  ERROR_RATE_RULE,
  SLOW_RULE,
  DELIVERY_RULE,
  HANDLER_ERRORS_RULE,
];

/** Every alert-table row the check can report (the rules' rows and endpoint down). */
export const CHECK_ROWS: readonly AlertRow[] = [...CHECK_RULES.map((r) => r.row), DOWN_ROW];

export function finding(r: AlertRow, value: number | null, unit: Unit, text: string): Finding {
  return {
    alert: r.name,
    severity: r.severity,
    value,
    threshold: r.threshold,
    unit,
    text,
    summary: r.summary,
    runbookUrl: runbookUrl(r.runbookAnchor),
  };
}

const beyond = (fires: 'above' | 'below', value: number, threshold: number) =>
  fires === 'above' ? value > threshold : value < threshold;

/** What a rate rule saw this time (also for the OK line: "12 of 40 requests, not judged below 100"). */
export interface RateReading {
  readonly alert: string;
  readonly part: number;
  readonly whole: number;
  /** False when `whole` grew by less than the alert's minimum volume: the alert would not fire either. */
  readonly judged: boolean;
  readonly minVolume: number;
}

export interface Evaluation {
  readonly findings: Finding[];
  /** Baselines to keep for the next check, by alert name. */
  readonly baselines: Record<string, Baseline>;
  readonly rates: RateReading[];
}

/**
 * Evaluates every rule on one report. Rate rules compare with the previous check's totals (`baselines`): the
 * interval since the previous check, kept open (up to the alert's own window) while it holds less than the alert's
 * minimum volume, so a receiver with 40 requests a minute is still judged over about 3 minutes. Without a baseline
 * (the first check) the interval is the receiver's lifetime; totals below the baseline mean the receiver restarted,
 * and count from zero, as Prometheus treats a counter reset.
 */
export function evaluate(
  report: HealthReport,
  baselines: Readonly<Record<string, Baseline>>,
  now: number,
  rules: readonly CheckRule[] = CHECK_RULES,
): Evaluation {
  const findings: Finding[] = [];
  const next: Record<string, Baseline> = {};
  const rates: RateReading[] = [];
  for (const rule of rules) {
    const threshold = rule.row.threshold;
    if (rule.kind === 'level') {
      const value = rule.measure(report);
      const holds = rule.holds ? rule.holds(report) : value !== null && beyond(rule.fires, value, threshold);
      if (holds) findings.push(finding(rule.row, value, rule.unit, rule.describe(value, threshold)));
      continue;
    }
    const cur = rule.totals(report);
    const prev = baselines[rule.row.name];
    const reset = prev !== undefined && (cur.part < prev.part || cur.whole < prev.whole);
    const base = prev === undefined || reset ? { at: prev?.at ?? now, part: 0, whole: 0 } : prev;
    const part = cur.part - base.part;
    const whole = cur.whole - base.whole;
    const judged = whole >= rule.minVolume;
    rates.push({ alert: rule.row.name, part, whole, judged, minVolume: rule.minVolume });
    if (judged) {
      const ratio = whole === 0 ? 0 : part / whole;
      const since =
        prev === undefined
          ? 'since the receiver started'
          : reset
            ? 'since the receiver restarted'
            : `over the last ${span(now - prev.at)}`;
      if (beyond(rule.fires, ratio, threshold)) {
        findings.push(finding(rule.row, ratio, rule.unit, rule.describe(ratio, threshold, part, whole, since)));
      }
    }
    // Start a new interval once this one was judged or has lasted the alert's whole window; else keep counting.
    const keep = !judged && prev !== undefined && !reset && now - prev.at < rule.windowSeconds * 1000;
    next[rule.row.name] = keep ? prev : { at: now, ...cur };
  }
  return { findings, baselines: next, rates };
}
