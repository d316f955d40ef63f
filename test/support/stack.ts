/**
 * The monitoring stack for the live test, started from the COMMITTED configuration files. Only what cannot be the
 * same on a test machine is overridden, by the functions below and nothing else:
 *
 * - prometheus/prometheus.yml: every compose address (`receiver:9464`, `http://receiver:3000/healthz`,
 *   `blackbox:9115`, `alertmanager:9093`) becomes a loopback address; scrape and evaluation interval 1 s (scrape
 *   timeout 1 s, so the blackbox probe times out after 0.5 s); `rule_files` points at the overridden rule file.
 * - prometheus/rules/captcha-callback.rules.yml: `for` becomes 0s for the alerts named in LIVE_FOR (the ones the
 *   live test drives, so it need not wait minutes); every expression, label and annotation is unchanged. The `for`
 *   boundaries themselves are pinned by the promtool unit tests in prometheus/tests.
 * - alertmanager/alertmanager.yml: webhook URLs point at the test's sink (same paths), `templates` at the
 *   repository's template directory; group_wait 0s, group_interval 1s (so a resolved group is sent within a second),
 *   repeat_interval 1h. Routes, receivers and inhibitions are unchanged.
 * - blackbox/blackbox.yml is used as it is.
 *
 * Each substitution must apply: if the committed files change shape, the override throws instead of silently
 * testing something else.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { parse, stringify } from 'yaml';
import { freePort, waitFor } from './ports.ts';

/** Alerts whose `for` the live test shortens to 0s (see the module comment). */
export const LIVE_FOR: Readonly<Record<string, string>> = {
  CaptchaCallbackEndpointDown: '0s',
  CaptchaCallbackHighErrorRate: '0s',
  CaptchaCallbackLowDeliveryRate: '0s',
};

export const LIVE_INTERVAL = '1s';

interface PromConfig {
  global: Record<string, unknown>;
  rule_files: string[];
  alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
  scrape_configs: {
    job_name: string;
    static_configs?: { targets: string[] }[];
    dns_sd_configs?: { names: string[]; port: number }[];
    relabel_configs?: { target_label?: string; replacement?: string }[];
  }[];
}

/** Replaces `from` with `to` in `list`; records that the substitution applied. */
function substitute(values: string[], map: ReadonlyMap<string, string>, used: Set<string>): string[] {
  return values.map((v) => {
    const to = map.get(v);
    if (to === undefined) throw new Error(`no loopback substitute for address "${v}" in prometheus.yml`);
    used.add(v);
    return to;
  });
}

/**
 * prometheus.yml for loopback: `addresses` maps each committed address to its test address; every one must be used
 * and every target must have one.
 */
export function overridePrometheusConfig(text: string, addresses: Record<string, string>, rulesFile: string): string {
  const config = parse(text) as PromConfig;
  const map = new Map(Object.entries(addresses));
  const used = new Set<string>();
  config.global = {
    ...config.global,
    scrape_interval: LIVE_INTERVAL,
    scrape_timeout: LIVE_INTERVAL,
    evaluation_interval: LIVE_INTERVAL,
  };
  config.rule_files = [rulesFile];
  for (const am of config.alerting.alertmanagers) {
    for (const sc of am.static_configs) sc.targets = substitute(sc.targets, map, used);
  }
  for (const job of config.scrape_configs) {
    // DNS discovery (the receiver job) has no loopback equivalent: each `name:port` becomes a static target.
    if (job.dns_sd_configs) {
      job.static_configs = job.dns_sd_configs.map((d) => ({ targets: d.names.map((n) => `${n}:${d.port}`) }));
      delete job.dns_sd_configs;
    }
    for (const sc of job.static_configs ?? []) sc.targets = substitute(sc.targets, map, used);
    // A relabelling that sets the scrape address (the blackbox exporter's) is an address too.
    for (const relabel of job.relabel_configs ?? []) {
      if (relabel.target_label === '__address__' && relabel.replacement !== undefined) {
        [relabel.replacement] = substitute([relabel.replacement], map, used);
      }
    }
  }
  const unused = [...map.keys()].filter((k) => !used.has(k));
  if (unused.length > 0) throw new Error(`prometheus.yml no longer contains ${unused.join(', ')}`);
  return stringify(config);
}

/** The generated rule file with `for` replaced for the alerts in `forByAlert` (each must exist). */
export function overrideRuleFor(text: string, forByAlert: Readonly<Record<string, string>> = LIVE_FOR): string {
  const rules = parse(text) as { groups: { rules: { alert?: string; for?: string }[] }[] };
  const seen = new Set<string>();
  for (const rule of rules.groups.flatMap((g) => g.rules)) {
    if (rule.alert === undefined || !(rule.alert in forByAlert)) continue;
    rule.for = forByAlert[rule.alert];
    seen.add(rule.alert);
  }
  const missing = Object.keys(forByAlert).filter((a) => !seen.has(a));
  if (missing.length > 0) throw new Error(`rule file has no alert ${missing.join(', ')}`);
  return stringify(rules);
}

interface AmConfig {
  templates: string[];
  route: Record<string, unknown>;
  receivers: { name: string; webhook_configs?: { url: string }[] }[];
}

/** alertmanager.yml for the test: webhooks to `sinkBase` + the committed URL's path, fast grouping timers. */
export function overrideAlertmanagerConfig(text: string, sinkBase: string, templatesGlob: string): string {
  const config = parse(text) as AmConfig;
  config.templates = [templatesGlob];
  config.route = { ...config.route, group_wait: '0s', group_interval: '1s', repeat_interval: '1h' };
  let webhooks = 0;
  for (const receiver of config.receivers) {
    for (const hook of receiver.webhook_configs ?? []) {
      hook.url = new URL(new URL(hook.url).pathname, sinkBase).href;
      webhooks++;
    }
  }
  if (webhooks === 0) throw new Error('alertmanager.yml has no webhook receiver to point at the sink');
  return stringify(config);
}

/** A child process whose output is kept for failure messages. */
export interface Child {
  readonly process: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

export function startChild(bin: string, args: string[]): Child {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (c: Buffer) => {
    out = (out + c.toString('utf8')).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    process: child,
    output: () => out,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(force);
    },
  };
}

/** Waits for `url` to answer 2xx, failing with the child's output, at once if the child exits. */
export async function waitReady(child: Child, url: string, what: string, timeoutMs = 20_000): Promise<void> {
  let exited = false;
  try {
    await waitFor(
      async () => {
        if (child.process.exitCode !== null || child.process.signalCode !== null) exited = true;
        return exited || (await fetch(url)).ok;
      },
      timeoutMs,
      what,
    );
    if (exited) throw new Error(`${what} exited before it was ready`);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${what} output:\n${child.output()}`);
  }
}

/**
 * Starts `bin` on a free loopback port and waits until `readyPath` answers. A port found free can be taken again
 * before the child binds it (any outgoing connection of a parallel test may draw it as its ephemeral port), so a
 * child that exits with "address already in use" is started again on another port.
 */
export async function startOnFreePort(
  bin: string,
  args: (port: number) => string[],
  readyPath: string,
  what: string,
  attempts = 5,
): Promise<{ child: Child; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = startChild(bin, args(port));
    try {
      await waitReady(child, `http://127.0.0.1:${port}${readyPath}`, what);
      return { child, port };
    } catch (error) {
      await child.stop();
      if (attempt >= attempts || !/address already in use/.test(child.output())) throw error;
    }
  }
}

/** Prometheus with `configFile` and its TSDB in `storagePath`, on a free loopback port, once /-/ready answers. */
export function startPrometheus(
  bin: string,
  configFile: string,
  storagePath: string,
): Promise<{ child: Child; port: number }> {
  return startOnFreePort(
    bin,
    (port) => [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${storagePath}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    '/-/ready',
    'prometheus',
  );
}

export interface WebhookAlert {
  readonly status: string;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
}

/** One Alertmanager webhook message as the sink received it. */
export interface Notification {
  readonly at: number;
  readonly path: string;
  readonly receiver: string;
  readonly status: string;
  readonly alerts: readonly WebhookAlert[];
}

export interface Sink {
  readonly url: string;
  readonly notifications: Notification[];
  close(): Promise<void>;
}

/** The webhook receiver: records every Alertmanager message with its arrival time. */
export async function startSink(): Promise<Sink> {
  const notifications: Notification[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = Date.now();
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Omit<Notification, 'at' | 'path'>;
        notifications.push({
          at,
          path: req.url ?? '/',
          receiver: body.receiver,
          status: body.status,
          alerts: body.alerts,
        });
        res.writeHead(200).end('OK');
      } catch {
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('sink has no port');
  return {
    url: `http://127.0.0.1:${address.port}/`,
    notifications,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
