import { performance } from 'node:perf_hooks';
import type { Context, Middleware } from 'koa';
import type { DeliveryTracker } from '../delivery/DeliveryTracker.ts';
import type { CallbackResult, CallbackTransition } from '../delivery/TaskStore.ts';
import type { CallbackStats } from '../health/CallbackStats.ts';
import type { ErrorType } from '../metrics/contract.ts';
import type { ReceiverMetrics } from '../metrics/instruments.ts';
import { type CallbackInput, parseCallback } from './parseCallback.ts';
import { readBody } from './readBody.ts';
import { secretMatcher } from './secretPath.ts';

export type OnResult = (result: CallbackResult, transition: CallbackTransition) => void | Promise<void>;
export type OnError = (error: unknown, where: 'onResult' | 'store' | 'sweep' | 'request') => void;

export interface CallbackRouteOptions {
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

interface Failure {
  readonly status: number;
  readonly errorType: ErrorType;
  readonly reason: string;
}

const fail = (status: number, errorType: ErrorType, reason: string): Failure => ({ status, errorType, reason });
const NOT_FOUND = fail(404, 'invalid_request', 'no such callback route');
const NOT_FOUND_SECRET = fail(404, 'unauthorized', 'no such callback route');
const METHOD = fail(405, 'method_not_allowed', 'use GET or POST');
const QUERY_TOO_LONG = fail(414, 'uri_too_long', 'query string too long');
const BODY_TOO_LARGE = fail(413, 'payload_too_large', 'body too large');
const MEDIA = fail(415, 'unsupported_media_type', 'use application/x-www-form-urlencoded or application/json');
const BAD_JSON = fail(400, 'invalid_request', 'body is not valid JSON');
const BAD_PATH = fail(400, 'invalid_request', 'bad percent-encoding in path');
const STORE_DOWN = fail(503, 'store_unavailable', 'result could not be stored; not acknowledged');
const OK_BODY = 'OK';

/**
 * The callback route family: `<prefix>` and `<prefix>/<taskId>`, or with a secret `<prefix>/<secret>` and
 * `<prefix>/<secret>/<taskId>`. Every request under the prefix is answered here (200, or a 4xx/5xx with a one-line
 * JSON reason), timed, and counted; the result is durable in the store before the 200 is sent.
 */
export function callbackRoute(options: CallbackRouteOptions): Middleware {
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

  async function readInput(ctx: Context, taskId: string | undefined): Promise<CallbackInput | Failure> {
    const url = ctx.req.url ?? '';
    const q = url.indexOf('?');
    if (q >= 0 && url.length - q - 1 > maxQueryBytes) return QUERY_TOO_LONG;
    const query = new URLSearchParams(q >= 0 ? url.slice(q + 1) : '');
    const base = { query, ...(taskId === undefined ? {} : { pathTaskId: taskId }) };
    if (ctx.method === 'GET') return { method: 'GET', ...base };
    const read = await readBody(ctx.req, maxBodyBytes);
    if (!read.ok) return BODY_TOO_LARGE;
    // A POST with no body carries its fields in the query string, as some solvers send them.
    if (read.body.length === 0) return { method: 'POST', ...base, body: { kind: 'form', params: query } };
    const type = (ctx.get('content-type').split(';')[0] ?? '').trim().toLowerCase();
    if (type === 'application/x-www-form-urlencoded') {
      return {
        method: 'POST',
        ...base,
        body: { kind: 'form', params: new URLSearchParams(read.body.toString('utf8')) },
      };
    }
    if (type === 'application/json') {
      try {
        return { method: 'POST', ...base, body: { kind: 'json', value: JSON.parse(read.body.toString('utf8')) } };
      } catch {
        return BAD_JSON;
      }
    }
    return MEDIA;
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

  async function handle(ctx: Context): Promise<Failure | undefined> {
    const routed = route(ctx.path);
    if ('status' in routed) return routed;
    if (ctx.method !== 'GET' && ctx.method !== 'POST') {
      ctx.set('Allow', 'GET, POST');
      return METHOD;
    }
    const input = await readInput(ctx, routed.taskId);
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
    metrics.lastReceived(receivedAt / 1000);
    stats.accepted(receivedAt);
    ctx.status = 200;
    ctx.type = 'text/plain';
    ctx.body = OK_BODY;
    if (transition.kind !== 'duplicate') runHook(result, transition);
    return undefined;
  }

  return async function captchaCallbackRoute(ctx, next) {
    const path = ctx.path;
    if (!path.startsWith(prefix) || (path.length > prefix.length && path.charCodeAt(prefix.length) !== 47)) {
      return next();
    }
    const started = performance.now();
    let failure: Failure | undefined;
    try {
      failure = await handle(ctx);
    } catch (error) {
      // An unexpected fault (e.g. the client aborted mid-body): answer, count, never crash.
      onError(error, 'request');
      failure = fail(400, 'invalid_request', 'request could not be read');
    }
    if (failure) {
      ctx.status = failure.status;
      ctx.body = { error: failure.errorType, reason: failure.reason };
      if (failure.status === 413) ctx.set('Connection', 'close');
      metrics.error(failure.errorType);
      stats.error(failure.errorType);
    }
    const ms = performance.now() - started;
    metrics.duration(ctx.status, ms / 1000);
    stats.request(ms);
  };
}
