import { describe, expect, it } from 'vitest';
import { type CallbackInput, parseCallback } from '../src/plugin/parseCallback.ts';

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
    expect(r).toEqual({ ok: true, value: { taskId: '123', outcome, code, format: 'query' } });
  });

  it('form body id/code', () => {
    expect(parseCallback(form('id=9&code=abc'))).toEqual({
      ok: true,
      value: { taskId: '9', outcome: 'solved', code: 'abc', format: 'form' },
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
      value: { taskId: '77' },
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
    ['path and query ids differ', get('id=1&code=a', '2'), 'differ'],
    ['JSON array', json([1, 2], 'x'), 'JSON body must be an object'],
    ['JSON without id', json({ errorId: 0, solution: { token: 'a' } }), 'missing task id'],
    ['JSON still processing', json({ errorId: 0, status: 'processing' }, 'x'), 'status must be "ready"'],
    ['JSON no solution', json({ errorId: 0, status: 'ready' }, 'x'), 'missing solution'],
    ['JSON bad errorId', json({ errorId: 'no' }, 'x'), 'errorId must be a number'],
    ['JSON taskId object', json({ taskId: { a: 1 } }), 'taskId must be'],
    ['code too long', get(`id=1&code=${'a'.repeat(40_000)}`), 'code too long'],
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
