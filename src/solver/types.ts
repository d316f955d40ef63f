import type { ParsedCallback, SolverRequestOutcome } from '@captcha-callback-monitor/koa';

/**
 * What asking a solver about one task answered.
 * - `ready`: the task's result, parsed by the same adapter a callback with that content goes through (a failed
 *   result such as ERROR_CAPTCHA_UNSOLVABLE is a result too, stored as a failed callback would be).
 * - `not_ready`: CAPCHA_NOT_READY, or status processing/idle: ask again later.
 * - `gone`: the solver does not know the task (any more): no result will come; stop asking.
 * - `retry`: the request failed, or the solver refused it for an account-wide reason (too many requests, key,
 *   balance, IP): no answer about this task; ask again later, counted as an ask.
 */
export type TaskResultAnswer =
  | { readonly kind: 'ready'; readonly result: ParsedCallback; readonly outcome: SolverRequestOutcome }
  | { readonly kind: 'not_ready' }
  | { readonly kind: 'gone'; readonly code: string }
  | { readonly kind: 'retry'; readonly outcome: SolverRequestOutcome; readonly detail: string };

export type BalanceAnswer =
  | { readonly kind: 'ok'; readonly balance: number }
  | { readonly kind: 'failed'; readonly outcome: SolverRequestOutcome; readonly detail: string };

/** What a pingback-address call answered: the solver's own answer text (no key in it), or why there was none. */
export type PingbackAnswer =
  | { readonly kind: 'ok'; readonly answer: unknown }
  | { readonly kind: 'failed'; readonly outcome: SolverRequestOutcome; readonly detail: string };

export interface SolverClient {
  readonly name: string;
  readonly protocol: 'res.php' | 'createTask';
  /** Asks for one task's result by the solver's task id; `appId` names the task the result belongs to. */
  getResult(solverTaskId: string, appId: string): Promise<TaskResultAnswer>;
  getBalance(): Promise<BalanceAnswer>;
}

/**
 * Codes meaning the solver does not know the task id (asked too late, or the wrong id): 2Captcha's res.php
 * ERROR_NO_SUCH_CAPCHA_ID / ERROR_WRONG_CAPTCHA_ID (https://2captcha.com/api-docs/error-codes), Anti-Captcha's
 * ERROR_NO_SUCH_CAPCHA_ID (https://anti-captcha.com/apidoc/errors), CapSolver's ERROR_TASKID_INVALID
 * (https://docs.capsolver.com/guide/api-error) and ERROR_TASK_NOT_FOUND.
 */
export const UNKNOWN_TASK_CODES: ReadonlySet<string> = new Set([
  'ERROR_NO_SUCH_CAPCHA_ID',
  'ERROR_WRONG_CAPTCHA_ID',
  'ERROR_WRONG_ID_FORMAT',
  'ERROR_TASKID_INVALID',
  'ERROR_TASK_NOT_FOUND',
]);

/**
 * Codes that are about the account or the request rate, not the task: the task may still have a result, so these
 * are retried (with backoff) rather than stored. ERROR_TOO_MUCH_REQUESTS is the too-fast answer (2Captcha's limits
 * page says a badly paced client is blocked and answered with an error; CapMonster refuses polls faster than 2 s).
 */
export const ACCOUNT_CODES: ReadonlySet<string> = new Set([
  'ERROR_TOO_MUCH_REQUESTS',
  'ERROR_RATE_LIMIT',
  'ERROR_WRONG_USER_KEY',
  'ERROR_KEY_DOES_NOT_EXIST',
  'ERROR_KEY_DENIED_ACCESS',
  'ERROR_ZERO_BALANCE',
  'ERROR_IP_NOT_ALLOWED',
  'ERROR_IP_BLOCKED',
  'IP_BANNED',
  'ERROR_NO_SLOT_AVAILABLE',
  'ERROR_SERVICE_UNAVALIABLE',
]);
