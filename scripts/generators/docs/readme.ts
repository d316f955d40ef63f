import { readFileSync } from 'node:fs';
import { CONTRACT, ERROR_TYPES, FAILURE_REASONS, FORMATS, OUTCOMES } from '@captcha-callback-monitor/koa';
import { ALERT_TABLE } from '../../../src/alerting/alertTable.ts';
import {
  DEFAULT_MONITORING_CONFIG,
  MONITORING_CONFIG_FIELDS,
  type MonitoringConfig,
} from '../../../src/alerting/monitoringConfig.ts';
import { runbookUrl } from '../../../src/alerting/runbook.ts';
import { HEALTHY } from '../../../src/alerting/thresholds.ts';
import { CONFIG_SCHEMA, type Config, configBounds, schemaDefault } from '../../../src/server/config.ts';

/** The README's metric contract table, rendered from the contract module. */
export function renderMetricTable(): string {
  const rows = CONTRACT.map((s) => {
    const series = s.kind === 'histogram' ? `\`${s.prom}_bucket\` / \`_sum\` / \`_count\`` : `\`${s.prom}\``;
    const labels = s.labels.length === 0 ? '—' : s.labels.map((l) => `\`${l}\``).join(', ');
    const buckets = s.buckets ? ` Buckets: ${s.buckets.join(', ')}.` : '';
    return `| \`${s.name}\` (\`${s.unit}\`) | ${s.kind.replace('_', ' ')} | ${series} | ${labels} | ${s.description}${buckets} |`;
  });
  return [
    '| instrument (unit) | kind | Prometheus series | labels | meaning |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    '',
    `Label values are closed sets: \`outcome\` ∈ {${OUTCOMES.join(', ')}}, \`format\` ∈ {${FORMATS.join(', ')}},`,
    `\`error_type\` ∈ {${ERROR_TYPES.join(', ')}}, \`http_response_status_code\` ∈ the statuses the callback route sends,`,
    `\`reason\` ∈ {${FAILURE_REASONS.join(', ')}} (the solver's error code verbatim; any other code is \`other\`).`,
  ].join('\n');
}

/** The README's configuration table, rendered from the config schema. */
export function renderConfigTable(): string {
  const rows = Object.entries(CONFIG_SCHEMA.shape).map(([name, schema]) => {
    const def = schemaDefault(schema);
    const bounds = configBounds(name as keyof Config) || '—';
    return `| \`${name}\` | ${def === undefined ? '(unset)' : `\`${String(def)}\``} | ${bounds} | ${schema.description ?? ''} |`;
  });
  return ['| variable | default | bounds | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

function healthyRange(name: keyof typeof HEALTHY | undefined): string {
  if (name === undefined) return '— (always firing: route it to a heartbeat service)';
  const h = HEALTHY[name];
  const value =
    h.unit === 'percentunit'
      ? `${+(h.value * 100).toFixed(2)} %`
      : h.unit === 's'
        ? `${h.value} s`
        : h.unit === 'short'
          ? `${h.value}`
          : `${h.value} ×`;
  return `${h.healthyWhen === 'above' ? '>' : '<'} ${value}`;
}

/** The README's alert table, rendered from the alert table (the rules' single source). */
export function renderAlertTable(): string {
  // ALERT_TABLE already ends with the SLO alerts: each rule once.
  const rows = ALERT_TABLE.map(
    (a) =>
      `| [\`${a.name}\`](${runbookUrl(a.runbookAnchor)}) | ${a.severity} | ${a.for} | ${a.summary} | ${healthyRange(a.healthy)}${a.healthy ? ` (${HEALTHY[a.healthy].description})` : ''} |`,
  );
  return [
    '| alert | severity | for | fires when | healthy range (dashboard threshold) |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

/** A default as the README shows it: scalars verbatim, objects as `key=value` pairs, nothing for an empty one. */
function shownDefault(value: unknown): string {
  if (typeof value === 'string') return `\`${value.replaceAll('|', '\\|')}\``;
  if (Array.isArray(value)) return `\`${JSON.stringify(value)}\``;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    if (entries.length === 0) return '`{}`';
    return entries.map(([k, v]) => `\`${k}\`=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ');
  }
  return `\`${String(value)}\``;
}

/** The README's monitoring-config table: every field of the config, its default and what it is for. */
export function renderMonitoringConfigTable(): string {
  const rows = (Object.keys(MONITORING_CONFIG_FIELDS) as (keyof MonitoringConfig)[]).map(
    (field) =>
      `| \`${field}\` | ${shownDefault(DEFAULT_MONITORING_CONFIG[field])} | ${MONITORING_CONFIG_FIELDS[field].replaceAll('|', '\\|')} |`,
  );
  return ['| field | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

export const README_BLOCKS: Record<string, () => string> = {
  metrics: renderMetricTable,
  config: renderConfigTable,
  alerts: renderAlertTable,
  'monitoring-config': renderMonitoringConfigTable,
};

/** Replaces each `<!-- name:start -->…<!-- name:end -->` block of the README with its rendering. */
export function renderReadme(readme: string): string {
  let out = readme;
  for (const [name, render] of Object.entries(README_BLOCKS)) {
    const re = new RegExp(`(<!-- ${name}:start -->)[\\s\\S]*?(<!-- ${name}:end -->)`);
    if (!re.test(out)) throw new Error(`README.md has no ${name} block`);
    out = out.replace(re, (_m, a: string, b: string) => `${a}\n${render()}\n${b}`);
  }
  return out;
}

export const README_PATH = 'README.md';

/** The README with its generated blocks brought up to date (an output of `npm run generate`). */
export function renderCurrentReadme(): string {
  return renderReadme(readFileSync(new URL(`../../../${README_PATH}`, import.meta.url), 'utf8'));
}
