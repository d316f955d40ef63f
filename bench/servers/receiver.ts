/**
 * Bench-only receiver entry: the same composition as ReceiverServer (CallbackMonitor + Koa + a store + the NodeSDK
 * Prometheus reader, public and management listeners with the configured timeouts), plus two knobs the product
 * does not expose:
 *   BENCH_METRICS=off       CallbackMonitor `metrics: false` (and no SDK), to measure what instrumentation costs;
 *   BENCH_METRICS=sdk-only  the NodeSDK is started but CallbackMonitor gets `metrics: false` (diagnostic);
 *   BENCH_STORE=group-commit  wraps the SQLite store in the group-commit prototype (bench/experiments);
 *   BENCH_PRELOAD=N         registers N pending tasks in bulk through the store directly before listening
 *                           (ids `${BENCH_PRELOAD_PREFIX}${i}`), for the 1 M pending scale checks.
 * Everything else comes from the server's own validated env config (STORE_URL, DELIVERY_TIMEOUT, …).
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createNoopMeter, type Meter } from '@opentelemetry/api';
import Koa from 'koa';
import { createStore } from '../../src/delivery/createStore.ts';
import { CallbackMonitor } from '../../src/plugin/CallbackMonitor.ts';
import { loadConfig } from '../../src/server/config.ts';
import { taskApi } from '../../src/server/taskApi.ts';
import { PROMETHEUS_CONTENT_TYPE, startTelemetry } from '../../src/server/telemetry.ts';
import { GroupCommitStore } from '../experiments/GroupCommitStore.ts';
import { announce, exitOnSignal } from '../lib/announce.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const config = loadConfig(process.env);
const mode = process.env.BENCH_METRICS ?? 'on';
// `no-histograms` / `no-counters`: diagnostics that hand the monitor a meter whose histograms (or counters and
// gauges) are no-ops, to see which instruments the recording cost comes from.
const metricsOn = mode === 'on' || mode === 'no-histograms' || mode === 'no-counters';
const preload = Number(process.env.BENCH_PRELOAD ?? 0);
const preloadPrefix = process.env.BENCH_PRELOAD_PREFIX ?? 'pre-';

const realStore = await createStore(config.STORE_URL);
// BENCH_STORE=group-commit: the prototype in bench/experiments (SQLite only), to measure the recommendation.
const store =
  process.env.BENCH_STORE === 'group-commit' && config.STORE_URL.startsWith('sqlite:')
    ? new GroupCommitStore(realStore, config.STORE_URL.slice('sqlite:'.length))
    : realStore;

let preloadMs = 0;
if (preload > 0) {
  const started = performance.now();
  const now = Date.now();
  const deadline = now + config.DELIVERY_TIMEOUT * 1000;
  const chunk = 10_000;
  for (let i = 0; i < preload; i += chunk) {
    const ids: string[] = [];
    for (let j = i; j < Math.min(preload, i + chunk); j++) ids.push(`${preloadPrefix}${j}`);
    await store.register(ids, now, deadline);
  }
  preloadMs = performance.now() - started;
}

// `sdk-only`: the NodeSDK runs (as in the product) but the monitor records nothing, to split SDK cost from
// instrument cost.
const telemetry = mode === 'off' ? undefined : startTelemetry(pkg.version);
function diagnosticMeter(meter: Meter): Meter {
  const noop = createNoopMeter();
  if (mode === 'no-histograms') {
    return Object.assign(Object.create(meter) as Meter, {
      createHistogram: noop.createHistogram.bind(noop),
    });
  }
  if (mode === 'no-counters') {
    return Object.assign(Object.create(meter) as Meter, {
      createCounter: noop.createCounter.bind(noop),
      createGauge: noop.createGauge.bind(noop),
    });
  }
  return meter;
}
const monitor = new CallbackMonitor({
  store,
  metrics: metricsOn,
  ...(telemetry && metricsOn ? { meter: diagnosticMeter(telemetry.meter) } : {}),
  prefix: config.CALLBACK_PATH,
  deliveryTimeoutSeconds: config.DELIVERY_TIMEOUT,
});
// The first sweep refreshes the tracker's counts from the store, as after a restart with pending tasks.
monitor.start();
await monitor.tracker.sweep();

function httpServer(app: Koa): Server {
  return createServer(
    {
      headersTimeout: config.HEADERS_TIMEOUT_MS,
      requestTimeout: config.REQUEST_TIMEOUT_MS,
      keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
      connectionsCheckingInterval: Math.min(1000, config.HEADERS_TIMEOUT_MS),
    },
    app.callback(),
  );
}

const errors: Koa.Middleware = async (ctx, next) => {
  try {
    await next();
  } catch {
    ctx.status = 503;
    ctx.body = { error: 'unavailable' };
  }
};

const publicApp = new Koa();
publicApp.silent = true;
publicApp.use(errors);
publicApp.use(monitor.middleware());

const managementApp = new Koa();
managementApp.silent = true;
managementApp.use(errors);
managementApp.use(async (ctx, next) => {
  if (ctx.path !== '/metrics') return next();
  ctx.type = PROMETHEUS_CONTENT_TYPE;
  ctx.body = telemetry ? await telemetry.reader.scrape() : '';
});
// Bench-only: where the resident memory is (V8 heap, external, ArrayBuffers), for the RSS check.
managementApp.use(async (ctx, next) => {
  if (ctx.path !== '/bench/memory') return next();
  ctx.body = process.memoryUsage();
});
const tasks = taskApi(monitor, undefined);
managementApp.use(tasks.routes());
managementApp.use(tasks.allowedMethods());

const listen = (server: Server, port: number) =>
  new Promise<AddressInfo>((resolve) =>
    server.listen(port, '127.0.0.1', () => resolve(server.address() as AddressInfo)),
  );
const publicServer = httpServer(publicApp);
const managementServer = httpServer(managementApp);
const pub = await listen(publicServer, config.PORT);
const mgmt = await listen(managementServer, config.MANAGEMENT_PORT);

exitOnSignal(async () => {
  await monitor.close();
  await store.close();
  await telemetry?.shutdown();
});
announce({
  port: pub.port,
  managementPort: mgmt.port,
  metrics: mode,
  preloaded: preload,
  preloadMs: Math.round(preloadMs),
  pending: monitor.tracker.counts.pending,
});
