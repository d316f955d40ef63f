/**
 * Grafana-managed alert rules generated from THE alert table, in Grafana's file-provisioning shape
 * (grafana/provisioning/alerting/), plus the contact point that hands them to the same Alertmanager the Prometheus
 * rules notify. Opt-in (docker-compose.grafana-alerting.yml): the Prometheus-evaluated rules stay the default, and
 * in Grafana mode Prometheus keeps only the SLO recording rules, so no alert is notified twice.
 *
 * Each rule mirrors how Grafana itself imports a Prometheus rule: an instant PromQL query (`query`), a math
 * expression that is 1 for every series the query returns (`prometheus_math`), and a threshold > 0 (`threshold`, the
 * condition). So, exactly as in Prometheus, every returned series is an alert instance with the same labels, and no
 * series means normal (noDataState OK). Titles are the Prometheus alert names, so Alertmanager's routes, inhibitions
 * and templates apply unchanged (Grafana ≥ 12 allows equal titles, needed by the SLO page/ticket pairs).
 */
import { QueryBuilder, RuleBuilder } from '@grafana/grafana-foundation-sdk/alerting';
import { TypeMathBuilder, TypeThresholdBuilder } from '@grafana/grafana-foundation-sdk/expr';
import { DataqueryBuilder } from '@grafana/grafana-foundation-sdk/prometheus';
import { Document } from 'yaml';
import { alertTable } from '../../../src/alerting/alertTable.ts';
import { DEFAULT_MONITORING_CONFIG, type MonitoringConfig } from '../../../src/alerting/monitoringConfig.ts';
import { type AlertRow, isAlert } from '../../../src/alerting/rules.ts';
import { runbookUrl } from '../../../src/alerting/runbook.ts';
import { DATASOURCES } from '../dashboards/datasources.ts';
import { renderPrometheusRules, ruleGroups } from './renderPrometheusRules.ts';

export const GRAFANA_RULES_PATH = 'grafana/provisioning/alerting/captcha-callback.rules.yaml';
export const GRAFANA_CONTACT_POINTS_PATH = 'grafana/provisioning/alerting/contact-points.yaml';
/** Mounted by docker-compose.grafana-alerting-off.yml to take the provisioned rules out again. */
export const GRAFANA_RULE_DELETIONS_PATH = 'grafana/provisioning/alerting-off/captcha-callback.delete.yaml';
/** What Prometheus loads instead of prometheus/rules/ in Grafana-managed mode: the SLO recordings, no alerts. */
export const GRAFANA_MODE_PROMETHEUS_RULES_PATH = 'grafana/prometheus-rules/captcha-callback.recordings.yml';

/** Folder the rules (and the provisioned dashboards) live in by default (monitoring config `grafanaFolder`). */
export const GRAFANA_FOLDER = DEFAULT_MONITORING_CONFIG.grafanaFolder;
export const GRAFANA_RULE_GROUP = 'captcha-callback-alerts';
/** Grafana's scheduler ticks every 10 s: a group interval must be a multiple of it (Prometheus evaluates every 15 s). */
export const GRAFANA_EVAL_INTERVAL = '20s';
export const CONTACT_POINT = 'alertmanager';
const EXPR_DS = { type: '__expr__', uid: '__expr__' };

/** Reference ids, as Grafana's own Prometheus-rule import names them. */
export const REF = { query: 'query', math: 'prometheus_math', threshold: 'threshold' } as const;

/**
 * Grafana uids: at most 40 characters of [A-Za-z0-9_-]. `CaptchaCallbackSLOBurnUptime` + critical →
 * ccm-slo-burn-uptime-critical; the solver alerts keep their `Solver` (`CaptchaSolverZeroBalance` + critical →
 * ccm-solver-zero-balance-critical).
 */
export function ruleUid(row: Pick<AlertRow, 'name' | 'severity'>): string {
  const slug = row.name
    .replace(/^Captcha(Callback)?/, '')
    .replace(/SLO/g, 'Slo')
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .toLowerCase();
  return `ccm-${slug}-${row.severity}`;
}

/**
 * Prometheus alert templates → Grafana's: `$value` is the alert expression's value in Prometheus; in Grafana it is
 * an evaluation string, and the number is `$values.query.Value` (what Grafana's own importer rewrites it to).
 */
export function grafanaTemplate(text: string): string {
  return text.replace(/\$value\b(?!s)/g, `$values.${REF.query}.Value`);
}

/**
 * Grafana expands `$NAME` and `${NAME}` from the environment in provisioning files; `$$` is a literal `$`. Every
 * string we write goes through this, so `{{ $labels.job }}` and `$query` reach Grafana intact.
 */
export const escapeDollars = (text: string) => text.replaceAll('$', '$$$$');

function grafanaRule(row: AlertRow, config: MonitoringConfig) {
  const prometheus = { type: config.datasource.type, uid: config.datasource.uid };
  const built = new RuleBuilder(row.name)
    .uid(ruleUid(row))
    .condition(REF.threshold)
    .withQuery(
      new QueryBuilder(REF.query)
        .datasourceUid(prometheus.uid)
        .relativeTimeRange({ from: 600, to: 0 })
        .model(new DataqueryBuilder().datasource(prometheus).refId(REF.query).expr(row.expr).instant()),
    )
    .withQuery(
      new QueryBuilder(REF.math)
        .datasourceUid(EXPR_DS.uid)
        .model(
          new TypeMathBuilder()
            .datasource(EXPR_DS)
            .refId(REF.math)
            .expression(`is_number($${REF.query}) || is_nan($${REF.query}) || is_inf($${REF.query})`),
        ),
    )
    .withQuery(
      new QueryBuilder(REF.threshold).datasourceUid(EXPR_DS.uid).model(
        new TypeThresholdBuilder()
          .datasource(EXPR_DS)
          .refId(REF.threshold)
          .expression(REF.math)
          .conditions([{ evaluator: { type: 'gt', params: [0] } }]),
      ),
    )
    .forDuration(row.for)
    .noDataState('OK')
    .execErrState('Error')
    .labels({ severity: row.severity, ...row.labels })
    .annotations({
      summary: grafanaTemplate(row.summary),
      description: grafanaTemplate(row.description),
      runbook_url: runbookUrl(row.runbookAnchor, config.runbookBaseUrl),
    })
    .isPaused(false)
    .build();
  // The SDK builds the HTTP API shape (folderUID, orgID, ruleGroup); file provisioning takes the group and folder
  // from the enclosing group instead. Keep the file-provisioning keys only, in a stable order.
  return {
    uid: built.uid,
    title: built.title,
    condition: built.condition,
    data: built.data.map((q) => ({
      refId: q.refId,
      ...(q.relativeTimeRange ? { relativeTimeRange: q.relativeTimeRange } : {}),
      datasourceUid: q.datasourceUid,
      // JSON round trip: the SDK's query objects carry a marker method, which is no data.
      model: JSON.parse(JSON.stringify(q.model)) as Record<string, unknown>,
    })),
    noDataState: built.noDataState,
    execErrState: built.execErrState,
    for: built.for,
    labels: built.labels,
    annotations: built.annotations,
    isPaused: built.isPaused,
  };
}

/** Deep-copies a JSON-like value with every string escaped for provisioning. */
function escapeStrings<T>(value: T): T {
  if (typeof value === 'string') return escapeDollars(value) as T;
  if (Array.isArray(value)) return value.map(escapeStrings) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, escapeStrings(v)])) as T;
  }
  return value;
}

const header = (extra: string[]) =>
  [
    ' GENERATED by `npm run generate` (scripts/generators/alerting/grafanaRules.ts, from src/alerting/): do not edit by hand.',
    ...extra,
  ].join('\n');

/** The rule groups in file-provisioning shape, before `$` escaping (the tests read this). */
export function grafanaRuleGroups(config: MonitoringConfig = DEFAULT_MONITORING_CONFIG) {
  return [
    {
      orgId: 1,
      name: GRAFANA_RULE_GROUP,
      folder: config.grafanaFolder,
      interval: GRAFANA_EVAL_INTERVAL,
      rules: alertTable(config).map((row) => grafanaRule(row, config)),
    },
  ];
}

/** grafana/provisioning/alerting/captcha-callback.rules.yaml */
export function renderGrafanaRules(config: MonitoringConfig = DEFAULT_MONITORING_CONFIG): string {
  const doc = new Document({ apiVersion: 1, groups: escapeStrings(grafanaRuleGroups(config)) });
  doc.commentBefore = header([
    ' Grafana-managed copies of the Prometheus alert rules, loaded only with docker-compose.grafana-alerting.yml.',
    ' Every dollar sign is doubled: Grafana expands environment variables in provisioning files, `$$` is a literal one.',
  ]);
  return doc.toString({ lineWidth: 0, blockQuote: 'literal' });
}

/**
 * Switching back to Prometheus-evaluated alerting: Grafana keeps provisioned rules when their file disappears (and
 * they are read-only in its UI), so this file deletes them by uid. Deleting is all it does: the contact point and
 * policy left behind route nothing once no Grafana rule exists.
 */
export function renderGrafanaRuleDeletions(config: MonitoringConfig = DEFAULT_MONITORING_CONFIG): string {
  const doc = new Document({
    apiVersion: 1,
    deleteRules: alertTable(config).map((row) => ({ orgId: 1, uid: ruleUid(row) })),
  });
  doc.commentBefore = header([
    ' Loaded only with docker-compose.grafana-alerting-off.yml: removes the Grafana-managed rules provisioned by',
    ' docker-compose.grafana-alerting.yml, so that only Prometheus evaluates the alerts again.',
  ]);
  return doc.toString({ lineWidth: 0 });
}

/**
 * The contact point (the stack's Alertmanager, so routing, inhibition and receivers stay in alertmanager.yml) and
 * the notification policy sending everything there. Grafana forwards each alert on its own (`...` = no grouping)
 * and re-sends it every minute while it fires, so the Alertmanager never times it out; the Alertmanager groups,
 * deduplicates and throttles the notifications people get.
 */
export function renderGrafanaContactPoints(): string {
  const doc = new Document({
    apiVersion: 1,
    contactPoints: [
      {
        orgId: 1,
        name: CONTACT_POINT,
        receivers: [
          {
            uid: 'ccm-alertmanager',
            type: 'prometheus-alertmanager',
            settings: { url: DATASOURCES.alertmanager.url },
            disableResolveMessage: false,
          },
        ],
      },
    ],
    policies: [
      {
        orgId: 1,
        receiver: CONTACT_POINT,
        group_by: ['...'],
        group_wait: '10s',
        group_interval: '30s',
        repeat_interval: '1m',
      },
    ],
  });
  doc.commentBefore = header([' Loaded only with docker-compose.grafana-alerting.yml.']);
  return doc.toString({ lineWidth: 0 });
}

/** Prometheus rules for Grafana-managed mode: the SLO recordings the burn-rate rules read, and no alerting rule. */
export function renderGrafanaModePrometheusRules(config: MonitoringConfig = DEFAULT_MONITORING_CONFIG): string {
  const recordingsOnly = ruleGroups(config).filter((g) => !g.rules.some(isAlert));
  return renderPrometheusRules(config, recordingsOnly).replace(
    /^#[^\n]*\n(#[^\n]*\n)*/,
    [
      '# GENERATED by `npm run generate` (scripts/generators/alerting/grafanaRules.ts, from src/alerting/slo.ts): do not edit by hand.',
      '# docker-compose.grafana-alerting.yml mounts this directory over /etc/prometheus/rules: in Grafana-managed mode',
      '# Prometheus records the SLO series the Grafana rules read, and evaluates no alerting rule of its own.',
      '',
    ].join('\n'),
  );
}
