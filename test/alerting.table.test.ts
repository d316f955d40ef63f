import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CALLBACK_DURATION_BUCKETS, JOB, PROM } from '../packages/koa/src/metrics/contract.ts';
import { PROMETHEUS_RULES_PATH, RULE_GROUPS } from '../scripts/generators/alerting/renderPrometheusRules.ts';
import { ALERT_TABLE, alertTable, WATCHDOG } from '../src/alerting/alertTable.ts';
import { DEFAULT_MONITORING_CONFIG } from '../src/alerting/monitoringConfig.ts';
import { EXTERNAL } from '../src/alerting/promql.ts';
import { githubAnchor, RUNBOOK_BASE_URL, RUNBOOK_PATH, runbookUrl } from '../src/alerting/runbook.ts';
import { SLO_RECORDINGS } from '../src/alerting/slo.ts';
import { ALERT_THRESHOLDS, HEALTHY } from '../src/alerting/thresholds.ts';

const ROOT = resolve(import.meta.dirname, '..');
const read = (path: string) => readFileSync(resolve(ROOT, path), 'utf8');
/** The rows that watch the service: all but the always-firing watchdog. */
const WATCHING = ALERT_TABLE.filter((r) => r.name !== WATCHDOG);

describe('the alert table', () => {
  it('has every alert of the design, each named CaptchaCallback* (the endpoint) or CaptchaSolver* (the account)', () => {
    const names = new Set(ALERT_TABLE.map((r) => r.name));
    for (const name of [
      'CaptchaCallbackEndpointStale',
      'CaptchaCallbackHighErrorRate',
      'CaptchaCallbackSlowResponses',
      'CaptchaCallbackLowDeliveryRate',
      'CaptchaCallbackEndpointDown',
      'CaptchaCallbackIrregularInterval',
      'CaptchaCallbackSLOBurnUptime',
      'CaptchaCallbackSLOBurnDelivery',
      'CaptchaSolverZeroBalance',
      'CaptchaSolverHighUnsolvableRate',
    ]) {
      expect(names).toContain(name);
    }
    for (const name of WATCHING.map((r) => r.name)) expect(name).toMatch(/^Captcha(Callback|Solver|Forward)[A-Z]\w+$/);
  });

  it("is the default monitoring config's table, and alertTable(config) builds the same rows from it", () => {
    expect(alertTable(DEFAULT_MONITORING_CONFIG)).toEqual(ALERT_TABLE);
    expect(alertTable()).toEqual(ALERT_TABLE);
  });

  it('ends with the watchdog: always firing, severity none, outside every CaptchaCallback* inhibition', () => {
    const watchdog = ALERT_TABLE.at(-1)!;
    expect(watchdog.name).toBe(WATCHDOG);
    expect(watchdog.expr).toBe('vector(1)');
    expect(watchdog.for).toBe('0m');
    expect(watchdog.severity).toBe('none');
    expect(watchdog.healthy).toBeUndefined();
    expect(ALERT_TABLE.filter((r) => r.severity === 'none')).toEqual([watchdog]);
    // Alertmanager's inhibitions: none of their target matchers may select the watchdog (it must keep beating).
    const am = parse(read('alertmanager/alertmanager.yml')) as { inhibit_rules: { target_matchers: string[] }[] };
    for (const rule of am.inhibit_rules) {
      const selects = rule.target_matchers.every((m) => {
        const [, label, op, value] = /^(\w+)(=~|!~|!=|=)"(.*)"$/.exec(m) ?? [];
        const actual = { alertname: WATCHDOG, severity: 'none' }[label as 'alertname' | 'severity'] ?? '';
        const full = new RegExp(`^(?:${value})$`);
        return op === '='
          ? actual === value
          : op === '!='
            ? actual !== value
            : op === '=~'
              ? full.test(actual)
              : !full.test(actual);
      });
      expect(selects, rule.target_matchers.join(',')).toBe(false);
    }
  });

  it('has one rule per name and severity (the SLO alerts: one critical page and one warning ticket)', () => {
    const keys = ALERT_TABLE.map((r) => `${r.name}/${r.severity}`);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('gives every rule a severity, summary, description and a runbook anchor that is a real heading', () => {
    const anchors = new Set(
      read(RUNBOOK_PATH)
        .split('\n')
        .filter((line) => /^#{1,6} /.test(line))
        .map((line) => githubAnchor(line.replace(/^#+ /, ''))),
    );
    for (const row of ALERT_TABLE) {
      expect(row.summary.length).toBeGreaterThan(10);
      expect(row.description.length).toBeGreaterThan(20);
      expect(anchors, `runbook heading for ${row.name}`).toContain(row.runbookAnchor);
      expect(row.runbookAnchor).toBe(githubAnchor(row.name));
    }
    for (const row of WATCHING) {
      expect(['critical', 'warning']).toContain(row.severity);
      expect(Object.keys(HEALTHY)).toContain(row.healthy);
    }
  });

  it('spells no metric name outside the contract (every series comes from PROM, EXTERNAL or a recording)', () => {
    const known = new Set<string>([
      ...Object.values(PROM),
      ...Object.values(EXTERNAL),
      ...SLO_RECORDINGS.map((r) => r.record),
    ]);
    const functions = new Set(['increase', 'rate', 'histogram_quantile', 'avg_over_time', 'without', 'offset']);
    for (const rule of [...WATCHING, ...SLO_RECORDINGS]) {
      // A series name is an identifier directly followed by `{` in these expressions.
      const names = [...rule.expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)].map((m) => m[1]!);
      expect(names.length).toBeGreaterThan(0);
      for (const name of names) {
        expect(functions.has(name)).toBe(false);
        expect(known, `${name} in ${'name' in rule ? rule.name : rule.record}`).toContain(name);
      }
      // Every selector names its job, so another job's series with the same name never leaks in.
      for (const selector of rule.expr.matchAll(/\{([^}]*)\}/g)) {
        if (selector[1]!.startsWith('slo=')) continue;
        expect([`job="${JOB.receiver}"`, `job="${JOB.probe}"`]).toContain(selector[1]!.split(',')[0]);
      }
    }
  });

  it('aggregates without (instance) wherever it aggregates', () => {
    for (const row of ALERT_TABLE) {
      for (const agg of row.expr.matchAll(/\b(sum|max|min|avg)\b\s*(\w*)/g)) {
        expect(agg[2], `${row.name}: ${agg[0]}`).toBe('without');
      }
    }
  });

  it('uses latency thresholds that are bucket edges of the duration histogram', () => {
    const buckets: readonly number[] = CALLBACK_DURATION_BUCKETS;
    expect(buckets).toContain(ALERT_THRESHOLDS.latencyP95Seconds);
    expect(buckets).toContain(HEALTHY.latencySeconds.value);
  });

  it('keeps the runbook base URL in one place and every runbook_url under it', () => {
    const rules = parse(read(PROMETHEUS_RULES_PATH)) as {
      groups: { rules: { alert?: string; annotations?: Record<string, string>; labels?: Record<string, string> }[] }[];
    };
    const alerts = rules.groups.flatMap((g) => g.rules).filter((r) => r.alert);
    expect(alerts).toHaveLength(ALERT_TABLE.length);
    for (const alert of alerts) {
      expect(alert.annotations?.runbook_url).toBe(runbookUrl(githubAnchor(alert.alert!)));
      expect(alert.annotations?.runbook_url?.startsWith(`${RUNBOOK_BASE_URL}#`)).toBe(true);
      expect(Object.keys(alert.annotations ?? {}).sort()).toEqual(['description', 'runbook_url', 'summary']);
      expect(alert.labels?.severity).toMatch(alert.alert === WATCHDOG ? /^none$/ : /^(critical|warning)$/);
    }
    expect(RULE_GROUPS.map((g) => g.name)).toEqual(['captcha-callback-slo-recordings', 'captcha-callback-alerts']);
  });

  it('has promtool unit tests for every alert name', () => {
    const dir = resolve(ROOT, 'prometheus/tests');
    const tests = readdirSync(dir)
      .filter((f) => f.endsWith('.test.yml'))
      .map((f) => readFileSync(resolve(dir, f), 'utf8'))
      .join('\n');
    for (const row of ALERT_TABLE) {
      // A firing assertion (alert_rule_test with labels) or an ALERTS check, for each severity.
      const firing = new RegExp(
        `alertname: ${row.name}\\n\\s+exp_alerts:\\n\\s+- exp_labels:\\n\\s+severity: ${row.severity}|` +
          `ALERTS\\{alertname="${row.name}",alertstate="firing"[^}]*severity="${row.severity}"`,
      );
      expect(tests, `a firing test for ${row.name} (${row.severity})`).toMatch(firing);
    }
  });
});
