/** The shapes the alert table is made of; renderers turn them into Prometheus (and later Grafana) rule files. */

import type { HealthyRangeName } from './thresholds.ts';

/** `none`: the watchdog, which fires all the time and pages nobody (it goes to a heartbeat receiver). */
export type Severity = 'critical' | 'warning' | 'none';

/** One row of the alert table. */
export interface AlertRow {
  /** The `alertname`; also the runbook heading. */
  readonly name: string;
  /** PromQL, assembled from the metric contract and the thresholds. */
  readonly expr: string;
  /** How long the condition must hold before the alert fires (Prometheus duration). */
  readonly for: string;
  readonly severity: Severity;
  readonly summary: string;
  /** Go template (Prometheus alert templating): may use `$labels` and `$value`. */
  readonly description: string;
  /** Anchor of the alert's section in docs/runbook.md. */
  readonly runbookAnchor: string;
  /** Where the alert fires, in the unit of the expression's value (e.g. 0.05 for "> 5 %"); 0 for the watchdog. */
  readonly threshold: number;
  /** The matching healthy range (dashboards colour by it); none for the watchdog, which watches no value. */
  readonly healthy?: HealthyRangeName;
  /** Extra static labels besides `severity`. */
  readonly labels?: Readonly<Record<string, string>>;
}

/** A recording rule: a precomputed series (the SLO windows). */
export interface RecordingRow {
  readonly record: string;
  readonly expr: string;
  readonly labels?: Readonly<Record<string, string>>;
}

export interface RuleGroup {
  readonly name: string;
  readonly rules: readonly (AlertRow | RecordingRow)[];
}

export const isAlert = (rule: AlertRow | RecordingRow): rule is AlertRow => 'name' in rule;
