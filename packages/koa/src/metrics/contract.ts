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

export const OUTCOMES = ['solved', 'failed'] as const;
export type Outcome = (typeof OUTCOMES)[number];

/**
 * One value per callback adapter: `query` (CaptchaAI / 2Captcha GET `id`,`code`), `form` (2Captcha POST form),
 * `ucaptcha` (GET `captcha_id`,`status`,`code`), `json` (Anti-Captcha / CapMonster / CapSolver getTaskResult body).
 */
export const FORMATS = ['query', 'form', 'ucaptcha', 'json'] as const;
export type CallbackFormat = (typeof FORMATS)[number];

/**
 * The closed set of `error.type` values. The design's six plus `uri_too_long` (414) and `method_not_allowed` (405),
 * so that every 4xx the receiver sends has its own reason, and `body_unavailable` (500): a middleware in front of the
 * monitor read the body and left it nowhere the monitor can find it (a deployment fault, not the solver's).
 */
export const ERROR_TYPES = [
  'invalid_request',
  'unauthorized',
  'payload_too_large',
  'uri_too_long',
  'method_not_allowed',
  'unsupported_media_type',
  'store_unavailable',
  'handler_error',
  'body_unavailable',
] as const;
export type ErrorType = (typeof ERROR_TYPES)[number];

/**
 * The closed set of `reason` values on `captcha.callback.failures`: the solvers' documented error codes that call for
 * different actions from the operator, each kept verbatim (so the label reads exactly as the solver's docs and the
 * stored task's `code`), plus `other` for every other code and for failures that carry none (uCaptcha `status=0`).
 * An unbounded solver string never becomes a label value: anything outside this list is `other`.
 *
 * Sources (the solvers' public error references):
 * - 2Captcha / RuCaptcha: https://2captcha.com/api-docs/error-codes (ERROR_KEY_DOES_NOT_EXIST, ERROR_NO_SLOT_AVAILABLE,
 *   ERROR_ZERO_BALANCE, ERROR_IP_NOT_ALLOWED, ERROR_CAPTCHA_UNSOLVABLE, ERROR_NO_SUCH_CAPCHA_ID) and the res.php
 *   reference https://2captcha.com/2captcha-api (ERROR_WRONG_USER_KEY, ERROR_WRONG_CAPTCHA_ID, and the proxy errors
 *   ERROR_BAD_PROXY, ERROR_PROXY_CONNECTION_FAILED).
 * - CaptchaAI (2Captcha-compatible): https://docs.captchaai.com/api/api-error-handling (ERROR_WRONG_USER_KEY,
 *   ERROR_KEY_DOES_NOT_EXIST; there ERROR_ZERO_BALANCE means "no free threads", the same action: more capacity).
 * - Anti-Captcha: https://anti-captcha.com/apidoc/errors (ids 1 ERROR_KEY_DOES_NOT_EXIST, 2 ERROR_NO_SLOT_AVAILABLE,
 *   10 ERROR_ZERO_BALANCE, 11 ERROR_IP_NOT_ALLOWED, 12 ERROR_CAPTCHA_UNSOLVABLE, 16 ERROR_NO_SUCH_CAPCHA_ID,
 *   25–29 ERROR_PROXY_CONNECT_REFUSED, _CONNECT_TIMEOUT, _READ_TIMEOUT, _BANNED, _TRANSPARENT).
 * - CapMonster Cloud: https://zennolab.atlassian.net/wiki/spaces/APIS/pages/295396/Error+Types (the Anti-Captcha
 *   names: ERROR_KEY_DOES_NOT_EXIST, ERROR_ZERO_BALANCE, ERROR_IP_NOT_ALLOWED, ERROR_CAPTCHA_UNSOLVABLE,
 *   ERROR_NO_SUCH_CAPCHA_ID).
 * - CapSolver: https://docs.capsolver.com/guide/api-error/ (ERROR_KEY_DENIED_ACCESS "wrong account key",
 *   ERROR_ZERO_BALANCE, ERROR_CAPTCHA_UNSOLVABLE, ERROR_PROXY_BANNED).
 *
 * No aliases are merged: the docs give, for instance, ERROR_KEY_DOES_NOT_EXIST and ERROR_KEY_DENIED_ACCESS, or
 * ERROR_WRONG_CAPTCHA_ID and ERROR_NO_SUCH_CAPCHA_ID (sic, 2Captcha's spelling), as separate codes of different
 * solvers, never as one code, and keeping the solver's own spelling tells the operator which solver to look at.
 * Groups, by what the operator does:
 */
export const FAILURE_REASONS = [
  // The solver gave up on this captcha (not charged at 2Captcha/CapSolver): retry, or check the task's parameters.
  'ERROR_CAPTCHA_UNSOLVABLE',
  // The account is out of funds (CaptchaAI: out of threads): every further task fails until someone pays.
  'ERROR_ZERO_BALANCE',
  // The solver has no free worker at the current bid: back off, raise the maximum bid.
  'ERROR_NO_SLOT_AVAILABLE',
  // The proxy the app passed with the task failed: fix or rotate that proxy (nothing is wrong with the solver).
  'ERROR_PROXY_CONNECT_REFUSED',
  'ERROR_PROXY_CONNECT_TIMEOUT',
  'ERROR_PROXY_READ_TIMEOUT',
  'ERROR_PROXY_BANNED',
  'ERROR_PROXY_TRANSPARENT',
  'ERROR_BAD_PROXY',
  'ERROR_PROXY_CONNECTION_FAILED',
  // The API key is malformed, unknown or refused: fix the configuration (no task with this key can succeed).
  'ERROR_WRONG_USER_KEY',
  'ERROR_KEY_DOES_NOT_EXIST',
  'ERROR_KEY_DENIED_ACCESS',
  // The request came from an IP outside the account's allow-list: add the app's egress IP.
  'ERROR_IP_NOT_ALLOWED',
  // The solver does not know the task id: the app asked about the wrong id, or after the result expired.
  'ERROR_WRONG_CAPTCHA_ID',
  'ERROR_NO_SUCH_CAPCHA_ID',
  'other',
] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

const KNOWN_FAILURE_CODES: ReadonlySet<string> = new Set(FAILURE_REASONS.filter((r) => r !== 'other'));

/**
 * The `reason` of a failed callback's code: the code itself when it is in FAILURE_REASONS (exact, case-sensitive
 * match: the solvers send these constants verbatim), `other` for anything else, including the empty string and
 * `other` itself spelt by a solver. Pure and O(1); a Set, so `__proto__` or `constructor` cannot match.
 */
export function failureReason(code: string): FailureReason {
  return KNOWN_FAILURE_CODES.has(code) ? (code as FailureReason) : 'other';
}

/**
 * Every HTTP status the callback route can answer with. The duration histogram's status attribute only ever takes
 * one of these, so its series count is bounded.
 */
export const CALLBACK_STATUS_CODES = [200, 400, 404, 405, 413, 414, 415, 500, 503] as const;
export type CallbackStatusCode = (typeof CALLBACK_STATUS_CODES)[number];

/**
 * The solver API calls the receiver makes (src/solver/): `get_result` (res.php `action=get`, createTask
 * `getTaskResult`), `get_balance` (`action=getbalance`, `getBalance`) and the res.php pingback-address calls.
 * `solver` takes the configured solver names only (at most 16, see src/solver/config.ts), never free text.
 */
export const SOLVER_ENDPOINTS = ['get_result', 'get_balance', 'add_pingback', 'get_pingbacks', 'del_pingback'] as const;
export type SolverEndpoint = (typeof SOLVER_ENDPOINTS)[number];

/**
 * How one request to a solver ended, a closed set: `ok` (an answer with a result, a balance, or the pingback call
 * done), `not_ready` (CAPCHA_NOT_READY / status processing), `solver_error` (the solver answered with an error code:
 * ERROR_…, errorId > 0), `http_error` (a non-2xx status), `timeout` (no answer in time), `network_error` (refused,
 * reset, DNS), `bad_response` (2xx but not a body of the documented shape).
 */
export const SOLVER_REQUEST_OUTCOMES = [
  'ok',
  'not_ready',
  'solver_error',
  'http_error',
  'timeout',
  'network_error',
  'bad_response',
] as const;
export type SolverRequestOutcome = (typeof SOLVER_REQUEST_OUTCOMES)[number];
/** The outcomes that mean the solver's API did not do its job (the CaptchaSolverApiErrors alert's numerator). */
export const SOLVER_FAILED_OUTCOMES: readonly SolverRequestOutcome[] = [
  'http_error',
  'timeout',
  'network_error',
  'bad_response',
];

/** Solver request latency in seconds: loopback milliseconds to the client's 10 s timeout. */
export const SOLVER_REQUEST_DURATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/**
 * How one attempt to forward a result to the app ended, a closed set: `success` (2xx), `gone` (410: the app wants no
 * more of this task), `http_error` (any other status, redirects included), `timeout` (no answer within
 * FORWARD_TIMEOUT_MS), `network_error` (refused, reset, DNS, TLS).
 */
export const FORWARD_OUTCOMES = ['success', 'http_error', 'timeout', 'network_error', 'gone'] as const;
export type ForwardOutcome = (typeof FORWARD_OUTCOMES)[number];

/** Forward attempt latency in seconds: loopback milliseconds to a 30 s timeout. */
export const FORWARD_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

/** Handling-latency buckets in seconds; 0.5 and 1 are alert and dashboard thresholds, so they must be edges. */
export const CALLBACK_DURATION_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
] as const;

/** Submit → callback buckets in seconds, 1 s to the 10-minute horizon beyond the default 5-minute deadline. */
export const DELIVERY_DURATION_BUCKETS = [1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600] as const;

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
