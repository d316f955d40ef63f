/**
 * Live: every PromQL expression of the generated dashboards and Grafana-managed alert rules, evaluated by a real
 * Prometheus that scrapes a real receiver (and a real blackbox exporter probing it) fed by the `demo` subcommand.
 * A dashboard query that returns nothing fails the test: it would be an empty panel in Grafana.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { FORMATS, JOB, LABEL } from '../packages/koa/src/metrics/contract.ts';
import { GRAFANA_RULES_PATH, REF } from '../scripts/generators/alerting/grafanaRules.ts';
import { PROMETHEUS_RULES_PATH } from '../scripts/generators/alerting/renderPrometheusRules.ts';
import { DASHBOARDS_DIR } from '../scripts/generators/dashboards/render.ts';
import { ALERT_TABLE } from '../src/alerting/alertTable.ts';
import { HANDLER_ERROR } from '../src/alerting/series.ts';
import { requireBinary } from './support/binaries.ts';
import { CLI, type RunningServer, startServer } from './support/server.ts';
import { startSink } from './support/sink.ts';
import { type SolverSimulator, startSolverSimulator } from './support/solverSimulator.ts';
import { startOnFreePort, startPrometheus } from './support/stack.ts';

const ROOT = resolve(import.meta.dirname, '..');
const DEMO_SECONDS = 24;
const SCRAPE = '1s';
/** Grafana's $__rate_interval: max($__interval + scrape interval, 4 × scrape interval). */
const RATE_INTERVAL = '4s';

interface Sample {
  metric: Record<string, string>;
  value?: [number, string];
  values?: [number, string][];
}
interface ApiAnswer {
  status: string;
  error?: string;
  data: { resultType: string; result: Sample[] | [number, string] };
}

const children: ChildProcess[] = [];
const simulators: SolverSimulator[] = [];
let receiver: RunningServer;
let promUrl = '';
let tmp = '';
let demoStartedAt = 0;
const demoOutput = { stdout: '', stderr: '', code: null as number | null };
const started = Date.now();
const evaluated = { dashboard: 0, variable: 0, rule: 0, ruleLeaf: 0 };

async function api(path: string, params: Record<string, string | string[]>): Promise<ApiAnswer> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) for (const x of [v].flat()) body.append(k, x);
  const res = await fetch(`${promUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body,
  });
  return (await res.json()) as ApiAnswer;
}

/** Grafana's variables as the dashboard would fill them in for this run. */
function substitute(expr: string): string {
  const range = `${Math.max(10, Math.round((Date.now() - demoStartedAt) / 1000))}s`;
  return expr
    .replaceAll('$__rate_interval', RATE_INTERVAL)
    .replaceAll('$__range', range)
    .replaceAll('$__interval', SCRAPE)
    .replaceAll('$job', JOB.receiver)
    .replaceAll('$instance', '.*');
}

const finite = (v: string) => Number.isFinite(Number(v));

/** True when the answer holds at least one finite sample (a scalar counts). */
function hasData(answer: ApiAnswer): boolean {
  if (answer.status !== 'success') return false;
  const { resultType, result } = answer.data;
  if (resultType === 'scalar') return finite((result as [number, string])[1]);
  return (result as Sample[]).some((s) =>
    s.values ? s.values.some(([, v]) => finite(v)) : s.value !== undefined && finite(s.value[1]),
  );
}

async function instant(expr: string): Promise<ApiAnswer> {
  return api('/api/v1/query', { query: expr, time: String(Date.now() / 1000) });
}

async function range(expr: string): Promise<ApiAnswer> {
  const end = Date.now() / 1000;
  return api('/api/v1/query_range', { query: expr, start: String(end - 20), end: String(end), step: '1' });
}

/**
 * The operands of a rule expression's top-level comparisons and set operators (`and`, `or`, `unless`, `>`, …),
 * recursively through parentheses: the series a rule reads. A rule's whole expression only returns data while it
 * fires; its operands must return data whenever the receiver runs.
 */
function operands(expr: string): string[] {
  const text = expr.trim();
  const parts: string[] = [];
  let depth = 0;
  let quote = '';
  let last = 0;
  const cut = (at: number, length: number) => {
    parts.push(text.slice(last, at));
    last = at + length;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = '';
      continue;
    }
    if (c === '"' || c === "'" || c === '`') quote = c;
    else if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c)) depth--;
    else if (depth === 0) {
      const rest = text.slice(i);
      const op =
        /^(>=|<=|==|!=|>|<)/.exec(rest) ??
        (/\s$/.test(text.slice(0, i)) || text[i - 1] === ')' ? /^(and|or|unless)(?=[\s(])/.exec(rest) : null);
      if (op) {
        cut(i, op[0].length);
        i += op[0].length - 1;
      }
    }
  }
  parts.push(text.slice(last));
  const cleaned = parts
    .map((p) =>
      p
        .trim()
        .replace(/^bool\s+/, '')
        .replace(/^(on|ignoring)\s*\([^)]*\)\s*/, '')
        .replace(/^(group_left|group_right)\s*(\([^)]*\))?\s*/, '')
        .trim(),
    )
    .filter((p) => p !== '');
  if (cleaned.length === 1) {
    const only = cleaned[0]!;
    // A fully parenthesised expression: look inside.
    if (only.startsWith('(') && only.endsWith(')') && balancedInside(only)) return operands(only.slice(1, -1));
    return [only];
  }
  return cleaned.flatMap(operands);
}

function balancedInside(text: string): boolean {
  let depth = 0;
  for (let i = 0; i < text.length - 1; i++) {
    if (text[i] === '(') depth++;
    else if (text[i] === ')') depth--;
    if (depth === 0) return false;
  }
  return true;
}

const isNumber = (operand: string) => /^[\d.\s*+/()-]+$/.test(operand);

/**
 * Operands that cannot have data in this run, with the reason. `handler_error` counts failures of the user's own
 * result hook, which the standalone receiver does not have.
 */
const NEVER_IN_THIS_RUN = [{ pattern: `${LABEL.errorType}="${HANDLER_ERROR}"`, why: 'no result hook in the CLI' }];

beforeAll(async () => {
  const prometheus = requireBinary('prometheus');
  const blackbox = requireBinary('prometheus-blackbox-exporter');
  tmp = mkdtempSync(join(tmpdir(), 'ccm-promql-'));

  // Forwarding on, to an app sink process, so the captcha_forward_* series (the forward latency histogram too) have data.
  const sink = await startSink({ log: join(tmp, 'sink.jsonl') });
  children.push(sink.process);
  // One solver of each protocol on the loopback simulator, so the solver API, balance and threshold series have data.
  const resPhp = await startSolverSimulator({ flavor: '2captcha', key: 'promql-live-res-php-key', balance: 12.5 });
  const createTask = await startSolverSimulator({
    flavor: 'capsolver',
    key: 'promql-live-create-task-key',
    balance: 3,
  });
  simulators.push(resPhp, createTask);
  receiver = await startServer({
    DELIVERY_TIMEOUT: '3',
    FORWARD_URL: sink.url,
    FORWARD_SECRET: `whsec_${randomBytes(32).toString('base64')}`,
    SOLVER_RESPHP_PROTOCOL: 'res.php',
    SOLVER_RESPHP_URL: resPhp.url,
    SOLVER_RESPHP_KEY: 'promql-live-res-php-key',
    SOLVER_RESPHP_LOW_BALANCE: '5',
    SOLVER_CREATETASK_PROTOCOL: 'createTask',
    SOLVER_CREATETASK_URL: createTask.url,
    SOLVER_CREATETASK_KEY: 'promql-live-create-task-key',
    SOLVER_CREATETASK_LOW_BALANCE: '5',
    SOLVER_CREATETASK_BALANCE_INTERVAL: '30',
  });

  const bb = await startOnFreePort(
    blackbox,
    (port) => [`--config.file=${resolve(ROOT, 'blackbox/blackbox.yml')}`, `--web.listen-address=127.0.0.1:${port}`],
    '/-/healthy',
    'blackbox',
  );
  children.push(bb.child.process);
  const bbPort = bb.port;

  // The committed prometheus.yml, pointed at this run's loopback ports, scraping every second, with the committed
  // rule files loaded (the dashboard's ALERTS panels read what they produce).
  const config = parse(readFileSync(resolve(ROOT, 'prometheus/prometheus.yml'), 'utf8')) as {
    global: Record<string, string>;
    rule_files: string[];
    alerting?: unknown;
    scrape_configs: {
      job_name: string;
      static_configs?: { targets: string[] }[];
      dns_sd_configs?: unknown;
      relabel_configs?: { replacement?: string; target_label?: string }[];
    }[];
  };
  config.global = { scrape_interval: SCRAPE, scrape_timeout: SCRAPE, evaluation_interval: SCRAPE };
  config.rule_files = [resolve(ROOT, PROMETHEUS_RULES_PATH)];
  delete config.alerting;
  for (const job of config.scrape_configs) {
    if (job.job_name === JOB.receiver) {
      delete job.dns_sd_configs;
      job.static_configs = [{ targets: [`127.0.0.1:${receiver.managementPort}`] }];
    } else if (job.job_name === JOB.probe) {
      job.static_configs = [{ targets: [`${receiver.publicUrl}/healthz`] }];
      for (const r of job.relabel_configs ?? []) {
        if (r.target_label === '__address__') r.replacement = `127.0.0.1:${bbPort}`;
      }
    } else throw new Error(`prometheus.yml has a job this test does not know: ${job.job_name}`);
  }
  writeFileSync(join(tmp, 'prometheus.yml'), stringify(config));
  const prom = await startPrometheus(prometheus, join(tmp, 'prometheus.yml'), join(tmp, 'data'));
  children.push(prom.child.process);
  promUrl = `http://127.0.0.1:${prom.port}`;

  // Traffic from the real `demo` subcommand, unhealthy on purpose: 12 % malformed callbacks and 20 % lost ones put
  // the error-rate and delivery alerts in pending state, so the ALERTS panels have rows.
  demoStartedAt = Date.now();
  const demo = spawn(
    process.execPath,
    [
      CLI,
      'demo',
      `--management-url=${receiver.managementUrl}`,
      `--callback-url=${receiver.publicUrl}/callback`,
      '--rate=10',
      `--duration=${DEMO_SECONDS}s`,
      '--latency=0.2-1.5',
      '--failure-ratio=0.1',
      '--lost-ratio=0.2',
      '--invalid-ratio=0.12',
      '--duplicate-ratio=0.05',
      '--seed=7',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(demo);
  demo.stdout?.on('data', (c: Buffer) => {
    demoOutput.stdout += c.toString();
  });
  demo.stderr?.on('data', (c: Buffer) => {
    demoOutput.stderr += c.toString();
  });
  demoOutput.code = await new Promise<number | null>((r) => demo.once('exit', r));
  // The solver-request rates need a request Prometheus can see as an increase: the start-up getBalance comes before
  // the first scrape, so wait for the next one (30 s later, the shortest interval the configuration allows).
  const until = Date.now() + 60_000;
  while (createTask.requests.filter((r) => r.endpoint === 'getBalance').length < 2) {
    if (Date.now() > until) throw new Error('the receiver made no second getBalance within 60 s');
    await new Promise((r) => setTimeout(r, 250));
  }
  // Missed deadlines (3 s) and the last scrapes and rule evaluations land.
  await new Promise((r) => setTimeout(r, 4000));
}, 150_000);

afterAll(async () => {
  await Promise.all(simulators.map((sim) => sim.close()));
  const exits = children
    .filter((c) => c.exitCode === null && c.signalCode === null)
    .map(
      (c) =>
        new Promise<void>((done) => {
          const force = setTimeout(() => c.kill('SIGKILL'), 5000);
          c.once('exit', () => {
            clearTimeout(force);
            done();
          });
          c.kill('SIGTERM');
        }),
    );
  await Promise.all([...exits, receiver?.stop()]);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `promql.live: ${evaluated.dashboard} dashboard queries, ${evaluated.variable} variable queries, ` +
      `${evaluated.rule} Grafana rule expressions and ${evaluated.ruleLeaf} of their operands evaluated; ${seconds} s`,
  );
});

describe('live PromQL: dashboards and Grafana-managed rules against a real Prometheus', () => {
  it('the demo subcommand drove traffic and reported it', () => {
    expect(demoOutput.code, demoOutput.stderr).toBe(0);
    const stats = JSON.parse(demoOutput.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, number> & {
      byFormat: Record<string, number>;
    };
    expect(stats.submitted).toBeGreaterThan(DEMO_SECONDS * 10 * 0.8);
    // Every request got the answer the demo expected: 201 for registrations, 200 for callbacks in every solver
    // format (duplicates included), 400 for the malformed ones.
    expect(stats.httpErrors).toBe(0);
    for (const format of FORMATS) expect(stats.byFormat[format], format).toBeGreaterThan(0);
    expect(stats.lost).toBeGreaterThan(0);
    expect(stats.invalid).toBeGreaterThan(0);
    expect(stats.duplicates).toBeGreaterThan(0);
    expect(stats.failed).toBeGreaterThan(0);
    expect(demoOutput.stderr).toMatch(/^demo: \d+ s, submitted \d+/m);
  });

  it('the committed blackbox module probes the receiver successfully', async () => {
    const answer = await instant(`min(probe_success{job="${JOB.probe}"})`);
    expect((answer.data.result as Sample[])[0]?.value?.[1]).toBe('1');
  });

  it('every dashboard query returns data', async () => {
    const files = readdirSync(resolve(ROOT, DASHBOARDS_DIR)).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(0);
    const empty: string[] = [];
    for (const file of files) {
      const dashboard = JSON.parse(readFileSync(resolve(ROOT, DASHBOARDS_DIR, file), 'utf8')) as {
        panels: { title: string; type: string; targets?: { refId: string; expr: string; instant?: boolean }[] }[];
      };
      for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
        for (const t of panel.targets ?? []) {
          const expr = substitute(t.expr);
          expect(expr, `${panel.title}: unsubstituted variable`).not.toContain('$');
          const answer = t.instant ? await instant(expr) : await range(expr);
          evaluated.dashboard++;
          expect(answer.status, `${panel.title} ${t.refId}: ${answer.error}\n${expr}`).toBe('success');
          if (!hasData(answer)) empty.push(`${file} · ${panel.title} · ${t.refId}: ${expr}`);
        }
      }
    }
    expect(empty, `queries without data:\n${empty.join('\n')}`).toEqual([]);
  });

  it('every dashboard variable query lists values', async () => {
    for (const file of readdirSync(resolve(ROOT, DASHBOARDS_DIR)).filter((f) => f.endsWith('.json'))) {
      const dashboard = JSON.parse(readFileSync(resolve(ROOT, DASHBOARDS_DIR, file), 'utf8')) as {
        templating: { list: { name: string; type: string; definition: string }[] };
      };
      // The datasource variable lists Grafana's datasources, not Prometheus label values.
      for (const v of dashboard.templating.list.filter((x) => x.type !== 'datasource')) {
        const m = /^label_values\((.+),\s*(\w+)\)$/.exec(v.definition);
        expect(m, `variable ${v.name}: ${v.definition}`).not.toBeNull();
        const [, selector, label] = m as unknown as [string, string, string];
        const res = await fetch(
          `${promUrl}/api/v1/label/${label}/values?${new URLSearchParams({ 'match[]': substitute(selector) })}`,
        );
        const values = ((await res.json()) as { data: string[] }).data;
        evaluated.variable++;
        expect(values.length, `variable ${v.name}`).toBeGreaterThan(0);
        if (v.name === 'job') expect(values).toContain(JOB.receiver);
        if (v.name === 'instance') expect(values).toContain(`127.0.0.1:${receiver.managementPort}`);
      }
    }
  });

  it('every Grafana rule query is valid PromQL, and every series it reads has data', async () => {
    const file = parse(readFileSync(resolve(ROOT, GRAFANA_RULES_PATH), 'utf8').replaceAll('$$', '$')) as {
      groups: { rules: { title: string; data: { refId: string; model: { expr?: string } }[] }[] }[];
    };
    const rules = file.groups.flatMap((g) => g.rules);
    expect(rules).toHaveLength(ALERT_TABLE.length);
    const empty: string[] = [];
    const firing = new Set<string>();
    for (const rule of rules) {
      const expr = rule.data.find((q) => q.refId === REF.query)?.model.expr ?? '';
      const whole = await instant(expr);
      evaluated.rule++;
      expect(whole.status, `${rule.title}: ${whole.error}`).toBe('success');
      if (hasData(whole)) firing.add(rule.title);
      for (const operand of operands(expr)) {
        if (isNumber(operand)) continue;
        if (NEVER_IN_THIS_RUN.some((n) => operand.includes(n.pattern))) continue;
        // A series 5 minutes back does not exist in a run this short: check the series itself.
        const now = operand.replace(/\s+offset\s+\d+[smhd]/g, '');
        const answer = await instant(now);
        evaluated.ruleLeaf++;
        expect(answer.status, `${rule.title}: ${answer.error}\n${now}`).toBe('success');
        if (!hasData(answer)) empty.push(`${rule.title}: ${now}`);
      }
    }
    expect(empty, `rule operands without data:\n${empty.join('\n')}`).toEqual([]);
    // The traffic was bad on purpose: the error-rate and delivery conditions hold now.
    expect([...firing]).toEqual(
      expect.arrayContaining(['CaptchaCallbackHighErrorRate', 'CaptchaCallbackLowDeliveryRate']),
    );
  });

  it('splits rule expressions into the series they read', () => {
    expect(operands('a{x="a or b"} > 0.5\nand\n(b > 0 or c offset 5m > 0)\nunless on (job) d')).toEqual([
      'a{x="a or b"}',
      '0.5',
      'b',
      '0',
      'c offset 5m',
      '0',
      'd',
    ]);
    expect(operands('(x / y) >= bool 2')).toEqual(['x / y', '2']);
  });
});
