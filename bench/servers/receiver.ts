/**
 * Bench-only receiver entry: the product's own ReceiverServer (same listeners, routes, timeouts and store), plus
 * knobs the product does not expose:
 *   BENCH_METRICS=off       the monitor gets a no-op meter and no SDK is started, to measure what instrumentation
 *                           costs (everything else identical);
 *   BENCH_PRELOAD=N         registers N pending tasks in bulk through the store directly before listening
 *                           (ids `${BENCH_PRELOAD_PREFIX}${i}`), for the 1 M pending scale checks.
 * It also serves `process.memoryUsage()` on a third loopback port (`memoryPort`), for the RSS check. Everything else
 * comes from the server's own validated env config (STORE_URL, DELIVERY_TIMEOUT, …).
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createNoopMeter } from '@opentelemetry/api';
import { createStore } from '../../src/delivery/createStore.ts';
import { loadConfig } from '../../src/server/config.ts';
import { createLogger } from '../../src/server/logger.ts';
import { ReceiverServer } from '../../src/server/ReceiverServer.ts';
import { startTelemetry } from '../../src/server/telemetry.ts';
import { announce, exitOnSignal } from '../lib/announce.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const config = loadConfig(process.env);
const metricsOn = (process.env.BENCH_METRICS ?? 'on') === 'on';
const preload = Number(process.env.BENCH_PRELOAD ?? 0);
const preloadPrefix = process.env.BENCH_PRELOAD_PREFIX ?? 'pre-';

const store = await createStore(config.STORE_URL);
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

const telemetry = metricsOn ? startTelemetry(pkg.version) : undefined;
const server = new ReceiverServer({
  config,
  store,
  meter: telemetry?.meter ?? createNoopMeter(),
  scrape: telemetry ? telemetry.reader.scrape : async () => '',
  logger: createLogger(config.LOG_LEVEL),
});
const bound = await server.start();
// The first sweep refreshes the tracker's counts from the store, as after a restart with pending tasks.
await server.monitor.tracker.sweep();

const memoryServer = createServer((_req, res) => {
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(process.memoryUsage()));
});
await new Promise<void>((resolve) => memoryServer.listen(0, '127.0.0.1', resolve));

exitOnSignal(async () => {
  memoryServer.close();
  await server.stop();
  await telemetry?.shutdown();
});
announce({
  port: bound.public.port,
  managementPort: bound.management.port,
  memoryPort: (memoryServer.address() as AddressInfo).port,
  metrics: metricsOn ? 'on' : 'off',
  preloaded: preload,
  preloadMs: Math.round(preloadMs),
  pending: server.monitor.tracker.counts.pending,
});
