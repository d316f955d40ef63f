/**
 * Portable monitoring: `npm run generate -- --config my.json --out dir` with a config for another
 * stack (another job selector and probe selector, `pod` as an instance label, another datasource uid, runbook URL,
 * dashboard uid and PrometheusRule metadata). The outputs must be valid (promtool), carry no trace of the default
 * stack, pass the project's own promtool unit tests once those tests' series carry the new labels, and have the
 * shapes the Prometheus Operator and Grafana expect. With no config the command reproduces the committed files; a
 * bad config fails naming the field, and writes nothing.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import { PROMETHEUS_RULE_PATH } from '../scripts/generators/alerting/prometheusRule.ts';
import { PROMETHEUS_RULES_PATH } from '../scripts/generators/alerting/renderPrometheusRules.ts';
import { DATASOURCE_REF_UID } from '../scripts/generators/dashboards/panels.ts';
import { DS_INPUT } from '../scripts/generators/dashboards/render.ts';
import { README_PATH } from '../scripts/generators/docs/readme.ts';
import { GENERATED_OUTPUTS, monitoringOutputs } from '../scripts/generators/outputs.ts';
import { alertTable, WATCHDOG } from '../src/alerting/alertTable.ts';
import {
  DEFAULT_MONITORING_CONFIG,
  type MonitoringConfig,
  MonitoringConfigError,
  monitoringConfig,
} from '../src/alerting/monitoringConfig.ts';
import { EXTERNAL } from '../src/alerting/promql.ts';
import { sloRecordings } from '../src/alerting/slo.ts';
import { requireBinary } from './support/binaries.ts';

const ROOT = resolve(import.meta.dirname, '..');
const run = promisify(execFile);

/** Another stack: a Prometheus Operator one, say. Every field that names the default stack is changed. */
const INPUT = {
  selector: 'job="ccm-payments", namespace="payments"',
  probeSelector: '{job="probe/payments/ccm"}',
  instanceLabels: ['instance', 'pod'],
  runbookBaseUrl: 'https://wiki.example.org/ops/ccm-runbook',
  datasource: { uid: 'mimir-eu' },
  dashboard: { uid: 'ccm-payments', title: 'Payments: CAPTCHA callbacks' },
  grafanaFolder: 'Payments',
  prometheusRule: { name: 'ccm-payments', namespace: 'payments', labels: { release: 'kube-prometheus-stack' } },
};
const NEW = {
  job: 'ccm-payments',
  receiverMatchers: 'job="ccm-payments",namespace="payments"',
  receiverLabels: { job: 'ccm-payments', namespace: 'payments' },
  probeJob: 'probe/payments/ccm',
  probeMatchers: 'job="probe/payments/ccm"',
};
const DEFAULT_TRACES = [
  /job="captcha-callback(-probe)?"/,
  // A bare default job name (in a label value, a variable default, a description), not a longer name such as the
  // rule group captcha-callback-alerts or the file captcha-callback.rules.yml.
  /(?<![\w./-])captcha-callback(-probe)?(?![\w-]|\.\w)/,
  /docs\/runbook\.md#/,
  /"uid": "prometheus"/,
  /[uU]id: prometheus\b/,
];

let tmp = '';
let out = '';
let config: MonitoringConfig;
const committedBefore = new Map<string, string>();

/** Runs scripts/generate.ts; resolves to its exit code and output instead of rejecting. */
async function generate(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ['--conditions=ccm-source', 'scripts/generate.ts', ...args],
      {
        cwd: ROOT,
        timeout: 60_000,
      },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function tool(binary: string, args: string[], cwd = ROOT): Promise<string> {
  try {
    const { stdout, stderr } = await run(requireBinary(binary), args, { cwd, timeout: 40_000 });
    return stdout + stderr;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${binary} ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
  }
}

const readOut = (path: string) => readFileSync(join(out, path), 'utf8');

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)));
}

beforeAll(async () => {
  // The repository's generated files, to check --out leaves them alone. Not README.md: people edit its prose while
  // tests run, and --out never renders it (monitoringOutputs has no README; the first test checks the list).
  for (const o of GENERATED_OUTPUTS.filter((x) => x.path !== README_PATH)) {
    committedBefore.set(o.path, readFileSync(resolve(ROOT, o.path), 'utf8'));
  }
  tmp = await mkdtemp(join(tmpdir(), 'ccm-monitoring-'));
  out = join(tmp, 'out');
  await writeFile(join(tmp, 'config.json'), JSON.stringify(INPUT, null, 2));
  const result = await generate('--config', join(tmp, 'config.json'), '--out', out);
  if (result.code !== 0) throw new Error(`generate failed (${result.code}):\n${result.stdout}${result.stderr}`);
  config = monitoringConfig(INPUT);
}, 90_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('generate --config --out: the monitoring files for another stack', () => {
  it('writes exactly the monitoring outputs under --out, and leaves the repository files alone', () => {
    expect(filesUnder(out).sort()).toEqual(
      monitoringOutputs(config)
        .map((o) => o.path)
        .sort(),
    );
    expect(filesUnder(out)).toContain(`grafana/dashboards/${INPUT.dashboard.uid}.json`);
    for (const [path, text] of committedBefore) expect(readFileSync(resolve(ROOT, path), 'utf8'), path).toBe(text);
  });

  it('carries no trace of the default stack: selectors, job names, runbook base, datasource uid', () => {
    for (const file of filesUnder(out)) {
      const text = readOut(file);
      for (const trace of DEFAULT_TRACES) expect(text, `${file}: ${trace}`).not.toMatch(trace);
    }
  });

  it('promtool check rules: the rule file, the Grafana-mode recordings and the PrometheusRule spec', async () => {
    const recordings = sloRecordings(config).length;
    const rules = await tool('promtool', ['check', 'rules', join(out, PROMETHEUS_RULES_PATH)]);
    expect(rules).toMatch(new RegExp(`SUCCESS: ${alertTable(config).length + recordings} rules found`));
    const grafanaMode = join(out, 'grafana/prometheus-rules/captcha-callback.recordings.yml');
    expect(await tool('promtool', ['check', 'rules', grafanaMode])).toMatch(
      new RegExp(`SUCCESS: ${recordings} rules found`),
    );
    const manifest = parse(readOut(PROMETHEUS_RULE_PATH)) as { spec: { groups: unknown[] } };
    const spec = join(tmp, 'prometheusrule-spec.yml');
    await writeFile(spec, stringify({ groups: manifest.spec.groups }));
    expect(await tool('promtool', ['check', 'rules', spec])).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('selects the new series in every rule, aggregates the new instance labels away, joins on the service labels', () => {
    const file = parse(readOut(PROMETHEUS_RULES_PATH)) as {
      groups: {
        rules: { alert?: string; record?: string; expr: string; for?: string; annotations?: Record<string, string> }[];
      }[];
    };
    const rules = file.groups.flatMap((g) => g.rules);
    for (const rule of rules) {
      const name = rule.alert ?? rule.record!;
      if (rule.alert === WATCHDOG) {
        expect(rule.expr).toBe('vector(1)');
        continue;
      }
      // Every series selector starts with the new receiver or probe matchers (the SLO alerts read recordings).
      const selectors = [...rule.expr.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]!).filter((s) => !s.startsWith('slo='));
      for (const s of selectors) {
        const ok = [NEW.receiverMatchers, NEW.probeMatchers].some((m) => s === m || s.startsWith(`${m},`));
        expect(ok, `${name}: {${s}}`).toBe(true);
      }
      for (const agg of rule.expr.matchAll(/\bwithout \(([^)]*)\)/g)) {
        expect(agg[1]!.split(', ').slice(0, 2), name).toEqual(['instance', 'pod']);
      }
    }
    const lowBalance = rules.find((r) => r.alert === 'CaptchaSolverLowBalance')!;
    expect(lowBalance.expr).toContain('on (job, namespace, solver)');
    for (const rule of rules.filter((r) => r.alert)) {
      expect(rule.annotations?.runbook_url).toBe(`${INPUT.runbookBaseUrl}#${rule.alert!.toLowerCase()}`);
    }
  });

  it('the PrometheusRule manifest parses and has the Operator shape', () => {
    const manifest = parse(readOut(PROMETHEUS_RULE_PATH)) as Record<string, unknown> & {
      metadata: { name: string; namespace?: string; labels: Record<string, string> };
      spec: { groups: { name: string; interval?: string; rules: Record<string, unknown>[] }[] };
    };
    expect(Object.keys(manifest).sort()).toEqual(['apiVersion', 'kind', 'metadata', 'spec']);
    expect(manifest.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(manifest.kind).toBe('PrometheusRule');
    expect(manifest.metadata.name).toBe(INPUT.prometheusRule.name);
    expect(manifest.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
    expect(manifest.metadata.namespace).toBe(INPUT.prometheusRule.namespace);
    expect(manifest.metadata.labels).toEqual({
      ...DEFAULT_MONITORING_CONFIG.prometheusRule.labels,
      ...INPUT.prometheusRule.labels,
    });
    expect(Object.keys(manifest.spec)).toEqual(['groups']);
    // spec.groups is the rule file's groups, rule for rule (the Operator's RuleGroup/Rule fields only).
    const ruleFile = parse(readOut(PROMETHEUS_RULES_PATH)) as { groups: unknown[] };
    expect(manifest.spec.groups).toEqual(ruleFile.groups);
    const ruleFields = new Set(['alert', 'record', 'expr', 'for', 'labels', 'annotations']);
    for (const group of manifest.spec.groups) {
      expect(group.name).toMatch(/^\S+$/);
      expect(group.rules.length).toBeGreaterThan(0);
      for (const rule of group.rules) {
        for (const key of Object.keys(rule)) expect(ruleFields, key).toContain(key);
        expect(typeof rule.expr).toBe('string');
        expect('alert' in rule !== 'record' in rule).toBe(true);
        for (const map of [rule.labels, rule.annotations].filter(Boolean) as Record<string, unknown>[]) {
          for (const v of Object.values(map)) expect(typeof v).toBe('string');
        }
        if ('for' in rule) expect(rule.for).toMatch(/^\d+[smhd]$/);
      }
    }
  });
});

describe('dashboards and Grafana-managed rules for another Grafana', () => {
  interface Json {
    [k: string]: unknown;
  }
  /** Every `datasource` object anywhere in the JSON. */
  function datasourceRefs(value: unknown, found: Json[] = []): Json[] {
    if (Array.isArray(value)) for (const v of value) datasourceRefs(v, found);
    else if (value !== null && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) {
        if (k === 'datasource' && v !== null && typeof v === 'object') found.push(v as Json);
        datasourceRefs(v, found);
      }
    }
    return found;
  }
  type Dashboard = {
    uid: string;
    title: string;
    __inputs?: { name: string; type: string; pluginId: string }[];
    templating: {
      list: { name: string; type: string; query: unknown; current?: { value: unknown }; definition?: string }[];
    };
    panels: { type: string; title: string; targets?: { expr: string }[] }[];
  };
  const dashboard = () => JSON.parse(readOut(`grafana/dashboards/${INPUT.dashboard.uid}.json`)) as Dashboard;
  const imported = () => JSON.parse(readOut(`grafana/import/${INPUT.dashboard.uid}.json`)) as Dashboard;

  it('reference only the datasource variable, and have datasource, job and instance variables', () => {
    for (const d of [dashboard(), imported()]) {
      expect(d.uid).toBe(INPUT.dashboard.uid);
      expect(d.title).toBe(INPUT.dashboard.title);
      const refs = datasourceRefs(d);
      expect(refs.length).toBeGreaterThan(40);
      for (const ref of refs) expect(ref).toEqual({ type: 'prometheus', uid: DATASOURCE_REF_UID });
      expect(d.templating.list.map((v) => [v.name, v.type])).toEqual([
        ['datasource', 'datasource'],
        ['job', 'query'],
        ['instance', 'query'],
      ]);
      const job = d.templating.list.find((v) => v.name === 'job')!;
      expect(job.current?.value).toBe(NEW.job);
      expect(job.definition).toBe(`label_values(${PROM.tasksPending}{namespace="payments"}, job)`);
      expect(d.templating.list.find((v) => v.name === 'instance')?.definition).toBe(
        `label_values(${PROM.tasksPending}{job="$job",namespace="payments"}, instance)`,
      );
    }
    // Provisioning form: the variable defaults to the configured uid. Import form: Grafana asks for the datasource.
    expect(dashboard().templating.list[0]!.current?.value).toBe(INPUT.datasource.uid);
    const form = imported();
    expect(form.__inputs).toEqual([
      expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' }),
    ]);
    expect(form.templating.list[0]!.current?.value).toBe(`$\{${DS_INPUT}}`);
    expect(JSON.stringify(form)).not.toContain(INPUT.datasource.uid);
  });

  it("select the receiver by $job, the selector's other matchers and $instance, and the probe by its selector", () => {
    let receiver = 0;
    let probe = 0;
    for (const p of dashboard().panels.filter((x) => x.type !== 'row')) {
      for (const t of p.targets ?? []) {
        for (const m of t.expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}/g)) {
          const [, metric, matchers] = m as unknown as [string, string, string];
          if (metric === EXTERNAL.probeSuccess) {
            expect(matchers, p.title).toBe(NEW.probeMatchers);
            probe++;
          } else if (metric !== 'ALERTS') {
            expect(
              matchers.startsWith('job="$job",namespace="payments",instance=~"$instance"'),
              `${p.title}: ${matchers}`,
            ).toBe(true);
            receiver++;
          }
        }
      }
    }
    expect(receiver).toBeGreaterThan(40);
    expect(probe).toBeGreaterThan(0);
  });

  it('dashboard queries are valid PromQL with the variables filled in (promtool check rules)', async () => {
    const exprs = dashboard()
      .panels.flatMap((p) => p.targets ?? [])
      .map((t) =>
        t.expr
          .replaceAll('$__rate_interval', '1m')
          .replaceAll('$__range', '1h')
          .replaceAll('$job', NEW.job)
          .replaceAll('$instance', '.*'),
      );
    expect(exprs.join('\n')).not.toContain('$');
    const file = join(tmp, 'dashboard-queries.yml');
    await writeFile(
      file,
      stringify({
        groups: [{ name: 'dashboard', rules: exprs.map((expr, i) => ({ record: `dashboard:q${i}`, expr })) }],
      }),
    );
    expect(await tool('promtool', ['check', 'rules', file])).toMatch(
      new RegExp(`SUCCESS: ${exprs.length} rules found`),
    );
  });

  it('the Grafana-managed rules query the configured datasource uid and link the configured runbook', () => {
    const file = parse(readOut('grafana/provisioning/alerting/captcha-callback.rules.yaml').replaceAll('$$', '$')) as {
      groups: {
        folder: string;
        rules: {
          title: string;
          data: { datasourceUid: string; model: { datasource?: { uid: string }; expr?: string } }[];
          annotations: Record<string, string>;
        }[];
      }[];
    };
    expect(file.groups[0]!.folder).toBe(INPUT.grafanaFolder);
    const rules = file.groups.flatMap((g) => g.rules);
    expect(rules.map((r) => r.title)).toEqual(alertTable(config).map((r) => r.name));
    for (const r of rules) {
      for (const q of r.data) {
        expect(['__expr__', INPUT.datasource.uid]).toContain(q.datasourceUid);
        expect(q.model.datasource?.uid).toBe(q.datasourceUid);
      }
      const query = r.data[0]!;
      expect(query.datasourceUid).toBe(INPUT.datasource.uid);
      // Every query reads the new series, but the watchdog's vector(1) and the SLO alerts' recordings.
      if (r.title !== WATCHDOG && !String(query.model.expr).includes('slo:')) {
        expect(query.model.expr).toMatch(/ccm-payments|probe\/payments\/ccm/);
      }
      expect(r.annotations.runbook_url?.startsWith(`${INPUT.runbookBaseUrl}#`)).toBe(true);
    }
  });
});

/*
 * The project's promtool unit tests, rewritten for the new selector: each input series of the receiver gets the new
 * job and namespace (and a pod label, which the rules must aggregate away like the instance); each probe series the
 * new probe job; the expected labels, ALERTS selectors, descriptions and runbook links follow. Written under --out
 * beside the generated rules, whose path they already name (../rules/captcha-callback.rules.yml).
 */
const TEST_DIR = resolve(ROOT, 'prometheus/tests');
const TEST_FILES = readdirSync(TEST_DIR)
  .filter((f) => f.endsWith('.test.yml'))
  .sort();

interface UnitTests {
  rule_files: string[];
  tests: {
    input_series?: { series: string }[];
    alert_rule_test?: {
      exp_alerts?: { exp_labels?: Record<string, string>; exp_annotations?: Record<string, string> }[];
    }[];
    promql_expr_test?: { expr: string; exp_samples?: { labels: string }[] }[];
  }[];
}

const OLD_RECEIVER = 'job="captcha-callback"';
const OLD_PROBE = 'job="captcha-callback-probe"';
const podOf = (series: string) => (/instance="([^"]*)"/.exec(series)?.[1] ?? 'receiver').replace(/[^a-z0-9]+/g, '-');

/** Selectors and label strings: the old matchers become the new ones. */
const rewriteMatchers = (text: string) =>
  text.replaceAll(OLD_PROBE, NEW.probeMatchers).replaceAll(OLD_RECEIVER, NEW.receiverMatchers);

/** The rendered `{{ $labels.job }}` in descriptions, and the runbook base. */
const rewriteText = (text: string) =>
  text
    .replace(/(?<![\w./-])captcha-callback-probe(?![\w-]|\.\w)/g, NEW.probeJob)
    .replace(/(?<![\w./-])captcha-callback(?![\w-]|\.\w)/g, NEW.job)
    .replaceAll(`${DEFAULT_MONITORING_CONFIG.runbookBaseUrl}#`, `${INPUT.runbookBaseUrl}#`);

function rewriteUnitTests(text: string): { yaml: string; changes: number } {
  const doc = parse(text) as UnitTests;
  let changes = 0;
  const count = (before: string, after: string) => {
    if (before !== after) changes++;
    return after;
  };
  for (const t of doc.tests) {
    for (const s of t.input_series ?? []) {
      const series = s.series.includes(OLD_RECEIVER)
        ? s.series.replace(OLD_RECEIVER, `${NEW.receiverMatchers},pod="${podOf(s.series)}"`)
        : s.series.replace(OLD_PROBE, NEW.probeMatchers);
      s.series = count(s.series, series);
    }
    for (const a of t.alert_rule_test ?? []) {
      for (const e of a.exp_alerts ?? []) {
        if (e.exp_labels?.job === 'captcha-callback') {
          e.exp_labels = { ...e.exp_labels, ...NEW.receiverLabels };
          changes++;
        } else if (e.exp_labels?.job === 'captcha-callback-probe') {
          e.exp_labels = { ...e.exp_labels, job: NEW.probeJob };
          changes++;
        }
        for (const [k, v] of Object.entries(e.exp_annotations ?? {})) e.exp_annotations![k] = count(v, rewriteText(v));
      }
    }
    for (const p of t.promql_expr_test ?? []) {
      p.expr = count(p.expr, rewriteMatchers(p.expr));
      for (const s of p.exp_samples ?? []) s.labels = count(s.labels, rewriteMatchers(s.labels));
    }
  }
  return { yaml: stringify(doc, { lineWidth: 0 }), changes };
}

describe("the project's promtool unit tests against the generated rules, series relabelled", () => {
  beforeAll(async () => {
    await mkdir(join(out, 'prometheus/tests'), { recursive: true });
  });

  it('finds the unit test files', () => {
    expect(TEST_FILES.length).toBeGreaterThanOrEqual(15);
  });

  for (const file of TEST_FILES) {
    it(file, { timeout: 60_000 }, async () => {
      const original = await readFile(join(TEST_DIR, file), 'utf8');
      const { yaml, changes } = rewriteUnitTests(original);
      // The rewrite did something, and left no default label behind (the watchdog test has only its empty run and
      // an endpoint-down case, so it changes too).
      expect(changes, file).toBeGreaterThan(0);
      expect(yaml).not.toMatch(/job="captcha-callback(-probe)?"|job: captcha-callback/);
      expect((parse(yaml) as UnitTests).rule_files).toEqual([`../rules/${PROMETHEUS_RULES_PATH.split('/').at(-1)}`]);
      await writeFile(join(out, 'prometheus/tests', file), yaml);
      const result = await tool('promtool', ['test', 'rules', file], join(out, 'prometheus/tests'));
      expect(result).toMatch(/SUCCESS/);
    });
  }
});

describe('the defaults and bad configs', () => {
  it('with no config, --out reproduces the committed files byte for byte', async () => {
    const dir = join(tmp, 'defaults');
    const result = await generate('--out', dir);
    expect(result.code, result.stderr).toBe(0);
    for (const o of monitoringOutputs()) {
      expect(await readFile(join(dir, o.path), 'utf8'), o.path).toBe(readFileSync(resolve(ROOT, o.path), 'utf8'));
    }
    expect(monitoringOutputs().map((o) => o.path)).toContain(PROMETHEUS_RULE_PATH);
  });

  it.each([
    [{ thresholds: { errorRatio: 2 } }, /thresholds\.errorRatio: /],
    [{ thresholds: { latencyP95Seconds: 0.7 } }, /thresholds\.latencyP95Seconds: must be a bucket edge/],
    [{ selector: 'namespace="payments"' }, /selector: needs a job="…" matcher/],
    [{ selector: 'job=captcha' }, /selector: not a label matcher list/],
    [{ instanceLabels: ['pod'] }, /instanceLabels: must include "instance"/],
    [{ windows: { requests: '5 minutes' } }, /windows\.requests: must be a Prometheus duration/],
    [{ datasource: { uid: 'has space' } }, /datasource\.uid: must be a Grafana uid/],
    [{ prometheusRule: { name: 'Not_A_Name' } }, /prometheusRule\.name: must be a Kubernetes name/],
    [{ selecter: 'job="x"' }, /selecter: unknown field/],
    [{ thresholds: { errorRate: 0.1 } }, /thresholds\.errorRate: unknown field/],
  ])('monitoringConfig(%j) fails naming the field', (input, message) => {
    expect(() => monitoringConfig(input)).toThrow(MonitoringConfigError);
    expect(() => monitoringConfig(input)).toThrow(message);
  });

  it("`for` overrides replace the table's for every severity of that name, and nothing else", () => {
    const table = alertTable(monitoringConfig({ for: { CaptchaCallbackSLOBurnUptime: '11m' } }));
    expect(table.map((r) => r.name)).toEqual(alertTable().map((r) => r.name));
    alertTable().forEach((row, i) => {
      expect(table[i]!.for, row.name).toBe(row.name === 'CaptchaCallbackSLOBurnUptime' ? '11m' : row.for);
    });
    expect(table.filter((r) => r.for === '11m').map((r) => r.severity)).toEqual(['critical', 'warning']);
  });

  it('an unknown alert in `for` fails naming it', () => {
    const bad = monitoringConfig({ for: { CaptchaCallbackNoSuchThing: '5m' } });
    expect(() => alertTable(bad)).toThrow(/for\.CaptchaCallbackNoSuchThing: no alert of that name/);
  });

  it('the command refuses a bad config, or a config without --out, and writes nothing', async () => {
    const bad = join(tmp, 'bad.yaml');
    await writeFile(bad, 'thresholds:\n  errorRatio: 2\nselecter: x\n');
    const dir = join(tmp, 'bad-out');
    const refused = await generate('--config', bad, '--out', dir);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/thresholds\.errorRatio: /);
    expect(refused.stderr).toMatch(/selecter: unknown field/);
    await expect(readFile(join(dir, PROMETHEUS_RULES_PATH), 'utf8')).rejects.toThrow(/ENOENT/);
    const noOut = await generate('--config', join(tmp, 'config.json'));
    expect(noOut.code).toBe(2);
    expect(noOut.stderr).toMatch(/--config needs --out/);
    for (const [path, text] of committedBefore) expect(readFileSync(resolve(ROOT, path), 'utf8'), path).toBe(text);
  });
});
