import { DEFAULT_MONITORING_CONFIG, type MonitoringConfig } from '../../src/alerting/monitoringConfig.ts';
import { PROMETHEUS_RULE_PATH, renderPrometheusRule } from './alerting/prometheusRule.ts';
import { PROMETHEUS_RULES_PATH, renderPrometheusRules } from './alerting/renderPrometheusRules.ts';
import { GRAFANA_STACK_OUTPUTS, grafanaOutputs } from './dashboards/render.ts';
import { README_PATH, renderCurrentReadme } from './docs/readme.ts';

/**
 * Every file `npm run generate` writes, as a path (relative to the repository root, or to `--out`) and a pure render
 * function. To add an output append an entry here; scripts/generate.ts writes it and
 * test/alerting.generated.test.ts checks the committed copy against it, with no other change.
 */
export interface GeneratedOutput {
  readonly path: string;
  readonly render: () => string | Promise<string>;
}

/**
 * The monitoring files for one stack, each a pure function of the monitoring config: what
 * `npm run generate -- --config my.json --out dir` writes. With the default config, the committed copies.
 */
export function monitoringOutputs(config: MonitoringConfig = DEFAULT_MONITORING_CONFIG): GeneratedOutput[] {
  return [
    { path: PROMETHEUS_RULES_PATH, render: () => renderPrometheusRules(config) },
    // The same rules as a Prometheus Operator PrometheusRule.
    { path: PROMETHEUS_RULE_PATH, render: () => renderPrometheusRule(config) },
    // Dashboards (provisioning and import form), Grafana-managed alert rules (scripts/generators/dashboards/render.ts).
    ...grafanaOutputs(config),
  ];
}

export const GENERATED_OUTPUTS: GeneratedOutput[] = [
  ...monitoringOutputs(),
  // This repository's compose stack only: Grafana's datasources and contact point.
  ...GRAFANA_STACK_OUTPUTS,
  // The README's metric, configuration and alert tables (scripts/generators/docs/readme.ts).
  { path: README_PATH, render: renderCurrentReadme },
];
