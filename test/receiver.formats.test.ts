import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CALLBACK_DURATION_BUCKETS, PROM } from '../packages/koa/src/metrics/contract.ts';
import { get, type HttpReply, postForm, postJson } from './support/http.ts';
import { type InProcessReceiver, startReceiver } from './support/receiver.ts';

// In-process: the monitor's request listener on a loopback node:http server, as the CLI's public listener serves it.
// What needs the CLI itself (/metrics on the management listener only, its content type) is in receiver.cli.test.ts.

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

describe('the receiver, one solver format at a time', () => {
  let receiver: InProcessReceiver;
  let url: string;
  beforeAll(async () => {
    receiver = await startReceiver();
    url = receiver.url;
  });
  afterAll(async () => {
    await receiver?.close();
  });

  const task = (id: string) => receiver.task(id);

  async function callbackDelta(send: () => Promise<HttpReply>) {
    const before = await receiver.metrics();
    const started = performance.now();
    const res = await send();
    const elapsedSeconds = (performance.now() - started) / 1000;
    const after = await receiver.metrics();
    return {
      status: res.status,
      text: res.text,
      delta: countable(changed(before, after)),
      before,
      after,
      elapsedSeconds,
    };
  }

  /**
   * The duration histogram lines one more 200 changes, with our exact boundaries: the buckets at or above its duration
   * count it (a series new to the exposition shows at 0 below it), +Inf and the count reach `count`. Its duration is
   * the sum's growth, in seconds within the request's round trip as the client timed it (same process, same clock);
   * how fast that was is not asserted.
   */
  function durationLinesFor200(
    r: { before: Map<string, number>; after: Map<string, number>; elapsedSeconds: number },
    count: number,
  ) {
    const sum = `${PROM.callbackDurationSum}{http_response_status_code="200"}`;
    const took = (r.after.get(sum) ?? 0) - (r.before.get(sum) ?? 0);
    expect(took).toBeGreaterThanOrEqual(0);
    expect(took).toBeLessThanOrEqual(r.elapsedSeconds);
    const lines = new Map<string, number>();
    for (const le of CALLBACK_DURATION_BUCKETS) {
      const key = `${PROM.callbackDurationBucket}{http_response_status_code="200",le="${le}"}`;
      const was = r.before.get(key);
      if (took <= le) lines.set(key, (was ?? 0) + 1);
      else if (was === undefined) lines.set(key, 0);
    }
    lines.set(`${PROM.callbackDurationBucket}{http_response_status_code="200",le="+Inf"}`, count);
    lines.set(`${PROM.callbackDurationCount}{http_response_status_code="200"}`, count);
    // The sum is checked for sanity only.
    expect(r.after.get(sum)).toBeLessThan(count * 0.5);
    return lines;
  }

  it('exposes every failure reason at 0 from start-up, exactly these lines', async () => {
    // Written out, not derived from FAILURE_REASONS: a change to the set or to the exposition must show here.
    const lines = (await receiver.scrape()).split('\n').filter((l) => l.includes(PROM.callbackFailuresTotal));
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
    // Registered through the monitor, as the task API's POST /tasks does.
    expect(await receiver.monitor.trackSubmitted([{ id: '7001' }])).toEqual(['7001']);
    const r = await callbackDelta(() => get(`${url}/callback?id=7001&code=03AGdBq25SxXT-pmSeBXjzScW`));
    expect(r.status).toBe(200);
    expect(r.text).toBe('OK');
    expect(r.delta).toEqual(
      new Map([
        [`${PROM.callbacksTotal}{outcome="solved",format="query"}`, 1],
        ...durationLinesFor200(r, 1),
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
    expect(t).toMatchObject({
      id: '7001',
      state: 'delivered',
      registered: true,
      outcome: 'solved',
      format: 'query',
    });
    expect(t?.code).toBe('03AGdBq25SxXT-pmSeBXjzScW');
  });

  it('2Captcha POST form: an ERROR_ code is a failed outcome', async () => {
    const r = await callbackDelta(() => postForm(`${url}/callback`, 'id=7002&code=ERROR_CAPTCHA_UNSOLVABLE'));
    expect(r.status).toBe(200);
    expect(r.delta).toEqual(
      new Map([
        [`${PROM.callbacksTotal}{outcome="failed",format="form"}`, 1],
        // The solver's code is a documented failure reason: counted under it, verbatim.
        ['captcha_callback_failures_total{reason="ERROR_CAPTCHA_UNSOLVABLE"}', 1],
        ...durationLinesFor200(r, 2),
      ]),
    );
    expect(await task('7002')).toMatchObject({
      state: 'delivered',
      registered: false,
      outcome: 'failed',
      code: 'ERROR_CAPTCHA_UNSOLVABLE',
      format: 'form',
    });
  });

  it('uCaptcha GET: status=1 solved, status=0 failed', async () => {
    const ok = await callbackDelta(() => get(`${url}/callback?captcha_id=u-1&status=1&code=tok123`));
    expect(ok.status).toBe(200);
    expect(ok.delta.get(`${PROM.callbacksTotal}{outcome="solved",format="ucaptcha"}`)).toBe(1);
    const bad = await callbackDelta(() => get(`${url}/callback?captcha_id=u-2&status=0`));
    expect(bad.status).toBe(200);
    expect(bad.delta.get(`${PROM.callbacksTotal}{outcome="failed",format="ucaptcha"}`)).toBe(1);
    expect(await task('u-1')).toMatchObject({ outcome: 'solved', code: 'tok123', format: 'ucaptcha' });
    expect(await task('u-2')).toMatchObject({ outcome: 'failed', format: 'ucaptcha' });
  });

  it('Anti-Captcha / CapMonster JSON: task id in the path, solution token stored', async () => {
    const body = {
      errorId: 0,
      status: 'ready',
      solution: { gRecaptchaResponse: '3AHJ_VuvYIBNBW5yyv0zRYJ75VkOKvhKj9_xGBJKnQimF72rfoq3Iy' },
    };
    const r = await callbackDelta(() => postJson(`${url}/callback/ac-77`, body));
    expect(r.status).toBe(200);
    expect(r.delta).toEqual(
      new Map([[`${PROM.callbacksTotal}{outcome="solved",format="json"}`, 1], ...durationLinesFor200(r, 5)]),
    );
    expect(await task('ac-77')).toMatchObject({
      outcome: 'solved',
      code: body.solution.gRecaptchaResponse,
      format: 'json',
    });
  });

  it('JSON error result (errorId ≠ 0) is a failed outcome carrying the errorCode', async () => {
    const res = await postJson(`${url}/callback/ac-78`, { errorId: 12, errorCode: 'ERROR_CAPTCHA_UNSOLVABLE' });
    expect(res.status).toBe(200);
    expect(await task('ac-78')).toMatchObject({ outcome: 'failed', code: 'ERROR_CAPTCHA_UNSOLVABLE' });
  });

  it('a repeated callback is acknowledged, counted as a duplicate, and keeps the first result', async () => {
    const first = await get(`${url}/callback?id=7001&code=second-answer`);
    expect(first.status).toBe(200);
    const metrics = await receiver.metrics();
    expect(metrics.get(PROM.duplicatesTotal)).toBe(1);
    expect(metrics.get(PROM.tasksDeliveredTotal)).toBe(1);
    expect(await task('7001')).toMatchObject({ code: '03AGdBq25SxXT-pmSeBXjzScW', callbacks: 2 });
  });
});
