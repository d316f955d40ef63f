/**
 * The dashboard row for forwarding (FORWARD_URL): how old the oldest result the app has not taken is
 * (CaptchaForwardBacklog), how many wait, attempts by outcome, attempt latency, and dead letters
 * (CaptchaForwardDeadLetters). Store-wide gauges are max over instances; counters are summed.
 */

import { LABEL, PROM } from '@captcha-callback-monitor/koa';
import type { Panel } from '@grafana/grafana-foundation-sdk/dashboard';
import { increase, rate } from '../../../src/alerting/promql.ts';
import { human } from '../../../src/alerting/series.ts';
import type { HealthyRangeName } from '../../../src/alerting/thresholds.ts';
import type { PanelKit } from './panels.ts';
import { type Queries, VAR } from './queries.ts';

export const FORWARD_TITLE = {
  oldest: 'Oldest result not yet at the app',
  backlog: 'Forwards waiting',
  attempts: 'Forward attempts by outcome',
  latency: 'Forward attempt latency (p50 / p99)',
  dead: 'Dead letters',
} as const;

/** Which healthy range colours which panel of this row (merged into the overview's table). */
export const FORWARD_PANEL_HEALTHY_RANGE: Readonly<Record<string, HealthyRangeName>> = {
  [FORWARD_TITLE.oldest]: 'forwardPendingAgeSeconds',
  [FORWARD_TITLE.dead]: 'forwardDeadLetters',
};

const w = VAR.rateInterval;

export function forwardQueries({ recv }: Queries, deadLetterWindow: string) {
  const quantile = (q: number) =>
    `histogram_quantile(${q}, sum by (le) (${rate(recv(PROM.forwardDurationBucket), w)}))`;
  return {
    oldest: `max(${recv(PROM.forwardOldestPendingAge)})`,
    backlog: `max(${recv(PROM.forwardBacklog)})`,
    attempts: `sum by (${LABEL.outcome}) (${rate(recv(PROM.forwardAttemptsTotal), w)})`,
    p50: quantile(0.5),
    p99: quantile(0.99),
    dead: `sum(${increase(recv(PROM.forwardDeadLettersTotal), deadLetterWindow)})`,
  } as const;
}

export function forwarding(q: Queries, k: PanelKit, deadLetterWindow: string): { build(): Panel }[] {
  const { HEALTHY, thresholds, target, timeseries, withHealthyLine } = k;
  const FORWARD_QUERIES = forwardQueries(q, deadLetterWindow);
  return [
    withHealthyLine(
      timeseries(
        FORWARD_TITLE.oldest,
        HEALTHY.forwardPendingAgeSeconds.unit,
        'Age of the oldest stored result not yet handed to the app (FORWARD_URL). Healthy below ' +
          `${HEALTHY.forwardPendingAgeSeconds.value} s; CaptchaForwardBacklog fires above ${human(`${thresholds.forwardPendingAgeSeconds / 60}m`)}.`,
      ),
      'forwardPendingAgeSeconds',
    )
      .span(6)
      .withTarget(target('A', FORWARD_QUERIES.oldest, { legend: 'oldest pending' })),
    timeseries(FORWARD_TITLE.backlog, 'short', 'Forwards pending (first attempts and retries), store-wide.')
      .span(6)
      .withTarget(target('A', FORWARD_QUERIES.backlog, { legend: 'pending' })),
    timeseries(
      FORWARD_TITLE.attempts,
      'reqps',
      'Attempts per second to POST a result to the app: success (2xx), gone (410), http_error, timeout, network_error.',
    )
      .span(6)
      .withTarget(target('A', FORWARD_QUERIES.attempts, { legend: '{{outcome}}' })),
    timeseries(FORWARD_TITLE.latency, 's', 'Time one forward attempt took, until the app answered or it timed out.')
      .span(6)
      .withTarget(target('A', FORWARD_QUERIES.p50, { legend: 'p50' }))
      .withTarget(target('B', FORWARD_QUERIES.p99, { legend: 'p99' })),
    withHealthyLine(
      timeseries(
        FORWARD_TITLE.dead,
        HEALTHY.forwardDeadLetters.unit,
        `Forwards given up after FORWARD_MAX_AGE in the last ${human(deadLetterWindow)}: results the app never got. Replay them ` +
          '(POST /forwards/replay); CaptchaForwardDeadLetters fires on any.',
      ),
      'forwardDeadLetters',
    )
      .span(12)
      .withTarget(target('A', FORWARD_QUERIES.dead, { legend: 'dead letters' })),
  ];
}
