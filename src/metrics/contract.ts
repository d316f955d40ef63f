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
} as const;

/** Prometheus label names (OpenTelemetry attribute keys with dots replaced). */
export const LABEL = {
  outcome: 'outcome',
  format: 'format',
  errorType: 'error_type',
  statusCode: 'http_response_status_code',
} as const;

/** Attribute keys as OpenTelemetry sees them. */
export const ATTR = {
  outcome: 'outcome',
  format: 'format',
  errorType: 'error.type',
  statusCode: 'http.response.status_code',
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
 * so that every 4xx the receiver sends has its own reason.
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
] as const;
export type ErrorType = (typeof ERROR_TYPES)[number];

/**
 * Every HTTP status the callback route can answer with. The duration histogram's status attribute only ever takes
 * one of these, so its series count is bounded.
 */
export const CALLBACK_STATUS_CODES = [200, 400, 404, 405, 413, 414, 415, 500, 503] as const;
export type CallbackStatusCode = (typeof CALLBACK_STATUS_CODES)[number];

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
];

/** Prometheus scrape job names used by prometheus.yml, alert rules and dashboards. */
export const JOB = {
  receiver: 'captcha-callback',
  probe: 'captcha-callback-probe',
} as const;
