import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { DeliveryTracker } from '../delivery/DeliveryTracker.ts';
import type { CallbackResult, CallbackTransition } from '../delivery/TaskStore.ts';
import type { CallbackStats } from '../health/CallbackStats.ts';
import { type ErrorType, failureReason } from '../metrics/contract.ts';
import type { ReceiverMetrics } from '../metrics/instruments.ts';
import { type CallbackInput, parseCallback } from './parseCallback.ts';
import { readBody } from './readBody.ts';
import { secretMatcher } from './secretPath.ts';

/**
 * Your processing of a stored callback. `result.taskId` is the app id of the task it was filed under (for an
 * unregistered callback, the id it was stored under); `result.solverTaskId` the solver's id when it carried one.
 */
export type OnResult = (result: CallbackResult, transition: CallbackTransition) => void | Promise<void>;
export type OnError = (error: unknown, where: 'onResult' | 'store' | 'sweep' | 'request') => void;

export interface CallbackHandlerOptions {
  readonly prefix: string;
  readonly secret: string | undefined;
  readonly maxBodyBytes: number;
  readonly maxQueryBytes: number;
  readonly tracker: DeliveryTracker;
  readonly stats: CallbackStats;
  readonly metrics: ReceiverMetrics;
  readonly onResult: OnResult | undefined;
  readonly onError: OnError;
}

/**
 * A body another middleware has already read (a Koa body parser mounted before the monitor): its raw text if it kept
 * one (`ctx.request.rawBody`), else what it parsed (`ctx.request.body`).
 */
export interface PrereadBody {
  readonly raw?: unknown;
  readonly parsed?: unknown;
}

interface Failure {
  readonly status: number;
  readonly errorType: ErrorType;
  readonly reason: string;
}

/**
 * What to answer, independent of the HTTP framework: the Koa middleware and the plain `node:http` listener both write
 * it out as it is. `body` is already serialised.
 */
export interface Reply {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
  /** Extra response headers (`Allow`, `Connection`). */
  readonly headers?: Readonly<Record<string, string>>;
}

export const JSON_TYPE = 'application/json; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';

const fail = (status: number, errorType: ErrorType, reason: string): Failure => ({ status, errorType, reason });
const NOT_FOUND = fail(404, 'invalid_request', 'no such callback route');
const NOT_FOUND_SECRET = fail(404, 'unauthorized', 'no such callback route');
const METHOD_NOT_ALLOWED = fail(405, 'method_not_allowed', 'use GET or POST');
const QUERY_TOO_LONG = fail(414, 'uri_too_long', 'query string too long');
const BODY_TOO_LARGE = fail(413, 'payload_too_large', 'body too large');
const UNSUPPORTED_MEDIA_TYPE = fail(
  415,
  'unsupported_media_type',
  'use application/x-www-form-urlencoded or application/json',
);
const BAD_JSON = fail(400, 'invalid_request', 'body is not valid JSON');
const BAD_PATH = fail(400, 'invalid_request', 'bad percent-encoding in path');
const BODY_GONE = fail(
  500,
  'body_unavailable',
  'the request body was read by another middleware, which left neither ctx.request.rawBody nor ctx.request.body',
);
const STORE_DOWN = fail(503, 'store_unavailable', 'result could not be stored; not acknowledged');
const OK: Reply = Object.freeze({ status: 200, contentType: TEXT_TYPE, body: 'OK' });
const ALLOW = Object.freeze({ Allow: 'GET, POST' });
const CLOSE = Object.freeze({ Connection: 'close' });

const EMPTY = Buffer.alloc(0);

/** A body parser's form result (`{ key: value | value[] }`) as the parameters the adapters read. */
function paramsOf(parsed: unknown): URLSearchParams {
  const params = new URLSearchParams();
  if (typeof parsed !== 'object' || parsed === null) return params;
  for (const [key, value] of Object.entries(parsed)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      params.append(key, typeof v === 'string' ? v : JSON.stringify(v));
    }
  }
  return params;
}

/** The path of a request target: `/a/b?c` → `/a/b` (absolute-form targets, which no solver sends, via URL). */
export function pathOf(url: string): string {
  if (url.charCodeAt(0) !== 47) {
    try {
      return new URL(url).pathname;
    } catch {
      return '';
    }
  }
  const end = url.search(/[?#]/);
  return end < 0 ? url : url.slice(0, end);
}

/** The callback route family, answered without any HTTP framework; see `createCallbackHandler`. */
export interface CallbackHandler {
  /** True when `path` is in the route family (everything under the prefix): `handle` answers it, whatever it is. */
  matches(path: string): boolean;
  /**
   * Reads, parses, stores and counts one request; never rejects. The result is durable before a 200 is returned.
   * `preread` is the body a framework middleware has already read; without it a consumed body is a 500, never a hang.
   */
  handle(req: IncomingMessage, path: string, preread?: PrereadBody): Promise<Reply>;
}

/**
 * The callback route family: `<prefix>` and `<prefix>/<taskId>`, or with a secret `<prefix>/<secret>` and
 * `<prefix>/<secret>/<taskId>`. Every request under the prefix is answered (200, or a 4xx/5xx with a one-line JSON
 * reason), timed, and counted; the result is durable in the store before the 200 is returned.
 */
export function createCallbackHandler(options: CallbackHandlerOptions): CallbackHandler {
  const { prefix, maxBodyBytes, maxQueryBytes, tracker, stats, metrics, onResult, onError } = options;
  const matchesSecret = options.secret === undefined ? undefined : secretMatcher(options.secret);
  const notFound = matchesSecret ? NOT_FOUND_SECRET : NOT_FOUND;

  /** Splits the path below the prefix into the task id segment, or a failure. */
  function route(path: string): { taskId: string | undefined } | Failure {
    const rest = path.slice(prefix.length).replace(/\/+$/, '');
    const segments = rest === '' ? [] : rest.slice(1).split('/');
    if (matchesSecret) {
      const secret = segments.shift();
      if (secret === undefined || !matchesSecret(secret)) return NOT_FOUND_SECRET;
    }
    if (segments.length > 1) return notFound;
    if (segments.length === 0) return { taskId: undefined };
    try {
      return { taskId: decodeURIComponent(segments[0]!) };
    } catch {
      return BAD_PATH;
    }
  }

  /** The body as bytes, or as an already parsed value, or a failure; never waits on a stream already read. */
  async function bodyOf(
    req: IncomingMessage,
    preread: PrereadBody | undefined,
  ): Promise<{ bytes: Buffer } | { parsed: unknown } | Failure> {
    // A stream another reader has started on never ends for us: waiting on it would hang the solver's request.
    if (!req.readableEnded && !req.readableDidRead) {
      const read = await readBody(req, maxBodyBytes);
      return read.ok ? { bytes: read.body } : BODY_TOO_LARGE;
    }
    const raw = preread?.raw;
    if (typeof raw === 'string' || Buffer.isBuffer(raw)) {
      const bytes = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
      return bytes.length > maxBodyBytes ? BODY_TOO_LARGE : { bytes };
    }
    const parsed = preread?.parsed;
    if (typeof parsed === 'object' && parsed !== null && Object.keys(parsed).length > 0) return { parsed };
    const length = req.headers['content-length'];
    const hadBody = req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
    // The parser found nothing to parse: the same as an empty body (whose fields may be in the query string).
    return hadBody && parsed === undefined ? BODY_GONE : { bytes: EMPTY };
  }

  async function readInput(
    req: IncomingMessage,
    taskId: string | undefined,
    preread: PrereadBody | undefined,
  ): Promise<CallbackInput | Failure> {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    if (q >= 0 && url.length - q - 1 > maxQueryBytes) return QUERY_TOO_LONG;
    const query = new URLSearchParams(q >= 0 ? url.slice(q + 1) : '');
    const base = taskId === undefined ? { query } : { query, pathTaskId: taskId };
    if (req.method === 'GET') return { method: 'GET', ...base };
    const body = await bodyOf(req, preread);
    if ('status' in body) return body;
    const type = (req.headers['content-type']?.split(';')[0] ?? '').trim().toLowerCase();
    if ('parsed' in body) {
      if (type === 'application/json') return { method: 'POST', ...base, body: { kind: 'json', value: body.parsed } };
      if (type === 'application/x-www-form-urlencoded') {
        return { method: 'POST', ...base, body: { kind: 'form', params: paramsOf(body.parsed) } };
      }
      return UNSUPPORTED_MEDIA_TYPE;
    }
    // A POST with no body carries its fields in the query string, as some solvers send them.
    if (body.bytes.length === 0) return { method: 'POST', ...base, body: { kind: 'form', params: query } };
    if (type === 'application/x-www-form-urlencoded') {
      return {
        method: 'POST',
        ...base,
        body: { kind: 'form', params: new URLSearchParams(body.bytes.toString('utf8')) },
      };
    }
    if (type === 'application/json') {
      try {
        return { method: 'POST', ...base, body: { kind: 'json', value: JSON.parse(body.bytes.toString('utf8')) } };
      } catch {
        return BAD_JSON;
      }
    }
    return UNSUPPORTED_MEDIA_TYPE;
  }

  function runHook(result: CallbackResult, transition: CallbackTransition): void {
    if (!onResult) return;
    // After the answer is on its way; a slow or failing hook never delays or breaks the acknowledgement.
    setImmediate(() => {
      const failed = (error: unknown) => {
        metrics.error('handler_error');
        stats.error('handler_error');
        onError(error, 'onResult');
      };
      try {
        const pending = onResult(result, transition);
        if (pending && typeof pending.then === 'function') pending.then(undefined, failed);
      } catch (error) {
        failed(error);
      }
    });
  }

  async function store(
    req: IncomingMessage,
    path: string,
    preread: PrereadBody | undefined,
  ): Promise<Failure | undefined> {
    const routed = route(path);
    if ('status' in routed) return routed;
    if (req.method !== 'GET' && req.method !== 'POST') return METHOD_NOT_ALLOWED;
    const input = await readInput(req, routed.taskId, preread);
    if ('status' in input) return input;
    const parsed = parseCallback(input);
    if (!parsed.ok) return parsed.error;
    const receivedAt = Date.now();
    const result: CallbackResult = { ...parsed.value, receivedAt };
    let transition: CallbackTransition;
    try {
      transition = await tracker.recordCallback(result);
    } catch (error) {
      onError(error, 'store');
      return STORE_DOWN;
    }
    metrics.callback(result.outcome, result.format);
    if (result.outcome === 'failed') metrics.failure(failureReason(result.code));
    metrics.lastReceived(receivedAt / 1000);
    stats.accepted(receivedAt);
    // The hook sees the task's app id, whichever id the callback carried.
    if (transition.kind !== 'duplicate') runHook({ ...result, taskId: transition.id }, transition);
    return undefined;
  }

  return {
    matches: (path) =>
      path.startsWith(prefix) && (path.length === prefix.length || path.charCodeAt(prefix.length) === 47),
    async handle(req, path, preread) {
      const started = performance.now();
      let failure: Failure | undefined;
      try {
        failure = await store(req, path, preread);
      } catch (error) {
        // An unexpected fault (e.g. the client aborted mid-body): answer, count, never crash.
        onError(error, 'request');
        failure = fail(400, 'invalid_request', 'request could not be read');
      }
      let reply = OK;
      if (failure) {
        reply = {
          status: failure.status,
          contentType: JSON_TYPE,
          body: JSON.stringify({ error: failure.errorType, reason: failure.reason }),
          ...(failure === METHOD_NOT_ALLOWED ? { headers: ALLOW } : failure.status === 413 ? { headers: CLOSE } : {}),
        };
        metrics.error(failure.errorType);
        stats.error(failure.errorType);
      }
      const ms = performance.now() - started;
      metrics.duration(reply.status, ms / 1000);
      stats.request(ms);
      return reply;
    },
  };
}
