import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Router from '@koa/router';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import Koa from 'koa';
import { afterEach, describe, expect, it } from 'vitest';
import { CallbackMonitor, type CallbackResult, MemoryTaskStore, PROM } from '../packages/koa/src/index.ts';
import { parseMetrics } from './support/server.ts';

/** A host application that owns its MeterProvider, its routes, and mounts the plugin beside them. */
async function hostApp(options: ConstructorParameters<typeof CallbackMonitor>[0] = {}) {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({ readers: [exporter] });
  const monitor = new CallbackMonitor({
    meter: provider.getMeter('host-app'),
    store: new MemoryTaskStore(),
    ...options,
  });
  const app = new Koa();
  const router = new Router();
  router.get('/own-route', (ctx) => {
    ctx.body = 'host';
  });
  app.use(monitor.middleware());
  app.use(router.routes());
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const scrape = async () => {
    const { resourceMetrics } = await exporter.collect();
    return parseMetrics(new PrometheusSerializer(undefined, false, undefined, true, true).serialize(resourceMetrics));
  };
  const close = async () => {
    await monitor.close();
    await new Promise((r) => server.close(r));
    await provider.shutdown();
  };
  return { monitor, url, scrape, close };
}

describe('the plugin inside another Koa app', () => {
  let cleanup: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await cleanup?.();
    cleanup = undefined;
  });

  it('records its metrics on the host app’s own MeterProvider and leaves other routes alone', async () => {
    const host = await hostApp();
    cleanup = host.close;
    expect(await (await fetch(`${host.url}/own-route`)).text()).toBe('host');
    expect((await fetch(`${host.url}/callback?id=e1&code=abc`)).status).toBe(200);
    const m = await host.scrape();
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
    cleanup = host.close;
    for (const id of ['fine', 'boom', 'reject']) {
      expect((await fetch(`${host.url}/callback?id=${id}&code=abc`)).status).toBe(200);
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(seen.map((r) => r.taskId)).toEqual(['fine', 'boom', 'reject']);
    expect(errors).toEqual(['onResult', 'onResult']);
    const m = await host.scrape();
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
    cleanup = host.close;
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
    cleanup = host.close;
    await host.monitor.trackSubmitted('w1');
    const waiting = host.monitor.waitForResult('w1', 10_000);
    const started = Date.now();
    setTimeout(() => void fetch(`${host.url}/callback?id=w1&code=tok`), 100);
    const task = await waiting;
    expect(task).toMatchObject({ id: 'w1', state: 'delivered', code: 'tok' });
    expect(Date.now() - started).toBeLessThan(5_000);
    const m = await host.scrape();
    expect(m.get(PROM.tasksSubmittedTotal)).toBe(1);
    expect(m.get(PROM.tasksDeliveredTotal)).toBe(1);
  });

  it('a store that cannot write gets 503 store_unavailable and no acknowledgement', async () => {
    const store = new MemoryTaskStore();
    const host = await hostApp({ store });
    cleanup = host.close;
    await store.close();
    const res = await fetch(`${host.url}/callback?id=lost&code=abc`);
    expect(res.status).toBe(503);
    expect((await fetch(`${host.url}/healthz`)).status).toBe(503);
    const m = await host.scrape();
    expect(m.get(`${PROM.callbackErrorsTotal}{error_type="store_unavailable"}`)).toBe(1);
    expect(m.get(`${PROM.callbacksTotal}{outcome="solved",format="query"}`)).toBe(0);
  });
});

/** Serves `listener` from a bare node:http server on an ephemeral loopback port. */
async function plainServer(listener: RequestListener) {
  const server = createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('the plugin as a plain node:http request listener', () => {
  it('answers the same routes as the middleware, hands the rest to the fallback, and 404s without one', async () => {
    const monitor = new CallbackMonitor({ store: new MemoryTaskStore() });
    const withFallback = await plainServer(
      monitor.requestListener((_req, res) => {
        res.end('fallback');
      }),
    );
    const alone = await plainServer(monitor.requestListener());
    try {
      await monitor.trackSubmitted('n1');
      const ok = await fetch(`${withFallback.url}/callback?id=n1&code=tok`);
      expect([ok.status, ok.headers.get('content-type'), await ok.text()]).toEqual([
        200,
        'text/plain; charset=utf-8',
        'OK',
      ]);
      expect(await monitor.getTask('n1')).toMatchObject({ state: 'delivered', code: 'tok' });

      const json = await fetch(`${alone.url}/callback/n2`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ errorId: 0, status: 'ready', solution: { token: 'j' } }),
      });
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
      for (const s of [withFallback.server, alone.server]) {
        s.closeAllConnections();
        await new Promise((r) => s.close(r));
      }
    }
  });

  it('answers a health path inside the callback prefix as health, as the middleware always did', async () => {
    const monitor = new CallbackMonitor({ store: new MemoryTaskStore(), prefix: '/cb', healthPath: '/cb/health' });
    const { server, url } = await plainServer(monitor.requestListener());
    try {
      const health = await fetch(`${url}/cb/health`);
      expect([health.status, (await health.json()) as unknown]).toMatchObject([200, { status: 'idle' }]);
      expect((await fetch(`${url}/cb/t1?code=x`)).status).toBe(200);
    } finally {
      await monitor.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
