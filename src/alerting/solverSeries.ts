import { LABEL, PROM, SOLVER_FAILED_OUTCOMES } from '@captcha-callback-monitor/koa';
import { increase, type Scope } from './promql.ts';

/*
 * Building blocks of the solver-API alerts (src/solver/). Aggregated `without (instance)`, keeping `solver`: each
 * configured solver is judged on its own, whichever instance asked it.
 */

export function solverSeries(s: Scope) {
  return {
    /** A solver's last reported balance (max over instances: they all read the same account). */
    balance: s.agg('max', s.recv(PROM.solverBalance)),
    /** A solver's SOLVER_<NAME>_LOW_BALANCE as the instances export it. */
    lowBalance: s.agg('max', s.recv(PROM.solverLowBalanceThreshold)),
    /** Requests to each solver in the window, every endpoint and outcome. */
    requests: (w: string) => s.agg('sum', increase(s.recv(PROM.solverRequestsTotal), w), LABEL.endpoint, LABEL.outcome),
    /** Requests that got no usable answer (HTTP error, timeout, network error, bad body). */
    failedRequests: (w: string) =>
      s.agg(
        'sum',
        increase(s.recv(PROM.solverRequestsTotal, `${LABEL.outcome}=~"${SOLVER_FAILED_OUTCOMES.join('|')}"`), w),
        LABEL.endpoint,
        LABEL.outcome,
      ),
  };
}
