/**
 * The metric contract: every instrument name, unit, bucket boundary and attribute value the receiver emits.
 * Alert rules, dashboards, tests and the README all derive from this module; nothing else spells a metric name.
 */

/** Instrument names as OpenTelemetry sees them. */
export const INSTRUMENT = {
  callbacks: 'captcha.callbacks',
  callbackErrors: 'captcha.callback.errors',
  callbackDuration: 'captcha.callback.duration',
  lastReceivedTimestamp: 'captcha.callback.last_received_timestamp',
  timeSinceLast: 'captcha.callback.time_since_last',
  duplicates: 'captcha.callback.duplicates',
  tasksSubmitted: 'captcha.tasks.submitted',
  tasksDelivered: 'captcha.tasks.delivered',
  tasksMissed: 'captcha.tasks.missed',
  tasksLate: 'captcha.tasks.late',
  tasksPending: 'captcha.tasks.pending',
  taskDeliveryDuration: 'captcha.task.delivery.duration',
  callbackFailures: 'captcha.callback.failures',
  tasksRecovered: 'captcha.tasks.recovered',
  solverRequests: 'captcha.solver.requests',
  solverRequestDuration: 'captcha.solver.request.duration',
  solverBalance: 'captcha.solver.balance',
  solverLowBalanceThreshold: 'captcha.solver.balance.low_threshold',
  forwardAttempts: 'captcha.forward.attempts',
  forwardDuration: 'captcha.forward.duration',
  forwardBacklog: 'captcha.forward.backlog',
  forwardOldestPendingAge: 'captcha.forward.oldest_pending_age',
  forwardDeadLetters: 'captcha.forward.dead_letters',
} as const;

/**
 * Series names as Prometheus sees them through @opentelemetry/exporter-prometheus: dots become underscores,
 * monotonic counters get `_total`, histograms get `_bucket`/`_sum`/`_count`, and no unit suffix is added.
 */
export const PROM = {
  callbacksTotal: 'captcha_callbacks_total',
  callbackErrorsTotal: 'captcha_callback_errors_total',
  callbackDurationBucket: 'captcha_callback_duration_bucket',
  callbackDurationSum: 'captcha_callback_duration_sum',
  callbackDurationCount: 'captcha_callback_duration_count',
  lastReceivedTimestamp: 'captcha_callback_last_received_timestamp',
  timeSinceLast: 'captcha_callback_time_since_last',
  duplicatesTotal: 'captcha_callback_duplicates_total',
  tasksSubmittedTotal: 'captcha_tasks_submitted_total',
  tasksDeliveredTotal: 'captcha_tasks_delivered_total',
  tasksMissedTotal: 'captcha_tasks_missed_total',
  tasksLateTotal: 'captcha_tasks_late_total',
  tasksPending: 'captcha_tasks_pending',
  taskDeliveryDurationBucket: 'captcha_task_delivery_duration_bucket',
  taskDeliveryDurationSum: 'captcha_task_delivery_duration_sum',
  taskDeliveryDurationCount: 'captcha_task_delivery_duration_count',
  callbackFailuresTotal: 'captcha_callback_failures_total',
  tasksRecoveredTotal: 'captcha_tasks_recovered_total',
  solverRequestsTotal: 'captcha_solver_requests_total',
  solverRequestDurationBucket: 'captcha_solver_request_duration_bucket',
  solverRequestDurationCount: 'captcha_solver_request_duration_count',
  solverBalance: 'captcha_solver_balance',
  solverLowBalanceThreshold: 'captcha_solver_balance_low_threshold',
  forwardAttemptsTotal: 'captcha_forward_attempts_total',
  forwardDurationBucket: 'captcha_forward_duration_bucket',
  forwardDurationCount: 'captcha_forward_duration_count',
  forwardBacklog: 'captcha_forward_backlog',
  forwardOldestPendingAge: 'captcha_forward_oldest_pending_age',
  forwardDeadLettersTotal: 'captcha_forward_dead_letters_total',
} as const;

/** Prometheus label names (OpenTelemetry attribute keys with dots replaced). */
export const LABEL = {
  outcome: 'outcome',
  format: 'format',
  errorType: 'error_type',
  statusCode: 'http_response_status_code',
  reason: 'reason',
  solver: 'solver',
  endpoint: 'endpoint',
} as const;

/** Attribute keys as OpenTelemetry sees them. */
export const ATTR = {
  outcome: 'outcome',
  format: 'format',
  errorType: 'error.type',
  statusCode: 'http.response.status_code',
  reason: 'reason',
  solver: 'solver',
  endpoint: 'endpoint',
} as const;

import {
  CALLBACK_DURATION_BUCKETS,
  DELIVERY_DURATION_BUCKETS,
  FORWARD_DURATION_BUCKETS,
  SOLVER_REQUEST_DURATION_BUCKETS,
} from './closedSets.ts';

export * from './closedSets.ts';

export interface InstrumentSpec {
  readonly name: string;
  /**
   * The OpenTelemetry instrument kind. Counters are observable: the hot path bumps a plain number and the SDK reads
   * it at collection, which Prometheus sees exactly as a synchronous counter (`_total`, TYPE counter).
   */
  readonly kind: 'observable_counter' | 'histogram' | 'observable_gauge';
  readonly unit: string;
  readonly description: string;
  /** Prometheus series base name. */
  readonly prom: string;
  /** Prometheus label names this series carries (besides `otel_scope_*`, which the server turns off). */
  readonly labels: readonly string[];
  /** Bucket boundaries for histograms. */
  readonly buckets?: readonly number[];
}

/** The metric contract table; README and tests render and check this very list. */
export const CONTRACT: readonly InstrumentSpec[] = [
  {
    name: INSTRUMENT.callbacks,
    kind: 'observable_counter',
    unit: '{callback}',
    description: 'Callbacks accepted and stored, by outcome and callback format.',
    prom: PROM.callbacksTotal,
    labels: [LABEL.outcome, LABEL.format],
  },
  {
    name: INSTRUMENT.callbackErrors,
    kind: 'observable_counter',
    unit: '{error}',
    description: 'Callback requests that failed or were refused, by closed error type.',
    prom: PROM.callbackErrorsTotal,
    labels: [LABEL.errorType],
  },
  {
    name: INSTRUMENT.callbackDuration,
    kind: 'histogram',
    unit: 's',
    description: 'Time from request arrival to the answer on the callback route, by HTTP status.',
    prom: 'captcha_callback_duration',
    labels: [LABEL.statusCode],
    buckets: CALLBACK_DURATION_BUCKETS,
  },
  {
    name: INSTRUMENT.lastReceivedTimestamp,
    kind: 'observable_gauge',
    unit: 's',
    description: 'Unix time of the last accepted callback.',
    prom: PROM.lastReceivedTimestamp,
    labels: [],
  },
  {
    name: INSTRUMENT.timeSinceLast,
    kind: 'observable_gauge',
    unit: 's',
    description: 'Seconds since the last accepted callback (since start-up before the first).',
    prom: PROM.timeSinceLast,
    labels: [],
  },
  {
    name: INSTRUMENT.duplicates,
    kind: 'observable_counter',
    unit: '{callback}',
    description: 'Repeated callbacks for a task that already had one (acknowledged, not delivered twice).',
    prom: PROM.duplicatesTotal,
    labels: [],
  },
  {
    name: INSTRUMENT.tasksSubmitted,
    kind: 'observable_counter',
    unit: '{task}',
    description: 'Tasks registered for delivery tracking by this instance.',
    prom: PROM.tasksSubmittedTotal,
    labels: [],
  },
  {
    name: INSTRUMENT.tasksDelivered,
    kind: 'observable_counter',
    unit: '{task}',
    description: 'Registered tasks whose callback arrived before the deadline (transitions made by this instance).',
    prom: PROM.tasksDeliveredTotal,
    labels: [],
  },
  {
    name: INSTRUMENT.tasksMissed,
    kind: 'observable_counter',
    unit: '{task}',
    description: 'Registered tasks whose deadline passed without a callback (transitions made by this instance).',
    prom: PROM.tasksMissedTotal,
    labels: [],
  },
  {
    name: INSTRUMENT.tasksLate,
    kind: 'observable_counter',
    unit: '{task}',
    description: 'Missed tasks whose callback arrived after the deadline.',
    prom: PROM.tasksLateTotal,
    labels: [],
  },
  {
    name: INSTRUMENT.tasksPending,
    kind: 'observable_gauge',
    unit: '{task}',
    description: 'Registered tasks waiting for their callback (store-wide: take max, not sum, over instances).',
    prom: PROM.tasksPending,
    labels: [],
  },
  {
    name: INSTRUMENT.taskDeliveryDuration,
    kind: 'histogram',
    unit: 's',
    description: 'Time from task registration to its callback, by outcome.',
    prom: 'captcha_task_delivery_duration',
    labels: [LABEL.outcome],
    buckets: DELIVERY_DURATION_BUCKETS,
  },
  {
    name: INSTRUMENT.callbackFailures,
    kind: 'observable_counter',
    unit: '{callback}',
    description:
      'Accepted callbacks that report a failed task, by solver error code (a closed set; any other code is other).',
    prom: PROM.callbackFailuresTotal,
    labels: [LABEL.reason],
  },
  {
    name: INSTRUMENT.tasksRecovered,
    kind: 'observable_counter',
    unit: '{task}',
    description:
      'Registered tasks whose missed callback was recovered by asking the solver, before the deadline (counted in delivered too).',
    prom: PROM.tasksRecoveredTotal,
    labels: [],
  },
  {
    name: INSTRUMENT.solverRequests,
    kind: 'observable_counter',
    unit: '{request}',
    description: 'Requests this instance made to a configured solver API, by solver, endpoint and closed outcome.',
    prom: PROM.solverRequestsTotal,
    labels: [LABEL.solver, LABEL.endpoint, LABEL.outcome],
  },
  {
    name: INSTRUMENT.solverRequestDuration,
    kind: 'histogram',
    unit: 's',
    description: 'Time a request to a solver API took, until its answer or its timeout, by solver and endpoint.',
    prom: 'captcha_solver_request_duration',
    labels: [LABEL.solver, LABEL.endpoint],
    buckets: SOLVER_REQUEST_DURATION_BUCKETS,
  },
  {
    name: INSTRUMENT.solverBalance,
    kind: 'observable_gauge',
    unit: '{currency}',
    description: "The solver account's balance from its getBalance, by solver (absent until the first answer).",
    prom: PROM.solverBalance,
    labels: [LABEL.solver],
  },
  {
    name: INSTRUMENT.solverLowBalanceThreshold,
    kind: 'observable_gauge',
    unit: '{currency}',
    description:
      'SOLVER_<NAME>_LOW_BALANCE, by solver (only solvers that set one): CaptchaSolverLowBalance fires at or below it.',
    prom: PROM.solverLowBalanceThreshold,
    labels: [LABEL.solver],
  },
  {
    name: INSTRUMENT.forwardAttempts,
    kind: 'observable_counter',
    unit: '{attempt}',
    description: 'Attempts this instance made to forward a result to the app (FORWARD_URL), by closed outcome.',
    prom: PROM.forwardAttemptsTotal,
    labels: [LABEL.outcome],
  },
  {
    name: INSTRUMENT.forwardDuration,
    kind: 'histogram',
    unit: 's',
    description: 'Time one forward attempt took, until the app answered or the attempt timed out, by outcome.',
    prom: 'captcha_forward_duration',
    labels: [LABEL.outcome],
    buckets: FORWARD_DURATION_BUCKETS,
  },
  {
    name: INSTRUMENT.forwardBacklog,
    kind: 'observable_gauge',
    unit: '{forward}',
    description:
      'Forwards waiting to reach the app, retries included (store-wide, counted up to 100000: take max over instances).',
    prom: PROM.forwardBacklog,
    labels: [],
  },
  {
    name: INSTRUMENT.forwardOldestPendingAge,
    kind: 'observable_gauge',
    unit: 's',
    description: 'Age of the oldest result not yet handed to the app (store-wide; 0 when none is waiting).',
    prom: PROM.forwardOldestPendingAge,
    labels: [],
  },
  {
    name: INSTRUMENT.forwardDeadLetters,
    kind: 'observable_counter',
    unit: '{forward}',
    description: 'Forwards this instance gave up on after FORWARD_MAX_AGE (dead letters: replay them).',
    prom: PROM.forwardDeadLettersTotal,
    labels: [],
  },
];

/** Prometheus scrape job names used by prometheus.yml, alert rules and dashboards. */
export const JOB = {
  receiver: 'captcha-callback',
  probe: 'captcha-callback-probe',
} as const;
