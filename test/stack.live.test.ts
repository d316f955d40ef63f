/**
 * Live, on loopback: the real receiver (`node src/server/cli.ts`), Prometheus, the blackbox exporter and
 * Alertmanager, started from the committed configuration files with only addresses, intervals and three `for`
 * durations overridden (test/support/stack.ts documents exactly what), and a webhook sink standing in for the
 * `alert-sink` of docker compose. Three alerts are driven through their whole life: CaptchaCallbackHighErrorRate,
 * CaptchaCallbackLowDeliveryRate and CaptchaCallbackEndpointDown must reach the sink as firing, then as resolved,
 * routed to the `critical` receiver with the rule's labels. The always-firing CaptchaMonitorWatchdog must reach the
 * `heartbeat` receiver, and only it. The seconds from cause to notification are printed.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB, PROM } from '../packages/koa/src/metrics/contract.ts';
import { PROMETHEUS_RULES_PATH } from '../scripts/generators/alerting/renderPrometheusRules.ts';
import { WATCHDOG } from '../src/alerting/alertTable.ts';
import { requireBinary } from './support/binaries.ts';
import { waitFor } from './support/ports.ts';
import { type RunningServer, startServer } from './support/server.ts';
import {
  type Child,
  type Notification,
  overrideAlertmanagerConfig,
  overridePrometheusConfig,
  overrideRuleFor,
  type Sink,
  startOnFreePort,
  startPrometheus,
  startSink,
  type WebhookAlert,
} from './support/stack.ts';

const ROOT = resolve(import.meta.dirname, '..');
/** How long one notification may take; with 1 s intervals it takes 1 to 3 s. */
const NOTIFY_TIMEOUT_MS = 20_000;

let tmp = '';
let receiver: RunningServer | undefined;
let sink: Sink;
const children: Child[] = [];
/** The receiver's ports: chosen by the receiver itself on first start (0), kept for the restart. */
let receiverPorts = { pub: 0, mgmt: 0 };
let promUrl = '';
const receiverEnv = () => ({
  PORT: String(receiverPorts.pub),
  MANAGEMENT_PORT: String(receiverPorts.mgmt),
  STORE_URL: 'memory:',
  // Registered tasks are missed one second after registration, so the delivery alert can be driven in seconds.
  DELIVERY_TIMEOUT: '1',
  // test/support/server.ts waits for the info-level "listening" line.
  LOG_LEVEL: 'info',
});
/** Cause → notification, per alert and transition, printed at the end. */
const measured: { alert: string; transition: string; cause: string; seconds: number }[] = [];

async function promQuery(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; data: { result: never[] } };
  if (body.status !== 'success') throw new Error(`query failed: ${expr}`);
  return body.data.result;
}

/** Runs `requests` with at most `concurrency` in flight; every answer's status is counted. */
async function burst(requests: (() => Promise<Response>)[], concurrency = 16): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests.length) {
        const res = await requests[next++]!();
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      }
    }),
  );
  return statuses;
}

const callback = (id: string) => () => fetch(`http://127.0.0.1:${receiverPorts.pub}/callback?id=${id}&code=OK-${id}`);
const refused = () => () =>
  fetch(`http://127.0.0.1:${receiverPorts.pub}/callback`, {
    method: 'POST',
    headers: { 'content-type': 'text/xml' },
    body: '<callback/>',
  });
async function registerTasks(ids: string[]): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${receiverPorts.mgmt}/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(ids.map((id) => ({ id }))),
  });
  expect(res.status, await res.text()).toBeLessThan(300);
}
async function health(): Promise<{ delivery: { delivered: number; missed: number } }> {
  return (await fetch(`http://127.0.0.1:${receiverPorts.pub}/health/callbacks`)).json() as never;
}

/** The first notification at or after `since` that carries `alertname` in `status`. */
async function notification(
  alertname: string,
  status: 'firing' | 'resolved',
  since: number,
  match: (a: WebhookAlert) => boolean = () => true,
  timeoutMs = NOTIFY_TIMEOUT_MS,
): Promise<{ message: Notification; alert: WebhookAlert }> {
  let found: { message: Notification; alert: WebhookAlert } | undefined;
  try {
    await waitFor(
      () => {
        for (const message of sink.notifications) {
          if (message.at < since) continue;
          const alert = message.alerts.find((a) => a.labels.alertname === alertname && a.status === status && match(a));
          if (alert) {
            found = { message, alert };
            return true;
          }
        }
        return false;
      },
      timeoutMs,
      `${alertname} ${status}`,
    );
  } catch (error) {
    const seen = sink.notifications.map((n) => `${n.status}: ${n.alerts.map((a) => a.labels.alertname).join(',')}`);
    throw new Error(`${(error as Error).message}; notifications so far:\n  ${seen.join('\n  ')}`);
  }
  return found!;
}

function record(alert: string, transition: string, cause: string, causeAt: number, at: number): void {
  measured.push({ alert, transition, cause, seconds: Math.round((at - causeAt) / 100) / 10 });
}

/** Routed to the critical webhook with the rule's own labels. */
function expectCritical(n: { message: Notification; alert: WebhookAlert }, job: string): void {
  expect(n.message.receiver).toBe('critical');
  expect(n.message.path).toBe('/critical');
  expect(n.alert.labels.severity).toBe('critical');
  expect(n.alert.labels.job).toBe(job);
  expect(n.alert.annotations.runbook_url).toMatch(/docs\/runbook\.md#captchacallback/);
  expect(n.alert.annotations.summary).toBeTruthy();
}

/**
 * CaptchaCallbackEndpointDown's `status` notification for `job` (the probe or the scrape) at or after `since`, the
 * cause: recorded as `cause`, expected routed to the critical receiver with that job.
 */
async function endpointDown(
  job: string,
  status: 'firing' | 'resolved',
  since: number,
  cause: string,
): Promise<{ message: Notification; alert: WebhookAlert }> {
  const n = await notification('CaptchaCallbackEndpointDown', status, since, (a) => a.labels.job === job);
  record('CaptchaCallbackEndpointDown', status, cause, since, n.message.at);
  expectCritical(n, job);
  return n;
}

beforeAll(async () => {
  const [prometheus, alertmanager, blackbox] = [
    requireBinary('prometheus'),
    requireBinary('prometheus-alertmanager'),
    requireBinary('prometheus-blackbox-exporter'),
  ];
  tmp = mkdtempSync(join(tmpdir(), 'stack-live-'));
  sink = await startSink();
  receiver = await startServer(receiverEnv());
  receiverPorts = { pub: receiver.publicPort, mgmt: receiver.managementPort };

  writeFileSync(
    join(tmp, 'alertmanager.yml'),
    overrideAlertmanagerConfig(
      readFileSync(resolve(ROOT, 'alertmanager/alertmanager.yml'), 'utf8'),
      sink.url,
      resolve(ROOT, 'alertmanager/templates/*.tmpl'),
    ),
  );
  const bb = await startOnFreePort(
    blackbox,
    (port) => [`--config.file=${resolve(ROOT, 'blackbox/blackbox.yml')}`, `--web.listen-address=127.0.0.1:${port}`],
    '/metrics',
    'blackbox exporter',
  );
  children.push(bb.child);
  const am = await startOnFreePort(
    alertmanager,
    (port) => [
      `--config.file=${join(tmp, 'alertmanager.yml')}`,
      `--storage.path=${join(tmp, 'am')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--cluster.listen-address=',
    ],
    '/-/ready',
    'alertmanager',
  );
  children.push(am.child);

  const rulesFile = join(tmp, 'captcha-callback.rules.yml');
  writeFileSync(rulesFile, overrideRuleFor(readFileSync(resolve(ROOT, PROMETHEUS_RULES_PATH), 'utf8')));
  writeFileSync(
    join(tmp, 'prometheus.yml'),
    overridePrometheusConfig(
      readFileSync(resolve(ROOT, 'prometheus/prometheus.yml'), 'utf8'),
      {
        'receiver:9464': `127.0.0.1:${receiverPorts.mgmt}`,
        'http://receiver:3000/healthz': `http://127.0.0.1:${receiverPorts.pub}/healthz`,
        'blackbox:9115': `127.0.0.1:${bb.port}`,
        'alertmanager:9093': `127.0.0.1:${am.port}`,
      },
      rulesFile,
    ),
  );
  const prom = await startPrometheus(prometheus, join(tmp, 'prometheus.yml'), join(tmp, 'prom'));
  children.push(prom.child);
  promUrl = `http://127.0.0.1:${prom.port}`;
  await waitFor(
    async () =>
      (await promQuery(`up{job="${JOB.receiver}"} == 1`)).length === 1 &&
      (await promQuery(`probe_success{job="${JOB.probe}"} == 1`)).length === 1,
    20_000,
    'first successful scrape and probe',
  );

  // Warm-up: create every counter the alerts read, so the bursts below are increments Prometheus can see
  // (increase() cannot see the value a series is born with).
  await registerTasks(['warm-delivered', 'warm-missed']);
  expect((await callback('warm-delivered')()).status).toBe(200);
  expect((await refused()()).status).toBe(415);
  await waitFor(
    async () =>
      (await promQuery(`${PROM.tasksMissedTotal} >= 1`)).length === 1 &&
      (await promQuery(`sum(${PROM.callbackErrorsTotal}) >= 1`)).length === 1,
    15_000,
    'warm-up series scraped',
  );
  // One more scrape, so each series has a sample before the bursts.
  await new Promise((r) => setTimeout(r, 1_500));
}, 90_000);

afterAll(async () => {
  await receiver?.kill();
  for (const child of children.reverse()) await child.stop();
  await sink?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (measured.length > 0) {
    console.log(
      `\nlive stack: cause → webhook notification (scrape/eval 1 s, group_wait 0 s)\n${measured
        .map(
          (m) => `  ${m.alert.padEnd(32)} ${m.transition.padEnd(9)} ${String(m.seconds).padStart(5)} s  (${m.cause})`,
        )
        .join('\n')}\n  every notification the sink got:\n${sink.notifications
        .map(
          (n) => `    ${n.path} ${n.status}: ${n.alerts.map((a) => `${a.labels.alertname} (${a.status})`).join(', ')}`,
        )
        .join('\n')}\n`,
    );
  }
}, 30_000);

describe('live stack: receiver → Prometheus → Alertmanager → webhook', () => {
  it('CaptchaCallbackHighErrorRate fires on 20 % refused callbacks and resolves when they are diluted', {
    timeout: 60_000,
  }, async () => {
    const start = Date.now();
    // 300 requests, every fifth a POST with an unsupported content type (415, unsupported_media_type).
    const statuses = await burst(Array.from({ length: 300 }, (_, i) => (i % 5 === 0 ? refused() : callback(`e-${i}`))));
    expect(statuses.get(415)).toBe(60);
    const firing = await notification('CaptchaCallbackHighErrorRate', 'firing', start);
    record('CaptchaCallbackHighErrorRate', 'firing', 'first refused request', start, firing.message.at);
    expectCritical(firing, JOB.receiver);
    expect(firing.alert.annotations.description).toMatch(/% of the callback requests to captcha-callback failed/);

    // The errors stay in the 5-minute window; 3000 good callbacks bring the ratio under 5 % (61 / 3302).
    const dilute = Date.now();
    await burst(Array.from({ length: 3000 }, (_, i) => callback(`ok-${i}`)));
    const resolved = await notification('CaptchaCallbackHighErrorRate', 'resolved', dilute);
    record('CaptchaCallbackHighErrorRate', 'resolved', 'first diluting request', dilute, resolved.message.at);
    expectCritical(resolved, JOB.receiver);
    expect(resolved.message.status).toBe('resolved');
  });

  it('CaptchaCallbackLowDeliveryRate fires when registered tasks miss their deadline and resolves on deliveries', {
    timeout: 60_000,
  }, async () => {
    const registered = Date.now();
    await registerTasks(Array.from({ length: 40 }, (_, i) => `lost-${i}`));
    // The deadline is 1 s: wait until the receiver has marked all 40 missed (the cause).
    await waitFor(async () => (await health()).delivery.missed >= 41, 10_000, '40 tasks missed');
    const missedAt = Date.now();
    const firing = await notification('CaptchaCallbackLowDeliveryRate', 'firing', registered);
    record('CaptchaCallbackLowDeliveryRate', 'firing', 'tasks marked missed', missedAt, firing.message.at);
    expectCritical(firing, JOB.receiver);

    // 1000 tasks registered and delivered, 50 at a time (each batch well within its 1 s deadline): 1001 of 1042
    // delivered in the 30-minute window is 96 %.
    const deliver = Date.now();
    for (let batch = 0; batch < 20; batch++) {
      const ids = Array.from({ length: 50 }, (_, i) => `ok-task-${batch}-${i}`);
      await registerTasks(ids);
      const statuses = await burst(ids.map((id) => callback(id)));
      expect(statuses.get(200)).toBe(50);
    }
    expect((await health()).delivery.delivered).toBeGreaterThanOrEqual(1001);
    const resolved = await notification('CaptchaCallbackLowDeliveryRate', 'resolved', deliver);
    record('CaptchaCallbackLowDeliveryRate', 'resolved', 'first delivery', deliver, resolved.message.at);
    expectCritical(resolved, JOB.receiver);
  });

  it('CaptchaCallbackEndpointDown fires when the receiver is killed and resolves when it is back', {
    timeout: 60_000,
  }, async () => {
    const killed = Date.now();
    await receiver!.kill();
    // The outside probe (blackbox → /healthz) and the scrape of the management port both fail.
    const probe = await endpointDown(JOB.probe, 'firing', killed, 'SIGKILL (probe fails)');
    expect(probe.alert.labels.instance).toBe(`http://127.0.0.1:${receiverPorts.pub}/healthz`);
    await endpointDown(JOB.receiver, 'firing', killed, 'SIGKILL (scrape fails)');

    receiver = await startServer(receiverEnv());
    const back = Date.now();
    await endpointDown(JOB.probe, 'resolved', back, 'restart (probe ok)');
    await endpointDown(JOB.receiver, 'resolved', back, 'restart (scrape ok)');
  });

  // Last, so its wait overlaps the others: Prometheus evaluates the watchdog at start-up, before it has found the
  // Alertmanager, and drops that first send; it re-sends a firing alert every --rules.alert.resend-delay (1 min by
  // default, kept here as deployed). So the first heartbeat arrives within about a minute of Prometheus's start.
  it('CaptchaMonitorWatchdog reaches the heartbeat receiver, and no receiver of people', {
    timeout: 100_000,
  }, async () => {
    const beat = await notification(WATCHDOG, 'firing', 0, () => true, 90_000);
    expect(beat.message.receiver).toBe('heartbeat');
    expect(beat.message.path).toBe('/heartbeat');
    expect(beat.alert.labels.severity).toBe('none');
    expect(beat.alert.annotations.runbook_url).toMatch(/docs\/runbook\.md#captchamonitorwatchdog$/);
    const elsewhere = sink.notifications.filter(
      (m) => m.path !== '/heartbeat' && m.alerts.some((a) => a.labels.alertname === WATCHDOG),
    );
    expect(elsewhere).toEqual([]);
  });
});
