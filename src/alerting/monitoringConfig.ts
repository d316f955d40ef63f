/**
 * THE monitoring configuration: everything about the user's stack that the alert table, the Prometheus and Grafana
 * rules and the dashboards depend on, in one object with its defaults (mixin-style: override what differs, keep
 * the rest). The defaults describe this repository's own stack (docker compose) and reproduce the committed files;
 * `npm run generate -- --config my.json --out dir` renders the same files for another stack.
 *
 * The numbers themselves are documented where they are defined (thresholds.ts); this module only says which of them
 * a user may override, validates an override (every error names its field) and merges it over the defaults.
 */

import { CALLBACK_DURATION_BUCKETS, JOB } from '@captcha-callback-monitor/koa';
import { z } from 'zod';
import { RUNBOOK_BASE_URL } from './runbook.ts';
import { ALERT_THRESHOLDS, HEALTHY, type HealthyRange, type HealthyRangeName, WINDOW } from './thresholds.ts';

export type ThresholdName = keyof typeof ALERT_THRESHOLDS;
export type WindowName = keyof typeof WINDOW;
export type Thresholds = Readonly<Record<ThresholdName, number>>;
export type Windows = Readonly<Record<WindowName, string>>;

/** One PromQL label matcher, e.g. `job="captcha-callback"`. */
export interface Matcher {
  readonly label: string;
  readonly op: '=' | '!=' | '=~' | '!~';
  readonly value: string;
}

export interface MonitoringConfig {
  /**
   * PromQL label matchers that select the receiver's own series (they replace `job="captcha-callback"`), e.g.
   * `job="captcha-callback",namespace="payments"`. Must contain an equality `job` matcher: the dashboards' job
   * variable stands in for it. In a Prometheus Operator stack the job is the name of the Service the ServiceMonitor
   * selects.
   */
  readonly selector: string;
  /** Matchers for the outside probe's series (blackbox exporter `probe_success`); replaces `job="captcha-callback-probe"`. */
  readonly probeSelector: string;
  /**
   * Labels that tell one receiver instance from another; the rules aggregate them away (`without (…)`), since the
   * instances behind one load balancer are one service. `instance` always; in Kubernetes also `pod`.
   */
  readonly instanceLabels: readonly string[];
  /** Where the runbook lives: each rule's `runbook_url` is this plus `#<alert name in lower case>`. */
  readonly runbookBaseUrl: string;
  /** The Grafana datasource the Grafana-managed alert rules query, and the dashboards' default for `${datasource}`. */
  readonly datasource: { readonly type: string; readonly uid: string };
  /** Where the alerts fire (ALERT_THRESHOLDS in thresholds.ts documents each). */
  readonly thresholds: Thresholds;
  /** The healthy edges the dashboards colour by, which are also the SLO objectives (HEALTHY in thresholds.ts). */
  readonly healthy: Readonly<Record<HealthyRangeName, number>>;
  /** The windows the rules read (WINDOW in thresholds.ts). */
  readonly windows: Windows;
  /** `for` per alert name, replacing the table's own (all severities of that name). */
  readonly for: Readonly<Record<string, string>>;
  readonly dashboard: { readonly uid: string; readonly title: string };
  /** Folder of the Grafana-managed alert rules. */
  readonly grafanaFolder: string;
  /** metadata of the Prometheus Operator `PrometheusRule` manifest (labels: what your Prometheus' ruleSelector matches). */
  readonly prometheusRule: {
    readonly name: string;
    readonly namespace?: string;
    readonly labels: Readonly<Record<string, string>>;
  };
}

export const DEFAULT_MONITORING_CONFIG: MonitoringConfig = {
  selector: `job="${JOB.receiver}"`,
  probeSelector: `job="${JOB.probe}"`,
  instanceLabels: ['instance'],
  runbookBaseUrl: RUNBOOK_BASE_URL,
  datasource: { type: 'prometheus', uid: 'prometheus' },
  thresholds: { ...ALERT_THRESHOLDS },
  healthy: Object.fromEntries(Object.entries(HEALTHY).map(([name, h]) => [name, h.value])) as Record<
    HealthyRangeName,
    number
  >,
  windows: { ...WINDOW },
  for: {},
  dashboard: { uid: 'captcha-callback-overview', title: 'CAPTCHA callbacks: overview' },
  grafanaFolder: 'Captcha Callback Monitor',
  prometheusRule: {
    name: 'captcha-callback-monitor',
    labels: { 'app.kubernetes.io/name': 'captcha-callback-monitor', 'app.kubernetes.io/component': 'alerting' },
  },
};

/** What each field is for, as the README's monitoring-config table shows it. */
export const MONITORING_CONFIG_FIELDS: Readonly<Record<keyof MonitoringConfig, string>> = {
  selector:
    "PromQL label matchers selecting the receiver's series in every rule and panel (with an equality `job` " +
    'matcher; in a Prometheus Operator stack the job is the Service name), e.g. `job="ccm",namespace="payments"`.',
  probeSelector: "Matchers selecting the outside probe's `probe_success` (blackbox exporter).",
  instanceLabels:
    'Labels telling one receiver instance from another, aggregated away (`without (…)`); must include `instance`. ' +
    'Kubernetes: `["instance", "pod"]`.',
  runbookBaseUrl:
    'Base of every `runbook_url` (`<base>#<alert name in lower case>`). The default is the runbook as shipped, a ' +
    'path: set it to where your copy lives (wiki, your Git host).',
  datasource:
    "Grafana datasource `{type, uid}`: what the Grafana-managed rules query, and the default of the dashboards' " +
    'datasource variable.',
  thresholds: 'Where the alerts fire: any key of `ALERT_THRESHOLDS` (src/alerting/thresholds.ts documents each).',
  healthy: 'Healthy edges the dashboards colour by, also the SLO objectives: any key of `HEALTHY`.',
  windows: 'The windows the rules read: any key of `WINDOW` (Prometheus durations, one unit).',
  for: 'How long each named alert\'s condition must hold, replacing the table\'s `for`: `{ "<AlertName>": "10m" }`.',
  dashboard: "The overview dashboard's `uid` and `title`.",
  grafanaFolder: 'Folder of the Grafana-managed alert rules.',
  prometheusRule:
    'metadata of the `PrometheusRule` manifest: `name`, optional `namespace`, `labels` (added to the defaults; ' +
    "add what your Prometheus' `ruleSelector` matches, e.g. `release: <helm release>`).",
};

/** A config that names a field wrongly or gives it a bad value; the message names every such field. */
export class MonitoringConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid monitoring config:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'MonitoringConfigError';
    this.problems = problems;
  }
}

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const MATCHER = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)/;

/** `job="a", namespace=~"b"` (with or without the braces) → its matchers; throws on anything else. */
export function parseSelector(text: string): Matcher[] {
  let rest = text.trim();
  if (rest.startsWith('{') && rest.endsWith('}')) rest = rest.slice(1, -1).trim();
  if (rest === '') throw new Error('no label matcher (expected e.g. job="my-service")');
  const matchers: Matcher[] = [];
  while (rest !== '') {
    const m = MATCHER.exec(rest);
    if (!m) throw new Error(`not a label matcher list at "${rest.slice(0, 40)}" (expected label="value", …)`);
    matchers.push({ label: m[1]!, op: m[2] as Matcher['op'], value: m[3]! });
    rest = rest.slice(m[0].length).trim();
  }
  return matchers;
}

export const formatSelector = (matchers: readonly Matcher[]) =>
  matchers.map((m) => `${m.label}${m.op}"${m.value}"`).join(',');

/** The value of the selector's `job="…"` matcher (the dashboards' default job). */
export function selectorJob(selector: string): string {
  const job = parseSelector(selector).find((m) => m.label === 'job' && m.op === '=');
  if (!job) throw new Error(`selector ${selector} has no job="…" matcher`);
  return job.value;
}

/** The label names the selector matches on: what names one service (`on (…)` joins keep them). */
export const serviceLabels = (selector: string) => [...new Set(parseSelector(selector).map((m) => m.label))];

/** The selector without its job matcher (the dashboards put `job="$job"` in its place). */
export const selectorWithoutJob = (selector: string) =>
  formatSelector(parseSelector(selector).filter((m) => !(m.label === 'job' && m.op === '=')));

/** HEALTHY with the configured values (units, sides and descriptions are the table's). */
export function healthyRanges(config: MonitoringConfig): Record<HealthyRangeName, HealthyRange> {
  return Object.fromEntries(
    Object.entries(HEALTHY).map(([name, h]) => [name, { ...h, value: config.healthy[name as HealthyRangeName] }]),
  ) as Record<HealthyRangeName, HealthyRange>;
}

// ---------------------------------------------------------------------------------------------------------------
// Validation

const selectorSchema = (requireJob: boolean) =>
  z.string().transform((text, ctx) => {
    try {
      const matchers = parseSelector(text);
      if (requireJob && !matchers.some((m) => m.label === 'job' && m.op === '=')) {
        ctx.addIssue({
          code: 'custom',
          message: 'needs a job="…" matcher (the dashboards\' job variable replaces it)',
        });
        return z.NEVER;
      }
      return formatSelector(matchers);
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: (error as Error).message });
      return z.NEVER;
    }
  });

const duration = z.string().regex(/^[1-9]\d*[smhd]$/, 'must be a Prometheus duration with one unit: 30s, 5m, 1h, 3d');
const ratio = z.number().gt(0).lt(1);
const count = z.number().int().min(1);
const none = z.number().int().min(0);
const positive = z.number().gt(0);
const minutes = z
  .number()
  .int()
  .min(60)
  .refine((s) => s % 60 === 0, 'must be whole minutes (a multiple of 60 seconds)');
const bucketEdge = z
  .number()
  .refine(
    (s) => (CALLBACK_DURATION_BUCKETS as readonly number[]).includes(s),
    `must be a bucket edge of the callback duration histogram: ${CALLBACK_DURATION_BUCKETS.join(', ')}`,
  );

const THRESHOLDS_SCHEMA = z.strictObject({
  staleAfterSeconds: minutes,
  errorRatio: ratio,
  minRequests5m: count,
  latencyP95Seconds: bucketEdge,
  deliveryRatio: ratio,
  minSettledTasks: count,
  intervalFactor: z.number().gt(1),
  minCallbacksPerHour: count,
  handlerErrorRatio: ratio,
  zeroBalanceFailures: none,
  unsolvableRatio: ratio,
  minCallbacks15m: count,
  solverBalanceFactor: positive,
  solverApiErrorRatio: ratio,
  minSolverRequests15m: count,
  forwardPendingAgeSeconds: minutes,
  forwardDeadLetters: none,
} satisfies Record<ThresholdName, z.ZodType<number>>);

const HEALTHY_SCHEMA = z.strictObject({
  uptimeRatio: ratio,
  latencySeconds: bucketEdge,
  errorRatio: ratio,
  deliveryRatio: ratio,
  intervalFactor: z.number().gt(1),
  timeSinceLastSeconds: positive,
  unsolvableRatio: ratio,
  zeroBalanceFailures: positive,
  solverBalanceHeadroom: positive,
  solverApiErrorRatio: ratio,
  forwardPendingAgeSeconds: positive,
  forwardDeadLetters: positive,
} satisfies Record<HealthyRangeName, z.ZodType<number>>);

const WINDOWS_SCHEMA = z.strictObject(
  Object.fromEntries(Object.keys(WINDOW).map((name) => [name, duration])) as Record<WindowName, typeof duration>,
);

/** Kubernetes names: a DNS-1123 subdomain (metadata.name) and label (metadata.namespace). */
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const K8S_LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const K8S_LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;
const GRAFANA_UID = /^[A-Za-z0-9_-]{1,40}$/;

/** What a user writes: every field optional, nested objects merged field by field over the defaults. */
export const MONITORING_CONFIG_SCHEMA = z
  .strictObject({
    /** JSON Schema pointer some editors use; ignored. */
    $schema: z.string(),
    selector: selectorSchema(true),
    probeSelector: selectorSchema(false),
    instanceLabels: z
      .array(z.string().regex(LABEL_NAME, 'must be a Prometheus label name'))
      .refine((labels) => labels.includes('instance'), 'must include "instance" (Prometheus sets it on every target)'),
    runbookBaseUrl: z
      .string()
      .min(1)
      .regex(/^[^\s#]+$/, 'must be a URL or path without spaces or "#" (the alert anchor is appended)'),
    datasource: z
      .strictObject({
        type: z.string().regex(/^[a-z0-9-]+$/, 'must be a Grafana datasource plugin id such as "prometheus"'),
        uid: z.string().regex(GRAFANA_UID, 'must be a Grafana uid: 1 to 40 of A-Z a-z 0-9 _ -'),
      })
      .partial(),
    thresholds: THRESHOLDS_SCHEMA.partial(),
    healthy: HEALTHY_SCHEMA.partial(),
    windows: WINDOWS_SCHEMA.partial(),
    for: z.record(z.string().regex(/^[A-Z][A-Za-z0-9]+$/, 'must be an alert name'), duration),
    dashboard: z
      .strictObject({
        uid: z.string().regex(GRAFANA_UID, 'must be a Grafana uid: 1 to 40 of A-Z a-z 0-9 _ -'),
        title: z.string().min(1),
      })
      .partial(),
    grafanaFolder: z.string().min(1),
    prometheusRule: z
      .strictObject({
        name: z.string().regex(DNS_SUBDOMAIN, 'must be a Kubernetes name (lower case, digits, "-" and ".")'),
        namespace: z.string().regex(DNS_LABEL, 'must be a Kubernetes namespace name'),
        labels: z.record(
          z.string().regex(K8S_LABEL_KEY, 'must be a Kubernetes label key'),
          z.string().regex(K8S_LABEL_VALUE, 'must be a Kubernetes label value (at most 63 characters)'),
        ),
      })
      .partial(),
  })
  .partial();

export type MonitoringConfigInput = z.input<typeof MONITORING_CONFIG_SCHEMA>;

function problems(error: z.ZodError): string[] {
  return error.issues.flatMap((issue) => {
    const at = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => `${at ? `${at}.` : ''}${key}: unknown field`);
    }
    return [`${at || '(config)'}: ${issue.message}`];
  });
}

/**
 * The defaults with `input` merged over them (nested objects field by field; `for` and the PrometheusRule labels
 * add to the defaults'). Throws MonitoringConfigError naming each bad field.
 */
export function monitoringConfig(input: unknown = {}): MonitoringConfig {
  const parsed = MONITORING_CONFIG_SCHEMA.safeParse(input);
  if (!parsed.success) throw new MonitoringConfigError(problems(parsed.error));
  const o = parsed.data;
  const d = DEFAULT_MONITORING_CONFIG;
  return {
    selector: o.selector ?? d.selector,
    probeSelector: o.probeSelector ?? d.probeSelector,
    instanceLabels: o.instanceLabels ?? d.instanceLabels,
    runbookBaseUrl: o.runbookBaseUrl ?? d.runbookBaseUrl,
    datasource: { ...d.datasource, ...o.datasource },
    thresholds: { ...d.thresholds, ...o.thresholds },
    healthy: { ...d.healthy, ...o.healthy },
    windows: { ...d.windows, ...o.windows },
    for: { ...d.for, ...o.for },
    dashboard: { ...d.dashboard, ...o.dashboard },
    grafanaFolder: o.grafanaFolder ?? d.grafanaFolder,
    prometheusRule: {
      ...d.prometheusRule,
      ...o.prometheusRule,
      labels: { ...d.prometheusRule.labels, ...o.prometheusRule?.labels },
    },
  };
}
