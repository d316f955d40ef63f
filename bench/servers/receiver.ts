/**
 * Bench-only receiver entry: the product's own ReceiverServer (same listeners, routes, timeouts and store) with one
 * knob the product does not expose:
 *   BENCH_METRICS=off  the monitor gets a no-op meter and no SDK is started, to measure what instrumentation costs
 *                      (everything else identical).
 * Everything else comes from the server's own validated env config (STORE_URL, DELIVERY_TIMEOUT, …).
 */
import { readFileSync } from 'node:fs';
import { createNoopMeter } from '@opentelemetry/api';
import { loadConfig } from '../../src/server/config.ts';
import { createStore } from '../../src/server/createStore.ts';
import { createLogger } from '../../src/server/logger.ts';
import { ReceiverServer } from '../../src/server/ReceiverServer.ts';
import { startTelemetry } from '../../src/server/telemetry.ts';
import { announce, exitOnSignal } from '../lib/announce.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const config = loadConfig(process.env);
const metricsOn = (process.env.BENCH_METRICS ?? 'on') === 'on';

const store = await createStore(config.STORE_URL);
const telemetry = metricsOn ? startTelemetry(pkg.version) : undefined;
const server = new ReceiverServer({
  config,
  store,
  meter: telemetry?.meter ?? createNoopMeter(),
  scrape: telemetry ? telemetry.reader.scrape : async () => '',
  logger: createLogger(config.LOG_LEVEL),
});
const bound = await server.start();

exitOnSignal(async () => {
  await server.stop();
  await telemetry?.shutdown();
});
announce({ port: bound.public.port, managementPort: bound.management.port, metrics: metricsOn ? 'on' : 'off' });
