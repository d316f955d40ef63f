/**
 * The metric-export variables of the OpenTelemetry specification that the server interprets itself, validated at
 * start-up: which exporters run (OTEL_METRICS_EXPORTER), the OTLP protocol, the export interval and timeout. The OTLP
 * exporter reads its endpoint, headers, timeout, compression and certificates from the environment itself; the
 * endpoint and headers are checked here too, because the exporter would otherwise only log a warning and fall back
 * to localhost:4318 or send no header (a collector that then refuses every push, or a push to nowhere).
 */

export type MetricsExporterName = 'prometheus' | 'otlp';
export type OtlpProtocol = 'http/protobuf' | 'http/json';

export interface OtlpMetricsConfig {
  readonly protocol: OtlpProtocol;
  /** The variable the protocol came from, or undefined for the default. */
  readonly protocolVariable: string | undefined;
  readonly exportIntervalMillis: number;
  readonly exportTimeoutMillis: number;
}

export interface MetricsExportConfig {
  /** OTEL_METRICS_EXPORTER as given (trimmed), or undefined when unset or empty. */
  readonly raw: string | undefined;
  /** Whether /metrics on the management listener serves the Prometheus exposition. */
  readonly prometheus: boolean;
  /** Set when metrics are pushed over OTLP. */
  readonly otlp: OtlpMetricsConfig | undefined;
}

/** A start-up error: the message is one line naming the variable. Values that may be credentials are not shown. */
export class TelemetryConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(message);
    this.name = 'TelemetryConfigError';
    this.variable = variable;
  }
}

const DEFAULT_EXPORT_INTERVAL_MS = 60_000;
const DEFAULT_EXPORT_TIMEOUT_MS = 30_000;
const EXPORTER_CHOICES = 'prometheus (default), otlp, prometheus,otlp or none';

/** The specification: an empty value is the same as an unset one. */
function read(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function parseExporters(env: NodeJS.ProcessEnv): { raw: string | undefined; names: Set<MetricsExporterName> } {
  const variable = 'OTEL_METRICS_EXPORTER';
  const raw = read(env, variable);
  if (raw === undefined) return { raw, names: new Set(['prometheus']) };
  const items = raw
    .split(',')
    .map((item) => item.trim().toLowerCase())
    .filter((item) => item !== '');
  const names = new Set<MetricsExporterName>();
  let none = false;
  for (const item of items) {
    if (item === 'prometheus' || item === 'otlp') names.add(item);
    else if (item === 'none') none = true;
    else if (item === 'console' || item === 'logging')
      throw new TelemetryConfigError(
        variable,
        `${variable}=${raw}: "${item}" is not supported here (standard output carries the JSON logs); use ${EXPORTER_CHOICES}`,
      );
    else
      throw new TelemetryConfigError(
        variable,
        `${variable}=${raw}: unknown exporter "${item}"; use ${EXPORTER_CHOICES}`,
      );
  }
  if (none && names.size > 0)
    throw new TelemetryConfigError(variable, `${variable}=${raw}: "none" cannot be combined with another exporter`);
  if (!none && names.size === 0)
    throw new TelemetryConfigError(variable, `${variable}=${raw}: names no exporter; use ${EXPORTER_CHOICES}`);
  return { raw, names };
}

function parseProtocol(env: NodeJS.ProcessEnv): Pick<OtlpMetricsConfig, 'protocol' | 'protocolVariable'> {
  // The signal-specific variable wins over the general one (specification, "Configuration Options").
  const variable = ['OTEL_EXPORTER_OTLP_METRICS_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL'].find(
    (name) => read(env, name) !== undefined,
  );
  if (variable === undefined) return { protocol: 'http/protobuf', protocolVariable: undefined };
  const value = read(env, variable)!;
  const protocol = value.toLowerCase();
  if (protocol === 'http/protobuf' || protocol === 'http/json') return { protocol, protocolVariable: variable };
  if (protocol === 'grpc')
    throw new TelemetryConfigError(
      variable,
      `${variable}=${value}: gRPC is not supported for metrics; use http/protobuf (the default, collector port 4318) or http/json`,
    );
  throw new TelemetryConfigError(
    variable,
    `${variable}=${value}: unknown OTLP protocol; use http/protobuf (the default) or http/json`,
  );
}

/** A whole number of milliseconds above zero, or undefined when unset. */
function parseMillis(env: NodeJS.ProcessEnv, variable: string): number | undefined {
  const value = read(env, variable);
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value)))
    throw new TelemetryConfigError(
      variable,
      `${variable}=${value}: must be a whole number of milliseconds, at least 1`,
    );
  return Number(value);
}

/** The endpoint the exporter will use must be an http(s) URL; the value is not shown (it may carry credentials). */
function checkEndpoint(env: NodeJS.ProcessEnv): void {
  const variable = ['OTEL_EXPORTER_OTLP_METRICS_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT'].find(
    (name) => read(env, name) !== undefined,
  );
  if (variable === undefined) return;
  let url: URL;
  try {
    url = new URL(read(env, variable)!);
  } catch {
    throw new TelemetryConfigError(
      variable,
      `${variable}: not a URL; use http:// or https://, e.g. http://collector:4318 (the value is not shown)`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new TelemetryConfigError(
      variable,
      `${variable}: must be an http:// or https:// URL, e.g. http://collector:4318 (the value is not shown)`,
    );
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// What Node accepts in a header value: tab, visible ASCII and space, and obs-text.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * `key=value,key=value` with URL-encoded values (the W3C Baggage format the specification names). An entry the
 * exporter would drop, or a header Node would refuse on every push, is an error naming the entry, not its value.
 */
function checkHeaders(env: NodeJS.ProcessEnv, variable: string): void {
  const raw = read(env, variable);
  if (raw === undefined) return;
  const entries = raw.split(',');
  entries.forEach((entry, index) => {
    if (entry.trim() === '') return;
    const at = `${variable}: entry ${index + 1} of ${entries.length}`;
    const cut = entry.indexOf('=');
    if (cut <= 0 || entry.slice(0, cut).trim() === '' || entry.slice(cut + 1).trim() === '')
      throw new TelemetryConfigError(variable, `${at} is not key=value (values are not shown)`);
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(entry.slice(0, cut).trim());
      value = decodeURIComponent(entry.slice(cut + 1).trim());
    } catch {
      throw new TelemetryConfigError(variable, `${at}: bad %-encoding (values are not shown)`);
    }
    if (!HEADER_NAME.test(key)) throw new TelemetryConfigError(variable, `${at}: not an HTTP header name`);
    if (!HEADER_VALUE.test(value))
      throw new TelemetryConfigError(variable, `${at} (${key}): the value has characters HTTP does not allow`);
  });
}

function parseOtlp(env: NodeJS.ProcessEnv): OtlpMetricsConfig {
  const protocol = parseProtocol(env);
  checkEndpoint(env);
  checkHeaders(env, 'OTEL_EXPORTER_OTLP_HEADERS');
  checkHeaders(env, 'OTEL_EXPORTER_OTLP_METRICS_HEADERS');
  const interval = parseMillis(env, 'OTEL_METRIC_EXPORT_INTERVAL');
  const timeout = parseMillis(env, 'OTEL_METRIC_EXPORT_TIMEOUT');
  const exportIntervalMillis = interval ?? DEFAULT_EXPORT_INTERVAL_MS;
  if (timeout !== undefined && timeout > exportIntervalMillis)
    throw new TelemetryConfigError(
      'OTEL_METRIC_EXPORT_TIMEOUT',
      `OTEL_METRIC_EXPORT_TIMEOUT=${timeout}: must not exceed OTEL_METRIC_EXPORT_INTERVAL (${exportIntervalMillis} ms${interval === undefined ? ', the default' : ''})`,
    );
  // An unset timeout is clamped to a shorter interval, as the specification's SDKs do.
  const exportTimeoutMillis = timeout ?? Math.min(DEFAULT_EXPORT_TIMEOUT_MS, exportIntervalMillis);
  return { ...protocol, exportIntervalMillis, exportTimeoutMillis };
}

/**
 * Reads the metric-export configuration. `OTEL_METRICS_EXPORTER` defaults to `prometheus` here (the specification's
 * SDK default is otlp): the server has always served /metrics. The OTLP variables are only read when otlp is on.
 */
export function loadMetricsExportConfig(env: NodeJS.ProcessEnv = process.env): MetricsExportConfig {
  const { raw, names } = parseExporters(env);
  return {
    raw,
    prometheus: names.has('prometheus'),
    otlp: names.has('otlp') ? parseOtlp(env) : undefined,
  };
}
