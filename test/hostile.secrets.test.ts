/**
 * Hostile input, part 4: secrets. With CALLBACK_SECRET and API_TOKEN set and logging at `trace`, a run through the
 * happy path and every error path (wrong secrets, malformed and oversized callbacks, an aborted upload that trips the
 * route's catch-all, a nesting bomb, a store that refuses writes, the result-hook failure) leaves no solution code,
 * secret or token in the logs; /metrics and /tasks are never served publicly; the management API wants the token.
 *
 * The secret comparison is constant-time by construction (src/plugin/secretPath.ts): both sides are SHA-256 hashed
 * and compared with crypto.timingSafeEqual, so neither the candidate's length nor a shared prefix changes the work
 * done. That is documented (docs/security.md) and its answers are unit-tested here; it is not timed, because a
 * timing test on a shared 2-core machine proves nothing either way.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { Agent } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryTaskStore } from '../packages/koa/src/delivery/stores/MemoryTaskStore.ts';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import { CallbackMonitor } from '../packages/koa/src/plugin/CallbackMonitor.ts';
import { secretMatcher } from '../packages/koa/src/plugin/secretPath.ts';
import { createLogger } from '../src/server/logger.ts';
import { requireBinary } from './support/binaries.ts';
import { httpExchange, keepAliveAgent, LOOPBACK, rawExchange, registerTasks } from './support/hostile.ts';
import { waitFor } from './support/ports.ts';
import { parseMetrics, type RunningServer, runCli, scrape, startServer } from './support/server.ts';

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

describe('secretMatcher (src/plugin/secretPath.ts)', () => {
  const secret = `s3cr3t-${hex(16)}`;
  const matches = secretMatcher(secret);

  it('accepts exactly the secret', () => {
    expect(matches(secret)).toBe(true);
    expect(matches(`${secret}`.slice(0))).toBe(true);
  });

  it('refuses different-length candidates: empty, shorter, longer, the secret twice', () => {
    for (const c of ['', 's', secret.slice(0, -1), `${secret}x`, `${secret}${secret}`, 'x'.repeat(10_000)]) {
      expect(matches(c), JSON.stringify(c.slice(0, 40))).toBe(false);
    }
  });

  it('refuses same-length candidates sharing a prefix or a suffix, differing in case or in one character', () => {
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'a' ? 'b' : 'a') + s.slice(i + 1);
    const candidates = [
      flip(secret, secret.length - 1),
      flip(secret, 0),
      flip(secret, Math.floor(secret.length / 2)),
      secret.toUpperCase(),
      ` ${secret.slice(1)}`,
      encodeURIComponent(`${secret.slice(0, -1)}/`),
    ];
    for (const c of candidates) expect(matches(c), c).toBe(false);
  });

  it('compares code points, not a normalised form (no Unicode or percent-decoding confusion)', () => {
    const accented = secretMatcher('caf\u00e9-secret-0123456789');
    expect(accented('caf\u00e9-secret-0123456789')).toBe(true);
    expect(accented('cafe\u0301-secret-0123456789')).toBe(false);
    expect(accented('caf%C3%A9-secret-0123456789')).toBe(false);
  });
});

describe('secrets never leak from the running server', () => {
  const SECRET = `cb-${hex(16)}`;
  const TOKEN = `tok-${hex(16)}`;
  const prlimit = requireBinary('prlimit');
  let dir: string;
  let server: RunningServer;
  const codes: string[] = [];
  const code = () => {
    const c = `SOLUTION-${hex(12)}`;
    codes.push(c);
    return c;
  };
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  /** One request to the listener on `port()`, its body read. */
  const exchangeOn =
    (port: () => number) =>
    (method: string, path: string, headers: Record<string, string> = {}, body?: string) =>
      httpExchange(
        agent,
        port(),
        { method, path, headers, ...(body === undefined ? {} : { body: Buffer.from(body) }) },
        { readBody: true },
      );
  const send = exchangeOn(() => server.publicPort);
  const api = exchangeOn(() => server.managementPort);
  const bearer = { authorization: `Bearer ${TOKEN}` };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ccm-hostile-secrets-'));
    server = await startServer({
      STORE_URL: `sqlite:${join(dir, 'callbacks.db')}`,
      CALLBACK_SECRET: SECRET,
      API_TOKEN: TOKEN,
      LOG_LEVEL: 'trace',
    });
  });
  afterAll(async () => {
    agent.destroy();
    await server?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('accepts callbacks only under the secret; a wrong secret is 404, counted as unauthorized, never stored', async () => {
    const before = parseMetrics(await scrape(server));
    const good = code();
    expect((await send('GET', `/callback/${SECRET}?id=sec-ok-1&code=${good}`)).status).toBe(200);
    expect(
      (
        await send(
          'POST',
          `/callback/${SECRET}/sec-ok-2`,
          { 'content-type': 'application/json' },
          JSON.stringify({ errorId: 0, status: 'ready', solution: { gRecaptchaResponse: code() } }),
        )
      ).status,
    ).toBe(200);

    const wrong = [
      `/callback?id=sec-bad-1&code=${code()}`,
      `/callback/${SECRET.slice(0, -1)}?id=sec-bad-2&code=${code()}`,
      `/callback/${SECRET}x?id=sec-bad-3&code=${code()}`,
      `/callback/${SECRET.toUpperCase()}?id=sec-bad-4&code=${code()}`,
      `/callback/${hex(19)}?id=sec-bad-5&code=${code()}`,
      `/callback/sec-bad-6?id=sec-bad-6&code=${code()}&secret=${SECRET}`,
      `/callback//${SECRET}?id=sec-bad-7&code=${code()}`,
      `/callback/${encodeURIComponent(`${SECRET}/`)}?id=sec-bad-8&code=${code()}`,
    ];
    for (const path of wrong) {
      const r = await send('GET', path);
      expect(r.status, path).toBe(404);
      expect(r.body ?? '').not.toContain(SECRET);
    }
    const after = parseMetrics(await scrape(server));
    const unauthorized = (m: Map<string, number>) =>
      m.get(`${PROM.callbackErrorsTotal}{error_type="unauthorized"}`) ?? 0;
    expect(unauthorized(after) - unauthorized(before)).toBe(wrong.length);
    for (let i = 1; i <= wrong.length; i++) {
      expect((await api('GET', `/tasks/sec-bad-${i}`, bearer)).status).toBe(404);
    }
    expect(JSON.parse((await api('GET', '/tasks/sec-ok-1', bearer)).body ?? '{}').code).toBe(good);
  });

  it('never serves /metrics or /tasks on the public port', async () => {
    await registerTasks(server, ['sec-registered'], TOKEN);
    for (const [method, path] of [
      ['GET', '/metrics'],
      ['HEAD', '/metrics'],
      ['GET', '/tasks'],
      ['GET', '/tasks/sec-ok-1'],
      ['GET', '/tasks?state=pending'],
      ['POST', '/tasks'],
      ['GET', `/callback/${SECRET}/../../metrics`],
      ['GET', '/%2e%2e/metrics'],
      ['GET', '/metrics/'],
    ] as const) {
      const r = await send(
        method,
        path,
        method === 'POST' ? { 'content-type': 'application/json', ...bearer } : bearer,
        method === 'POST' ? '{"id":"x"}' : undefined,
      );
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.body ?? '').not.toMatch(/captcha_|SOLUTION-|"state"/);
    }
  });

  it('requires the API token on /tasks (401 when missing or wrong), accepts the right one', async () => {
    const wrongs: Record<string, string>[] = [
      {},
      { authorization: '' },
      { authorization: 'Bearer' },
      { authorization: 'Bearer ' },
      { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
      { authorization: `Bearer ${TOKEN}x` },
      { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` },
      { authorization: TOKEN },
      { authorization: `Bearer  ${TOKEN}` },
      { 'x-api-token': TOKEN },
    ];
    for (const headers of wrongs) {
      for (const [method, path, body] of [
        ['GET', '/tasks/sec-ok-1', undefined],
        ['GET', '/tasks?state=delivered', undefined],
        ['POST', '/tasks', '{"id":"sec-forged"}'],
      ] as const) {
        const r = await api(
          method,
          path,
          { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) },
          body,
        );
        expect(r.status, `${method} ${path} with ${JSON.stringify(headers)}`).toBe(401);
        expect(r.body ?? '').not.toContain('SOLUTION-');
      }
    }
    // The token in the query string is not a credential either.
    expect((await api('GET', `/tasks/sec-ok-1?access_token=${TOKEN}`)).status).toBe(401);
    expect((await api('GET', '/tasks/sec-ok-1', bearer)).status).toBe(200);
    expect(
      (await api('POST', '/tasks', { ...bearer, 'content-type': 'application/json' }, '{"id":"sec-new"}')).status,
    ).toBe(201);
    expect((await api('GET', '/tasks/sec-forged', bearer)).status).toBe(404);
  });

  it('logs no solution code, secret or token through every error path, a store failure included', async () => {
    const ok = (id: string) => `/callback/${SECRET}?id=${id}&code=${code()}`;
    // Malformed, refused and oversized callbacks that carry solution codes.
    await send('GET', `/callback/${SECRET}?id=sec-e1&code=${code()}&code=${code()}`);
    await send(
      'POST',
      `/callback/${SECRET}/sec-e2`,
      { 'content-type': 'application/json' },
      `{"solution":{"token":"${code()}"}`,
    );
    await send('POST', `/callback/${SECRET}`, { 'content-type': 'text/plain' }, `id=sec-e3&code=${code()}`);
    await send('PUT', ok('sec-e4'));
    await send('GET', `${ok('sec-e5')}&pad=${'p'.repeat(9000)}`);
    await send(
      'POST',
      `/callback/${SECRET}`,
      { 'content-type': 'application/x-www-form-urlencoded' },
      `id=sec-e6&code=${code()}&pad=${'p'.repeat(70_000)}`,
    );
    // A nesting bomb without a token field, so the solution object itself would be serialised: refused (400), and
    // whatever it logs names no code.
    const bomb = `{"taskId":"sec-e7","solution":{"y":"${code()}","x":${'['.repeat(30_000)}${']'.repeat(30_000)}}}`;
    expect((await send('POST', `/callback/${SECRET}`, { 'content-type': 'application/json' }, bomb)).status).toBe(400);
    // An upload aborted mid-body (the route's catch-all path).
    await new Promise<void>((resolve) => {
      const s = connect({ host: LOOPBACK, port: server.publicPort }, () => {
        s.write(
          `POST /callback/${SECRET} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
            `Content-Length: 500\r\n\r\nid=sec-e8&code=${code()}`,
        );
        setTimeout(() => {
          s.destroy();
          resolve();
        }, 100);
      });
      s.on('error', () => {});
    });
    // A bad percent-encoding in the management API path (the router's decoder throws).
    await api('GET', '/tasks/%E0%A4%A', bearer);
    await rawExchange(
      server.managementPort,
      Buffer.from(`GET /tasks/%ZZ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`),
    );

    // The store refuses writes (see hostile.faults.test.ts for why RLIMIT_FSIZE): callbacks get 503, /healthz 503.
    const pid = String(server.process.pid);
    execFileSync(prlimit, ['--pid', pid, '--fsize=0:']);
    try {
      for (let i = 0; i < 5; i++) expect((await send('GET', ok(`sec-store-${i}`))).status).toBe(503);
      expect(
        (
          await send(
            'POST',
            `/callback/${SECRET}/sec-store-json`,
            { 'content-type': 'application/json' },
            JSON.stringify({ solution: { token: code() } }),
          )
        ).status,
      ).toBe(503);
      expect((await fetch(`${server.publicUrl}/healthz`)).status).toBe(503);
      expect(
        (await api('POST', '/tasks', { ...bearer, 'content-type': 'application/json' }, '{"id":"sec-store-reg"}'))
          .status,
      ).toBe(503);
    } finally {
      execFileSync(prlimit, ['--pid', pid, '--fsize=unlimited:']);
    }
    await waitFor(async () => (await fetch(`${server.publicUrl}/healthz`)).status === 200, 10_000, 'store back');
    expect((await send('GET', ok('sec-after'))).status).toBe(200);

    const logs = server.logs();
    if (process.env.HOSTILE_DEBUG) console.log(logs);
    // The error paths did log (otherwise this test would prove nothing).
    expect(logs).toMatch(/"msg":"store failed"/);
    expect(logs).toMatch(/"where":"request"/);
    const leaks: string[] = [];
    for (const c of codes) {
      if (logs.includes(c) || logs.includes(c.slice(9))) leaks.push(`code ${c}`);
    }
    for (const [name, value] of [
      ['CALLBACK_SECRET', SECRET],
      ['API_TOKEN', TOKEN],
    ] as const) {
      if (logs.includes(value) || logs.includes(value.slice(3, 19))) leaks.push(name);
    }
    console.log(
      `[hostile.secrets] ${logs.split('\n').filter(Boolean).length} log lines at trace level checked against ` +
        `${codes.length} solution codes, the callback secret and the API token: ${leaks.length} leaks`,
    );
    expect(leaks).toEqual([]);
    // /metrics carries none of them either (closed label sets).
    const metrics = await scrape(server);
    expect(codes.some((c) => metrics.includes(c)) || metrics.includes(SECRET) || metrics.includes(TOKEN)).toBe(false);
  }, 60_000);

  it('never echoes a bad secret or token from the configuration at start-up', async () => {
    const badSecret = `short!${hex(4)}`;
    const badToken = `has space ${hex(8)}`;
    const r = await runCli(
      [],
      { CALLBACK_SECRET: badSecret, API_TOKEN: badToken, STORE_URL: 'memory:' },
      { timeoutMs: 15_000 },
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/CALLBACK_SECRET/);
    expect(r.stderr + r.stdout).not.toContain(badSecret);
    expect(r.stderr + r.stdout).not.toContain(badToken);
  });
});

describe('the result-hook failure path (plugin, in-process)', () => {
  it('counts handler_error, still answers 200, and the project logger redacts a result a hook logs', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(String(chunk));
        callback();
      },
    });
    const logger = createLogger('trace', sink);
    const secret = `hook-${hex(16)}`;
    const solution = `SOLUTION-${hex(12)}`;
    const monitor = new CallbackMonitor({
      store: new MemoryTaskStore(),
      metrics: false,
      secret,
      // A careless hook: logs the whole result and the request-ish data it was given, then fails.
      onResult: async (result, transition) => {
        logger.info({ result, transition, url: `/callback/${secret}`, secret }, 'processing result');
        logger.debug({ code: result.code, authorization: `Bearer ${secret}` }, 'about to forward');
        throw new Error('downstream refused the result');
      },
      // What ReceiverServer does with plugin errors.
      onError: (error, where) => {
        const err = error instanceof Error ? { type: error.name, message: error.message } : { type: typeof error };
        logger.warn({ where, err }, where === 'onResult' ? 'result hook failed' : `${where} failed`);
      },
    });
    const app = new Koa();
    app.use(monitor.middleware());
    const http: Server = await new Promise((resolve) => {
      const s = app.listen(0, LOOPBACK, () => resolve(s));
    });
    try {
      const port = (http.address() as AddressInfo).port;
      const agent = keepAliveAgent(1);
      const r = await httpExchange(agent, port, {
        method: 'GET',
        path: `/callback/${secret}?id=hook-1&code=${solution}`,
      });
      agent.destroy();
      expect(r.status).toBe(200);
      await waitFor(() => monitor.health().error_breakdown.handler_error === 1, 5000, 'handler_error counted');
      expect((await monitor.getTask('hook-1'))?.code).toBe(solution);
      const text = lines.join('');
      expect(text).toMatch(/"msg":"result hook failed"/);
      expect(text).toMatch(/\[redacted\]/);
      expect(text).not.toContain(solution);
      expect(text).not.toContain(secret);
    } finally {
      await monitor.close();
      await new Promise((r) => http.close(r));
    }
  });
});
