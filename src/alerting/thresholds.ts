import { STALE_AFTER_MS } from '@captcha-callback-monitor/koa/internal';

/** Which side of a threshold is healthy. */
export type HealthySide = 'above' | 'below';

/** One healthy range as a dashboard draws it: a value, which side is good, and the Grafana unit it is shown in. */
export interface HealthyRange {
  readonly value: number;
  readonly healthyWhen: HealthySide;
  /** Grafana unit id: `percentunit` for ratios 0…1, `s` for seconds, `x` for a plain factor. */
  readonly unit: 'percentunit' | 's' | 'x' | 'short';
  readonly description: string;
}

/**
 * The healthy ranges from the seed: dashboards import these instead of retyping them, so a panel's
 * green/red edge and the alert table can never disagree. The alerts fire further out (ALERT_THRESHOLDS): the space
 * between the two is "degraded but not yet paging".
 */
export const HEALTHY = {
  uptimeRatio: {
    value: 0.995,
    healthyWhen: 'above',
    unit: 'percentunit',
    description: 'Share of successful outside probes of /healthz (also the uptime SLO objective).',
  },
  latencySeconds: {
    value: 0.5,
    healthyWhen: 'below',
    unit: 's',
    description: 'p95 time to answer a callback request.',
  },
  errorRatio: {
    value: 0.01,
    healthyWhen: 'below',
    unit: 'percentunit',
    description: 'Failed callback requests / all callback requests.',
  },
  deliveryRatio: {
    value: 0.95,
    healthyWhen: 'above',
    unit: 'percentunit',
    description: 'Delivered / (delivered + missed) registered tasks (also the delivery SLO objective).',
  },
  intervalFactor: {
    value: 5,
    healthyWhen: 'below',
    unit: 'x',
    description: 'Time since the last callback / the average interval between callbacks over the last hour.',
  },
  timeSinceLastSeconds: {
    value: STALE_AFTER_MS / 1000,
    healthyWhen: 'below',
    unit: 's',
    description: 'Seconds since the last callback while callbacks are expected (the /health/callbacks stale edge).',
  },
  unsolvableRatio: {
    value: 0.05,
    healthyWhen: 'below',
    unit: 'percentunit',
    description: 'Callbacks reporting ERROR_CAPTCHA_UNSOLVABLE / all accepted callbacks.',
  },
  zeroBalanceFailures: {
    value: 1,
    healthyWhen: 'below',
    unit: 'short',
    description: 'Callbacks reporting ERROR_ZERO_BALANCE in the last 5 minutes (healthy: none).',
  },
  solverBalanceHeadroom: {
    value: 1,
    healthyWhen: 'above',
    unit: 'x',
    description: "A solver's balance / its SOLVER_<NAME>_LOW_BALANCE (at or below 1: CaptchaSolverLowBalance).",
  },
  solverApiErrorRatio: {
    value: 0.05,
    healthyWhen: 'below',
    unit: 'percentunit',
    description: 'Requests to a solver API that got no usable answer (HTTP error, timeout, network, bad body) / all.',
  },
  forwardPendingAgeSeconds: {
    value: 60,
    healthyWhen: 'below',
    unit: 's',
    description: 'Age of the oldest result not yet handed to the app (FORWARD_URL); a healthy app takes each at once.',
  },
  forwardDeadLetters: {
    value: 1,
    healthyWhen: 'below',
    unit: 'short',
    description: 'Forwards dead-lettered after FORWARD_MAX_AGE in the last 15 minutes (healthy: none).',
  },
} as const satisfies Record<string, HealthyRange>;

export type HealthyRangeName = keyof typeof HEALTHY;

/** Where the alerts fire. Every number in a rule expression comes from here or from HEALTHY / SLOS. */
export const ALERT_THRESHOLDS = {
  /** Stale: no callback for this long while callbacks are expected (the health endpoint's own edge). */
  staleAfterSeconds: STALE_AFTER_MS / 1000,
  /** High error rate: failed / all callback requests over 5 minutes … */
  errorRatio: 0.05,
  /** … and only with at least this many requests in the window (one failed probe from a scanner is not 100 %). */
  minRequests5m: 100,
  /** Slow responses: p95 handling time. Must be a bucket edge of the duration histogram (a test checks). */
  latencyP95Seconds: 1,
  /** Low delivery: delivered / (delivered + missed) over 30 minutes … */
  deliveryRatio: 0.9,
  /** … with at least this many settled (delivered or missed) tasks in the window. */
  minSettledTasks: 20,
  /** Irregular interval: time since the last callback > this × the average interval over 1 hour … */
  intervalFactor: HEALTHY.intervalFactor.value,
  /** … only with at least this many callbacks in that hour (an average over 3 callbacks means nothing). */
  minCallbacksPerHour: 12,
  /** The user's own post-ACK hook failing for this share of accepted callbacks (own alert, see alertTable.ts). */
  handlerErrorRatio: 0.05,
  /**
   * Zero balance: any callback reporting ERROR_ZERO_BALANCE in the window. The account is empty, so every task
   * submitted from now on fails too; there is no share below which that is fine.
   */
  zeroBalanceFailures: 0,
  /**
   * Unsolvable: ERROR_CAPTCHA_UNSOLVABLE failures / accepted callbacks over 15 minutes above this share … The
   * solvers report it after several workers gave up on a captcha (2Captcha: three, Anti-Captcha: five), which a
   * healthy pipeline sees on a few hard images; one task in ten means something changed on the app's side (the
   * site's captcha, the sitekey or page URL sent, the proxy): twice the healthy edge, so a noisy day stays below it.
   */
  unsolvableRatio: 0.1,
  /**
   * … only with at least this many callbacks in those 15 minutes: below that, 1 unsolvable captcha in 9 is noise,
   * and 15 minutes (not 5) lets a low-traffic app reach the volume at all.
   */
  minCallbacks15m: 50,
  /**
   * Low balance: fires when a solver's balance is at or below its own SOLVER_<NAME>_LOW_BALANCE (exported as
   * captcha_solver_balance_low_threshold); the rule compares balance / threshold with this factor.
   */
  solverBalanceFactor: 1,
  /**
   * Solver API errors: requests with no usable answer / all requests to one solver over 15 minutes above this share
   * … (solver error codes are answers, not failures: they have their own alerts and counters). A fifth is well past
   * a passing hiccup: the recovery poller and the balance watch are then mostly blind.
   */
  solverApiErrorRatio: 0.2,
  /** … with at least this many requests to that solver in the window (one failed getBalance an hour is not 100 %). */
  minSolverRequests15m: 20,
  /**
   * Forward backlog: the oldest result not yet handed to the app is older than this. Retries start at 1 s and back
   * off to 10 min, so a brief app restart clears within a minute or two; ten minutes means the app has been refusing
   * or unreachable for a while and results pile up (they are safe in the store, the app just does not have them).
   */
  forwardPendingAgeSeconds: 600,
  /** Dead letters: any forward given up after FORWARD_MAX_AGE in the window; each is a result the app never got. */
  forwardDeadLetters: 0,
} as const;

/**
 * The windows the alert rows read (Prometheus durations; one unit each). The stale window is not here: it is
 * ALERT_THRESHOLDS.staleAfterSeconds, the health endpoint's own edge.
 */
export const WINDOW = {
  /** Error rate, slow responses, handler errors: requests over this window. */
  requests: '5m',
  /** Low delivery rate: tasks settled (delivered or missed) over this window. */
  delivery: '30m',
  /** Irregular interval: the average interval between callbacks over this window. */
  interval: '1h',
  /** Zero balance: a callback reporting ERROR_ZERO_BALANCE keeps the alert firing this long. */
  zeroBalance: '5m',
  /** Unsolvable rate: callbacks over this window. */
  unsolvable: '15m',
  /** Solver API errors: requests to each solver over this window. */
  solverApiErrors: '15m',
  /** Dead letters: a dead-lettered forward keeps the alert firing this long, then it resolves. */
  forwardDeadLetters: '15m',
} as const;

/** Multi-window multi-burn-rate pairs (SRE workbook ch. 5, table 5-8; the same pairs Sloth generates). */
export interface BurnWindow {
  readonly short: string;
  readonly long: string;
  /** Burn rate: how many times faster than "exactly spend the budget over 30 days". */
  readonly factor: number;
}

export const BURN_WINDOWS = {
  page: [
    { short: '5m', long: '1h', factor: 14.4 },
    { short: '30m', long: '6h', factor: 6 },
  ],
  ticket: [
    { short: '2h', long: '1d', factor: 3 },
    { short: '6h', long: '3d', factor: 1 },
  ],
} as const satisfies Record<string, readonly BurnWindow[]>;

/** The SLO objectives are the healthy ranges: one number, one place. */
export const SLO_OBJECTIVES = {
  uptime: HEALTHY.uptimeRatio.value,
  delivery: HEALTHY.deliveryRatio.value,
} as const;
