/**
 * Hostile input, part 1: property-based fuzzing of the callback parser, then ≥ 10,000 random HTTP requests against
 * the real server (raw sockets and keep-alive node:http, 32 at a time).
 *
 * Replay a run with FUZZ_SEED=<seed printed below>; FUZZ_REQUESTS changes the request count (default 10,000).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TASK_ID } from '../packages/koa/src/delivery/taskId.ts';
import { ERROR_TYPES, FORMATS, OUTCOMES, PROM } from '../packages/koa/src/metrics/contract.ts';
import { type CallbackInput, MAX_CODE_LENGTH, parseCallback } from '../packages/koa/src/plugin/parseCallback.ts';
import {
  checkSeries,
  contractSeriesBound,
  type Exchange,
  getTask,
  type HttpCase,
  httpExchange,
  keepAliveAgent,
  pool,
  rawExchange,
  registerTasks,
  sumSeries,
  type TaskJson,
  tally,
} from './support/hostile.ts';
import { parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 10_000);
const CONCURRENCY = 32;
const SOLVER_ERROR = /^ERROR_[A-Z0-9_]+$/;

/** Every status the public listener may answer with (431 and 417 come from Node's HTTP parser, before Koa). */
const DESIGNED = [200, 400, 404, 405, 413, 414, 415, 431] as const;
const CALLBACK_ROUTE = [200, 400, 404, 405, 413, 414, 415] as const;

// ─── (a) parseCallback, property-based ───────────────────────────────────────────────────────────────────────────────

const keyArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('id', 'code', 'captcha_id', 'status', 'taskId', 'errorId', 'json') },
  { weight: 1, arbitrary: fc.string({ maxLength: 8 }) },
);
const valueArb = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('', '0', '1', '2', 'ERROR_CAPTCHA_UNSOLVABLE', 'ERROR_', 'null', '-1', '1e400'),
  fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,20}$/),
  fc.nat({ max: 40_000 }).map((n) => 'x'.repeat(n)),
);
const paramsArb = fc.array(fc.tuple(keyArb, valueArb), { maxLength: 8 }).map((pairs) => new URLSearchParams(pairs));
const validId = fc.oneof(fc.stringMatching(TASK_ID), fc.nat().map(String));
const anyId = fc.oneof(validId, fc.string({ unit: 'binary', maxLength: 140 }), fc.constant(''));
const solutionArb = fc.oneof(
  fc.record(
    { gRecaptchaResponse: fc.string(), token: fc.string(), text: fc.string(), captchaResponse: fc.string() },
    { requiredKeys: [] },
  ),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }),
  fc.jsonValue({ maxDepth: 2 }),
);
const taskResultArb = fc.record(
  {
    errorId: fc.oneof(fc.constant(0), fc.integer(), fc.constantFrom('0', null, 1.5, true)),
    errorCode: fc.oneof(fc.string(), fc.constant('ERROR_KEY_DOES_NOT_EXIST')),
    status: fc.oneof(fc.constant('ready'), fc.constantFrom('processing', 1, null)),
    taskId: fc.oneof(anyId, fc.integer(), fc.double(), fc.jsonValue({ maxDepth: 1 })),
    task_id: anyId,
    id: anyId,
    solution: solutionArb,
  },
  { requiredKeys: [] },
);
const inputArb: fc.Arbitrary<CallbackInput> = fc.record(
  {
    method: fc.constantFrom('GET' as const, 'POST' as const),
    query: paramsArb,
    body: fc.oneof(
      fc.constant(undefined),
      paramsArb.map((params) => ({ kind: 'form' as const, params })),
      fc.oneof(taskResultArb, fc.jsonValue({ maxDepth: 6 })).map((value) => ({ kind: 'json' as const, value })),
    ),
    pathTaskId: fc.option(anyId, { nil: undefined }),
  },
  { requiredKeys: ['method', 'query'] },
);

/** Whatever the input, parseCallback returns (never throws) a well-formed result or a 400 that echoes nothing. */
function assertWellFormed(input: CallbackInput): void {
  const result = parseCallback(input);
  if (result.ok) {
    const v = result.value;
    // At least one id, each well-formed: the path's (the app's) and the request's (the solver's).
    expect(v.taskId ?? v.solverTaskId).toBeDefined();
    if (v.taskId !== undefined) expect(v.taskId).toMatch(TASK_ID);
    if (v.solverTaskId !== undefined) expect(v.solverTaskId).toMatch(TASK_ID);
    expect(OUTCOMES).toContain(v.outcome);
    expect(FORMATS).toContain(v.format);
    expect(typeof v.code).toBe('string');
    expect(v.code.length).toBeLessThanOrEqual(MAX_CODE_LENGTH);
  } else {
    expect(result.error.status).toBe(400);
    expect(ERROR_TYPES).toContain(result.error.errorType);
    expect(result.error.reason).toMatch(/^[^\n]{1,120}$/);
    for (const code of [input.query.get('code'), input.body?.kind === 'form' ? input.body.params.get('code') : null]) {
      if (code && code.length >= 12) expect(result.error.reason).not.toContain(code);
    }
  }
}

/** A getTaskResult body whose solution nests `depth` levels (what fits in 64 KiB reaches ~13,000 objects or ~32,000 arrays). */
function nestingBomb(depth: number, kind: 'object' | 'array'): unknown {
  const text =
    kind === 'object' ? `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}` : `${'['.repeat(depth)}1${']'.repeat(depth)}`;
  return {
    taskId: '42',
    errorId: 0,
    status: 'ready',
    solution: JSON.parse(kind === 'object' ? text : `{"b":${text}}`),
  };
}

describe('parseCallback under property-based fuzzing', () => {
  const params = { seed: SEED, numRuns: 4000 };

  it('never throws and returns a valid task id and closed-set outcome/format, or a 400 rejection', () => {
    fc.assert(fc.property(inputArb, assertWellFormed), params);
  });

  it('round-trips well-formed id/code callbacks (query and form): same id, same code, outcome by ERROR_ prefix', () => {
    const codeArb = fc.oneof(
      fc.string({ minLength: 1, maxLength: 200 }),
      fc.stringMatching(/^ERROR_[A-Z0-9_]{1,30}$/),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 200 }),
    );
    fc.assert(
      fc.property(validId, codeArb, fc.boolean(), (id, code, asForm) => {
        const params = new URLSearchParams([
          ['id', id],
          ['code', code],
        ]);
        const input: CallbackInput = asForm
          ? { method: 'POST', query: new URLSearchParams(), body: { kind: 'form', params } }
          : { method: 'GET', query: params };
        // URLSearchParams holds USVStrings: a lone surrogate becomes U+FFFD, as it would on the wire.
        const sent = code.toWellFormed();
        expect(parseCallback(input)).toEqual({
          ok: true,
          value: {
            solverTaskId: id,
            code: sent,
            outcome: SOLVER_ERROR.test(sent) ? 'failed' : 'solved',
            format: asForm ? 'form' : 'query',
            solution: null,
            metadata: null,
          },
        });
      }),
      params,
    );
  });

  it('refuses any repeated id/code/captcha_id/status parameter with a 400', () => {
    fc.assert(
      fc.property(
        validId,
        fc.constantFrom('id', 'code', 'captcha_id', 'status'),
        fc.string(),
        fc.string(),
        (id, key, a, b) => {
          const q = new URLSearchParams(
            key === 'captcha_id' || key === 'status' ? { captcha_id: id, status: '1', code: 'c' } : { id, code: 'c' },
          );
          q.delete(key);
          q.append(key, a);
          q.append(key, b);
          const r = parseCallback({ method: 'GET', query: q });
          expect(r.ok).toBe(false);
        },
      ),
      params,
    );
  });

  it('round-trips getTaskResult JSON with a path task id; a body id beside it is kept as the solver id', () => {
    fc.assert(
      fc.property(validId, validId, fc.string({ minLength: 1 }), (pathId, bodyId, token) => {
        const value = { errorId: 0, status: 'ready', solution: { gRecaptchaResponse: token } };
        expect(
          parseCallback({
            method: 'POST',
            query: new URLSearchParams(),
            body: { kind: 'json', value },
            pathTaskId: pathId,
          }),
        ).toEqual({
          ok: true,
          value: {
            taskId: pathId,
            outcome: 'solved',
            code: token,
            format: 'json',
            solution: value.solution,
            metadata: { errorId: 0, status: 'ready' },
          },
        });
        const both = parseCallback({
          method: 'POST',
          query: new URLSearchParams(),
          body: { kind: 'json', value: { ...value, taskId: bodyId } },
          pathTaskId: pathId,
        });
        expect(both).toMatchObject({ ok: true, value: { taskId: pathId, solverTaskId: bodyId } });
      }),
      params,
    );
  });

  it('never throws on JSON nesting bombs that fit in a 64 KiB body', () => {
    // Depths up to what a 64 KiB body can carry. JSON.parse copes (it is iterative); anything recursive over the
    // parsed value (JSON.stringify of the solution) must not blow the stack.
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 13_000 }),
        fc.constantFrom('object' as const, 'array' as const),
        (depth, kind) => {
          assertWellFormed({
            method: 'POST',
            query: new URLSearchParams(),
            body: { kind: 'json', value: nestingBomb(depth, kind) },
          });
        },
      ),
      {
        seed: SEED,
        numRuns: 60,
        examples: [
          [13_000, 'object'],
          [12_000, 'array'],
          [5_000, 'object'],
        ],
      },
    );
  });
});

// ─── (b) 10,000 random requests against the real server ──────────────────────────────────────────────────────────────

type Route = 'callback' | 'outside' | 'health';
interface FuzzCase {
  /** Category, for the tally and for docs/security.md. */
  readonly kind: string;
  readonly route: Route;
  /** Statuses this case may get; a status outside DESIGNED always fails. */
  readonly allowed: readonly number[];
  readonly http?: HttpCase;
  readonly raw?: () => Buffer[];
  /** For CONNECT: Node closes the socket without a response when nothing listens for 'connect'. */
  readonly closeAllowed?: boolean;
  /** Task ids this case mentions that must come out of the run untouched. */
  readonly protects?: string;
}

const PROTECTED_DELIVERED = Array.from({ length: 10 }, (_, i) => `keep-delivered-${i}`);
const PROTECTED_PENDING = Array.from({ length: 10 }, (_, i) => `keep-pending-${i}`);
const NEVER_STORED = Array.from({ length: 20 }, (_, i) => `never-stored-${i}`);
const originalCode = (id: string) => `original-solution-for-${id}`;

const METHODS_ODD = [
  'PUT',
  'DELETE',
  'PATCH',
  'OPTIONS',
  'HEAD',
  'TRACE',
  'PROPFIND',
  'MKCOL',
  'LOCK',
  'PURGE',
  'SEARCH',
  'QUERY',
  'REPORT',
  'M-SEARCH',
  'NOTIFY',
  'SUBSCRIBE',
  'LINK',
  'ACL',
  'COPY',
  'MOVE',
  'FOO',
  'GETT',
  'X-CUSTOM',
];
const BAD_PCT = ['%', '%z', '%zz', '%E0%A4%A', '%%', '%0', '%u0041', '%C0%AF', '%ED%A0%80', '%FF%FE', '%00', '%0A'];

/** Percent-encodes properly, leaves raw, injects bad escapes, or passes latin1 bytes (invalid UTF-8 on the wire). */
const encodedArb = (s: fc.Arbitrary<string>) =>
  fc.oneof(
    { weight: 6, arbitrary: s.map(encodeURIComponent) },
    { weight: 1, arbitrary: fc.tuple(s, fc.constantFrom(...BAD_PCT)).map(([v, bad]) => encodeURIComponent(v) + bad) },
    {
      weight: 1,
      arbitrary: fc
        .string({ unit: fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 12 })
        .map((latin1) => `x${latin1}`),
    },
  );

const fuzzKey = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('id', 'code', 'captcha_id', 'status', 'taskId', 'errorId', 'id[]', 'ID') },
  { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
);
const fuzzValue = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,24}$/) },
  { weight: 3, arbitrary: fc.string({ maxLength: 60 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', 'ERROR_CAPTCHA_UNSOLVABLE', '0', '1', '2', ...PROTECTED_DELIVERED.slice(0, 3)),
  },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 12_000 }).map((n) => 'v'.repeat(n)) },
);
/** A query string: key/value pairs (keys repeat often), empty and huge values, odd separators. */
const queryArb = fc
  .tuple(
    fc.array(fc.tuple(encodedArb(fuzzKey), encodedArb(fuzzValue), fc.constantFrom('=', '=', '=', '', '==')), {
      maxLength: 7,
    }),
    fc.constantFrom('&', '&', '&', ';', '&&'),
  )
  .map(([pairs, sep]) => pairs.map(([k, v, eq]) => (eq === '' ? k : `${k}${eq}${v}`)).join(sep));

const segmentArb = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,30}$/) },
  { weight: 2, arbitrary: encodedArb(fc.string({ maxLength: 20 })) },
  { weight: 1, arbitrary: fc.constantFrom('..', '.', '%2F', '%2e%2e', '', ...BAD_PCT) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 9000 }).map((n) => 's'.repeat(n)) },
);
const callbackPathArb = fc.oneof(
  fc.constantFrom('/callback', '/callback/', '/callback//', '/callback///x'),
  segmentArb.map((s) => `/callback/${s}`),
  fc.tuple(segmentArb, segmentArb).map(([a, b]) => `/callback/${a}/${b}`),
  segmentArb.map((s) => `/callback/${s}/`),
);
const OUTSIDE = [
  '/',
  '/metrics',
  '/tasks',
  '/tasks/1',
  '/tasks?state=missed',
  '/callbacks',
  '/callbackx',
  '/Callback',
  '/CALLBACK',
  '//callback',
  '/callback%2F1',
  '/callback;x',
  '/health',
  '/healthz/',
  '/health/callbacks/x',
  '/favicon.ico',
  '/%00',
  '/..%2f..%2fetc%2fpasswd',
  '/.env',
  '/api/callback',
];
const outsidePathArb = fc.oneof(
  fc.constantFrom(...OUTSIDE),
  segmentArb.filter((s) => !s.startsWith('callback') && !s.startsWith('health')).map((s) => `/${s}`),
);

const contentTypeArb = fc.oneof(
  fc.constantFrom(
    'application/json',
    'application/json; charset=utf-8',
    'APPLICATION/JSON',
    'application/x-www-form-urlencoded',
    'application/x-www-form-urlencoded; charset=ISO-8859-1',
    'text/plain',
    'multipart/form-data; boundary=xyz',
    'application/json, text/plain',
    ';',
    'application/json;;;',
    'application/octet-stream',
    '',
  ),
  fc.string({ unit: 'grapheme-ascii', maxLength: 30 }),
);

const jsonBodyArb: fc.Arbitrary<() => Buffer> = fc.oneof(
  taskResultArb.map((v) => () => Buffer.from(JSON.stringify(v))),
  fc.jsonValue({ maxDepth: 5 }).map((v) => () => Buffer.from(JSON.stringify(v))),
  // Nesting bombs: deep solutions (the stringify path), deep top-level arrays, unbalanced openers.
  fc
    .tuple(fc.integer({ min: 1000, max: 13_000 }), fc.constantFrom('{"a":', '['), fc.boolean())
    .map(([depth, open, balanced]) => () => {
      const close = open === '[' ? ']' : '}';
      const inner = `${open.repeat(depth)}1${balanced ? close.repeat(depth) : ''}`;
      return Buffer.from(`{"taskId":"bomb-${depth}","errorId":0,"status":"ready","solution":{"x":${inner}}}`);
    }),
  fc.integer({ min: 1000, max: 60_000 }).map((depth) => () => Buffer.from('['.repeat(depth) + ']'.repeat(depth))),
  // Invalid JSON, invalid UTF-8 inside JSON strings, a BOM.
  fc.uint8Array({ maxLength: 300 }).map((bytes) => () => Buffer.from(bytes)),
  fc.constantFrom(
    () =>
      Buffer.concat([
        Buffer.from('{"taskId":"utf8-'),
        Buffer.from([0xff, 0xfe, 0xc0, 0xaf]),
        Buffer.from('","solution":{"token":"t"}}'),
      ]),
    () =>
      Buffer.concat([
        Buffer.from('{"taskId":"12","solution":{"token":"'),
        Buffer.from([0xed, 0xa0, 0x80]),
        Buffer.from('"}}'),
      ]),
    () => Buffer.from('\ufeff{"taskId":"13","solution":{"token":"t"}}'),
    () => Buffer.from('{"taskId":"14","solution":{"token":"t"}'),
    () => Buffer.from('{"__proto__":{"taskId":"15"},"constructor":{"prototype":{"x":1}},"solution":{"token":"t"}}'),
    () => Buffer.from('{"taskId":1e999,"solution":{"token":"t"}}'),
  ),
);
const formBodyArb: fc.Arbitrary<() => Buffer> = fc.oneof(
  queryArb.map((q) => () => Buffer.from(q, 'latin1')),
  fc.uint8Array({ maxLength: 300 }).map((b) => () => Buffer.from(b)),
);
/** Bodies over the 64 KiB limit, sent with Content-Length or chunked. */
const oversizeArb = fc.tuple(fc.integer({ min: 65_537, max: 200_000 }), fc.boolean()).map(([size, chunked]) => ({
  size,
  chunked,
}));

function bodyCase(method: string, path: string, route: Route) {
  return fc
    .oneof(
      { weight: 4, arbitrary: fc.tuple(jsonBodyArb, fc.option(contentTypeArb, { nil: undefined })) },
      { weight: 3, arbitrary: fc.tuple(formBodyArb, fc.option(contentTypeArb, { nil: undefined })) },
      {
        weight: 1,
        arbitrary: fc.tuple(
          fc.constant(() => Buffer.alloc(0)),
          fc.option(contentTypeArb, { nil: undefined }),
        ),
      },
    )
    .map(([body, type]): FuzzCase => {
      const buf = body();
      return {
        kind: `body:${method === 'POST' ? 'post' : 'odd-method'}`,
        route,
        allowed: route === 'outside' ? [404] : CALLBACK_ROUTE,
        http: { method, path, headers: type === undefined ? {} : { 'content-type': type }, body: buf },
      };
    });
}

const extraHeadersArb = fc.dictionary(
  fc.stringMatching(/^x-[a-z0-9-]{1,20}$/),
  fc.oneof(
    fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
    fc.integer({ min: 100, max: 4000 }).map((n) => 'h'.repeat(n)),
  ),
  { maxKeys: 4 },
);

/** Requests rejected by construction that name a protected task: they must never store anything. */
function rejectedFor(id: string): fc.Arbitrary<FuzzCase> {
  const c = (kind: string, status: number, http: HttpCase): FuzzCase => ({
    kind: `rejected:${kind}`,
    route: 'callback',
    allowed: [status],
    http,
    protects: id,
  });
  /** A POST with this body (and content type, unless undefined). */
  const post = (kind: string, status: number, path: string, contentType: string | undefined, body: string) =>
    c(kind, status, {
      method: 'POST',
      path,
      ...(contentType === undefined ? {} : { headers: { 'content-type': contentType } }),
      body: Buffer.from(body),
    });
  const json = 'application/json';
  const form = 'application/x-www-form-urlencoded';
  return fc.constantFrom(
    c('repeated-id', 400, { method: 'GET', path: `/callback?id=${id}&id=${id}&code=forged` }),
    c('repeated-code', 400, { method: 'GET', path: `/callback?id=${id}&code=forged&code=forged2` }),
    c('missing-code', 400, { method: 'GET', path: `/callback?id=${id}` }),
    c('empty-code', 400, { method: 'GET', path: `/callback?id=${id}&code=` }),
    c('bad-solver-id', 400, { method: 'GET', path: `/callback/${id}?id=%3Cx%3E&code=forged` }),
    post('text-plain', 415, '/callback', 'text/plain', `id=${id}&code=forged`),
    post('no-content-type', 415, '/callback', undefined, `id=${id}&code=forged`),
    post('not-ready', 400, `/callback/${id}`, json, '{"errorId":0,"status":"processing"}'),
    post('string-solution', 400, `/callback/${id}`, json, '{"errorId":0,"solution":"forged"}'),
    post('bad-json', 400, `/callback/${id}`, json, '{"solution":{"token":"forged"}'),
    post('errorId-string', 400, `/callback/${id}`, json, '{"errorId":"1"}'),
    c('long-query', 414, { method: 'GET', path: `/callback?id=${id}&code=forged&pad=${'p'.repeat(8200)}` }),
    post('big-body', 413, '/callback', form, `id=${id}&code=forged&pad=${'p'.repeat(70_000)}`),
    post('long-code', 400, '/callback', form, `id=${id}&code=${'c'.repeat(MAX_CODE_LENGTH + 1)}`),
    c('put', 405, { method: 'PUT', path: `/callback?id=${id}&code=forged` }),
    c('delete', 405, { method: 'DELETE', path: `/callback/${id}` }),
    c('extra-segment', 404, { method: 'GET', path: `/callback/${id}/x?code=forged` }),
    c('ucaptcha-status-2', 400, { method: 'GET', path: `/callback?captcha_id=${id}&status=2&code=forged` }),
    c('ucaptcha-no-code', 400, { method: 'GET', path: `/callback?captcha_id=${id}&status=1` }),
    c('nul-in-id', 400, { method: 'GET', path: `/callback?id=${id}%00&code=forged` }),
  );
}

/** Hand-made raw requests: what node:http refuses to send. Statuses come from Node's parser (400/431) or the app. */
const rawArb: fc.Arbitrary<FuzzCase> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.uint8Array({ minLength: 1, maxLength: 2000 }).map(
      (bytes): FuzzCase => ({
        kind: 'raw:random-bytes',
        route: 'outside',
        allowed: [400],
        // A leading NUL can never start a method, so Node refuses at once instead of waiting for more.
        raw: () => [Buffer.from([0]), Buffer.from(bytes), Buffer.from('\r\n\r\n')],
      }),
    ),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.constantFrom('get', 'G ET', 'GET\t', 'GE\u00ffT', 'POST /x', '\u0000GET', 'GET'),
        fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 40 }),
      )
      .map(
        ([method, junk]): FuzzCase => ({
          kind: 'raw:bad-request-line',
          route: 'callback',
          allowed: DESIGNED,
          raw: () => [
            Buffer.from(`${method} /callback?id=1${junk} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 'latin1'),
          ],
        }),
      ),
  },
  {
    weight: 4,
    arbitrary: fc
      .constantFrom(
        ['no-host-1.1', 'GET /callback?id=raw1&code=c HTTP/1.1\r\nConnection: close\r\n\r\n', [400]],
        ['http-1.0', 'GET /callback?id=raw-http10&code=c HTTP/1.0\r\n\r\n', [200]],
        ['http-2.0-version', 'GET /callback?id=1&code=c HTTP/2.0\r\nHost: x\r\n\r\n', [200, 400]],
        ['http-0.9', 'GET /callback\r\n\r\n', [400]],
        ['h2-preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', [400, 404, 405]],
        ['cl-not-a-number', 'POST /callback HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n', [400]],
        ['cl-negative', 'POST /callback HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', [400]],
        [
          'cl-conflicting',
          'POST /callback HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab',
          [400],
        ],
        ['cl-huge', 'POST /callback HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n', [400, 413]],
        [
          'cl-and-te',
          'POST /callback HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
          [400],
        ],
        [
          'te-bad-chunk',
          'POST /callback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n',
          [400],
        ],
        ['te-not-chunked', 'POST /callback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n', [400, 415]],
        [
          'te-chunked-ok',
          'POST /callback HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nid=ch\r\nb\r\nunk&code=ok\r\n0\r\n\r\n',
          [200],
        ],
        [
          'obs-fold',
          'GET /callback?id=fold&code=c HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n',
          [200, 400],
        ],
        ['bare-lf', 'GET /callback?id=lf&code=c HTTP/1.1\nHost: x\nConnection: close\n\n', [200, 400]],
        ['nul-in-header', 'GET /callback?id=1&code=c HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n', [400]],
        ['space-in-header-name', 'GET /callback?id=1&code=c HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n', [400]],
        ['no-colon', 'GET /callback?id=1&code=c HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n', [400]],
        ['space-before-colon', 'GET /callback?id=1&code=c HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n', [400]],
        [
          'absolute-form',
          'GET http://evil.example/callback?id=absform&code=c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
          [200],
        ],
        ['asterisk-form', 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', [404]],
        [
          'upgrade-websocket',
          'GET /callback?id=ws&code=c HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
          [200, 400],
        ],
        // Only the first answer is read; the second request goes outside the callback route so the metric totals
        // below stay exact.
        [
          'pipelined',
          'GET /callback?id=pipe1&code=c HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n',
          [200],
        ],
        ['expect-unknown', 'POST /callback HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 0\r\n\r\n', [417]],
      )
      .map(
        ([name, text, allowed]): FuzzCase => ({
          kind: `raw:${name}`,
          route: name === 'asterisk-form' || name === 'h2-preface' ? 'outside' : 'callback',
          allowed: allowed as readonly number[],
          raw: () => [Buffer.from(text as string, 'latin1')],
        }),
      ),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom({ kind: 'raw:connect', text: 'CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n' })
      .map(
        (c): FuzzCase => ({
          kind: c.kind,
          route: 'outside',
          allowed: [400],
          closeAllowed: true,
          raw: () => [Buffer.from(c.text)],
        }),
      ),
  },
  // Header block over Node's 16 KiB limit: one huge header, or thousands of small ones.
  {
    weight: 1,
    arbitrary: fc.constantFrom('one', 'many').map(
      (shape): FuzzCase => ({
        kind: `raw:headers-over-16k-${shape}`,
        route: 'callback',
        allowed: [431, 400],
        raw: () => [
          Buffer.from(
            `GET /callback?id=1&code=c HTTP/1.1\r\nHost: x\r\n${
              shape === 'one'
                ? `X-Big: ${'b'.repeat(17_000)}\r\n`
                : Array.from({ length: 3000 }, (_, i) => `X-H${i}: v\r\n`).join('')
            }\r\n`,
          ),
        ],
      }),
    ),
  },
);

/** Well-formed callbacks in each solver format, mixed into the garbage: each must get exactly 200. */
const validArb: fc.Arbitrary<FuzzCase> = fc
  .tuple(
    fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,40}$/).map((id) => `fz-${id}`),
    fc.oneof(fc.string({ minLength: 1, maxLength: 300 }), fc.constantFrom('ERROR_CAPTCHA_UNSOLVABLE')),
    fc.constantFrom('query', 'form', 'ucaptcha', 'json'),
  )
  .map(([id, code, format]): FuzzCase => {
    const c = encodeURIComponent(code);
    const http: HttpCase =
      format === 'query'
        ? { method: 'GET', path: `/callback?id=${id}&code=${c}` }
        : format === 'ucaptcha'
          ? { method: 'GET', path: `/callback?captcha_id=${id}&status=1&code=${c}` }
          : format === 'form'
            ? {
                method: 'POST',
                path: '/callback',
                headers: { 'content-type': 'application/x-www-form-urlencoded' },
                body: Buffer.from(`id=${id}&code=${c}`),
              }
            : {
                method: 'POST',
                path: `/callback/${id}`,
                headers: { 'content-type': 'application/json; charset=utf-8' },
                body: Buffer.from(
                  JSON.stringify({ errorId: 0, status: 'ready', solution: { gRecaptchaResponse: code } }),
                ),
              };
    return { kind: `valid:${format}`, route: 'callback', allowed: [200], http };
  });

const fuzzCaseArb: fc.Arbitrary<FuzzCase> = fc.oneof(
  { weight: 8, arbitrary: validArb },
  // Callback route, GET with random query strings.
  {
    weight: 30,
    arbitrary: fc.tuple(callbackPathArb, queryArb, fc.constantFrom('GET', 'GET', 'GET', 'POST'), extraHeadersArb).map(
      ([path, q, method, headers]): FuzzCase => ({
        kind: method === 'GET' ? 'query:get' : 'query:post-empty-body',
        route: 'callback',
        allowed: CALLBACK_ROUTE,
        http: { method, path: q === '' ? path : `${path}?${q}`, headers },
      }),
    ),
  },
  // Callback route, POST bodies of every kind.
  { weight: 25, arbitrary: callbackPathArb.chain((path) => bodyCase('POST', path, 'callback')) },
  // Odd and unknown methods, with and without bodies.
  {
    weight: 8,
    arbitrary: fc
      .tuple(fc.constantFrom(...METHODS_ODD), callbackPathArb, queryArb, fc.boolean())
      .chain(([method, path, q, withBody]) => {
        const target = `${path}?${q}`;
        return withBody && method !== 'HEAD'
          ? bodyCase(method, target, 'callback')
          : fc.constant<FuzzCase>({
              kind: 'method:odd',
              route: 'callback',
              allowed: CALLBACK_ROUTE,
              http: { method, path: target },
            });
      }),
  },
  // Paths outside the callback family: exactly 404, including /metrics and /tasks (never served publicly).
  {
    weight: 8,
    arbitrary: fc
      .tuple(
        outsidePathArb,
        fc.option(queryArb, { nil: undefined }),
        fc.constantFrom('GET', 'POST', 'HEAD', 'PUT', 'DELETE'),
      )
      .map(
        ([path, q, method]): FuzzCase => ({
          kind: 'outside',
          route: 'outside',
          allowed: [404],
          http: { method, path: q ? `${path}?${q}` : path },
        }),
      ),
  },
  // Health endpoints with junk query strings.
  {
    weight: 2,
    arbitrary: fc.tuple(fc.constantFrom('/health/callbacks', '/healthz'), queryArb, fc.constantFrom('GET', 'HEAD')).map(
      ([path, q, method]): FuzzCase => ({
        kind: 'health',
        route: 'health',
        allowed: [200],
        http: { method, path: `${path}?${q}` },
      }),
    ),
  },
  // Oversized: bodies over 64 KiB (Content-Length or chunked), queries over 8 KiB.
  {
    weight: 4,
    arbitrary: fc
      .tuple(oversizeArb, fc.constantFrom('application/json', 'application/x-www-form-urlencoded', 'text/plain'))
      .map(
        ([o, type]): FuzzCase => ({
          kind: `oversize:body-${o.chunked ? 'chunked' : 'content-length'}`,
          route: 'callback',
          allowed: [413],
          http: {
            method: 'POST',
            path: '/callback',
            headers: { 'content-type': type, ...(o.chunked ? { 'transfer-encoding': 'chunked' } : {}) },
            body: Buffer.alloc(o.size, 0x61),
          },
        }),
      ),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(fc.integer({ min: 8 * 1024 + 1, max: 15_000 }), callbackPathArb).map(
      ([n, path]): FuzzCase => ({
        kind: 'oversize:query',
        route: 'callback',
        // A path that is itself wrong (extra segment, bad secret) answers 404/400 before the query is looked at.
        allowed: [414, 404, 400],
        http: { method: 'GET', path: `${path.slice(0, 200)}?id=1&code=${'q'.repeat(n)}` },
      }),
    ),
  },
  // Empty and degenerate values.
  {
    weight: 3,
    arbitrary: fc
      .constantFrom(
        '?',
        '?=',
        '?&&&',
        '?id',
        '?id=&code=',
        '?code=',
        '?id=1&code',
        '?=1',
        '?id=%&code=%',
        '?%=%',
        '?id=1&&code=x',
      )
      .map(
        (q): FuzzCase => ({
          kind: 'query:degenerate',
          route: 'callback',
          allowed: CALLBACK_ROUTE,
          http: { method: 'GET', path: `/callback${q}` },
        }),
      ),
  },
  // Requests naming a protected task that must be refused and store nothing.
  { weight: 5, arbitrary: fc.constantFrom(...PROTECTED_PENDING, ...NEVER_STORED).chain(rejectedFor) },
  // Valid-looking callbacks replayed for already-delivered tasks with a different code (duplicates: acknowledged,
  // never overwriting the first result), some refused.
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.constantFrom(...PROTECTED_DELIVERED), fc.string({ minLength: 1, maxLength: 40 }), fc.boolean())
      .chain(([id, code, refused]) =>
        refused
          ? rejectedFor(id)
          : fc.constant<FuzzCase>({
              kind: 'replay:duplicate',
              route: 'callback',
              allowed: [200],
              http: { method: 'GET', path: `/callback?id=${id}&code=${encodeURIComponent(`forged-${code}`)}` },
              protects: id,
            }),
      ),
  },
  // Expect headers: Node answers 417 to anything but 100-continue, before the app sees the request.
  {
    weight: 1,
    arbitrary: fc.constantFrom('100-continue', '100-Continue', 'something-else', '').map(
      (expect): FuzzCase => ({
        kind: 'header:expect',
        route: 'callback',
        allowed: /^100-continue$/i.test(expect) ? CALLBACK_ROUTE : [417, ...CALLBACK_ROUTE],
        http: {
          method: 'POST',
          path: '/callback',
          headers: { expect, 'content-type': 'application/json' },
          body: Buffer.from('{"taskId":"exp","solution":{"token":"t"}}'),
        },
      }),
    ),
  },
  { weight: 8, arbitrary: rawArb },
);

/** Request line + headers past Node's 16 KiB limit are refused by its parser (431; 400 through the clientError hook). */
function allowedFor(c: FuzzCase): readonly number[] {
  if (!c.http) return c.allowed;
  const head =
    c.http.path.length +
    Object.entries(c.http.headers ?? {}).reduce((n, [k, v]) => n + k.length + String(v).length + 4, 0);
  const extra: number[] = [];
  if (head > 15_000) extra.push(400, 431);
  // Node's parser refuses bytes 0x80-0xFF in the request target outright (400): raw invalid UTF-8 never reaches Koa.
  if (/[\u0080-\u00ff]/.test(c.http.path)) extra.push(400);
  return [...c.allowed, ...extra];
}

describe(`${REQUESTS} random HTTP requests against the real server (seed ${SEED})`, () => {
  let server: RunningServer;
  const agent = keepAliveAgent(CONCURRENCY);
  const before = new Map<string, TaskJson>();

  beforeAll(async () => {
    // Short parser timeouts so that anything the fuzzer leaves half-sent is cut in seconds, not the default 10/30 s.
    server = await startServer({ STORE_URL: 'memory:', HEADERS_TIMEOUT_MS: '3000', REQUEST_TIMEOUT_MS: '5000' });
    await registerTasks(server, [...PROTECTED_DELIVERED, ...PROTECTED_PENDING]);
    for (const id of PROTECTED_DELIVERED) {
      const r = await httpExchange(agent, server.publicPort, {
        method: 'GET',
        path: `/callback?id=${id}&code=${originalCode(id)}`,
      });
      expect(r.status).toBe(200);
    }
    for (const id of [...PROTECTED_DELIVERED, ...PROTECTED_PENDING]) {
      const task = await getTask(agent, server, id);
      if (!task) throw new Error(`task ${id} missing after setup`);
      before.set(id, task);
    }
  });

  afterAll(async () => {
    agent.destroy();
    await server?.stop();
  });

  it('answers every request with a designed status, stays up, alters no stored result, keeps series bounded', async () => {
    const cases: FuzzCase[] = [];
    for (let batch = 0; cases.length < REQUESTS; batch++) {
      cases.push(...fc.sample(fuzzCaseArb, { seed: SEED + batch, numRuns: Math.min(1000, REQUESTS - cases.length) }));
    }
    // Every case's allowed set is designed (417 only where an Expect header makes Node answer it itself).
    for (const c of cases) {
      for (const s of c.allowed) expect([...DESIGNED, ...(c.kind.includes('expect') ? [417] : [])]).toContain(s);
    }
    const startedAt = performance.now();
    const results = await pool(cases, CONCURRENCY, async (c): Promise<Exchange> => {
      if (c.raw) return rawExchange(server.publicPort, c.raw(), 10_000);
      return httpExchange(agent, server.publicPort, c.http!, { timeoutMs: 15_000 });
    });
    const elapsed = (performance.now() - startedAt) / 1000;

    // The process is alive and healthy.
    expect(server.process.exitCode).toBeNull();
    expect(server.process.signalCode).toBeNull();
    expect((await fetch(`${server.publicUrl}/healthz`)).status).toBe(200);

    // Every answer is designed, and the one this case allows.
    const wrong: string[] = [];
    for (const [i, r] of results.entries()) {
      const c = cases[i]!;
      const ok =
        r.status === null
          ? c.closeAllowed === true && (r.error === 'closed' || r.error === 'ECONNRESET')
          : allowedFor(c).includes(r.status);
      if (!ok) {
        const what = c.http
          ? `${c.http.method} ${c.http.path.slice(0, 120)}`
          : JSON.stringify(Buffer.concat(c.raw!()).toString('latin1').slice(0, 120));
        wrong.push(`#${i} ${c.kind}: ${what} → ${r.status ?? r.error} (allowed ${c.allowed.join('/')})`);
      }
    }

    const byStatus = tally(results, (r) => String(r.status ?? r.error));
    const byKind = tally(cases, (c) => c.kind.split(':')[0]!);
    const table = new Map<string, Record<string, number>>();
    for (const [i, r] of results.entries()) {
      const row = table.get(cases[i]!.kind) ?? {};
      const k = String(r.status ?? r.error);
      row[k] = (row[k] ?? 0) + 1;
      table.set(cases[i]!.kind, row);
    }
    const rows = [...table].sort(([a], [b]) => a.localeCompare(b));
    console.log(
      `[hostile.fuzz] seed=${SEED} requests=${cases.length} in ${elapsed.toFixed(1)} s ` +
        `(${(cases.length / elapsed).toFixed(0)} req/s, concurrency ${CONCURRENCY})\n` +
        `  by status: ${JSON.stringify(byStatus)}\n  by kind: ${JSON.stringify(byKind)}\n` +
        `  raw socket cases: ${cases.filter((c) => c.raw).length}, wrong answers: ${wrong.length}\n` +
        rows.map(([kind, row]) => `  ${kind.padEnd(34)} ${JSON.stringify(row)}`).join('\n'),
    );
    expect(wrong.slice(0, 20)).toEqual([]);
    expect(server.logs()).not.toMatch(/"level":(50|60)/); // nothing at error/fatal

    // The generator really reached the limits it is meant to test.
    for (const s of [200, 400, 404, 405, 413, 414, 415]) expect(byStatus[String(s)] ?? 0).toBeGreaterThan(0);

    // Stored results are exactly as before the run; refused requests stored nothing.
    const altered: string[] = [];
    for (const [id, was] of before) {
      const now = await getTask(agent, server, id);
      const same =
        now !== undefined &&
        now.state === was.state &&
        now.code === was.code &&
        now.outcome === was.outcome &&
        now.format === was.format &&
        now.received_at === was.received_at &&
        now.submitted_at === was.submitted_at &&
        now.deadline_at === was.deadline_at &&
        (was.state === 'pending' ? now.callbacks === 0 : now.callbacks >= was.callbacks);
      if (!same) altered.push(`${id}: ${JSON.stringify(was)} → ${JSON.stringify(now)}`);
    }
    for (const id of NEVER_STORED) {
      const now = await getTask(agent, server, id);
      if (now !== undefined) altered.push(`${id} was stored by a refused request: ${JSON.stringify(now)}`);
    }
    expect(altered).toEqual([]);
    expect(before.get(PROTECTED_DELIVERED[0]!)?.code).toBe(originalCode(PROTECTED_DELIVERED[0]!));

    // Metric series stay within what the contract's closed sets allow, and the counts add up.
    const text = await scrape(server);
    const { count, problems } = checkSeries(text);
    const bound = contractSeriesBound();
    console.log(`[hostile.fuzz] captcha_* series on /metrics: ${count} (contract bound ${bound})`);
    expect(problems).toEqual([]);
    expect(count).toBeLessThanOrEqual(bound);
    const m = parseMetrics(text);
    const acked = results.filter((r, i) => r.status === 200 && cases[i]!.route === 'callback').length;
    const setup = PROTECTED_DELIVERED.length;
    expect(sumSeries(m, PROM.callbacksTotal)).toBe(acked + setup);
    expect(m.get(`${PROM.callbackDurationCount}{http_response_status_code="200"}`)).toBe(acked + setup);
    const failedCount = sumSeries(m, PROM.callbackDurationCount) - (acked + setup);
    expect(sumSeries(m, PROM.callbackErrorsTotal)).toBe(failedCount);
  }, 120_000);
});
