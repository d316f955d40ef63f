/**
 * The receiver in the test's own process: a CallbackMonitor (memory store, started) served by
 * `monitor.requestListener()` from a plain node:http server on an ephemeral loopback port, which is how the CLI's
 * public listener serves it (src/server/ReceiverServer.ts), with its metrics rendered by the CLI's own Prometheus
 * reader (src/server/telemetry.ts). What the CLI adds around it (configuration from the environment, the management
 * listener and its task API, socket timeouts, logs) is not here: tests of those start the CLI (test/support/server.ts).
 */
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { taskJson } from '../../packages/koa/src/delivery/taskJson.ts';
import {
  CallbackMonitor,
  type CallbackMonitorOptions,
  METER_NAME,
  MemoryTaskStore,
} from '../../packages/koa/src/index.ts';
import { createPrometheusReader } from '../../src/server/telemetry.ts';
import { listen } from './http.ts';
import { parseMetrics } from './server.ts';

export interface InProcessReceiver {
  readonly monitor: CallbackMonitor;
  /** Base URL of the monitor's routes (`${url}/callback…`). */
  readonly url: string;
  readonly port: number;
  /** The Prometheus exposition, as the CLI's `/metrics` renders it. */
  scrape(): Promise<string>;
  /** `scrape()` parsed into `series → value`. */
  metrics(): Promise<Map<string, number>>;
  /** The task as the task API's `GET /tasks/:id` shows it (taskJson), or undefined when there is none. */
  task(id: string): Promise<ReturnType<typeof taskJson> | undefined>;
  /** Closes the listener, the monitor, the store and the meter provider. */
  close(): Promise<void>;
}

export async function startReceiver(options: CallbackMonitorOptions = {}): Promise<InProcessReceiver> {
  const prometheus = createPrometheusReader();
  const provider = new MeterProvider({ readers: [prometheus.exporter] });
  const monitor = new CallbackMonitor({
    store: new MemoryTaskStore(),
    meter: provider.getMeter(METER_NAME),
    ...options,
  }).start();
  const listening = await listen(monitor.requestListener());
  return {
    monitor,
    url: listening.url,
    port: listening.port,
    scrape: prometheus.scrape,
    metrics: async () => parseMetrics(await prometheus.scrape()),
    async task(id) {
      const record = await monitor.getTask(id);
      return record ? taskJson(record) : undefined;
    },
    async close() {
      await monitor.close();
      await listening.close();
      await monitor.store.close();
      await provider.shutdown();
    },
  };
}
