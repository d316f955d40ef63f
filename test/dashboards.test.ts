import { describe, expect, it } from 'vitest';
import { JOB, PROM } from '../packages/koa/src/metrics/contract.ts';
import { DATASOURCES } from '../scripts/generators/dashboards/datasources.ts';
import {
  OVERVIEW_UID,
  overviewDashboard,
  PANEL_HEALTHY_RANGE,
  TITLE,
} from '../scripts/generators/dashboards/overview.ts';
import { DATASOURCE_REF_UID, healthySteps } from '../scripts/generators/dashboards/panels.ts';
import { DASHBOARDS, GRAFANA_OUTPUTS } from '../scripts/generators/dashboards/render.ts';
import { ALERT_TABLE, WATCHDOG } from '../src/alerting/alertTable.ts';
import { DEFAULT_MONITORING_CONFIG } from '../src/alerting/monitoringConfig.ts';
import { EXTERNAL } from '../src/alerting/promql.ts';
import { HEALTHY, type HealthyRangeName } from '../src/alerting/thresholds.ts';
import { provisionedDatasources, read } from './support/grafana.ts';

interface Target {
  refId: string;
  expr: string;
  datasource?: { type: string; uid: string };
  instant?: boolean;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  fieldConfig?: {
    defaults: { unit?: string; thresholds?: { mode: string; steps: { value: number | null; color: string }[] } };
  };
  options?: Record<string, unknown>;
}
interface DashboardJson {
  uid: string;
  title: string;
  panels: Panel[];
  templating: {
    list: {
      name: string;
      type: string;
      query: unknown;
      datasource?: { type: string; uid: string };
      current?: { value: unknown };
    }[];
  };
}

/** The committed dashboards, as Grafana will load them. */
const committed: DashboardJson[] = Object.keys(DASHBOARDS).map(
  (uid) => JSON.parse(read(`grafana/dashboards/${uid}.json`)) as DashboardJson,
);
const overview = committed.find((d) => d.uid === OVERVIEW_UID)!;
const contentPanels = (d: DashboardJson) => d.panels.filter((p) => p.type !== 'row');
const byTitle = (title: string) => {
  const panel = overview.panels.find((p) => p.title === title);
  if (!panel) throw new Error(`no panel "${title}"`);
  return panel;
};

describe('generated Grafana files', () => {
  it.each(GRAFANA_OUTPUTS.map((o) => [o.path, o] as const))(
    '%s is committed as rendered (npm run generate)',
    (path, output) => {
      expect(read(path), `${path} is out of date: run npm run generate`).toBe(output.render());
    },
  );

  it('renders the same bytes twice (the render functions are pure)', () => {
    for (const o of GRAFANA_OUTPUTS) expect(o.render()).toBe(o.render());
    expect(JSON.stringify(overviewDashboard())).toBe(JSON.stringify(overviewDashboard()));
  });
});

describe('dashboards', () => {
  it('have unique uids, and unique panel ids and target refIds', () => {
    expect(new Set(committed.map((d) => d.uid)).size).toBe(committed.length);
    for (const d of committed) {
      const ids = d.panels.map((p) => p.id);
      expect(ids.every((id) => Number.isInteger(id) && id > 0)).toBe(true);
      expect(new Set(ids).size, `${d.uid}: duplicate panel id`).toBe(ids.length);
      for (const p of d.panels) {
        const refs = (p.targets ?? []).map((t) => t.refId);
        expect(new Set(refs).size, `${p.title}: duplicate refId`).toBe(refs.length);
      }
    }
  });

  it('read their datasource from the datasource variable, whose default is the provisioned Prometheus', () => {
    const uids = new Map(provisionedDatasources().map((ds) => [ds.uid, ds.type]));
    expect(uids.get(DATASOURCES.prometheus.uid)).toBe('prometheus');
    expect(uids.get(DATASOURCES.alertmanager.uid)).toBe('alertmanager');
    // The monitoring config's default datasource is this stack's provisioned one.
    expect(DEFAULT_MONITORING_CONFIG.datasource).toEqual({ type: 'prometheus', uid: DATASOURCES.prometheus.uid });
    const variable = { type: 'prometheus', uid: DATASOURCE_REF_UID };
    for (const d of committed) {
      const ds = d.templating.list.find((v) => v.name === 'datasource')!;
      expect(ds.type).toBe('datasource');
      expect(ds.query).toBe('prometheus');
      expect(ds.current?.value).toBe(DATASOURCES.prometheus.uid);
      for (const v of d.templating.list.filter((x) => x !== ds))
        expect(v.datasource, `variable ${v.name}`).toEqual(variable);
      for (const p of contentPanels(d)) {
        expect(p.datasource, `panel ${p.title}`).toEqual(variable);
        expect(p.targets?.length, `panel ${p.title} has no query`).toBeGreaterThan(0);
        for (const t of p.targets ?? []) expect(t.datasource, `${p.title} ${t.refId}`).toEqual(variable);
      }
      // No uid pinned anywhere else in the file.
      const pinned = [...JSON.stringify(d).matchAll(/"uid":"([^"]*)"/g)].map((m) => m[1]).filter((u) => u !== d.uid);
      expect(new Set(pinned)).toEqual(new Set([DATASOURCE_REF_UID]));
    }
  });

  it('set a unit on every panel; ratios in percent (0-1), durations in seconds', () => {
    for (const d of committed) {
      for (const p of contentPanels(d)) expect(p.fieldConfig?.defaults.unit, `panel ${p.title}`).toBeTruthy();
    }
    for (const title of [TITLE.uptime, TITLE.errorRate, TITLE.delivery, TITLE.errorRatio, TITLE.deliverySeries]) {
      expect(byTitle(title).fieldConfig?.defaults.unit).toBe('percentunit');
    }
    for (const title of [TITLE.p95, TITLE.latency, TITLE.sinceLast, TITLE.sinceLastSeries]) {
      expect(byTitle(title).fieldConfig?.defaults.unit).toBe('s');
    }
    const heatmap = byTitle(TITLE.heatmap);
    expect((heatmap.options?.yAxis as { unit?: string } | undefined)?.unit).toBe('s');
  });

  it("colour by the alert table's healthy ranges (imported, never retyped)", () => {
    const used = new Set<HealthyRangeName>();
    for (const [title, name] of Object.entries(PANEL_HEALTHY_RANGE)) {
      if (!name) continue;
      used.add(name);
      const panel = byTitle(title);
      expect(panel.fieldConfig?.defaults.thresholds?.mode, title).toBe('absolute');
      expect(panel.fieldConfig?.defaults.thresholds?.steps, title).toEqual(healthySteps(HEALTHY[name]));
      expect(panel.fieldConfig?.defaults.unit, `${title} shows ${name} in its unit`).toBe(HEALTHY[name].unit);
    }
    // Every healthy range is on the dashboard, and every alert's healthy range (the watchdog has none) is one of them.
    expect([...used].sort()).toEqual(Object.keys(HEALTHY).sort());
    for (const row of ALERT_TABLE.filter((r) => r.name !== WATCHDOG)) {
      expect(Object.keys(HEALTHY), row.name).toContain(row.healthy);
    }
    // The seed's numbers, as a guard against a silent change of the table itself.
    expect(byTitle(TITLE.p95).fieldConfig?.defaults.thresholds?.steps[1]).toEqual({ value: 0.5, color: 'red' });
    expect(byTitle(TITLE.uptime).fieldConfig?.defaults.thresholds?.steps[1]).toEqual({ value: 0.995, color: 'green' });
  });

  it('have datasource, job and instance variables, and every receiver query selects on job and instance', () => {
    const names = overview.templating.list.map((v) => v.name);
    expect(names).toEqual(['datasource', 'job', 'instance']);
    const receiverMetrics = Object.values(PROM);
    for (const p of contentPanels(overview)) {
      for (const t of p.targets ?? []) {
        for (const m of t.expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}/g)) {
          const [, metric, matchers] = m as unknown as [string, string, string];
          if (!receiverMetrics.includes(metric as never) && metric !== EXTERNAL.up) continue;
          expect(matchers, `${p.title}: ${metric}`).toContain('job="$job"');
          expect(matchers, `${p.title}: ${metric}`).toContain('instance=~"$instance"');
        }
      }
    }
  });

  it('spell only metric names from the contract (or Prometheus/blackbox/ALERTS series)', () => {
    const known = new Set<string>([...Object.values(PROM), ...Object.values(EXTERNAL), 'ALERTS']);
    for (const d of committed) {
      for (const p of contentPanels(d)) {
        for (const t of p.targets ?? []) {
          for (const m of t.expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)) expect(known, `${p.title}`).toContain(m[1]);
        }
      }
    }
  });

  it('take the store-wide pending gauge once (max over instances, never sum)', () => {
    for (const title of [TITLE.pending, TITLE.pendingSeries]) {
      const expr = byTitle(title).targets?.[0]?.expr ?? '';
      expect(expr).toMatch(new RegExp(`^max\\(${PROM.tasksPending}\\{`));
    }
    for (const d of committed) {
      for (const p of contentPanels(d)) {
        for (const t of p.targets ?? []) expect(t.expr).not.toMatch(new RegExp(`sum[^(]*\\(\\s*${PROM.tasksPending}`));
      }
    }
  });

  it('show the probe job, the alerts and the error budgets', () => {
    expect(byTitle(TITLE.uptime).targets?.[0]?.expr).toContain(`job="${JOB.probe}"`);
    const alerts = byTitle(TITLE.alerts).targets?.[0];
    expect(alerts?.instant).toBe(true);
    // Every alert but the always-firing watchdog, which would make a healthy service show one firing alert.
    for (const row of ALERT_TABLE.filter((r) => r.name !== WATCHDOG)) expect(alerts?.expr).toContain(row.name);
    expect(alerts?.expr).not.toContain(WATCHDOG);
    expect(byTitle(TITLE.firing).targets?.[0]?.expr).not.toContain(WATCHDOG);
    expect(byTitle(TITLE.budget).targets?.map((t) => t.refId)).toEqual(['A', 'B']);
  });
});
