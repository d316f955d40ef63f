import { METER_NAME } from '@captcha-callback-monitor/koa';
import { type DiagLogger, DiagLogLevel, diag, type Meter, metrics } from '@opentelemetry/api';
import { OTLPMetricExporter as OtlpJsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as OtlpProtobufMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { type MetricReader, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { createLogger, type Logger } from './logger.ts';
import { loadMetricsExportConfig, type MetricsExportConfig, type OtlpMetricsConfig } from './otlpConfig.ts';

export { TelemetryConfigError } from './otlpConfig.ts';

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

/**
 * What /metrics serves when OTEL_METRICS_EXPORTER leaves prometheus out: comment lines only (a valid exposition with
 * no series) that say why and how to turn it back on.
 */
export function metricsOffText(config: MetricsExportConfig): string {
  const how = config.otlp ? 'the metrics are pushed over OTLP instead' : 'no metrics are exported';
  return (
    `# /metrics is off: OTEL_METRICS_EXPORTER=${config.raw ?? ''} (${how}).\n` +
    '# Set OTEL_METRICS_EXPORTER=prometheus,otlp (or leave it unset) to serve them here.\n'
  );
}

/** The OTLP push: the exporter reads its endpoint, headers, timeout, compression and certificates from OTEL_*. */
function createOtlpReader(config: OtlpMetricsConfig): MetricReader {
  const exporter = config.protocol === 'http/json' ? new OtlpJsonMetricExporter() : new OtlpProtobufMetricExporter();
  return new PeriodicExportingMetricReader({
    exporter,
    exportIntervalMillis: config.exportIntervalMillis,
    exportTimeoutMillis: config.exportTimeoutMillis,
  });
}

/**
 * OpenTelemetry's own warnings and errors (a push the collector refused, a connection that failed) as JSON log lines;
 * without a diag logger they go nowhere. Errors are reduced to name and message, like every other log line here.
 */
function diagToLogger(logger: Logger): DiagLogger {
  const text = (message: string, args: unknown[]) =>
    [message, ...args.map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : String(a)))].join(' ');
  const log =
    (level: 'error' | 'warn' | 'info' | 'debug' | 'trace') =>
    (message: string, ...args: unknown[]) =>
      logger[level]({ source: 'opentelemetry' }, text(message, args));
  return { error: log('error'), warn: log('warn'), info: log('info'), debug: log('debug'), verbose: log('trace') };
}

export interface Telemetry {
  readonly meter: Meter;
  /** What the management listener's /metrics serves: the Prometheus exposition, or a note saying it is off. */
  readonly reader: Pick<PrometheusReader, 'scrape'>;
  /** The Prometheus reader, when OTEL_METRICS_EXPORTER includes prometheus (the default). */
  readonly prometheus: PrometheusReader | undefined;
  readonly metricsExport: MetricsExportConfig;
  /** Flushes the last metrics to the OTLP collector, if any, and stops the SDK. */
  shutdown(): Promise<void>;
}

export interface TelemetryOptions {
  /** The metric-export configuration; read from the environment (and validated) when omitted. */
  readonly metricsExport?: MetricsExportConfig;
  /**
   * Where OpenTelemetry's warnings go (unless OTEL_LOG_LEVEL asks for its console logger) and the shutdown warning;
   * a JSON logger at LOG_LEVEL when omitted.
   */
  readonly logger?: Logger;
}

/**
 * Starts the OpenTelemetry Node SDK with the readers OTEL_METRICS_EXPORTER asks for: `prometheus` (the default, served
 * on the management listener), `otlp` (pushed every OTEL_METRIC_EXPORT_INTERVAL), both, or `none`. Throws
 * TelemetryConfigError (one line naming the variable) on a bad value. Traces and logs stay off unless the user asks
 * for them with the standard OTEL_TRACES_EXPORTER / OTEL_LOGS_EXPORTER variables (the SDK would otherwise try OTLP
 * on localhost:4318 and log connection errors forever).
 */
export function startTelemetry(version: string, options: TelemetryOptions = {}): Telemetry {
  const metricsExport = options.metricsExport ?? loadMetricsExportConfig();
  process.env.OTEL_TRACES_EXPORTER ??= 'none';
  process.env.OTEL_LOGS_EXPORTER ??= 'none';
  // LOG_LEVEL was validated by loadConfig before the telemetry starts; empty means the default, as there.
  const logger = options.logger ?? createLogger(process.env.LOG_LEVEL || 'info');
  // Set before the exporters are built, so their configuration warnings are logged too. With OTEL_LOG_LEVEL the SDK
  // installs its own console logger instead, as OpenTelemetry documents.
  if (!process.env.OTEL_LOG_LEVEL)
    diag.setLogger(diagToLogger(logger), { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
  const prometheus = metricsExport.prometheus ? createPrometheusReader() : undefined;
  const readers: MetricReader[] = [];
  if (prometheus) readers.push(prometheus.exporter);
  if (metricsExport.otlp) readers.push(createOtlpReader(metricsExport.otlp));
  // Traces off: no span processors, rather than letting the SDK read OTEL_TRACES_EXPORTER=none and warn about it.
  const tracesOff = process.env.OTEL_TRACES_EXPORTER.split(',').some((name) => name.trim().toLowerCase() === 'none');
  const sdk = new NodeSDK({
    serviceName: process.env.OTEL_SERVICE_NAME ?? 'captcha-callback-monitor',
    ...(tracesOff ? { spanProcessors: [] } : {}),
    // Always given explicitly: the SDK's own reading of OTEL_METRICS_EXPORTER would start a second Prometheus
    // server on localhost:9464 and default to otlp.
    metricReaders: readers,
    instrumentations: [],
  });
  sdk.start();
  const offText = metricsOffText(metricsExport);
  return {
    meter: metrics.getMeter(METER_NAME, version),
    reader: { scrape: prometheus ? prometheus.scrape : async () => offText },
    prometheus,
    metricsExport,
    shutdown: () => boundedShutdown(sdk, metricsExport.otlp, logger),
  };
}

/**
 * The SDK's shutdown pushes the last counts, then waits for every push still being retried: against an unreachable
 * collector that is the exporter's whole retry budget (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s by default), after the
 * reader itself gave the final push up at OTEL_METRIC_EXPORT_TIMEOUT. The stop waits for the final push's own
 * timeout and a second more, then goes on.
 */
async function boundedShutdown(sdk: NodeSDK, otlp: OtlpMetricsConfig | undefined, logger: Logger): Promise<void> {
  if (otlp === undefined) return sdk.shutdown();
  const graceMillis = otlp.exportTimeoutMillis + 1000;
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<'gave up'>((resolve) => {
    timer = setTimeout(() => resolve('gave up'), graceMillis);
    timer.unref();
  });
  try {
    const outcome = await Promise.race([sdk.shutdown(), gaveUp]);
    if (outcome === 'gave up')
      logger.warn(
        { source: 'opentelemetry', graceMs: graceMillis },
        'metrics shutdown: the collector did not take the last push in time; stopping without it',
      );
  } finally {
    clearTimeout(timer);
  }
}
