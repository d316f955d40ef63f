import type { SolverEndpoint } from '@captcha-callback-monitor/koa';
import { parseCallback } from '@captcha-callback-monitor/koa';
import { parseJson, recordRequest, solverFetch } from './http.ts';
import { SolverClientBase } from './SolverClientBase.ts';
import {
  ACCOUNT_CODES,
  type BalanceAnswer,
  type PingbackAnswer,
  type SolverClient,
  type TaskResultAnswer,
  UNKNOWN_TASK_CODES,
} from './types.ts';

/**
 * The 2Captcha-compatible res.php API (2Captcha, RuCaptcha, CaptchaAI…): `GET /res.php?key&action=get&id&json=1`
 * answers `{"status":1,"request":"<answer>"}`, `{"status":0,"request":"CAPCHA_NOT_READY"}` or
 * `{"status":0,"request":"ERROR_…"}`; without json=1 the same as `OK|<answer>`, `CAPCHA_NOT_READY`, `ERROR_…`
 * (https://2captcha.com/2captcha-api; CaptchaAI: https://docs.captchaai.com/api/api-error-handling, which also
 * warns of HTML 500/502 pages). `action=getbalance` answers the balance; `add_pingback`, `get_pingbacks` and
 * `del_pingback` manage the pingback addresses, and must be sent from the receiver's own IP
 * (https://2captcha.com/h/how-to-configure-automatic-response-retrieval-via-pingback).
 */
export class ResPhpClient extends SolverClientBase implements SolverClient {
  readonly protocol = 'res.php' as const;
  /** One res.php call: its `{status, request}` answer (plain-text answers mapped to the same shape), or why not. */
  async #call(
    endpoint: SolverEndpoint,
    params: Record<string, string>,
  ): Promise<
    | { ok: true; status: number; request: unknown; startedAt: number }
    | {
        ok: false;
        outcome: 'http_error' | 'timeout' | 'network_error' | 'bad_response';
        detail: string;
        startedAt: number;
      }
  > {
    const query = new URLSearchParams({ key: this.config.key, ...params, json: '1' });
    const startedAt = performance.now();
    const answer = await solverFetch({
      solver: this.name,
      endpoint,
      method: 'GET',
      url: `${this.config.url}/res.php?${query}`,
      timeoutMs: this.timeoutMs,
    });
    if (answer.kind === 'failed') return { ok: false, outcome: answer.outcome, detail: answer.detail, startedAt };
    const json = parseJson(answer.text);
    if (typeof json === 'object' && json !== null && 'status' in json && 'request' in json) {
      const { status, request } = json as { status: unknown; request: unknown };
      if (status === 0 || status === 1) return { ok: true, status, request, startedAt };
    }
    // A solver that ignores json=1 answers plain text: OK|<answer>, CAPCHA_NOT_READY, ERROR_…, or a bare balance.
    const text = answer.text.trim();
    if (text.startsWith('OK|')) return { ok: true, status: 1, request: text.slice(3), startedAt };
    if (text === 'OK') return { ok: true, status: 1, request: 'OK', startedAt };
    if (/^(CAPCHA_NOT_READY|ERROR_[A-Z0-9_]+|IP_BANNED)$/.test(text))
      return { ok: true, status: 0, request: text, startedAt };
    if (endpoint === 'get_balance' && /^-?\d+(\.\d+)?$/.test(text))
      return { ok: true, status: 1, request: text, startedAt };
    return { ok: false, outcome: 'bad_response', detail: 'not a res.php answer', startedAt };
  }

  async getResult(solverTaskId: string, appId: string): Promise<TaskResultAnswer> {
    const endpoint = 'get_result';
    const r = await this.#call(endpoint, { action: 'get', id: solverTaskId });
    const done = (outcome: Parameters<typeof recordRequest>[2]) =>
      recordRequest(this.metrics, { solver: this.name, endpoint }, outcome, r.startedAt);
    if (!r.ok) {
      done(r.outcome);
      return { kind: 'retry', outcome: r.outcome, detail: r.detail };
    }
    const request = typeof r.request === 'string' ? r.request : undefined;
    if (request === undefined) {
      done('bad_response');
      return { kind: 'retry', outcome: 'bad_response', detail: 'request is not a string' };
    }
    if (r.status === 0 && request === 'CAPCHA_NOT_READY') {
      done('not_ready');
      return { kind: 'not_ready' };
    }
    if (r.status === 0) {
      done('solver_error');
      if (UNKNOWN_TASK_CODES.has(request)) return { kind: 'gone', code: request };
      if (ACCOUNT_CODES.has(request) || !/^ERROR_[A-Z0-9_]+$/.test(request)) {
        return { kind: 'retry', outcome: 'solver_error', detail: request.slice(0, 64) };
      }
    }
    // The answer (or a task-level ERROR_… such as ERROR_CAPTCHA_UNSOLVABLE) is what the pingback would have
    // carried as `code`: parse it with the same adapter, under the app's id.
    const parsed = parseCallback({
      method: 'GET',
      query: new URLSearchParams({ id: solverTaskId, code: request }),
      pathTaskId: appId,
    });
    if (!parsed.ok) {
      if (r.status === 1) done('bad_response');
      return { kind: 'retry', outcome: 'bad_response', detail: parsed.error.reason };
    }
    const outcome = r.status === 1 ? 'ok' : 'solver_error';
    if (r.status === 1) done('ok');
    return { kind: 'ready', result: parsed.value, outcome };
  }

  async getBalance(): Promise<BalanceAnswer> {
    const endpoint = 'get_balance';
    const r = await this.#call(endpoint, { action: 'getbalance' });
    if (!r.ok) {
      recordRequest(this.metrics, { solver: this.name, endpoint }, r.outcome, r.startedAt);
      return { kind: 'failed', outcome: r.outcome, detail: r.detail };
    }
    const value = typeof r.request === 'number' ? r.request : Number(r.request);
    if (r.status === 1 && typeof r.request !== 'boolean' && r.request !== '' && Number.isFinite(value)) {
      recordRequest(this.metrics, { solver: this.name, endpoint }, 'ok', r.startedAt);
      return { kind: 'ok', balance: value };
    }
    const outcome = r.status === 0 ? 'solver_error' : 'bad_response';
    recordRequest(this.metrics, { solver: this.name, endpoint }, outcome, r.startedAt);
    return { kind: 'failed', outcome, detail: typeof r.request === 'string' ? r.request.slice(0, 64) : 'no balance' };
  }

  /** `action=add_pingback&addr=<url>`: registers a pingback address (sent from the receiver's own IP). */
  addPingback(addr: string): Promise<PingbackAnswer> {
    return this.#pingback('add_pingback', { action: 'add_pingback', addr });
  }

  /** `action=get_pingbacks`: the registered addresses. */
  getPingbacks(): Promise<PingbackAnswer> {
    return this.#pingback('get_pingbacks', { action: 'get_pingbacks' });
  }

  /** `action=del_pingback&addr=<url>` (`addr=all` removes every one). */
  delPingback(addr: string): Promise<PingbackAnswer> {
    return this.#pingback('del_pingback', { action: 'del_pingback', addr });
  }

  async #pingback(endpoint: SolverEndpoint, params: Record<string, string>): Promise<PingbackAnswer> {
    const r = await this.#call(endpoint, params);
    if (!r.ok) {
      recordRequest(this.metrics, { solver: this.name, endpoint }, r.outcome, r.startedAt);
      return { kind: 'failed', outcome: r.outcome, detail: r.detail };
    }
    const outcome = r.status === 1 ? 'ok' : 'solver_error';
    recordRequest(this.metrics, { solver: this.name, endpoint }, outcome, r.startedAt);
    if (r.status === 1) return { kind: 'ok', answer: r.request };
    return { kind: 'failed', outcome, detail: typeof r.request === 'string' ? r.request.slice(0, 64) : 'error' };
  }
}
