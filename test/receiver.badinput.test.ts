import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import { parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';

const SECRET = 's3cr3t-path-token-0123456789';

/** Sends raw bytes as a body with an explicit method and content type (fetch refuses some of these). */
function send(
  url: string,
  method: string,
  body?: Buffer | string,
  contentType?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: contentType ? { 'content-type': contentType } : {} }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => {
        text += c.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

function errors(metrics: Map<string, number>, type: string): number {
  return metrics.get(`${PROM.callbackErrorsTotal}{error_type="${type}"}`) ?? 0;
}

describe('bad input gets a clear 4xx, counted under its error type', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer({ STORE_URL: 'memory:' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  const cases: Array<{
    name: string;
    run: () => Promise<{ status: number; body: string }>;
    status: number;
    type: string;
  }> = [
    {
      name: 'missing task id',
      run: () => send(`${server.publicUrl}/callback?code=abc`, 'GET'),
      status: 400,
      type: 'invalid_request',
    },
    {
      name: 'missing code',
      run: () => send(`${server.publicUrl}/callback?id=1`, 'GET'),
      status: 400,
      type: 'invalid_request',
    },
    {
      name: 'repeated id parameter',
      run: () => send(`${server.publicUrl}/callback?id=1&id=2&code=x`, 'GET'),
      status: 400,
      type: 'invalid_request',
    },
    {
      name: 'task id with spaces',
      run: () => send(`${server.publicUrl}/callback?id=a%20b&code=x`, 'GET'),
      status: 400,
      type: 'invalid_request',
    },
    {
      name: 'query over 8 KiB',
      run: () => send(`${server.publicUrl}/callback?id=1&code=${'x'.repeat(9000)}`, 'GET'),
      status: 414,
      type: 'uri_too_long',
    },
    {
      name: 'body over 64 KiB',
      run: () =>
        send(
          `${server.publicUrl}/callback`,
          'POST',
          `id=1&code=${'x'.repeat(70_000)}`,
          'application/x-www-form-urlencoded',
        ),
      status: 413,
      type: 'payload_too_large',
    },
    {
      name: 'unsupported content type',
      run: () => send(`${server.publicUrl}/callback`, 'POST', '<id>1</id>', 'text/xml'),
      status: 415,
      type: 'unsupported_media_type',
    },
    {
      name: 'wrong method',
      run: () => send(`${server.publicUrl}/callback`, 'DELETE'),
      status: 405,
      type: 'method_not_allowed',
    },
    {
      name: 'invalid JSON',
      run: () => send(`${server.publicUrl}/callback/42`, 'POST', '{"errorId":', 'application/json'),
      status: 400,
      type: 'invalid_request',
    },
    {
      name: 'extra path segments',
      run: () => send(`${server.publicUrl}/callback/a/b`, 'GET'),
      status: 404,
      type: 'invalid_request',
    },
  ];

  for (const c of cases) {
    it(`${c.name} → ${c.status} ${c.type}`, async () => {
      const before = errors(parseMetrics(await scrape(server)), c.type);
      const res = await c.run();
      expect(res.status).toBe(c.status);
      const body = JSON.parse(res.body) as { error: string; reason: string };
      expect(body.error).toBe(c.type);
      expect(body.reason).toMatch(/^[^\n]{3,120}$/);
      const after = errors(parseMetrics(await scrape(server)), c.type);
      expect(after - before).toBe(1);
    });
  }

  it('a rejected request never stores anything', async () => {
    await send(`${server.publicUrl}/callback`, 'POST', 'id=never&code=x', 'text/plain');
    expect((await fetch(`${server.managementUrl}/tasks/never`)).status).toBe(404);
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
    expect((await send(`${server.publicUrl}/callback/${SECRET}?id=s1&code=abc`, 'GET')).status).toBe(200);
    const json = await send(
      `${server.publicUrl}/callback/${SECRET}/s2`,
      'POST',
      JSON.stringify({ errorId: 0, status: 'ready', solution: { token: 'tok' } }),
      'application/json',
    );
    expect(json.status).toBe(200);
    expect((await fetch(`${server.managementUrl}/tasks/s2`)).status).toBe(200);
  });

  it('answers 404 to the bare route and to a wrong secret, counts them as unauthorized, stores nothing', async () => {
    const before = errors(parseMetrics(await scrape(server)), 'unauthorized');
    expect((await send(`${server.publicUrl}/callback?id=s3&code=abc`, 'GET')).status).toBe(404);
    expect((await send(`${server.publicUrl}/callback/${SECRET}x?id=s3&code=abc`, 'GET')).status).toBe(404);
    expect((await send(`${server.publicUrl}/callback/wrong/s3?code=abc`, 'GET')).status).toBe(404);
    const after = errors(parseMetrics(await scrape(server)), 'unauthorized');
    expect(after - before).toBe(3);
    expect((await fetch(`${server.managementUrl}/tasks/s3`)).status).toBe(404);
  });

  it('never writes the secret or a solution code to the logs', async () => {
    await send(`${server.publicUrl}/callback/${SECRET}?id=s4&code=VERY-SECRET-SOLUTION-TOKEN`, 'GET');
    await server.stop();
    expect(server.logs()).toContain('"msg":"listening"');
    expect(server.logs()).not.toContain(SECRET);
    expect(server.logs()).not.toContain('VERY-SECRET-SOLUTION-TOKEN');
  });
});
