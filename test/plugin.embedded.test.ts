import Router from '@koa/router';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CallbackMonitor,
  type CallbackMonitorOptions,
  type CallbackResult,
  MemoryTaskStore,
  PROM,
} from '../packages/koa/src/index.ts';
import { jsonPost, listen } from './support/http.ts';
import { startKoaHost } from './support/receiver.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** A host application that owns its MeterProvider, its routes, and mounts the plugin beside them. */
async function hostApp(options: CallbackMonitorOptions = {}) {
  const host = await startKoaHost((app, monitor) => {
    const router = new Router();
    router.get('/own-route', (ctx) => {
      ctx.body = 'host';
    });
    app.use(monitor.middleware());
    app.use(router.routes());
  }, options);
  cleanups.push(host.close);
  return host;
}

describe('the plugin inside another Koa app', () => {
  it('records its metrics on the host app’s own MeterProvider and leaves other routes alone', async () => {
    const host = await hostApp();
    expect(await (await fetch(`${host.url}/own-route`)).text()).toBe('host');
    expect((await fetch(`${host.url}/callback?id=e1&code=abc`)).status).toBe(200);
    const m = await host.metrics();
    expect(m.get(`${PROM.callbacksTotal}{outcome="solved",format="query"}`)).toBe(1);
    expect(m.get(`${PROM.callbackDurationCount}{http_response_status_code="200"}`)).toBe(1);
    expect((await host.monitor.getTask('e1'))?.code).toBe('abc');
  });

  it('runs onResult after the 200; a throwing or rejecting hook never breaks the answer and counts handler_error', async () => {
    const seen: CallbackResult[] = [];
    const errors: string[] = [];
    const host = await hostApp({
      onResult: (r) => {
        seen.push(r);
        if (r.taskId === 'boom') throw new Error('user code failed');
        if (r.taskId === 'reject') return Promise.reject(new Error('async user code failed'));
      },
      onError: (_e, where) => {
        errors.push(where);
      },
    });
    for (const id of ['fine', 'boom', 'reject']) {
      expect((await fetch(`${host.url}/callback?id=${id}&code=abc`)).status).toBe(200);
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(seen.map((r) => r.taskId)).toEqual(['fine', 'boom', 'reject']);
    expect(errors).toEqual(['onResult', 'onResult']);
    const m = await host.metrics();
    expect(m.get(`${PROM.callbackErrorsTotal}{error_type="handler_error"}`)).toBe(2);
    expect(host.monitor.health().error_breakdown.handler_error).toBe(2);
  });

  it('a slow hook does not delay the acknowledgement', async () => {
    let release: () => void = () => {};
    const hookDone = new Promise<void>((r) => {
      release = r;
    });
    let hookFinished = false;
    const host = await hostApp({
      onResult: async () => {
        await hookDone;
        hookFinished = true;
      },
    });
    const res = await fetch(`${host.url}/callback?id=slow&code=abc`);
    // The 200 arrived while the hook is still blocked on a promise only this test can resolve.
    expect(res.status).toBe(200);
    expect(hookFinished).toBe(false);
    release();
    await new Promise((r) => setTimeout(r, 10));
    expect(hookFinished).toBe(true);
  });

  it('trackSubmitted + waitForResult: the waiter wakes when the callback lands', async () => {
    const host = await hostApp();
    await host.monitor.trackSubmitted('w1');
    const waiting = host.monitor.waitForResult('w1', 10_000);
    const started = Date.now();
    setTimeout(() => void fetch(`${host.url}/callback?id=w1&code=tok`), 100);
    const task = await waiting;
    expect(task).toMatchObject({ id: 'w1', state: 'delivered', code: 'tok' });
    expect(Date.now() - started).toBeLessThan(5_000);
    const m = await host.metrics();
    expect(m.get(PROM.tasksSubmittedTotal)).toBe(1);
    expect(m.get(PROM.tasksDeliveredTotal)).toBe(1);
  });

  it('a store that cannot write gets 503 store_unavailable and no acknowledgement', async () => {
    const store = new MemoryTaskStore();
    const host = await hostApp({ store });
    await store.close();
    const res = await fetch(`${host.url}/callback?id=lost&code=abc`);
    expect(res.status).toBe(503);
    expect((await fetch(`${host.url}/healthz`)).status).toBe(503);
    const m = await host.metrics();
    expect(m.get(`${PROM.callbackErrorsTotal}{error_type="store_unavailable"}`)).toBe(1);
    expect(m.get(`${PROM.callbacksTotal}{outcome="solved",format="query"}`)).toBe(0);
  });
});

describe('the plugin as a plain node:http request listener', () => {
  it('answers the same routes as the middleware, hands the rest to the fallback, and 404s without one', async () => {
    const monitor = new CallbackMonitor({ store: new MemoryTaskStore() });
    const withFallback = await listen(
      monitor.requestListener((_req, res) => {
        res.end('fallback');
      }),
    );
    const alone = await listen(monitor.requestListener());
    try {
      await monitor.trackSubmitted('n1');
      const ok = await fetch(`${withFallback.url}/callback?id=n1&code=tok`);
      expect([ok.status, ok.headers.get('content-type'), await ok.text()]).toEqual([
        200,
        'text/plain; charset=utf-8',
        'OK',
      ]);
      expect(await monitor.getTask('n1')).toMatchObject({ state: 'delivered', code: 'tok' });

      const json = await fetch(
        `${alone.url}/callback/n2`,
        jsonPost({ errorId: 0, status: 'ready', solution: { token: 'j' } }),
      );
      expect(json.status).toBe(200);
      expect(await monitor.getTask('n2')).toMatchObject({ registered: false, code: 'j', format: 'json' });

      const bad = await fetch(`${alone.url}/callback?id=n3`);
      expect([bad.status, await bad.json()]).toEqual([400, { error: 'invalid_request', reason: 'missing code' }]);
      const method = await fetch(`${alone.url}/callback?id=n3&code=x`, { method: 'PUT' });
      expect([method.status, method.headers.get('allow')]).toEqual([405, 'GET, POST']);

      const health = await fetch(`${alone.url}/health/callbacks`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ total_received: 4, delivery: { delivered: 1 } });
      expect((await fetch(`${alone.url}/healthz`, { method: 'HEAD' })).status).toBe(200);

      expect(await (await fetch(`${withFallback.url}/elsewhere`)).text()).toBe('fallback');
      const missing = await fetch(`${alone.url}/elsewhere`);
      expect([missing.status, await missing.json()]).toEqual([404, { error: 'not_found', reason: 'no such route' }]);

      await monitor.close();
      const closing = await fetch(`${alone.url}/callback?id=n4&code=x`);
      expect([closing.status, closing.headers.get('connection')]).toEqual([200, 'close']);
    } finally {
      await monitor.close();
      for (const s of [withFallback, alone]) await s.close();
    }
  });

  it('answers a health path inside the callback prefix as health, as the middleware always did', async () => {
    const monitor = new CallbackMonitor({ store: new MemoryTaskStore(), prefix: '/cb', healthPath: '/cb/health' });
    const { url, close } = await listen(monitor.requestListener());
    try {
      const health = await fetch(`${url}/cb/health`);
      expect([health.status, (await health.json()) as unknown]).toMatchObject([200, { status: 'idle' }]);
      expect((await fetch(`${url}/cb/t1?code=x`)).status).toBe(200);
    } finally {
      await monitor.close();
      await close();
    }
  });
});
