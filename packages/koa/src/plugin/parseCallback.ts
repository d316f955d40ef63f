import type { ResultDetails } from '../delivery/TaskStore.ts';
import { TASK_ID, TASK_ID_RULE } from '../delivery/taskId.ts';
import type { CallbackFormat, ErrorType, Outcome } from '../metrics/contract.ts';

/** What the HTTP layer hands the adapters: already size-checked, never trusted. */
export interface CallbackInput {
  readonly method: 'GET' | 'POST';
  readonly query: URLSearchParams;
  /** `form` and `json` bodies only; undefined for GET. */
  readonly body?:
    | { readonly kind: 'form'; readonly params: URLSearchParams }
    | { readonly kind: 'json'; readonly value: unknown };
  /** The `<taskId>` path segment (the app's id), when the URL carries one. */
  readonly pathTaskId?: string | undefined;
}

/**
 * A callback as the solver sent it. `taskId` is the app's id from the path, `solverTaskId` the solver's id from the
 * query or body; at least one is set.
 */
export interface ParsedCallback {
  readonly taskId?: string;
  readonly solverTaskId?: string;
  readonly outcome: Outcome;
  readonly code: string;
  readonly format: CallbackFormat;
  /** The solver's `solution` object (JSON formats), whole. */
  readonly solution: ResultDetails | null;
  /** Every other field the solver sent (the ids and the token excepted), or null when there is none. */
  readonly metadata: ResultDetails | null;
}

export interface CallbackRejection {
  readonly status: 400;
  readonly errorType: ErrorType;
  /** One line, safe to return to the caller: never echoes the solution. */
  readonly reason: string;
}

export type ParseResult =
  | { readonly ok: true; readonly value: ParsedCallback }
  | { readonly ok: false; readonly error: CallbackRejection };

/** 2Captcha/CaptchaAI send failures in `code` as an `ERROR_…` constant (e.g. ERROR_CAPTCHA_UNSOLVABLE). */
const SOLVER_ERROR = /^ERROR_[A-Z0-9_]+$/;
export const MAX_CODE_LENGTH = 32_768;
/** The solution and metadata together, as stored JSON text. */
export const MAX_DETAILS_LENGTH = 65_536;

const reject = (reason: string): ParseResult => ({
  ok: false,
  error: { status: 400, errorType: 'invalid_request', reason },
});

type Ids = { readonly taskId?: string; readonly solverTaskId?: string };

/** The path's id is the app's, the request's the solver's; both are kept, and either finds the task. */
function pickIds(fromRequest: string | null | undefined, fromPath: string | undefined): Ids | ParseResult {
  const solver = fromRequest === null || fromRequest === '' ? undefined : fromRequest;
  if (solver === undefined && fromPath === undefined) return reject('missing task id');
  if (fromPath !== undefined && !TASK_ID.test(fromPath)) return reject(`task id in the path must be ${TASK_ID_RULE}`);
  if (solver !== undefined && !TASK_ID.test(solver)) return reject(`task id must be ${TASK_ID_RULE}`);
  return {
    ...(fromPath === undefined ? {} : { taskId: fromPath }),
    ...(solver === undefined ? {} : { solverTaskId: solver }),
  };
}

/** The parameters other than the ones an adapter reads, as metadata (null when there are none). */
function otherParams(params: URLSearchParams, read: readonly string[]): ResultDetails | null {
  let out: Record<string, string | string[]> | null = null;
  for (const key of new Set(params.keys())) {
    if (read.includes(key)) continue;
    out ??= {};
    const all = params.getAll(key);
    out[key] = all.length === 1 ? all[0]! : all;
  }
  return out;
}

/** Checks that solution and metadata can be stored as JSON text within the bound. */
function detailsFit(solution: unknown, metadata: unknown): string | undefined {
  try {
    const length = JSON.stringify([solution, metadata]).length;
    return length > MAX_DETAILS_LENGTH ? 'solution and metadata too long' : undefined;
  } catch {
    // JSON.stringify recurses: a nesting bomb that JSON.parse accepted overflows the stack here.
    return 'solution nested too deeply';
  }
}

function single(params: URLSearchParams, key: string): string | null | ParseResult {
  const all = params.getAll(key);
  if (all.length > 1) return reject(`parameter ${key} given more than once`);
  return all[0] ?? null;
}

const isRejection = (x: unknown): x is ParseResult => typeof x === 'object' && x !== null && 'ok' in x;

const ID_CODE = ['id', 'code'];
const UCAPTCHA = ['captcha_id', 'status', 'code'];

/** CaptchaAI / 2Captcha: `id` and `code`, from the query (GET) or a form body (POST). */
function parseIdCode(params: URLSearchParams, format: CallbackFormat, pathTaskId: string | undefined): ParseResult {
  const rawId = single(params, 'id');
  if (isRejection(rawId)) return rawId;
  const ids = pickIds(rawId, pathTaskId);
  if (isRejection(ids)) return ids;
  const code = single(params, 'code');
  if (isRejection(code)) return code;
  if (code === null || code === '') return reject('missing code');
  if (code.length > MAX_CODE_LENGTH) return reject('code too long');
  const metadata = otherParams(params, ID_CODE);
  const tooBig = detailsFit(null, metadata);
  if (tooBig) return reject(tooBig);
  const outcome = SOLVER_ERROR.test(code) ? 'failed' : 'solved';
  return { ok: true, value: { ...ids, outcome, code, format, solution: null, metadata } };
}

/** uCaptcha: `captcha_id`, `status` (1 solved, 0 failed), `code` only when solved. */
function parseUcaptcha(params: URLSearchParams, pathTaskId: string | undefined): ParseResult {
  const rawId = single(params, 'captcha_id');
  if (isRejection(rawId)) return rawId;
  const ids = pickIds(rawId, pathTaskId);
  if (isRejection(ids)) return ids;
  const status = single(params, 'status');
  if (isRejection(status)) return status;
  const code = single(params, 'code');
  if (isRejection(code)) return code;
  if (code !== null && code.length > MAX_CODE_LENGTH) return reject('code too long');
  if (status !== '1' && status !== '0') return reject('status must be 1 or 0');
  if (status === '1' && !code) return reject('missing code for status=1');
  const metadata = { status, ...otherParams(params, UCAPTCHA) };
  const tooBig = detailsFit(null, metadata);
  if (tooBig) return reject(tooBig);
  const outcome = status === '1' ? 'solved' : 'failed';
  return { ok: true, value: { ...ids, outcome, code: code ?? '', format: 'ucaptcha', solution: null, metadata } };
}

/** Solution fields that carry the token, in the order the getTaskResult APIs document them. */
const TOKEN_FIELDS = ['gRecaptchaResponse', 'token', 'text', 'captchaResponse'] as const;

/** Where a getTaskResult-shaped body may carry the solver's task id (CapSolver: `taskId`). */
const JSON_ID_FIELDS = ['taskId', 'task_id', 'id'] as const;

/**
 * Anti-Captcha / CapMonster Cloud / CapSolver: a getTaskResult-shaped JSON body. The whole `solution` object is kept
 * (the token's companions, such as `userAgent` and hCaptcha's `respKey`, must be reused by the app), and every other
 * field but the id as metadata (`cost`, `createTime`, `endTime`, `solveCount`, `errorCode`, `errorDescription`…).
 */
function parseTaskResult(value: unknown, pathTaskId: string | undefined): ParseResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return reject('JSON body must be an object');
  const body = value as Record<string, unknown>;
  const idField = JSON_ID_FIELDS.find((k) => body[k] !== undefined && body[k] !== null);
  const rawId = idField === undefined ? undefined : body[idField];
  if (rawId !== undefined && typeof rawId !== 'string' && typeof rawId !== 'number')
    return reject('taskId must be a string or number');
  const ids = pickIds(rawId === undefined ? undefined : String(rawId), pathTaskId);
  if (isRejection(ids)) return ids;
  const errorId = body.errorId ?? 0;
  if (typeof errorId !== 'number') return reject('errorId must be a number');
  const { solution, ...rest } = body;
  if (idField !== undefined) delete rest[idField];
  const metadata = Object.keys(rest).length === 0 ? null : rest;
  if (errorId !== 0) {
    const errorCode = typeof body.errorCode === 'string' ? body.errorCode : `ERROR_ID_${errorId}`;
    const tooBig = detailsFit(null, metadata);
    if (tooBig) return reject(tooBig);
    return {
      ok: true,
      value: { ...ids, outcome: 'failed', code: errorCode.slice(0, 256), format: 'json', solution: null, metadata },
    };
  }
  if (body.status !== undefined && body.status !== 'ready') return reject('status must be "ready"');
  if (typeof solution !== 'object' || solution === null || Array.isArray(solution)) return reject('missing solution');
  const fields = solution as Record<string, unknown>;
  const tooBig = detailsFit(solution, metadata);
  if (tooBig) return reject(tooBig);
  const token = TOKEN_FIELDS.map((k) => fields[k]).find((v): v is string => typeof v === 'string' && v !== '');
  const code = token ?? JSON.stringify(solution);
  if (code.length > MAX_CODE_LENGTH) return reject('solution too long');
  return {
    ok: true,
    value: { ...ids, outcome: 'solved', code, format: 'json', solution: fields, metadata },
  };
}

/** Picks the adapter for a callback and parses it; never throws. */
export function parseCallback(input: CallbackInput): ParseResult {
  const { body, pathTaskId } = input;
  if (input.method === 'GET') {
    return input.query.has('captcha_id')
      ? parseUcaptcha(input.query, pathTaskId)
      : parseIdCode(input.query, 'query', pathTaskId);
  }
  if (body?.kind === 'json') return parseTaskResult(body.value, pathTaskId);
  if (body?.kind === 'form') {
    return body.params.has('captcha_id')
      ? parseUcaptcha(body.params, pathTaskId)
      : parseIdCode(body.params, 'form', pathTaskId);
  }
  return reject('empty body');
}
