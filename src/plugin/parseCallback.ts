import type { CallbackFormat, ErrorType, Outcome } from '../metrics/contract.ts';

/** What the HTTP layer hands the adapters: already size-checked, never trusted. */
export interface CallbackInput {
  readonly method: 'GET' | 'POST';
  readonly query: URLSearchParams;
  /** `form` and `json` bodies only; undefined for GET. */
  readonly body?:
    | { readonly kind: 'form'; readonly params: URLSearchParams }
    | { readonly kind: 'json'; readonly value: unknown };
  /** The `<taskId>` path segment, when the URL carries one. */
  readonly pathTaskId?: string;
}

export interface ParsedCallback {
  readonly taskId: string;
  readonly outcome: Outcome;
  readonly code: string;
  readonly format: CallbackFormat;
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

/** Solver task ids are numeric or UUID-like; anything else is refused so ids stay safe to log and to key on. */
export const TASK_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** 2Captcha/CaptchaAI send failures in `code` as an `ERROR_…` constant (e.g. ERROR_CAPTCHA_UNSOLVABLE). */
const SOLVER_ERROR = /^ERROR_[A-Z0-9_]+$/;
export const MAX_CODE_LENGTH = 32_768;

const reject = (reason: string): ParseResult => ({
  ok: false,
  error: { status: 400, errorType: 'invalid_request', reason },
});

function pickTaskId(fromBody: string | null | undefined, fromPath: string | undefined): string | ParseResult {
  const id = fromBody ?? fromPath;
  if (id === undefined || id === null || id === '') return reject('missing task id');
  if (fromBody && fromPath && fromBody !== fromPath) return reject('task id in the path and in the request differ');
  if (!TASK_ID.test(id)) return reject('task id must be 1-128 characters of A-Z a-z 0-9 . _ : -');
  return id;
}

function single(params: URLSearchParams, key: string): string | null | ParseResult {
  const all = params.getAll(key);
  if (all.length > 1) return reject(`parameter ${key} given more than once`);
  return all[0] ?? null;
}

const isRejection = (x: unknown): x is ParseResult => typeof x === 'object' && x !== null && 'ok' in x;

/** CaptchaAI / 2Captcha: `id` and `code`, from the query (GET) or a form body (POST). */
function parseIdCode(params: URLSearchParams, format: CallbackFormat, pathTaskId: string | undefined): ParseResult {
  const rawId = single(params, 'id');
  if (isRejection(rawId)) return rawId;
  const id = pickTaskId(rawId, pathTaskId);
  if (typeof id !== 'string') return id;
  const code = single(params, 'code');
  if (isRejection(code)) return code;
  if (code === null || code === '') return reject('missing code');
  if (code.length > MAX_CODE_LENGTH) return reject('code too long');
  return { ok: true, value: { taskId: id, outcome: SOLVER_ERROR.test(code) ? 'failed' : 'solved', code, format } };
}

/** uCaptcha: `captcha_id`, `status` (1 solved, 0 failed), `code` only when solved. */
function parseUcaptcha(params: URLSearchParams, pathTaskId: string | undefined): ParseResult {
  const rawId = single(params, 'captcha_id');
  if (isRejection(rawId)) return rawId;
  const id = pickTaskId(rawId, pathTaskId);
  if (typeof id !== 'string') return id;
  const status = single(params, 'status');
  if (isRejection(status)) return status;
  const code = single(params, 'code');
  if (isRejection(code)) return code;
  if (code !== null && code.length > MAX_CODE_LENGTH) return reject('code too long');
  if (status === '1') {
    if (!code) return reject('missing code for status=1');
    return { ok: true, value: { taskId: id, outcome: 'solved', code, format: 'ucaptcha' } };
  }
  if (status === '0')
    return { ok: true, value: { taskId: id, outcome: 'failed', code: code ?? '', format: 'ucaptcha' } };
  return reject('status must be 1 or 0');
}

/** Solution fields that carry the token, in the order the getTaskResult APIs document them. */
const TOKEN_FIELDS = ['gRecaptchaResponse', 'token', 'text', 'captchaResponse'] as const;

/** Anti-Captcha / CapMonster Cloud / CapSolver: a getTaskResult-shaped JSON body. */
function parseTaskResult(value: unknown, pathTaskId: string | undefined): ParseResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return reject('JSON body must be an object');
  const body = value as Record<string, unknown>;
  const rawId = body.taskId ?? body.task_id ?? body.id;
  if (rawId !== undefined && typeof rawId !== 'string' && typeof rawId !== 'number')
    return reject('taskId must be a string or number');
  const id = pickTaskId(rawId === undefined ? undefined : String(rawId), pathTaskId);
  if (typeof id !== 'string') return id;
  const errorId = body.errorId ?? 0;
  if (typeof errorId !== 'number') return reject('errorId must be a number');
  if (errorId !== 0) {
    const errorCode = typeof body.errorCode === 'string' ? body.errorCode : `ERROR_ID_${errorId}`;
    return { ok: true, value: { taskId: id, outcome: 'failed', code: errorCode.slice(0, 256), format: 'json' } };
  }
  if (body.status !== undefined && body.status !== 'ready') return reject('status must be "ready"');
  const solution = body.solution;
  if (typeof solution !== 'object' || solution === null || Array.isArray(solution)) return reject('missing solution');
  const fields = solution as Record<string, unknown>;
  const token = TOKEN_FIELDS.map((k) => fields[k]).find((v): v is string => typeof v === 'string' && v !== '');
  let code = token;
  if (code === undefined) {
    try {
      code = JSON.stringify(solution);
    } catch {
      // JSON.stringify recurses: a nesting bomb that JSON.parse accepted overflows the stack here.
      return reject('solution nested too deeply');
    }
  }
  if (code.length > MAX_CODE_LENGTH) return reject('solution too long');
  return { ok: true, value: { taskId: id, outcome: 'solved', code, format: 'json' } };
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
