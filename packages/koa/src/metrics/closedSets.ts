/**
 * The closed value sets of every metric attribute and the histogram buckets: a label value outside these sets is never
 * recorded, so the number of series stays bounded. Part of the metric contract (`contract.ts` re-exports them).
 */

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
