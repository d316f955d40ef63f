import { METER_NAME } from '@captcha-callback-monitor/koa';
import { type Meter, metrics } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { NodeSDK } from '@opentelemetry/sdk-node';

/** Prometheus text exposition format 0.0.4: Prometheus 3 refuses a scrape without the version parameter. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface PrometheusReader {
  readonly exporter: PrometheusExporter;
  /** Collects and renders the exposition text, as Prometheus will read it. */
  scrape(): Promise<string>;
}

/**
 * A PrometheusExporter used only as a MetricReader: its own HTTP server (which binds localhost only) is not started;
 * the management listener serves the text instead. Scope labels are dropped: the contract's series carry only their
 * own, bounded labels.
 */
export function createPrometheusReader(): PrometheusReader {
  const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  const serializer = new PrometheusSerializer(undefined, false, undefined, false, true);
  return {
    exporter,
    async scrape() {
      const { resourceMetrics } = await exporter.collect();
      return serializer.serialize(resourceMetrics);
    },
  };
}

export interface Telemetry {
  readonly meter: Meter;
  readonly reader: PrometheusReader;
  shutdown(): Promise<void>;
}

/**
 * Starts the OpenTelemetry Node SDK with the Prometheus reader. Traces and logs stay off unless the user asks for
 * them with the standard OTEL_TRACES_EXPORTER / OTEL_LOGS_EXPORTER variables (the SDK would otherwise try OTLP on
 * localhost:4318 and log connection errors forever).
 */
export function startTelemetry(version: string): Telemetry {
  process.env.OTEL_TRACES_EXPORTER ??= 'none';
  process.env.OTEL_LOGS_EXPORTER ??= 'none';
  const reader = createPrometheusReader();
  const sdk = new NodeSDK({
    serviceName: process.env.OTEL_SERVICE_NAME ?? 'captcha-callback-monitor',
    metricReaders: [reader.exporter],
    instrumentations: [],
  });
  sdk.start();
  return { meter: metrics.getMeter(METER_NAME, version), reader, shutdown: () => sdk.shutdown() };
}
