import { PROMETHEUS_RULES_PATH, renderPrometheusRules } from './alerting/renderPrometheusRules.ts';
import { GRAFANA_OUTPUTS } from './dashboards/render.ts';
import { README_PATH, renderCurrentReadme } from './docs/readme.ts';

/**
 * Every file `npm run generate` writes, as a path (relative to the repository root) and a pure render function.
 * To add an output (Grafana dashboards, Grafana alert provisioning, …) append an entry here; scripts/generate.ts
 * writes it and test/alerting.generated.test.ts checks the committed copy against it, with no other change.
 */
export interface GeneratedOutput {
  readonly path: string;
  readonly render: () => string | Promise<string>;
}

export const GENERATED_OUTPUTS: GeneratedOutput[] = [
  { path: PROMETHEUS_RULES_PATH, render: renderPrometheusRules },
  // Dashboards, datasources and Grafana-managed alerting provisioning (scripts/generators/dashboards/render.ts).
  ...GRAFANA_OUTPUTS,
  // The README's metric, configuration and alert tables (scripts/generators/docs/readme.ts).
  { path: README_PATH, render: renderCurrentReadme },
];
