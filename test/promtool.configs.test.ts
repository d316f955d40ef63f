import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { JOB } from '../packages/koa/src/metrics/contract.ts';
import { PROMETHEUS_RULES_PATH } from '../scripts/generators/alerting/renderPrometheusRules.ts';
import { requireBinary } from './support/binaries.ts';

const ROOT = resolve(import.meta.dirname, '..');
const run = promisify(execFile);
const AM_CONFIG = 'alertmanager/alertmanager.yml';
const AM_EXAMPLE = 'alertmanager/examples/chat-and-email.yml';
const read = (path: string) => readFileSync(resolve(ROOT, path), 'utf8');

/**
 * Runs a tool from the repository root; resolves to its output (stdout, plus stderr unless `stdoutOnly`), rejects
 * with both on a non-zero exit.
 */
async function tool(binary: string, args: string[], stdoutOnly = false): Promise<string> {
  try {
    const { stdout, stderr } = await run(requireBinary(binary), args, { cwd: ROOT, timeout: 30_000 });
    return stdoutOnly ? stdout : stdout + stderr;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${binary} ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
  }
}

describe('Prometheus, Alertmanager and blackbox configurations', () => {
  it('promtool check config: prometheus.yml (and the rule files it loads)', async () => {
    const out = await tool('promtool', ['check', 'config', 'prometheus/prometheus.yml']);
    expect(out).toMatch(/SUCCESS: prometheus\/prometheus.yml is valid/);
    expect(out).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('promtool check rules: the generated rule file', async () => {
    expect(await tool('promtool', ['check', 'rules', PROMETHEUS_RULES_PATH])).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('prometheus.yml scrapes the receiver and probes /healthz through blackbox under the contract job names', () => {
    const config = parse(read('prometheus/prometheus.yml')) as {
      scrape_configs: { job_name: string; metrics_path: string; params?: { module: string[] } }[];
    };
    const jobs = new Map(config.scrape_configs.map((s) => [s.job_name, s]));
    expect(jobs.get(JOB.receiver)?.metrics_path).toBe('/metrics');
    const probe = jobs.get(JOB.probe);
    expect(probe?.metrics_path).toBe('/probe');
    const blackbox = parse(read('blackbox/blackbox.yml')) as { modules: Record<string, unknown> };
    expect(Object.keys(blackbox.modules)).toContain(probe?.params?.module[0]);
  });

  it('amtool check-config: alertmanager.yml and the Slack/email example', async () => {
    const out = await tool('amtool', ['check-config', AM_CONFIG, AM_EXAMPLE]);
    expect(out.match(/SUCCESS/g)?.length).toBeGreaterThanOrEqual(2);
  });

  it('blackbox exporter --config.check accepts blackbox.yml', async () => {
    const out = await tool('prometheus-blackbox-exporter', ['--config.check', '--config.file=blackbox/blackbox.yml']);
    expect(out).toMatch(/Config file is ok/);
    expect(out).not.toMatch(/level=warn/);
  });

  it('blackbox exporter --config.check rejects a broken module (so the check above means something)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blackbox-'));
    try {
      const bad = join(dir, 'bad.yml');
      await writeFile(bad, 'modules:\n  x:\n    prober: http\n    http:\n      valid_status_codes: nope\n');
      await expect(tool('prometheus-blackbox-exporter', ['--config.check', `--config.file=${bad}`])).rejects.toThrow();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the blackbox module fails on anything but 200 (503 = down) and has a timeout', () => {
    const blackbox = parse(read('blackbox/blackbox.yml')) as {
      modules: Record<string, { prober: string; timeout: string; http: { valid_status_codes: number[] } }>;
    };
    const module = blackbox.modules.http_healthz!;
    expect(module.prober).toBe('http');
    expect(module.http.valid_status_codes).toEqual([200]);
    expect(module.timeout).toMatch(/^\d+s$/);
  });
});

describe('Alertmanager routing and inhibition', () => {
  const routesTest = (receiver: string, labels: string[]) =>
    tool(
      'amtool',
      ['config', 'routes', 'test', `--config.file=${AM_CONFIG}`, `--verify.receivers=${receiver}`, ...labels],
      true,
    );

  it('routes a critical alert to the critical receiver', async () => {
    const out = await routesTest('critical', ['alertname=CaptchaCallbackEndpointDown', 'severity=critical']);
    expect(out.trim()).toBe('critical');
  });

  it('routes a warning alert to the warning receiver', async () => {
    const out = await routesTest('warning', ['alertname=CaptchaCallbackEndpointStale', 'severity=warning']);
    expect(out.trim()).toBe('warning');
  });

  it('routes the watchdog to the heartbeat receiver only, in the config and in the example', async () => {
    for (const file of [AM_CONFIG, AM_EXAMPLE]) {
      const labels = ['alertname=CaptchaMonitorWatchdog', 'severity=none'];
      const out = await tool(
        'amtool',
        ['config', 'routes', 'test', `--config.file=${file}`, '--verify.receivers=heartbeat', ...labels],
        true,
      );
      expect(out.trim(), file).toBe('heartbeat');
      for (const people of ['critical', 'warning']) {
        await expect(
          tool('amtool', [
            'config',
            'routes',
            'test',
            `--config.file=${file}`,
            `--verify.receivers=${people}`,
            ...labels,
          ]),
        ).rejects.toThrow(/failed/);
      }
    }
    // Re-sent often, so a heartbeat service with a period of a few minutes notices when it stops.
    const config = parse(read(AM_CONFIG)) as {
      route: { routes: { matchers: string[]; receiver: string; repeat_interval?: string }[] };
    };
    const route = config.route.routes.find((r) => r.receiver === 'heartbeat')!;
    expect(route.matchers).toEqual(['alertname="CaptchaMonitorWatchdog"']);
    expect(route.repeat_interval).toMatch(/^[1-5]m$/);
  });

  it('does not route a warning to the critical receiver (the check can fail)', async () => {
    await expect(
      routesTest('critical', ['alertname=CaptchaCallbackEndpointStale', 'severity=warning']),
    ).rejects.toThrow(/failed/);
  });

  it('inhibits the other callback alerts while the endpoint is down, and a warning under its critical twin', () => {
    const config = parse(read(AM_CONFIG)) as {
      route: { group_by: string[] };
      inhibit_rules: { source_matchers: string[]; target_matchers: string[]; equal?: string[] }[];
      receivers: { name: string; webhook_configs?: { url: string; send_resolved: boolean }[] }[];
    };
    expect(config.route.group_by).toEqual(['alertname', 'job']);
    expect(config.inhibit_rules).toContainEqual({
      source_matchers: ['alertname="CaptchaCallbackEndpointDown"'],
      target_matchers: ['alertname=~"CaptchaCallback.+"', 'alertname!="CaptchaCallbackEndpointDown"'],
    });
    expect(config.inhibit_rules).toContainEqual({
      source_matchers: ['severity="critical"'],
      target_matchers: ['severity="warning"'],
      equal: ['alertname', 'job'],
    });
    // People get the resolved notifications; the heartbeat does not (the watchdog never resolves, and a heartbeat
    // service would count a resolved message as one more ping).
    for (const receiver of config.receivers) {
      expect(receiver.webhook_configs?.[0]?.send_resolved, receiver.name).toBe(receiver.name !== 'heartbeat');
    }
  });
});

describe('notification template', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'am-template-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('renders a title and one block per alert with summary, description and runbook link', async () => {
    const data = join(dir, 'data.json');
    await writeFile(
      data,
      JSON.stringify({
        receiver: 'critical',
        status: 'firing',
        alerts: [
          {
            status: 'firing',
            labels: { alertname: 'CaptchaCallbackEndpointDown', job: JOB.probe, severity: 'critical' },
            annotations: {
              summary: 'CAPTCHA callback endpoint is down',
              description: 'The outside probe fails.',
              runbook_url: 'https://example.com/runbook#captchacallbackendpointdown',
            },
          },
        ],
        groupLabels: { alertname: 'CaptchaCallbackEndpointDown', job: JOB.probe },
        commonLabels: { alertname: 'CaptchaCallbackEndpointDown', job: JOB.probe, severity: 'critical' },
        commonAnnotations: {},
        externalURL: 'http://alertmanager:9093',
      }),
    );
    const out = await tool('amtool', [
      'template',
      'render',
      '--template.glob=alertmanager/templates/*.tmpl',
      `--template.data=${data}`,
      '--template.text={{ template "captcha.title" . }}\n{{ template "captcha.text" . }}',
    ]);
    expect(out).toBe(
      '[FIRING:1] CaptchaCallbackEndpointDown (captcha-callback-probe)\n' +
        'FIRING [critical] CAPTCHA callback endpoint is down\n' +
        'The outside probe fails.\n' +
        'Runbook: https://example.com/runbook#captchacallbackendpointdown\n',
    );
  });
});
