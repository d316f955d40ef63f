import { JOB, LABEL, PROM, SOLVER_FAILED_OUTCOMES } from '@captcha-callback-monitor/koa';
import { increase, sel, without } from './promql.ts';

/*
 * Building blocks of the solver-API alerts (src/solver/). Aggregated `without (instance)`, keeping `solver`: each
 * configured solver is judged on its own, whichever instance asked it.
 */

const R = JOB.receiver;

/** A solver's last reported balance (max over instances: they all read the same account). */
export const solverBalance = without('max', sel(PROM.solverBalance, R));
/** A solver's SOLVER_<NAME>_LOW_BALANCE as the instances export it. */
export const solverLowBalance = without('max', sel(PROM.solverLowBalanceThreshold, R));

/** Requests to each solver in the window, every endpoint and outcome. */
export const solverRequests = (w: string) =>
  without('sum', increase(sel(PROM.solverRequestsTotal, R), w), LABEL.endpoint, LABEL.outcome);
/** Requests that got no usable answer (HTTP error, timeout, network error, bad body). */
export const solverFailedRequests = (w: string) =>
  without(
    'sum',
    increase(sel(PROM.solverRequestsTotal, R, `${LABEL.outcome}=~"${SOLVER_FAILED_OUTCOMES.join('|')}"`), w),
    LABEL.endpoint,
    LABEL.outcome,
  );

export const SOLVER_WINDOW = { apiErrors: '15m' } as const;
