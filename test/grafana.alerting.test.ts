import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  CONTACT_POINT,
  escapeDollars,
  GRAFANA_CONTACT_POINTS_PATH,
  GRAFANA_EVAL_INTERVAL,
  GRAFANA_MODE_PROMETHEUS_RULES_PATH,
  GRAFANA_RULE_DELETIONS_PATH,
  GRAFANA_RULES_PATH,
  grafanaTemplate,
  REF,
  ruleUid,
} from '../scripts/generators/alerting/grafanaRules.ts';
import { PROMETHEUS_RULES_PATH } from '../scripts/generators/alerting/renderPrometheusRules.ts';
import { DATASOURCES } from '../scripts/generators/dashboards/datasources.ts';
import { ALERT_TABLE } from '../src/alerting/alertTable.ts';
import { durationSeconds } from '../src/alerting/promql.ts';
import { runbookUrl } from '../src/alerting/runbook.ts';
import { requireBinary } from './support/binaries.ts';
import { provisionedDatasources, ROOT, read } from './support/grafana.ts';

/** Grafana reads `$$` as a literal `$`; what it sees after expanding the environment. */
const expandDollars = (text: string) => text.replaceAll('$$', '$');

interface GrafanaQuery {
  refId: string;
  datasourceUid: string;
  relativeTimeRange?: { from: number; to: number };
  model: Record<string, unknown>;
}
interface GrafanaRule {
  uid: string;
  title: string;
  condition: string;
  data: GrafanaQuery[];
  for: string;
  noDataState: string;
  execErrState: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
interface RulesFile {
  apiVersion: number;
  groups: { orgId: number; name: string; folder: string; interval: string; rules: GrafanaRule[] }[];
}

const raw = read(GRAFANA_RULES_PATH);
const file = parse(expandDollars(raw)) as RulesFile;
const rules = file.groups.flatMap((g) => g.rules);

describe('Grafana-managed alert rules (file provisioning)', () => {
  it('have the file-provisioning shape', () => {
    expect(file.apiVersion).toBe(1);
    expect(file.groups).toHaveLength(1);
    const group = file.groups[0]!;
    expect(group.orgId).toBe(1);
    expect(group.folder).toBeTruthy();
    // Grafana's scheduler ticks every 10 s: a group interval must be a multiple of it.
    expect(group.interval).toBe(GRAFANA_EVAL_INTERVAL);
    expect(durationSeconds(group.interval) % 10).toBe(0);
    for (const r of rules) {
      expect(Object.keys(r).sort()).toEqual(
        [
          'annotations',
          'condition',
          'data',
          'execErrState',
          'for',
          'isPaused',
          'labels',
          'noDataState',
          'title',
          'uid',
        ].sort(),
      );
    }
  });

  it('are the alert table, row for row: same names, expressions, for, severity and annotations', () => {
    expect(rules.map((r) => r.title)).toEqual(ALERT_TABLE.map((a) => a.name));
    ALERT_TABLE.forEach((row, i) => {
      const rule = rules[i]!;
      expect(rule.uid).toBe(ruleUid(row));
      expect(rule.for).toBe(row.for);
      expect(rule.labels).toEqual({ severity: row.severity, ...row.labels });
      expect(rule.annotations).toEqual({
        summary: grafanaTemplate(row.summary),
        description: grafanaTemplate(row.description),
        runbook_url: runbookUrl(row.runbookAnchor),
      });
      const query = rule.data.find((q) => q.refId === REF.query)!;
      expect(query.model.expr).toBe(row.expr);
      expect(query.model.instant).toBe(true);
    });
  });

  it('have unique, valid uids', () => {
    const uids = rules.map((r) => r.uid);
    expect(new Set(uids).size).toBe(uids.length);
    for (const uid of uids) expect(uid).toMatch(/^[A-Za-z0-9_-]{1,40}$/);
  });

  it('fire on every series the query returns and stay OK on none, as Prometheus does', () => {
    for (const r of rules) {
      expect(r.data.map((q) => q.refId)).toEqual([REF.query, REF.math, REF.threshold]);
      expect(r.condition).toBe(REF.threshold);
      const [query, math, threshold] = r.data as [GrafanaQuery, GrafanaQuery, GrafanaQuery];
      expect(query.datasourceUid).toBe(DATASOURCES.prometheus.uid);
      expect(math.datasourceUid).toBe('__expr__');
      expect(math.model).toMatchObject({
        type: 'math',
        expression: `is_number($${REF.query}) || is_nan($${REF.query}) || is_inf($${REF.query})`,
      });
      expect(threshold.model).toMatchObject({
        type: 'threshold',
        expression: REF.math,
        conditions: [{ evaluator: { type: 'gt', params: [0] } }],
      });
      expect(r.noDataState).toBe('OK');
      expect(r.execErrState).toBe('Error');
    }
  });

  it('use Grafana template variables ($values.query.Value, not $value)', () => {
    for (const r of rules) {
      for (const text of Object.values(r.annotations)) expect(text).not.toMatch(/\$value\b(?!s)/);
    }
    expect(grafanaTemplate('{{ $value | humanizePercentage }} of {{ $labels.job }}; {{ $values.query }}')).toBe(
      '{{ $values.query.Value | humanizePercentage }} of {{ $labels.job }}; {{ $values.query }}',
    );
  });

  it('escape every `$` as `$$`, so Grafana does not expand them from the environment', () => {
    expect(raw.replaceAll('$$', '')).not.toContain('$');
    expect(raw).toContain('{{ $$labels.job }}');
    expect(escapeDollars('$a $$b')).toBe('$$a $$$$b');
  });

  it('query only provisioned datasources', () => {
    const provisioned = provisionedDatasources().map((d) => d.uid);
    for (const r of rules) {
      for (const q of r.data) {
        if (q.datasourceUid !== '__expr__') expect(provisioned).toContain(q.datasourceUid);
      }
    }
  });
});

describe('switching back to Prometheus-evaluated alerting', () => {
  it('deletes exactly the provisioned rules', () => {
    const deletions = parse(read(GRAFANA_RULE_DELETIONS_PATH)) as {
      apiVersion: number;
      deleteRules: { orgId: number; uid: string }[];
      groups?: unknown;
    };
    expect(deletions.apiVersion).toBe(1);
    expect(deletions.groups).toBeUndefined();
    expect(deletions.deleteRules).toEqual(rules.map((r) => ({ orgId: 1, uid: r.uid })));
  });
});

describe('Grafana contact point and policy', () => {
  const cp = parse(expandDollars(read(GRAFANA_CONTACT_POINTS_PATH))) as {
    apiVersion: number;
    contactPoints: { name: string; receivers: { uid: string; type: string; settings: { url: string } }[] }[];
    policies: { receiver: string; group_by: string[]; repeat_interval: string }[];
  };

  it('deliver to the Alertmanager that Prometheus notifies', () => {
    expect(cp.apiVersion).toBe(1);
    const receiver = cp.contactPoints[0]!.receivers[0]!;
    expect(receiver.type).toBe('prometheus-alertmanager');
    expect(receiver.settings.url).toBe(DATASOURCES.alertmanager.url);
    const prom = parse(read('prometheus/prometheus.yml')) as {
      alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
    };
    const target = prom.alerting.alertmanagers[0]!.static_configs[0]!.targets[0]!;
    expect(new URL(receiver.settings.url).host).toBe(target);
    expect(cp.policies).toEqual([expect.objectContaining({ receiver: CONTACT_POINT, group_by: ['...'] })]);
    expect(cp.contactPoints[0]!.name).toBe(CONTACT_POINT);
  });
});

describe('Prometheus rules in Grafana-managed mode', () => {
  const text = read(GRAFANA_MODE_PROMETHEUS_RULES_PATH);
  const modeRules = (parse(text) as { groups: { rules: { record?: string; alert?: string }[] }[] }).groups.flatMap(
    (g) => g.rules,
  );

  it('record every series the Grafana rules read, and alert on nothing', () => {
    expect(modeRules.every((r) => r.record && !r.alert)).toBe(true);
    const recorded = new Set(modeRules.map((r) => r.record));
    for (const r of rules) {
      const expr = String(r.data[0]!.model.expr);
      for (const m of expr.matchAll(/\b([a-z_]+:[a-z_:0-9]+)/g)) expect(recorded, `${r.title}`).toContain(m[1]);
    }
    // The default rule file records the same series (Grafana mode only drops the alerting rules).
    const all = (parse(read(PROMETHEUS_RULES_PATH)) as { groups: { rules: { record?: string }[] }[] }).groups
      .flatMap((g) => g.rules)
      .filter((r) => r.record);
    expect(modeRules).toEqual(all);
  });

  it('pass promtool check rules', () => {
    const promtool = requireBinary('promtool');
    const out = execFileSync(promtool, ['check', 'rules', resolve(ROOT, GRAFANA_MODE_PROMETHEUS_RULES_PATH)], {
      encoding: 'utf8',
    });
    expect(out).toMatch(/SUCCESS: \d+ rules found/);
  });
});
