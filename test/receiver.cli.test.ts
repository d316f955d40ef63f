import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import { get, JSON_TYPE, send } from './support/http.ts';
import { parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';

// The receiver cases that need the CLI itself: its two listeners, CALLBACK_SECRET read from the environment, its logs.
// The formats and the bad-input answers run in-process (receiver.formats.test.ts, receiver.badinput.test.ts).

const SECRET = 's3cr3t-path-token-0123456789';

function errors(metrics: Map<string, number>, type: string): number {
  return metrics.get(`${PROM.callbackErrorsTotal}{error_type="${type}"}`) ?? 0;
}

describe('the standalone receiver’s two listeners', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer({ STORE_URL: 'memory:' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('serves /metrics with the Prometheus text content type, and only on the management port', async () => {
    // One callback first, so the duration histogram has a series to show.
    expect((await get(`${server.publicUrl}/callback?id=7001&code=abc`)).status).toBe(200);
    const res = await get(`${server.managementUrl}/metrics`);
    expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect((await get(`${server.publicUrl}/metrics`)).status).toBe(404);
    expect((await get(`${server.publicUrl}/tasks/7001`)).status).toBe(404);
    expect(res.text).not.toContain('otel_scope_name');
    expect(res.text).toContain(`# UNIT captcha_callback_duration s`);
  });
});

describe('with CALLBACK_SECRET set', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer({ STORE_URL: 'memory:', CALLBACK_SECRET: SECRET });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('accepts /callback/<secret> and /callback/<secret>/<taskId>', async () => {
    expect((await get(`${server.publicUrl}/callback/${SECRET}?id=s1&code=abc`)).status).toBe(200);
    const json = await send(`${server.publicUrl}/callback/${SECRET}/s2`, {
      method: 'POST',
      body: JSON.stringify({ errorId: 0, status: 'ready', solution: { token: 'tok' } }),
      contentType: JSON_TYPE,
    });
    expect(json.status).toBe(200);
    expect((await get(`${server.managementUrl}/tasks/s2`)).status).toBe(200);
  });

  it('answers 404 to the bare route and to a wrong secret, counts them as unauthorized, stores nothing', async () => {
    const before = errors(parseMetrics(await scrape(server)), 'unauthorized');
    expect((await get(`${server.publicUrl}/callback?id=s3&code=abc`)).status).toBe(404);
    expect((await get(`${server.publicUrl}/callback/${SECRET}x?id=s3&code=abc`)).status).toBe(404);
    expect((await get(`${server.publicUrl}/callback/wrong/s3?code=abc`)).status).toBe(404);
    const after = errors(parseMetrics(await scrape(server)), 'unauthorized');
    expect(after - before).toBe(3);
    expect((await get(`${server.managementUrl}/tasks/s3`)).status).toBe(404);
  });

  it('never writes the secret or a solution code to the logs', async () => {
    await get(`${server.publicUrl}/callback/${SECRET}?id=s4&code=VERY-SECRET-SOLUTION-TOKEN`);
    await server.stop();
    expect(server.logs()).toContain('"msg":"listening"');
    expect(server.logs()).not.toContain(SECRET);
    expect(server.logs()).not.toContain('VERY-SECRET-SOLUTION-TOKEN');
  });
});
