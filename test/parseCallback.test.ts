import { describe, expect, it } from 'vitest';
import { type CallbackInput, parseCallback } from '../packages/koa/src/plugin/parseCallback.ts';

const get = (qs: string, pathTaskId?: string): CallbackInput => ({
  method: 'GET',
  query: new URLSearchParams(qs),
  ...(pathTaskId ? { pathTaskId } : {}),
});
const json = (value: unknown, pathTaskId?: string): CallbackInput => ({
  method: 'POST',
  query: new URLSearchParams(),
  body: { kind: 'json', value },
  ...(pathTaskId ? { pathTaskId } : {}),
});
const form = (body: string): CallbackInput => ({
  method: 'POST',
  query: new URLSearchParams(),
  body: { kind: 'form', params: new URLSearchParams(body) },
});

describe('parseCallback adapters', () => {
  it.each([
    ['ERROR_CAPTCHA_UNSOLVABLE', 'failed'],
    ['ERROR_WRONG_CAPTCHA_ID', 'failed'],
    ['03AGdBq24PBCbwiDRaS_MJ7Z', 'solved'],
    ['ERRORLESS-token', 'solved'],
    ['error_lowercase_is_a_token', 'solved'],
  ])('query code %s is %s', (code, outcome) => {
    const r = parseCallback(get(`id=123&code=${code}`));
    expect(r).toEqual({
      ok: true,
      value: { solverTaskId: '123', outcome, code, format: 'query', solution: null, metadata: null },
    });
  });

  it('form body id/code', () => {
    expect(parseCallback(form('id=9&code=abc'))).toEqual({
      ok: true,
      value: { solverTaskId: '9', outcome: 'solved', code: 'abc', format: 'form', solution: null, metadata: null },
    });
  });

  it('uCaptcha requires status 1 or 0, and a code when solved', () => {
    expect(parseCallback(get('captcha_id=5&status=1&code=t'))).toMatchObject({
      ok: true,
      value: { outcome: 'solved' },
    });
    expect(parseCallback(get('captcha_id=5&status=0'))).toMatchObject({
      ok: true,
      value: { outcome: 'failed', code: '' },
    });
    expect(parseCallback(get('captcha_id=5&status=1'))).toMatchObject({ ok: false, error: { status: 400 } });
    expect(parseCallback(get('captcha_id=5&status=2&code=t'))).toMatchObject({ ok: false });
  });

  it('JSON getTaskResult: token fields in documented order, else the solution object', () => {
    expect(parseCallback(json({ errorId: 0, status: 'ready', solution: { token: 'T' } }, 'x1'))).toMatchObject({
      ok: true,
      value: { taskId: 'x1', code: 'T', format: 'json' },
    });
    expect(parseCallback(json({ errorId: 0, status: 'ready', solution: { text: 'abcd' } }, 'x1'))).toMatchObject({
      value: { code: 'abcd' },
    });
    expect(parseCallback(json({ errorId: 0, status: 'ready', solution: { x: 1, y: 2 } }, 'x1'))).toMatchObject({
      value: { code: '{"x":1,"y":2}' },
    });
    expect(parseCallback(json({ taskId: 77, errorId: 0, solution: { token: 'T' } }))).toMatchObject({
      value: { solverTaskId: '77' },
    });
  });

  it('the path id is the app id, the request id the solver id; both kept when they differ', () => {
    expect(parseCallback(get('id=1&code=a', 'app-1'))).toMatchObject({
      ok: true,
      value: { taskId: 'app-1', solverTaskId: '1' },
    });
    // CapSolver: its own taskId in the body beside the app's id in the path.
    const capsolver = json({ errorId: 0, taskId: 'cs-9', status: 'ready', solution: { gRecaptchaResponse: 'G' } }, 'a');
    expect(parseCallback(capsolver)).toMatchObject({
      ok: true,
      value: { taskId: 'a', solverTaskId: 'cs-9', code: 'G' },
    });
    // Anti-Captcha / CapMonster: no id in the body, only the path's.
    const r = parseCallback(json({ errorId: 0, status: 'ready', solution: { token: 'T' } }, 'a'));
    expect(r.ok && r.value).toEqual(expect.objectContaining({ taskId: 'a' }));
    expect(r.ok && 'solverTaskId' in r.value).toBe(false);
  });

  it.each(['-x1', '_x1', 'V1StGXR8_Z5jdHi6B-myT', '~a.b:c'])('accepts the id %s in path and request', (id) => {
    expect(parseCallback(get(`id=${id}&code=a`, id))).toMatchObject({
      ok: true,
      value: { taskId: id, solverTaskId: id },
    });
  });

  it('keeps the whole solution and every other field as metadata', () => {
    const body = {
      errorId: 0,
      status: 'ready',
      solution: { gRecaptchaResponse: 'G', userAgent: 'UA/1', respKey: 'E0_x', cookies: { a: 'b' } },
      cost: '0.00299',
      ip: '46.98.54.221',
      createTime: 1472205564,
      endTime: 1472205570,
      solveCount: 0,
    };
    const r = parseCallback(json(body, 'app'));
    expect(r).toEqual({
      ok: true,
      value: {
        taskId: 'app',
        outcome: 'solved',
        code: 'G',
        format: 'json',
        solution: body.solution,
        metadata: {
          errorId: 0,
          status: 'ready',
          cost: '0.00299',
          ip: '46.98.54.221',
          createTime: 1472205564,
          endTime: 1472205570,
          solveCount: 0,
        },
      },
    });
    expect(parseCallback(get('captcha_id=5&status=0&extra=1'))).toMatchObject({
      value: { metadata: { status: '0', extra: '1' } },
    });
    expect(parseCallback(get('id=5&code=c&extra=1&extra=2'))).toMatchObject({
      value: { metadata: { extra: ['1', '2'] } },
    });
  });

  it('JSON errors become failed outcomes with the error code', () => {
    expect(parseCallback(json({ errorId: 1, errorCode: 'ERROR_CAPTCHA_UNSOLVABLE' }, 'x2'))).toMatchObject({
      value: { outcome: 'failed', code: 'ERROR_CAPTCHA_UNSOLVABLE' },
    });
    expect(parseCallback(json({ errorId: 3 }, 'x2'))).toMatchObject({
      value: { outcome: 'failed', code: 'ERROR_ID_3' },
    });
  });

  it.each([
    ['no id', get('code=abc'), 'missing task id'],
    ['empty id', get('id=&code=abc'), 'missing task id'],
    ['no code', get('id=1'), 'missing code'],
    ['repeated code', get('id=1&code=a&code=b'), 'parameter code given more than once'],
    ['bad id chars', get('id=%3Cscript%3E&code=a'), 'task id must be'],
    ['id too long', get(`id=${'1'.repeat(129)}&code=a`), 'task id must be'],
    ['bad path id', get('id=1&code=a', 'a/b'), 'task id in the path must be'],
    ['JSON array', json([1, 2], 'x'), 'JSON body must be an object'],
    ['JSON without id', json({ errorId: 0, solution: { token: 'a' } }), 'missing task id'],
    ['JSON still processing', json({ errorId: 0, status: 'processing' }, 'x'), 'status must be "ready"'],
    ['JSON no solution', json({ errorId: 0, status: 'ready' }, 'x'), 'missing solution'],
    ['JSON bad errorId', json({ errorId: 'no' }, 'x'), 'errorId must be a number'],
    ['JSON taskId object', json({ taskId: { a: 1 } }), 'taskId must be'],
    ['code too long', get(`id=1&code=${'a'.repeat(40_000)}`), 'code too long'],
    ['metadata too long', get(`id=1&code=a&x=${'a'.repeat(70_000)}`), 'too long'],
    ['id with a slash', get('id=a%2Fb&code=a'), 'task id must be'],
  ])('%s → 400 invalid_request', (_name, input, reason) => {
    const r = parseCallback(input);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.status).toBe(400);
      expect(r.error.errorType).toBe('invalid_request');
      expect(r.error.reason).toContain(reason);
    }
  });
});
