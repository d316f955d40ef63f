/**
 * The Grafana datasources the stack provisions, with fixed uids: dashboards and Grafana-managed alert rules refer to
 * them by uid, and `grafana/provisioning/datasources/datasources.yaml` is rendered from this very table, so a uid
 * cannot drift between the two.
 */

export interface DatasourceSpec {
  readonly name: string;
  readonly type: 'prometheus' | 'alertmanager';
  readonly uid: string;
  /** URL as seen from the Grafana container in docker-compose.yml. */
  readonly url: string;
  readonly isDefault: boolean;
  readonly jsonData: Readonly<Record<string, unknown>>;
}

/** Scrape interval of prometheus/prometheus.yml; Grafana's `$__rate_interval` is computed from it. */
export const SCRAPE_INTERVAL = '15s';

export const DATASOURCES = {
  prometheus: {
    name: 'Prometheus',
    type: 'prometheus',
    uid: 'prometheus',
    url: 'http://prometheus:9090',
    isDefault: true,
    jsonData: {
      timeInterval: SCRAPE_INTERVAL,
      httpMethod: 'POST',
      // Lists the Prometheus-evaluated rules (read-only) in Grafana's alerting UI.
      manageAlerts: true,
      prometheusType: 'Prometheus',
    },
  },
  alertmanager: {
    name: 'Alertmanager',
    type: 'alertmanager',
    uid: 'alertmanager',
    url: 'http://alertmanager:9093',
    isDefault: false,
    jsonData: {
      implementation: 'prometheus',
      // Grafana-managed alerts (opt-in, docker-compose.grafana-alerting.yml) go to the contact point instead.
      handleGrafanaManagedAlerts: false,
    },
  },
} as const satisfies Record<string, DatasourceSpec>;

/** `{ type, uid }` as a panel or target's `datasource` field. */
export const dsRef = (ds: DatasourceSpec) => ({ type: ds.type, uid: ds.uid });
