import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CALLBACK_DURATION_BUCKETS, PROM } from '../packages/koa/src/metrics/contract.ts';
import { parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';

/** Series whose value changed between two scrapes (or appeared), with the new value. */
function changed(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of after) if (before.get(k) !== v) out.set(k, v);
  return out;
}

/** Drops series that move by themselves (gauges of time, and the latency sums, whose values vary run to run). */
function countable(series: Map<string, number>): Map<string, number> {
  return new Map(
    [...series].filter(
      ([k]) =>
        !k.startsWith(PROM.timeSinceLast) &&
        !k.startsWith(PROM.lastReceivedTimestamp) &&
        !k.startsWith(PROM.callbackDurationSum) &&
        !k.startsWith(PROM.taskDeliveryDurationSum) &&
        !k.startsWith('target_info'),
    ),
  );
}

describe('the standalone receiver, one solver format at a time', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer({ STORE_URL: 'memory:' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  async function task(id: string) {
    const res = await fetch(`${server.managementUrl}/tasks/${id}`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  async function callbackDelta(send: () => Promise<Response>) {
    const before = parseMetrics(await scrape(server));
    const res = await send();
    const text = await res.text();
    const after = parseMetrics(await scrape(server));
    return { status: res.status, text, delta: countable(changed(before, after)), after };
  }

  /** The duration histogram lines one 200 adds: every bucket's count, with our exact boundaries. */
  function durationLinesFor200(after: Map<string, number>, count: number) {
    const lines = new Map<string, number>();
    for (const le of [...CALLBACK_DURATION_BUCKETS.map(String), '+Inf']) {
      lines.set(`${PROM.callbackDurationBucket}{http_response_status_code="200",le="${le}"}`, count);
    }
    lines.set(`${PROM.callbackDurationCount}{http_response_status_code="200"}`, count);
    // A loopback callback takes well under 5 ms, so every bucket counts it; the sum is checked for sanity only.
    expect(after.get(`${PROM.callbackDurationSum}{http_response_status_code="200"}`)).toBeLessThan(count * 0.5);
    return lines;
  }

  it('exposes every failure reason at 0 from start-up, exactly these lines', async () => {
    // Written out, not derived from FAILURE_REASONS: a change to the set or to the exposition must show here.
    const lines = (await scrape(server)).split('\n').filter((l) => l.includes(PROM.callbackFailuresTotal));
    expect(lines).toEqual([
      '# HELP captcha_callback_failures_total Accepted callbacks that report a failed task, by solver error code (a closed set; any other code is other).',
      '# UNIT captcha_callback_failures_total {callback}',
      '# TYPE captcha_callback_failures_total counter',
      'captcha_callback_failures_total{reason="ERROR_CAPTCHA_UNSOLVABLE"} 0',
      'captcha_callback_failures_total{reason="ERROR_ZERO_BALANCE"} 0',
      'captcha_callback_failures_total{reason="ERROR_NO_SLOT_AVAILABLE"} 0',
      'captcha_callback_failures_total{reason="ERROR_PROXY_CONNECT_REFUSED"} 0',
      'captcha_callback_failures_total{reason="ERROR_PROXY_CONNECT_TIMEOUT"} 0',
      'captcha_callback_failures_total{reason="ERROR_PROXY_READ_TIMEOUT"} 0',
      'captcha_callback_failures_total{reason="ERROR_PROXY_BANNED"} 0',
      'captcha_callback_failures_total{reason="ERROR_PROXY_TRANSPARENT"} 0',
      'captcha_callback_failures_total{reason="ERROR_BAD_PROXY"} 0',
      'captcha_callback_failures_total{reason="ERROR_PROXY_CONNECTION_FAILED"} 0',
      'captcha_callback_failures_total{reason="ERROR_WRONG_USER_KEY"} 0',
      'captcha_callback_failures_total{reason="ERROR_KEY_DOES_NOT_EXIST"} 0',
      'captcha_callback_failures_total{reason="ERROR_KEY_DENIED_ACCESS"} 0',
      'captcha_callback_failures_total{reason="ERROR_IP_NOT_ALLOWED"} 0',
      'captcha_callback_failures_total{reason="ERROR_WRONG_CAPTCHA_ID"} 0',
      'captcha_callback_failures_total{reason="ERROR_NO_SUCH_CAPCHA_ID"} 0',
      'captcha_callback_failures_total{reason="other"} 0',
    ]);
  });

  it('CaptchaAI / 2Captcha GET: id and code in the query, registered task delivered', async () => {
    const reg = await fetch(`${server.managementUrl}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: '7001' }),
    });
    expect(reg.status).toBe(201);
    const r = await callbackDelta(() => fetch(`${server.publicUrl}/callback?id=7001&code=03AGdBq25SxXT-pmSeBXjzScW`));
    expect(r.status).toBe(200);
    expect(r.text).toBe('OK');
    expect(r.delta).toEqual(
      new Map([
        [`${PROM.callbacksTotal}{outcome="solved",format="query"}`, 1],
        ...durationLinesFor200(r.after, 1),
        [`${PROM.tasksDeliveredTotal}`, 1],
        [`${PROM.tasksPending}`, 0],
        // submit → callback took under a second: every delivery bucket counts it.
        ...[1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, '+Inf'].map(
          (le) => [`${PROM.taskDeliveryDurationBucket}{outcome="solved",le="${le}"}`, 1] as [string, number],
        ),
        [`${PROM.taskDeliveryDurationCount}{outcome="solved"}`, 1],
      ]),
    );
    expect(r.after.has(`${PROM.callbackDurationBucket}{http_response_status_code="200",le="0.5"}`)).toBe(true);
    expect(r.after.has(`${PROM.callbackDurationBucket}{http_response_status_code="200",le="1"}`)).toBe(true);
    const t = await task('7001');
    expect(t.body).toMatchObject({
      id: '7001',
      state: 'delivered',
      registered: true,
      outcome: 'solved',
      format: 'query',
    });
    expect(t.body.code).toBe('03AGdBq25SxXT-pmSeBXjzScW');
  });

  it('2Captcha POST form: an ERROR_ code is a failed outcome', async () => {
    const r = await callbackDelta(() =>
      fetch(`${server.publicUrl}/callback`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'id=7002&code=ERROR_CAPTCHA_UNSOLVABLE',
      }),
    );
    expect(r.status).toBe(200);
    expect(r.delta).toEqual(
      new Map([
        [`${PROM.callbacksTotal}{outcome="failed",format="form"}`, 1],
        // The solver's code is a documented failure reason: counted under it, verbatim.
        ['captcha_callback_failures_total{reason="ERROR_CAPTCHA_UNSOLVABLE"}', 1],
        ...durationLinesFor200(r.after, 2),
      ]),
    );
    expect((await task('7002')).body).toMatchObject({
      state: 'delivered',
      registered: false,
      outcome: 'failed',
      code: 'ERROR_CAPTCHA_UNSOLVABLE',
      format: 'form',
    });
  });

  it('uCaptcha GET: status=1 solved, status=0 failed', async () => {
    const ok = await callbackDelta(() => fetch(`${server.publicUrl}/callback?captcha_id=u-1&status=1&code=tok123`));
    expect(ok.status).toBe(200);
    expect(ok.delta.get(`${PROM.callbacksTotal}{outcome="solved",format="ucaptcha"}`)).toBe(1);
    const bad = await callbackDelta(() => fetch(`${server.publicUrl}/callback?captcha_id=u-2&status=0`));
    expect(bad.status).toBe(200);
    expect(bad.delta.get(`${PROM.callbacksTotal}{outcome="failed",format="ucaptcha"}`)).toBe(1);
    expect((await task('u-1')).body).toMatchObject({ outcome: 'solved', code: 'tok123', format: 'ucaptcha' });
    expect((await task('u-2')).body).toMatchObject({ outcome: 'failed', format: 'ucaptcha' });
  });

  it('Anti-Captcha / CapMonster JSON: task id in the path, solution token stored', async () => {
    const body = {
      errorId: 0,
      status: 'ready',
      solution: { gRecaptchaResponse: '3AHJ_VuvYIBNBW5yyv0zRYJ75VkOKvhKj9_xGBJKnQimF72rfoq3Iy' },
    };
    const r = await callbackDelta(() =>
      fetch(`${server.publicUrl}/callback/ac-77`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }),
    );
    expect(r.status).toBe(200);
    expect(r.delta).toEqual(
      new Map([[`${PROM.callbacksTotal}{outcome="solved",format="json"}`, 1], ...durationLinesFor200(r.after, 5)]),
    );
    expect((await task('ac-77')).body).toMatchObject({
      outcome: 'solved',
      code: body.solution.gRecaptchaResponse,
      format: 'json',
    });
  });

  it('JSON error result (errorId ≠ 0) is a failed outcome carrying the errorCode', async () => {
    const res = await fetch(`${server.publicUrl}/callback/ac-78`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ errorId: 12, errorCode: 'ERROR_CAPTCHA_UNSOLVABLE' }),
    });
    expect(res.status).toBe(200);
    expect((await task('ac-78')).body).toMatchObject({ outcome: 'failed', code: 'ERROR_CAPTCHA_UNSOLVABLE' });
  });

  it('a repeated callback is acknowledged, counted as a duplicate, and keeps the first result', async () => {
    const first = await fetch(`${server.publicUrl}/callback?id=7001&code=second-answer`);
    expect(first.status).toBe(200);
    const metrics = parseMetrics(await scrape(server));
    expect(metrics.get(PROM.duplicatesTotal)).toBe(1);
    expect(metrics.get(PROM.tasksDeliveredTotal)).toBe(1);
    expect((await task('7001')).body).toMatchObject({ code: '03AGdBq25SxXT-pmSeBXjzScW', callbacks: 2 });
  });

  it('serves /metrics with the Prometheus text content type, and only on the management port', async () => {
    const res = await fetch(`${server.managementUrl}/metrics`);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect((await fetch(`${server.publicUrl}/metrics`)).status).toBe(404);
    expect((await fetch(`${server.publicUrl}/tasks/7001`)).status).toBe(404);
    const text = await res.text();
    expect(text).not.toContain('otel_scope_name');
    expect(text).toContain(`# UNIT captcha_callback_duration s`);
  });
});
