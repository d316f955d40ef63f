/**
 * Small helpers over the Grafana Foundation SDK builders: Prometheus targets on the dashboard's `${datasource}`
 * variable, the configured healthy ranges as threshold steps, and the common panel shapes of the overview dashboard.
 */
import * as common from '@grafana/grafana-foundation-sdk/common';
import { type Threshold, ThresholdsConfigBuilder, ThresholdsMode } from '@grafana/grafana-foundation-sdk/dashboard';
import { DataqueryBuilder, type PromQueryFormat, QueryEditorMode } from '@grafana/grafana-foundation-sdk/prometheus';
import { PanelBuilder as StatBuilder } from '@grafana/grafana-foundation-sdk/stat';
import { PanelBuilder as TimeseriesBuilder } from '@grafana/grafana-foundation-sdk/timeseries';
import { healthyRanges, type MonitoringConfig } from '../../../src/alerting/monitoringConfig.ts';
import type { HealthyRange, HealthyRangeName } from '../../../src/alerting/thresholds.ts';

/** The dashboard variable every panel, target and other variable takes its datasource from. */
export const DATASOURCE_VARIABLE = 'datasource';
export const DATASOURCE_REF_UID = `\${${DATASOURCE_VARIABLE}}`;

export const COLOR = { good: 'green', bad: 'red', warn: 'orange', neutral: 'text' } as const;

/**
 * The healthy range as Grafana threshold steps. A step applies from its value upwards, so "healthy below X" is
 * green from the base and red from X, and "healthy above X" the other way round.
 */
export function healthySteps(range: HealthyRange): Threshold[] {
  return range.healthyWhen === 'below'
    ? [
        { value: null, color: COLOR.good },
        { value: range.value, color: COLOR.bad },
      ]
    : [
        { value: null, color: COLOR.bad },
        { value: range.value, color: COLOR.good },
      ];
}

export const thresholds = (steps: Threshold[]) =>
  new ThresholdsConfigBuilder().mode(ThresholdsMode.Absolute).steps(steps);

/** The panel builders of one dashboard: its datasource (the `${datasource}` variable) and healthy ranges. */
export function panelKit(config: MonitoringConfig) {
  const ds = { type: config.datasource.type, uid: DATASOURCE_REF_UID };
  const HEALTHY = healthyRanges(config);
  const healthyThresholds = (name: HealthyRangeName) => thresholds(healthySteps(HEALTHY[name]));

  /** A Prometheus target: range query (time series) unless `instant`, always in code mode. */
  function target(
    refId: string,
    expr: string,
    options: { legend?: string; instant?: boolean; format?: PromQueryFormat } = {},
  ): DataqueryBuilder {
    const q = new DataqueryBuilder()
      .datasource(ds)
      .refId(refId)
      .expr(expr)
      .editorMode(QueryEditorMode.Code)
      .legendFormat(options.legend ?? '__auto');
    if (options.format) q.format(options.format);
    return options.instant ? q.instant() : q.range();
  }

  /** A single-number panel showing the last value, coloured by its thresholds. */
  function stat(title: string, unit: string, description: string): StatBuilder {
    return new StatBuilder()
      .title(title)
      .description(description)
      .datasource(ds)
      .unit(unit)
      .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false))
      .colorMode(common.BigValueColorMode.Background)
      .graphMode(common.BigValueGraphMode.Area)
      .textMode(common.BigValueTextMode.Value)
      .height(4)
      .span(4);
  }

  /** A time series panel; with a healthy range, its edge is drawn as a dashed line. */
  function timeseries(title: string, unit: string, description: string): TimeseriesBuilder {
    return new TimeseriesBuilder()
      .title(title)
      .description(description)
      .datasource(ds)
      .unit(unit)
      .lineWidth(1)
      .fillOpacity(10)
      .showPoints(common.VisibilityMode.Never)
      .legend(
        new common.VizLegendOptionsBuilder()
          .showLegend(true)
          .displayMode(common.LegendDisplayMode.List)
          .placement(common.LegendPlacement.Bottom),
      )
      .tooltip(
        new common.VizTooltipOptionsBuilder().mode(common.TooltipDisplayMode.Multi).sort(common.SortOrder.Descending),
      )
      .height(8)
      .span(12);
  }

  function withHealthyLine(panel: TimeseriesBuilder, name: HealthyRangeName): TimeseriesBuilder {
    return panel
      .thresholds(healthyThresholds(name))
      .thresholdsStyle(new common.GraphThresholdsStyleConfigBuilder().mode(common.GraphThresholdsStyleMode.Dashed));
  }

  return { ds, HEALTHY, thresholds: config.thresholds, healthyThresholds, target, stat, timeseries, withHealthyLine };
}

export type PanelKit = ReturnType<typeof panelKit>;
