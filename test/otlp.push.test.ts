/**
 * OTEL_METRICS_EXPORTER on the real CLI: `otlp` pushes the metric contract to a collector over OTLP/HTTP (protobuf by
 * default, JSON on request), `prometheus,otlp` serves /metrics and pushes, `none` and the default push nothing, the
 * last counts are pushed on SIGTERM, a failing push is logged, and bad values stop the start naming the variable.
 * The collector is a node:http server on loopback that decodes each request with the opentelemetry-proto definitions
 * (protobufjs); nothing here decodes protobuf by hand.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { afterEach, describe, expect, it } from 'vitest';
import { listen } from './support/http.ts';
import { freePort, waitFor } from './support/ports.ts';
import { parseMetrics, type RunningServer, runCli, SERVE_ENV, scrape, startServer } from './support/server.ts';

/**
 * opentelemetry-proto v1.11.0 (common, resource, metrics and the metrics collector service), vendored at its upstream
 * paths without the comments and the `option` lines, which protobufjs does not need.
 */
const OTLP_PROTO_DIR = fileURLToPath(new URL('./support/third_party/opentelemetry-proto/', import.meta.url));
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => join(OTLP_PROTO_DIR, target);
root.loadSync('opentelemetry/proto/collector/metrics/v1/metrics_service.proto');
root.resolveAll();
const ExportMetricsServiceRequest = root.lookupType(
  'opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest',
);
const ExportMetricsServiceResponse = root.lookupType(
  'opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceResponse',
);

/** The decoded request in protobufjs's object form (camelCase fields, 64-bit integers as strings). */
interface KeyValue {
  key: string;
  value?: { stringValue?: string; intValue?: string; boolValue?: boolean; doubleValue?: number };
}
interface NumberDataPoint {
  attributes?: KeyValue[];
  asInt?: string;
  asDouble?: number;
}
interface Metric {
  name: string;
  sum?: { dataPoints?: NumberDataPoint[]; isMonotonic?: boolean; aggregationTemporality?: string };
  gauge?: { dataPoints?: NumberDataPoint[] };
  histogram?: { dataPoints?: unknown[] };
}
interface ExportRequest {
  resourceMetrics?: {
    resource?: { attributes?: KeyValue[] };
    scopeMetrics?: { scope?: { name?: string }; metrics?: Metric[] }[];
  }[];
}

interface Push {
  readonly path: string;
  readonly contentType: string;
  readonly headers: IncomingHttpHeaders;
  readonly request: ExportRequest;
}

const TO_OBJECT = { longs: String, enums: String, defaults: false, arrays: true } as const;

/**
 * A loopback OTLP/HTTP collector: decodes every POST as an ExportMetricsServiceRequest (binary protobuf, or OTLP/JSON
 * read through the same message type) and answers with an empty ExportMetricsServiceResponse.
 */
async function startCollector(): Promise<{ url: string; pushes: Push[]; close(): Promise<void> }> {
  const pushes: Push[] = [];
  const listening = await listen((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const contentType = req.headers['content-type'] ?? '';
      const json = contentType.startsWith('application/json');
      const message = json
        ? ExportMetricsServiceRequest.fromObject(JSON.parse(body.toString('utf8')))
        : ExportMetricsServiceRequest.decode(body);
      pushes.push({
        path: req.url ?? '',
        contentType,
        headers: req.headers,
        request: ExportMetricsServiceRequest.toObject(message, TO_OBJECT) as ExportRequest,
      });
      const answer = ExportMetricsServiceResponse.create({});
      if (json) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(ExportMetricsServiceResponse.toObject(answer)));
      } else {
        res.writeHead(200, { 'content-type': 'application/x-protobuf' });
        res.end(Buffer.from(ExportMetricsServiceResponse.encode(answer).finish()));
      }
    });
  });
  return { url: listening.url, pushes, close: listening.close };
}

function metricsOf(request: ExportRequest): Metric[] {
  return (request.resourceMetrics ?? []).flatMap((rm) => (rm.scopeMetrics ?? []).flatMap((sm) => sm.metrics ?? []));
}

/** The total of a counter in one push (its data points summed over their attributes), or undefined if absent. */
function counterTotal(push: Push, name: string): number | undefined {
  const metric = metricsOf(push.request).find((m) => m.name === name);
  if (metric?.sum === undefined) return undefined;
  return (metric.sum.dataPoints ?? []).reduce((n, p) => n + Number(p.asInt ?? p.asDouble ?? 0), 0);
}

function resourceAttribute(push: Push, key: string): string | undefined {
  const attrs = push.request.resourceMetrics?.[0]?.resource?.attributes ?? [];
  return attrs.find((a) => a.key === key)?.value?.stringValue;
}

async function sendCallback(server: RunningServer, id: string): Promise<void> {
  const res = await fetch(`${server.publicUrl}/callback?id=${id}&code=03AGdBq24PBCbw-${id}`);
  expect(res.status).toBe(200);
  await res.arrayBuffer();
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function collector() {
  const c = await startCollector();
  cleanups.push(() => c.close());
  return c;
}

async function server(env: Record<string, string>): Promise<RunningServer> {
  const s = await startServer(env, 30_000);
  cleanups.push(() => s.stop());
  return s;
}

const PUSH_WAIT_MS = 30_000;

/** A collector, and a server with `env` pushing to it (OTEL_EXPORTER_OTLP_ENDPOINT) every `intervalMs`. */
async function pushingServer(env: Record<string, string>, intervalMs: number) {
  const c = await collector();
  const s = await server({
    OTEL_EXPORTER_OTLP_ENDPOINT: c.url,
    OTEL_METRIC_EXPORT_INTERVAL: String(intervalMs),
    ...env,
  });
  return { c, s };
}

/** Waits for a push whose captcha.callbacks total is `n`, and returns the first such. */
async function pushCounting(c: { pushes: Push[] }, n: number): Promise<Push> {
  const counts = (p: Push) => counterTotal(p, 'captcha.callbacks') === n;
  await waitFor(() => c.pushes.some(counts), PUSH_WAIT_MS, 'the count');
  return c.pushes.find(counts)!;
}

/** /metrics on the management listener is off, and its 404 says why. */
async function expectMetricsOff(s: RunningServer): Promise<void> {
  const res = await fetch(`${s.managementUrl}/metrics`);
  expect(res.status).toBe(404);
  expect(((await res.json()) as { reason: string }).reason).toContain('OTEL_METRICS_EXPORTER');
}

const scrapedCallbacks = async (s: RunningServer) =>
  parseMetrics(await scrape(s)).get('captcha_callbacks_total{outcome="solved",format="query"}');

describe('OTEL_METRICS_EXPORTER=otlp', () => {
  it('pushes captcha.callbacks over OTLP/HTTP protobuf to OTEL_EXPORTER_OTLP_ENDPOINT/v1/metrics, with the resource, the headers, and /metrics off', async () => {
    const { c, s } = await pushingServer(
      { OTEL_METRICS_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-token=t0k%20en,x-tenant=ccm' },
      250,
    );
    // Pushes arrive on the interval before any callback: the counter is there at 0 (or not yet observed).
    await waitFor(() => c.pushes.length > 0, PUSH_WAIT_MS, 'a first push');
    expect(counterTotal(c.pushes[0]!, 'captcha.callbacks') ?? 0).toBe(0);

    await sendCallback(s, '71234');
    const push = await pushCounting(c, 1);
    expect(push.path).toBe('/v1/metrics');
    expect(push.contentType).toBe('application/x-protobuf');
    expect(push.headers['x-collector-token']).toBe('t0k en');
    expect(push.headers['x-tenant']).toBe('ccm');
    expect(resourceAttribute(push, 'service.name')).toBe('captcha-callback-monitor');
    const metric = metricsOf(push.request).find((m) => m.name === 'captcha.callbacks')!;
    expect(metric.sum?.isMonotonic).toBe(true);
    expect(metric.sum?.aggregationTemporality).toBe('AGGREGATION_TEMPORALITY_CUMULATIVE');
    const point = metric.sum?.dataPoints?.find((p) => Number(p.asInt ?? p.asDouble) === 1);
    const attribute = (key: string) => point?.attributes?.find((a) => a.key === key)?.value?.stringValue;
    expect([attribute('outcome'), attribute('format')]).toEqual(['solved', 'query']);
    // The scope is the receiver's meter; the rest of the contract travels with it.
    expect(push.request.resourceMetrics?.[0]?.scopeMetrics?.map((sm) => sm.scope?.name)).toContain(
      'captcha-callback-monitor',
    );
    expect(metricsOf(push.request).map((m) => m.name)).toContain('captcha.callback.duration');

    await expectMetricsOff(s);
    expect(await s.stop()).toBe(0);
  });

  it('prometheus,otlp serves /metrics and pushes OTLP/JSON to OTEL_EXPORTER_OTLP_METRICS_ENDPOINT as given, under OTEL_SERVICE_NAME', async () => {
    const c = await collector();
    const s = await server({
      OTEL_METRICS_EXPORTER: 'prometheus,otlp',
      OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `${c.url}/ingest/otlp-metrics`,
      // The general endpoint loses to the signal-specific one; a closed port would only ever see failures.
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await freePort()}`,
      OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_SERVICE_NAME: 'ccm-otlp-json',
      OTEL_METRIC_EXPORT_INTERVAL: '250',
    });
    await sendCallback(s, '81234');
    await sendCallback(s, '81235');
    expect(await scrapedCallbacks(s)).toBe(2);
    const push = await pushCounting(c, 2);
    expect(push.path).toBe('/ingest/otlp-metrics');
    expect(push.contentType).toMatch(/^application\/json/);
    expect(resourceAttribute(push, 'service.name')).toBe('ccm-otlp-json');
    expect(await s.stop()).toBe(0);
  });

  it('pushes the last counts on SIGTERM, long before the next interval', async () => {
    const { c, s } = await pushingServer({ OTEL_METRICS_EXPORTER: 'otlp' }, 3_600_000);
    await sendCallback(s, '91234');
    expect(c.pushes).toHaveLength(0); // the hour has not passed: only the shutdown flush can push
    expect(await s.stop()).toBe(0);
    expect(c.pushes.map((p) => counterTotal(p, 'captcha.callbacks'))).toEqual([1]);
  });

  it('logs a push the collector cannot take, without the header values, and stops without waiting out its retries', async () => {
    const closed = await freePort();
    const s = await server({
      OTEL_METRICS_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${closed}`,
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20sekret-0123456789',
      OTEL_METRIC_EXPORT_INTERVAL: '250',
    });
    await sendCallback(s, '10101');
    await waitFor(
      () =>
        s
          .logs()
          .split('\n')
          .some((l) => l.includes('"source":"opentelemetry"') && l.includes('"level":50')),
      PUSH_WAIT_MS,
      'an error line from the exporter',
    );
    expect(s.logs()).not.toContain('sekret-0123456789');
    // The stop gives the final push its OTEL_METRIC_EXPORT_TIMEOUT and a second, not the exporter's retry budget.
    expect(await s.stop()).toBe(0);
    expect(s.logs()).toContain('metrics shutdown: the collector did not take the last push in time');
  });
});

describe('no OTLP push', () => {
  it('by default: /metrics as always, nothing pushed even with an endpoint set (not even at shutdown)', async () => {
    const { c, s } = await pushingServer({}, 100);
    await sendCallback(s, '20202');
    expect(await scrapedCallbacks(s)).toBe(1);
    expect(await s.stop()).toBe(0);
    expect(c.pushes).toHaveLength(0);
  });

  it('OTEL_METRICS_EXPORTER=none: no series on /metrics, nothing pushed', async () => {
    const { c, s } = await pushingServer({ OTEL_METRICS_EXPORTER: 'none' }, 100);
    await sendCallback(s, '30303');
    await expectMetricsOff(s);
    expect(await s.stop()).toBe(0);
    expect(c.pushes).toHaveLength(0);
  });
});

describe('bad metric-export values stop the start with one line naming the variable', () => {
  const otlp = { OTEL_METRICS_EXPORTER: 'otlp' };
  it.each<[string, Record<string, string>, RegExp]>([
    [
      'an unknown exporter',
      { OTEL_METRICS_EXPORTER: 'bogus' },
      /OTEL_METRICS_EXPORTER=bogus: unknown exporter "bogus"/,
    ],
    [
      'console (stdout is the log)',
      { OTEL_METRICS_EXPORTER: 'prometheus,console' },
      /OTEL_METRICS_EXPORTER=.*"console"/,
    ],
    ['none with another exporter', { OTEL_METRICS_EXPORTER: 'none,otlp' }, /OTEL_METRICS_EXPORTER=none,otlp: "none"/],
    [
      'grpc',
      { ...otlp, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' },
      /OTEL_EXPORTER_OTLP_PROTOCOL=grpc: gRPC is not supported/,
    ],
    [
      'an unknown protocol',
      { ...otlp, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/xml' },
      /OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http\/xml: unknown OTLP protocol/,
    ],
    [
      'an endpoint without a scheme',
      { ...otlp, OTEL_EXPORTER_OTLP_ENDPOINT: 'otel.example:4318' },
      /OTEL_EXPORTER_OTLP_ENDPOINT: /,
    ],
    [
      'an interval that is no number',
      { ...otlp, OTEL_METRIC_EXPORT_INTERVAL: '10s' },
      /OTEL_METRIC_EXPORT_INTERVAL=10s: /,
    ],
    [
      'a timeout above the interval',
      { ...otlp, OTEL_METRIC_EXPORT_INTERVAL: '1000', OTEL_METRIC_EXPORT_TIMEOUT: '5000' },
      /OTEL_METRIC_EXPORT_TIMEOUT=5000: must not exceed OTEL_METRIC_EXPORT_INTERVAL/,
    ],
    [
      'a header entry without =, its value not shown',
      { ...otlp, OTEL_EXPORTER_OTLP_HEADERS: 'x-a=1,Authorization Bearer sekret-4567' },
      /OTEL_EXPORTER_OTLP_HEADERS: entry 2 of 2 is not key=value/,
    ],
  ])('%s', async (_what, env, message) => {
    const { code, stderr } = await runCli([], { ...SERVE_ENV, ...env }, { timeoutMs: 30_000 });
    expect(code, stderr).toBe(2); // a configuration error, like every other one (runCli rejects a run it has to kill)
    const lines = stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines, stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^captcha-callback-monitor: /);
    expect(lines[0]).toMatch(message);
    expect(stderr).not.toContain('sekret');
    expect(stderr).not.toContain('otel.example');
  });

  it('the OTLP variables are not read while otlp is off', async () => {
    const s = await server({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_METRIC_EXPORT_INTERVAL: 'soon' });
    expect(parseMetrics(await scrape(s)).has('captcha_tasks_pending')).toBe(true);
  });
});
