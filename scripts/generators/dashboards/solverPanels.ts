/**
 * The dashboard row for the solver APIs (src/solver/): each configured solver's balance and its headroom over the
 * low-balance threshold (CaptchaSolverLowBalance fires at 1×), the share of its API requests with no usable answer
 * (CaptchaSolverApiErrors), requests by outcome, and tasks recovered by asking the solver beside those delivered.
 */

import { LABEL, PROM, SOLVER_FAILED_OUTCOMES } from '@captcha-callback-monitor/koa';
import type { Panel } from '@grafana/grafana-foundation-sdk/dashboard';
import { increase, num, rate } from '../../../src/alerting/promql.ts';
import { human } from '../../../src/alerting/series.ts';
import type { HealthyRangeName } from '../../../src/alerting/thresholds.ts';
import type { PanelKit } from './panels.ts';
import { type Queries, VAR } from './queries.ts';

export const SOLVER_TITLE = {
  balance: 'Solver balance',
  headroom: 'Solver balance / low-balance threshold',
  apiErrors: 'Solver API failed requests',
  requests: 'Solver API requests by outcome',
  recovered: 'Recovered beside delivered',
} as const;

/** Which healthy range colours which panel of this row (merged into the overview's table). */
export const SOLVER_PANEL_HEALTHY_RANGE: Readonly<Record<string, HealthyRangeName>> = {
  [SOLVER_TITLE.headroom]: 'solverBalanceHeadroom',
  [SOLVER_TITLE.apiErrors]: 'solverApiErrorRatio',
};

const w = VAR.rateInterval;
const bySolver = (expr: string) => `sum by (${LABEL.solver}) (${expr})`;

export function solverQueries({ recv }: Queries) {
  return {
    // Every instance reads the same account: max, not sum.
    balance: `max by (${LABEL.solver}) (${recv(PROM.solverBalance)})`,
    headroom: `max by (${LABEL.solver}) (${recv(PROM.solverBalance)}) / max by (${LABEL.solver}) (${recv(PROM.solverLowBalanceThreshold)})`,
    apiErrorRatio:
      bySolver(increase(recv(PROM.solverRequestsTotal, `${LABEL.outcome}=~"${SOLVER_FAILED_OUTCOMES.join('|')}"`), w)) +
      ` / ${bySolver(increase(recv(PROM.solverRequestsTotal), w))}`,
    requests: `sum by (${LABEL.solver}, ${LABEL.outcome}) (${rate(recv(PROM.solverRequestsTotal), w)})`,
    delivered: `sum(${rate(recv(PROM.tasksDeliveredTotal), w)})`,
    recovered: `sum(${rate(recv(PROM.tasksRecoveredTotal), w)})`,
  } as const;
}

export function solverApis(q: Queries, k: PanelKit, apiErrorWindow: string): { build(): Panel }[] {
  const { HEALTHY, thresholds, target, timeseries, withHealthyLine } = k;
  const SOLVER_QUERIES = solverQueries(q);
  return [
    timeseries(
      SOLVER_TITLE.balance,
      'short',
      "Each solver account's balance from its getBalance (at start-up, then once a minute by default).",
    )
      .span(6)
      .withTarget(target('A', SOLVER_QUERIES.balance, { legend: '{{solver}}' })),
    withHealthyLine(
      timeseries(
        SOLVER_TITLE.headroom,
        HEALTHY.solverBalanceHeadroom.unit,
        'Balance / SOLVER_<NAME>_LOW_BALANCE, for solvers that set one: CaptchaSolverLowBalance fires at 1× or below.',
      ),
      'solverBalanceHeadroom',
    )
      .span(6)
      .withTarget(target('A', SOLVER_QUERIES.headroom, { legend: '{{solver}}' })),
    withHealthyLine(
      timeseries(
        SOLVER_TITLE.apiErrors,
        HEALTHY.solverApiErrorRatio.unit,
        'Requests to each solver API with no usable answer (HTTP error, timeout, network error, malformed body) / all. ' +
          `Healthy below ${num(HEALTHY.solverApiErrorRatio.value * 100)} %; CaptchaSolverApiErrors fires above ${num(thresholds.solverApiErrorRatio * 100)} % over ${human(apiErrorWindow)}.`,
      ),
      'solverApiErrorRatio',
    )
      .span(6)
      .withTarget(target('A', SOLVER_QUERIES.apiErrorRatio, { legend: '{{solver}}' })),
    timeseries(
      SOLVER_TITLE.requests,
      'reqps',
      'Requests to each solver API per second by outcome: ok, not_ready and solver_error are answers; http_error, ' +
        'timeout, network_error and bad_response are failures.',
    )
      .span(6)
      .withTarget(target('A', SOLVER_QUERIES.requests, { legend: '{{solver}} {{outcome}}' })),
    timeseries(
      SOLVER_TITLE.recovered,
      'suffix: tasks/s',
      'Registered tasks delivered per second, and among them those whose callback never came and whose result was ' +
        'recovered by asking the solver (captcha_tasks_recovered_total, after RECOVERY_AFTER).',
    )
      .span(12)
      .withTarget(target('A', SOLVER_QUERIES.delivered, { legend: 'delivered' }))
      .withTarget(target('B', SOLVER_QUERIES.recovered, { legend: 'recovered' })),
  ];
}
