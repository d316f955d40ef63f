import { readFileSync, writeFileSync } from 'node:fs';
import { CONTRACT, ERROR_TYPES, FORMATS, OUTCOMES } from '../src/metrics/contract.ts';
import { CONFIG_SCHEMA } from '../src/server/config.ts';

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
    `\`error_type\` ∈ {${ERROR_TYPES.join(', ')}}, \`http_response_status_code\` ∈ the statuses the callback route sends.`,
  ].join('\n');
}

/** The README's configuration table, rendered from the config schema. */
export function renderConfigTable(): string {
  const rows = Object.entries(CONFIG_SCHEMA.shape).map(([name, schema]) => {
    const def = (schema as { def?: { defaultValue?: unknown } }).def?.defaultValue;
    return `| \`${name}\` | ${def === undefined ? '(unset)' : `\`${String(def)}\``} | ${schema.description ?? ''} |`;
  });
  return ['| variable | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

export const README_BLOCKS: Record<string, () => string> = {
  metrics: renderMetricTable,
  config: renderConfigTable,
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

if (import.meta.url === `file://${process.argv[1]}`) {
  const path = new URL('../README.md', import.meta.url);
  writeFileSync(path, renderReadme(readFileSync(path, 'utf8')));
}
