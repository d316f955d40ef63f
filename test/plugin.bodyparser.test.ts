import { bodyParser } from '@koa/bodyparser';
import type Koa from 'koa';
import { koaBody } from 'koa-body';
import { afterEach, describe, expect, it } from 'vitest';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import { startKoaHost } from './support/receiver.ts';
import { formPost, jsonPost } from './support/requests.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/**
 * The usual Koa app: a body parser mounted first, for the app's own routes, then the monitor. The parser has read the
 * request stream by the time the monitor runs, so the monitor must use what the parser left (its raw text or its
 * parsed value) and never wait for the stream, which would hang the solver until it gives up.
 */
async function hostApp(before: Koa.Middleware[]) {
  const host = await startKoaHost((app, monitor) => {
    for (const mw of before) app.use(mw);
    app.use(monitor.middleware());
    app.use((ctx) => {
      // The app's own route still sees what its parser gave it.
      if (ctx.path === '/own') ctx.body = { got: (ctx.request as { body?: unknown }).body ?? null };
    });
  });
  cleanups.push(host.close);
  return host;
}

/** Bounded so a regression shows as a failure in seconds, not as a test stuck until vitest's own timeout. */
const send = (url: string, init?: RequestInit) => fetch(url, { ...init, signal: AbortSignal.timeout(5_000) });

const form = formPost;
const json = jsonPost;

const PARSERS: [string, () => Koa.Middleware[]][] = [
  ['@koa/bodyparser', () => [bodyParser() as unknown as Koa.Middleware]],
  ['koa-body', () => [koaBody() as unknown as Koa.Middleware]],
  ['no body parser', () => []],
];

describe('the plugin after a body parser in a real Koa app', () => {
  for (const [name, parsers] of PARSERS) {
    it(`${name}: POST form and JSON callbacks and a GET callback answer 200, are stored and counted`, async () => {
      const host = await hostApp(parsers());
      await host.monitor.trackSubmitted(['f1', 'j1', 'g1']);

      // 2Captcha's form pingback with the app id in the path.
      const f = await send(`${host.url}/callback/f1`, form('id=51555263943&code=ANSWER'));
      expect([f.status, await f.text()]).toEqual([200, 'OK']);
      // CapSolver's JSON callback with its own taskId.
      const j = await send(
        `${host.url}/callback/j1`,
        json({ errorId: 0, taskId: 'cs-1', status: 'ready', solution: { userAgent: 'ua', gRecaptchaResponse: 'tok' } }),
      );
      expect([j.status, await j.text()]).toEqual([200, 'OK']);
      const g = await send(`${host.url}/callback/g1?id=777&code=tok-get`);
      expect(g.status).toBe(200);

      expect(await host.monitor.getTask('f1')).toMatchObject({
        state: 'delivered',
        solverTaskId: '51555263943',
        code: 'ANSWER',
        format: 'form',
      });
      expect(await host.monitor.getTask('j1')).toMatchObject({
        state: 'delivered',
        solverTaskId: 'cs-1',
        code: 'tok',
        format: 'json',
        solution: { userAgent: 'ua', gRecaptchaResponse: 'tok' },
        metadata: { errorId: 0, status: 'ready' },
      });
      expect(await host.monitor.getTask('g1')).toMatchObject({ state: 'delivered', code: 'tok-get', format: 'query' });

      const m = await host.metrics();
      expect(m.get(`${PROM.callbacksTotal}{outcome="solved",format="form"}`)).toBe(1);
      expect(m.get(`${PROM.callbacksTotal}{outcome="solved",format="json"}`)).toBe(1);
      expect(m.get(`${PROM.callbacksTotal}{outcome="solved",format="query"}`)).toBe(1);
      expect(m.get(PROM.tasksDeliveredTotal)).toBe(3);
      expect(m.get(`${PROM.callbackDurationCount}{http_response_status_code="200"}`)).toBe(3);

      // The parser still serves the app's own routes.
      const own = await send(`${host.url}/own`, json({ mine: 1 }));
      expect(await own.json()).toEqual({ got: parsers().length > 0 ? { mine: 1 } : null });
    });
  }

  it('a middleware that consumes the body and leaves nothing: a quick 500 body_unavailable, counted, nothing stored', async () => {
    const drain: Koa.Middleware = async (ctx, next) => {
      // Reads the stream to the end and keeps nothing (no ctx.request.body, no rawBody).
      for await (const _chunk of ctx.req) {
        // discard
      }
      await next();
    };
    const host = await hostApp([drain]);
    await host.monitor.trackSubmitted('gone-1');
    const started = performance.now();
    const res = await send(`${host.url}/callback/gone-1`, form('id=1&code=tok'));
    const elapsed = performance.now() - started;
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ error: 'body_unavailable' });
    // Answered, not left hanging: well under the 5 s abort, and under CapMonster's 2 s.
    expect(elapsed).toBeLessThan(2_000);
    expect(await host.monitor.getTask('gone-1')).toMatchObject({ state: 'pending', callbacks: 0 });
    const m = await host.metrics();
    expect(m.get(`${PROM.callbackErrorsTotal}{error_type="body_unavailable"}`)).toBe(1);
    expect(m.get(`${PROM.callbackDurationCount}{http_response_status_code="500"}`)).toBe(1);
    // A GET callback has no body to lose: it still works behind the same middleware.
    expect((await send(`${host.url}/callback/gone-1?id=1&code=tok`)).status).toBe(200);
  });
});
