/**
 * The receiver in the test's own process: a CallbackMonitor (memory store, started) served by
 * `monitor.requestListener()` from a plain node:http server on an ephemeral loopback port, which is how the CLI's
 * public listener serves it (src/server/ReceiverServer.ts), with its metrics rendered by the CLI's own Prometheus
 * reader (src/server/telemetry.ts). What the CLI adds around it (configuration from the environment, the management
 * listener and its task API, socket timeouts, logs) is not here: tests of those start the CLI (test/support/server.ts).
 * `startKoaHost` is the other way the plugin runs: mounted in a host's Koa app, not started.
 */
import type { RequestListener } from 'node:http';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import Koa from 'koa';
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

export interface PrometheusMeter {
  readonly provider: MeterProvider;
  /** The Prometheus exposition, as the CLI's `/metrics` renders it. */
  scrape(): Promise<string>;
  /** `scrape()` parsed into `series → value`. */
  metrics(): Promise<Map<string, number>>;
  /** Shuts the provider down. */
  close(): Promise<void>;
}

/** A MeterProvider read by the CLI's own Prometheus reader (src/server/telemetry.ts), which serves nothing itself. */
export function prometheusMeter(): PrometheusMeter {
  const prometheus = createPrometheusReader();
  const provider = new MeterProvider({ readers: [prometheus.exporter] });
  return {
    provider,
    scrape: prometheus.scrape,
    metrics: async () => parseMetrics(await prometheus.scrape()),
    close: () => provider.shutdown(),
  };
}

export interface InProcessMonitor {
  readonly monitor: CallbackMonitor;
  /** Base URL of the monitor's routes (`${url}/callback…`). */
  readonly url: string;
  readonly port: number;
  /** The Prometheus exposition, as the CLI's `/metrics` renders it. */
  scrape(): Promise<string>;
  /** `scrape()` parsed into `series → value`. */
  metrics(): Promise<Map<string, number>>;
  /** Closes the monitor, the listener, the store and the meter provider. */
  close(): Promise<void>;
}

export interface InProcessReceiver extends InProcessMonitor {
  /** The task as the task API's `GET /tasks/:id` shows it (taskJson), or undefined when there is none. */
  task(id: string): Promise<ReturnType<typeof taskJson> | undefined>;
}

/** A CallbackMonitor (memory store unless `options` give one) on its own meter, served by `listenerOf(monitor)`. */
async function serveMonitor(
  options: CallbackMonitorOptions,
  meterName: string,
  listenerOf: (monitor: CallbackMonitor) => RequestListener,
): Promise<InProcessMonitor> {
  const meter = prometheusMeter();
  const monitor = new CallbackMonitor({
    store: new MemoryTaskStore(),
    meter: meter.provider.getMeter(meterName),
    ...options,
  });
  const listening = await listen(listenerOf(monitor));
  return {
    monitor,
    url: listening.url,
    port: listening.port,
    scrape: meter.scrape,
    metrics: meter.metrics,
    async close() {
      await monitor.close();
      await listening.close();
      await monitor.store.close();
      await meter.close();
    },
  };
}

export async function startReceiver(options: CallbackMonitorOptions = {}): Promise<InProcessReceiver> {
  const served = await serveMonitor(options, METER_NAME, (monitor) => monitor.start().requestListener());
  const { monitor } = served;
  return {
    ...served,
    async task(id) {
      const record = await monitor.getTask(id);
      return record ? taskJson(record) : undefined;
    },
  };
}

/**
 * The plugin as a host application embeds it: a CallbackMonitor (memory store unless `options` give one, not started)
 * on the host's own MeterProvider, mounted by `mount` in the host's Koa app, which is served on a loopback port.
 */
export function startKoaHost(
  mount: (app: Koa, monitor: CallbackMonitor) => void,
  options: CallbackMonitorOptions = {},
): Promise<InProcessMonitor> {
  return serveMonitor(options, 'host-app', (monitor) => {
    const app = new Koa();
    mount(app, monitor);
    return app.callback();
  });
}
