import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import { formPost, jsonPost } from './support/requests.ts';
import { parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';

/**
 * Each solver's callback sent exactly as its own documentation shows it (method, content type, field names, a body
 * copied from the page cited beside it) to the real CLI, following the README recipe for that solver end to end:
 * register the app's id (and the solver's when the recipe says so), the callback, then `GET /tasks/<app id>`.
 *
 * The store is the default kind (SQLite) unless E2E_STORE_URL says otherwise (`memory:` tells a store bug from a
 * receiver bug).
 */
const STORE_URL = process.env.E2E_STORE_URL ?? 'sqlite::memory:';

type Json = Record<string, unknown>;

/** What a task shows after the solver reported the captcha unsolvable. */
const UNSOLVABLE = { outcome: 'failed', code: 'ERROR_CAPTCHA_UNSOLVABLE' } as const;

describe('every solver, as its documentation sends it, against the real server', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer({ STORE_URL });
  });
  afterAll(async () => {
    await server?.stop();
  });

  async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Json }> {
    const res = await fetch(`${server.managementUrl}${path}`, {
      method,
      ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as Json };
  }

  /** The app registers its own id before it calls createTask (the README recipe, step 1). */
  async function register(items: unknown) {
    const r = await api('POST', '/tasks', items);
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    return r.json;
  }

  const task = async (id: string) => api('GET', `/tasks/${encodeURIComponent(id)}`);

  /** `GET /tasks/<id>` shows the task by that id delivered, with `fields`. */
  async function expectDelivered(id: string, fields: Json) {
    expect((await task(id)).json).toMatchObject({ id, state: 'delivered', ...fields });
  }

  async function callback(path: string, init?: RequestInit): Promise<{ status: number; text: string }> {
    const res = await fetch(`${server.publicUrl}${path}`, init);
    return { status: res.status, text: await res.text() };
  }

  const form = formPost;
  const json = jsonPost;

  /** The solver's JSON failure report, POSTed to `path`, is answered 200 and leaves task `id` unsolvable with `metadata`. */
  async function expectJsonFailure(path: string, id: string, body: Json, metadata: Json) {
    expect((await callback(path, json(body))).status).toBe(200);
    await expectDelivered(id, { ...UNSOLVABLE, solution: null, metadata });
  }

  describe('2Captcha: POST application/x-www-form-urlencoded `id`, `code`', () => {
    // https://2captcha.com/h/how-to-configure-automatic-response-retrieval-via-pingback ("Incoming request format":
    // application/x-www-form-urlencoded with `id` and `code`; "Example request body from the docs:
    // id=51555263943&code=ANSWER"; the domain must be registered with action=add_pingback first).
    it('solved: the pingback URL carries the app id; the form id is kept as the solver id', async () => {
      await register({ id: 'order-2c-1' });
      const r = await callback('/callback/order-2c-1', form('id=51555263943&code=ANSWER'));
      expect(r).toEqual({ status: 200, text: 'OK' });
      const t = await task('order-2c-1');
      expect(t.status).toBe(200);
      expect(t.json).toMatchObject({
        id: 'order-2c-1',
        solver_task_id: '51555263943',
        state: 'delivered',
        registered: true,
        outcome: 'solved',
        code: 'ANSWER',
        format: 'form',
        // A form pingback has no solution object and nothing beyond id and code.
        solution: null,
        metadata: null,
        callbacks: 1,
      });
      // GET by the solver's id finds the same task and still names it by the app's id.
      expect((await task('51555263943')).json).toMatchObject({ id: 'order-2c-1', state: 'delivered' });
    });

    it('failed: an ERROR_… code (same page: "code — the solving result (token, answer, or error code)")', async () => {
      await register({ id: 'order-2c-2' });
      const r = await callback('/callback/order-2c-2', form('id=51555263944&code=ERROR_CAPTCHA_UNSOLVABLE'));
      expect(r.status).toBe(200);
      await expectDelivered('order-2c-2', {
        solver_task_id: '51555263944',
        ...UNSOLVABLE,
        metadata: null,
      });
      const m = parseMetrics(await scrape(server));
      expect(m.get(`${PROM.callbackFailuresTotal}{reason="ERROR_CAPTCHA_UNSOLVABLE"}`)).toBeGreaterThanOrEqual(1);
    });
  });

  describe('RuCaptcha (the 2Captcha platform): the same POST form, URL without the app id', () => {
    // https://2captcha.com/h/how-to-configure-automatic-response-retrieval-via-pingback: RuCaptcha runs the same API
    // and pingback (https://rucaptcha.com/api-rucaptcha); the request is the form `id`, `code` shown there.
    it('solved: the app attaches the solver id (PATCH) after createTask answers, the pingback carries only it', async () => {
      await register({ id: 'order-ru-1' });
      const attach = await api('PATCH', '/tasks/order-ru-1', { solver_task_id: '2122988149' });
      expect(attach.status).toBe(200);
      expect(attach.json).toMatchObject({ id: 'order-ru-1', solver_task_id: '2122988149', state: 'pending' });
      const r = await callback('/callback', form('id=2122988149&code=03AGdBq25SxXT-pmSeBXjzScW'));
      expect(r.status).toBe(200);
      await expectDelivered('order-ru-1', {
        solver_task_id: '2122988149',
        registered: true,
        outcome: 'solved',
        code: '03AGdBq25SxXT-pmSeBXjzScW',
        format: 'form',
      });
    });

    it('failed: ERROR_CAPTCHA_UNSOLVABLE', async () => {
      await register({ id: 'order-ru-2', solver_task_id: '2122988150' });
      expect((await callback('/callback', form('id=2122988150&code=ERROR_CAPTCHA_UNSOLVABLE'))).status).toBe(200);
      await expectDelivered('order-ru-2', UNSOLVABLE);
    });
  });

  describe('CaptchaAI: GET `?id=TASK_ID&code=TOKEN`', () => {
    // https://blog.captchaai.com/captchaai-pingback-task-notification-patterns ("CaptchaAI sends GET request to your
    // callback: YOUR_CALLBACK_URL?id=TASK_ID&code=TOKEN"); also
    // https://blog.captchaai.com/captchaai-webhook-security-callback-validation (same request).
    it('solved: pingback=https://host/callback/<app id>, CaptchaAI appends id and code', async () => {
      await register({ id: 'order-cai-1' });
      const r = await callback('/callback/order-cai-1?id=73410986528&code=03AGdBq26ZpSiJxM3L0x0hC9Vx');
      expect(r).toEqual({ status: 200, text: 'OK' });
      await expectDelivered('order-cai-1', {
        solver_task_id: '73410986528',
        outcome: 'solved',
        code: '03AGdBq26ZpSiJxM3L0x0hC9Vx',
        format: 'query',
        solution: null,
        metadata: null,
      });
    });

    it('failed: an ERROR_… code in `code`', async () => {
      await register({ id: 'order-cai-2' });
      expect((await callback('/callback/order-cai-2?id=73410986529&code=ERROR_CAPTCHA_UNSOLVABLE')).status).toBe(200);
      await expectDelivered('order-cai-2', UNSOLVABLE);
    });
  });

  describe('uCaptcha: GET `?captcha_id=…&status=1&code=…` / `status=0`', () => {
    // https://ucaptcha.net/docs/api/callbacks ("Success Example" and "Failure Example", copied below; callbackUrl is
    // sent with createTask, so the path carries the app's id).
    it('solved: status=1 with the token; status kept in metadata', async () => {
      await register({ id: 'order-uc-1' });
      const r = await callback(
        '/callback/order-uc-1?captcha_id=550e8400-e29b-41d4-a716-446655440000&status=1&code=03AGdBq24PBCbwiDRkh3FOcMZ1Xi5sEKH...',
      );
      expect(r.status).toBe(200);
      await expectDelivered('order-uc-1', {
        solver_task_id: '550e8400-e29b-41d4-a716-446655440000',
        outcome: 'solved',
        code: '03AGdBq24PBCbwiDRkh3FOcMZ1Xi5sEKH...',
        format: 'ucaptcha',
        solution: null,
        metadata: { status: '1' },
      });
    });

    it('failed: status=0 and no code', async () => {
      await register({ id: 'order-uc-2' });
      const r = await callback('/callback/order-uc-2?captcha_id=550e8400-e29b-41d4-a716-446655440001&status=0');
      expect(r.status).toBe(200);
      await expectDelivered('order-uc-2', {
        solver_task_id: '550e8400-e29b-41d4-a716-446655440001',
        outcome: 'failed',
        metadata: { status: '0' },
      });
    });
  });

  describe('Anti-Captcha: POST JSON, the getTaskResult answer, no task id', () => {
    // https://anti-captcha.com/apidoc/methods/createTask (callbackUrl: the result is POSTed with the contents of
    // getTaskResult) and https://anti-captcha.com/apidoc/methods/getTaskResult (the "JSON with no errors" example,
    // copied whole below: cost and solveCount are strings there).
    it('solved: the path carries the app id; the whole solution and cost/createTime/endTime/solveCount kept', async () => {
      await register({ id: 'order-ac-1' });
      const r = await callback(
        '/callback/order-ac-1',
        json({
          errorId: 0,
          status: 'ready',
          solution: { text: 'deditur', url: 'http://61.39.233.233/1/147220556452507.jpg' },
          cost: '0.000700',
          ip: '46.98.54.221',
          createTime: 1472205564,
          endTime: 1472205570,
          solveCount: '0',
        }),
      );
      expect(r).toEqual({ status: 200, text: 'OK' });
      // After createTask answered {"errorId":0,"taskId":7654321} (same createTask page), the app attaches that id.
      expect((await api('PATCH', '/tasks/order-ac-1', { solver_task_id: 7654321 })).status).toBe(200);
      const t = await task('order-ac-1');
      expect(t.json).toMatchObject({
        id: 'order-ac-1',
        solver_task_id: '7654321',
        state: 'delivered',
        outcome: 'solved',
        code: 'deditur',
        format: 'json',
        solution: { text: 'deditur', url: 'http://61.39.233.233/1/147220556452507.jpg' },
        metadata: {
          cost: '0.000700',
          ip: '46.98.54.221',
          createTime: 1472205564,
          endTime: 1472205570,
          solveCount: '0',
        },
      });
      expect((await task('7654321')).json).toMatchObject({ id: 'order-ac-1', code: 'deditur' });
    });

    it('failed: errorId 12 ERROR_CAPTCHA_UNSOLVABLE (https://anti-captcha.com/apidoc/errors)', async () => {
      await register({ id: 'order-ac-2' });
      const body = {
        errorId: 12,
        errorCode: 'ERROR_CAPTCHA_UNSOLVABLE',
        errorDescription: 'Captcha could not be solved by 5 different workers',
      };
      await expectJsonFailure('/callback/order-ac-2', 'order-ac-2', body, body);
    });
  });

  describe('CapMonster Cloud: POST JSON, the getTaskResult answer, no task id', () => {
    // https://capmonstercloud-docs.pages.dev/zh/docs/api/methods/create-task (callbackUrl: POST, "the content is the
    // same as the getTaskResult response", accept within 2 s) and
    // https://docs.capmonster.cloud/docs/api/methods/get-task-result/ ("Successful response", copied below).
    it('solved: the path carries the app id', async () => {
      await register({ id: 'order-cm-1', timeout_seconds: 120 });
      const started = performance.now();
      const r = await callback(
        '/callback/order-cm-1',
        json({ errorId: 0, status: 'ready', solution: { text: 'answer' } }),
      );
      // CapMonster closes the connection after 2 s: the answer must come well within that, even on a busy machine.
      expect(performance.now() - started).toBeLessThan(2_000);
      expect(r).toEqual({ status: 200, text: 'OK' });
      await expectDelivered('order-cm-1', {
        solver_task_id: null,
        outcome: 'solved',
        code: 'answer',
        solution: { text: 'answer' },
        metadata: { errorId: 0, status: 'ready' },
      });
    });

    it('failed: errorId 1 with errorCode (get-task-result page; codes: https://zennolab.atlassian.net/wiki/spaces/APIS/pages/295396/Error+Types)', async () => {
      await register({ id: 'order-cm-2' });
      expect(
        (await callback('/callback/order-cm-2', json({ errorId: 1, errorCode: 'ERROR_CAPTCHA_UNSOLVABLE' }))).status,
      ).toBe(200);
      await expectDelivered('order-cm-2', {
        ...UNSOLVABLE,
        metadata: { errorId: 1, errorCode: 'ERROR_CAPTCHA_UNSOLVABLE' },
      });
    });
  });

  describe('CapSolver: POST JSON, its getTaskResult answer, with its own taskId', () => {
    // https://docs.capsolver.com/guide/api-createtask (callbackUrl: "token will send (post) to this endpoint";
    // createTask answers taskId "37223a89-06ed-442c-a0b8-22067b79c5b4") and
    // https://docs.capsolver.com/en/guide/api-gettaskresult ("Example response", with taskId; userAgent is the
    // token's companion the app must reuse).
    const solved = (taskId: string) => ({
      errorId: 0,
      taskId,
      solution: {
        userAgent: 'xxx',
        gRecaptchaResponse: '03AGdBq25SxXT-pmSeBXjzScW-EiocHwwpwqtk1QXlJnGnUJCZrgjwLLdt7cb0...',
      },
      status: 'ready',
    });

    it('solved, path id: the path is the app id, the body taskId is kept as the solver id (no 400)', async () => {
      await register({ id: 'order-cs-1' });
      const r = await callback('/callback/order-cs-1', json(solved('37223a89-06ed-442c-a0b8-22067b79c5b4')));
      expect(r).toEqual({ status: 200, text: 'OK' });
      const t = await task('order-cs-1');
      expect(t.json).toMatchObject({
        id: 'order-cs-1',
        solver_task_id: '37223a89-06ed-442c-a0b8-22067b79c5b4',
        state: 'delivered',
        registered: true,
        outcome: 'solved',
        code: '03AGdBq25SxXT-pmSeBXjzScW-EiocHwwpwqtk1QXlJnGnUJCZrgjwLLdt7cb0...',
        solution: solved('x').solution,
        metadata: { errorId: 0, status: 'ready' },
      });
      // The taskId is not duplicated into metadata: it is the solver id.
      expect(t.json.metadata).not.toHaveProperty('taskId');
      expect((await task('37223a89-06ed-442c-a0b8-22067b79c5b4')).json).toMatchObject({ id: 'order-cs-1' });
    });

    it('solved, no path id: the app registered the solver id once createTask answered', async () => {
      await register({ id: 'order-cs-2' });
      // "posting a known id again with solver_task_id attaches it" (README recipe: register, createTask, register).
      const again = await register({ id: 'order-cs-2', solver_task_id: '61138bb6-19fb-11ec-a9c8-0242ac110006' });
      expect(again).toMatchObject({ submitted: 0, already_known: 1 });
      expect((await callback('/callback', json(solved('61138bb6-19fb-11ec-a9c8-0242ac110006')))).status).toBe(200);
      await expectDelivered('order-cs-2', {
        solver_task_id: '61138bb6-19fb-11ec-a9c8-0242ac110006',
        registered: true,
        outcome: 'solved',
        solution: { userAgent: 'xxx' },
      });
    });

    it('failed: errorId 1 with errorCode and errorDescription (the getTaskResult page: "1 - with error")', async () => {
      await register({ id: 'order-cs-3', solver_task_id: '2376919c-1863-11ec-a012-94e6f7355a0b' });
      const body = {
        errorId: 1,
        errorCode: 'ERROR_CAPTCHA_UNSOLVABLE',
        errorDescription: 'Captcha could not be solved',
        taskId: '2376919c-1863-11ec-a012-94e6f7355a0b',
      };
      // Both ways the recipe allows: without a path id (this task registered the solver id), then with one.
      await expectJsonFailure('/callback', 'order-cs-3', body, {
        errorId: 1,
        errorCode: 'ERROR_CAPTCHA_UNSOLVABLE',
        errorDescription: 'Captcha could not be solved',
      });
      await register({ id: 'order-cs-4' });
      const other = { ...body, taskId: '2376919c-1863-11ec-a012-94e6f7355a0c' };
      expect((await callback('/callback/order-cs-4', json(other))).status).toBe(200);
      expect((await task('order-cs-4')).json).toMatchObject({
        id: 'order-cs-4',
        solver_task_id: '2376919c-1863-11ec-a012-94e6f7355a0c',
        outcome: 'failed',
      });
    });
  });

  describe('the task model', () => {
    it('nanoid-style ids with a leading - or _ register, route and read back (path and registration)', async () => {
      // nanoid's alphabet is A-Za-z0-9_- and ids start with - or _ about 3 % of the time.
      const appIds = ['-V1StGXR8_Z5jdHi6B-myT', '_4f90d13a42c1e2b9-Xy'];
      await register(appIds.map((id) => ({ id })));
      expect((await callback(`/callback/${appIds[0]}?id=_solver-9&code=tok-dash`)).status).toBe(200);
      expect((await callback(`/callback/${appIds[1]}`, form('id=-77&code=tok-underscore'))).status).toBe(200);
      expect((await task(appIds[0]!)).json).toMatchObject({
        id: appIds[0],
        solver_task_id: '_solver-9',
        state: 'delivered',
        code: 'tok-dash',
      });
      expect((await task(appIds[1]!)).json).toMatchObject({
        id: appIds[1],
        solver_task_id: '-77',
        state: 'delivered',
        code: 'tok-underscore',
      });
      expect((await task('_solver-9')).json).toMatchObject({ id: appIds[0] });
      // A solver id given at registration may start with - too, and a callback carrying only it finds the task.
      await register({ id: '_app-3', solver_task_id: '-sv-3' });
      expect((await callback('/callback?id=-sv-3&code=tok-3')).status).toBe(200);
      expect((await task('_app-3')).json).toMatchObject({ state: 'delivered', code: 'tok-3', registered: true });
    });

    it('per-task deadline: timeout_seconds 2 is missed after about 2 s while a default-deadline task stays pending', async () => {
      const registeredAt = Date.now();
      await register([{ id: 'deadline-short', timeout_seconds: 2 }, { id: 'deadline-default' }]);
      const short = (await task('deadline-short')).json;
      const long = (await task('deadline-default')).json;
      // The deadlines themselves: 2 s and the server's DELIVERY_TIMEOUT default (300 s) after registration.
      expect(Date.parse(short.deadline_at as string) - Date.parse(short.submitted_at as string)).toBe(2_000);
      expect(Date.parse(long.deadline_at as string) - Date.parse(long.submitted_at as string)).toBe(300_000);
      // Long-poll-free wait: poll until the sweeper (at least once a second) marks it; generous bound for a busy box.
      let state = short.state;
      while (state === 'pending' && Date.now() - registeredAt < 20_000) {
        await new Promise((r) => setTimeout(r, 200));
        state = (await task('deadline-short')).json.state;
      }
      const missedAfter = Date.now() - registeredAt;
      expect(state).toBe('missed');
      // Never before its deadline (the sweeper cannot mark it early), whatever the load.
      expect(missedAfter).toBeGreaterThanOrEqual(1_900);
      expect((await task('deadline-default')).json.state).toBe('pending');
    });

    it('a task is found by either id; the answer always names it by the app id', async () => {
      await register({ id: 'either-1', solver_task_id: 'solver-either-1' });
      for (const id of ['either-1', 'solver-either-1']) {
        expect((await task(id)).json).toMatchObject({ id: 'either-1', solver_task_id: 'solver-either-1' });
      }
      expect((await task('nobody-registered-this')).status).toBe(404);
    });

    it('a callback carrying only the solver id before the app attached it is stored, then merged by PATCH', async () => {
      const before = parseMetrics(await scrape(server));
      await register({ id: 'early-app' });
      // The solver is faster than the app's PATCH: the callback carries only its own id.
      expect((await callback('/callback', form('id=early-solver-1&code=tok-early'))).status).toBe(200);
      expect((await task('early-solver-1')).json).toMatchObject({ id: 'early-solver-1', registered: false });
      expect((await task('early-app')).json).toMatchObject({ state: 'pending' });

      const merged = await api('PATCH', '/tasks/early-app', { solver_task_id: 'early-solver-1' });
      expect(merged.status).toBe(200);
      expect(merged.json).toMatchObject({ id: 'early-app', state: 'delivered', code: 'tok-early' });
      await expectDelivered('early-app', {
        solver_task_id: 'early-solver-1',
        registered: true,
        outcome: 'solved',
        code: 'tok-early',
        format: 'form',
      });
      // By the solver id, the answer is now the app's task, not the unregistered record.
      expect((await task('early-solver-1')).json).toMatchObject({ id: 'early-app', registered: true });
      // Counted as a delivery once the merge made it one.
      const after = parseMetrics(await scrape(server));
      expect((after.get(PROM.tasksDeliveredTotal) ?? 0) - (before.get(PROM.tasksDeliveredTotal) ?? 0)).toBe(1);
    });
  });
});
