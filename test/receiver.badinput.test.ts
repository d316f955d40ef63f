import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import { FORM_TYPE, get, type HttpReply, JSON_TYPE, send } from './support/http.ts';
import { type InProcessReceiver, startReceiver } from './support/receiver.ts';

// In-process: the monitor's request listener on a loopback node:http server, as the CLI's public listener serves it
// (the limits are the monitor's, which the CLI does not change). CALLBACK_SECRET, which needs the CLI's configuration
// and its logs, is in receiver.cli.test.ts.

function errors(metrics: Map<string, number>, type: string): number {
  return metrics.get(`${PROM.callbackErrorsTotal}{error_type="${type}"}`) ?? 0;
}

describe('bad input gets a clear 4xx, counted under its error type', () => {
  let receiver: InProcessReceiver;
  let url = '';
  beforeAll(async () => {
    receiver = await startReceiver();
    url = receiver.url;
  });
  afterAll(async () => {
    await receiver?.close();
  });

  const cases: Array<{
    name: string;
    run: () => Promise<HttpReply>;
    status: number;
    type: string;
  }> = [
    {
      name: 'missing task id',
      run: () => get(`${url}/callback?code=abc`),
      status: 400,
      type: 'invalid_request',
    },
    {
      name: 'missing code',
      run: () => get(`${url}/callback?id=1`),
      status: 400,
      type: 'invalid_request',
    },
    {
      name: 'repeated id parameter',
      run: () => get(`${url}/callback?id=1&id=2&code=x`),
      status: 400,
      type: 'invalid_request',
    },
    {
      name: 'task id with spaces',
      run: () => get(`${url}/callback?id=a%20b&code=x`),
      status: 400,
      type: 'invalid_request',
    },
    {
      name: 'query over 8 KiB',
      run: () => get(`${url}/callback?id=1&code=${'x'.repeat(9000)}`),
      status: 414,
      type: 'uri_too_long',
    },
    {
      name: 'body over 64 KiB',
      run: () =>
        send(`${url}/callback`, { method: 'POST', body: `id=1&code=${'x'.repeat(70_000)}`, contentType: FORM_TYPE }),
      status: 413,
      type: 'payload_too_large',
    },
    {
      name: 'unsupported content type',
      run: () => send(`${url}/callback`, { method: 'POST', body: '<id>1</id>', contentType: 'text/xml' }),
      status: 415,
      type: 'unsupported_media_type',
    },
    {
      name: 'wrong method',
      run: () => send(`${url}/callback`, { method: 'DELETE' }),
      status: 405,
      type: 'method_not_allowed',
    },
    {
      name: 'invalid JSON',
      run: () => send(`${url}/callback/42`, { method: 'POST', body: '{"errorId":', contentType: JSON_TYPE }),
      status: 400,
      type: 'invalid_request',
    },
    {
      name: 'extra path segments',
      run: () => get(`${url}/callback/a/b`),
      status: 404,
      type: 'invalid_request',
    },
  ];

  for (const c of cases) {
    it(`${c.name} → ${c.status} ${c.type}`, async () => {
      const before = errors(await receiver.metrics(), c.type);
      const res = await c.run();
      expect(res.status).toBe(c.status);
      const body = res.json<{ error: string; reason: string }>();
      expect(body.error).toBe(c.type);
      expect(body.reason).toMatch(/^[^\n]{3,120}$/);
      const after = errors(await receiver.metrics(), c.type);
      expect(after - before).toBe(1);
    });
  }

  it('a rejected request never stores anything', async () => {
    expect(
      (await send(`${url}/callback`, { method: 'POST', body: 'id=never&code=x', contentType: 'text/plain' })).status,
    ).toBe(415);
    expect(await receiver.task('never')).toBeUndefined();
  });
});
