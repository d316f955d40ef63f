import { parseCallback } from '@captcha-callback-monitor/koa';
import { parseJson, recordRequest, solverFetch } from './http.ts';
import { SolverClientBase } from './SolverClientBase.ts';
import {
  ACCOUNT_CODES,
  type BalanceAnswer,
  type SolverClient,
  type TaskResultAnswer,
  UNKNOWN_TASK_CODES,
} from './types.ts';

/**
 * The Anti-Captcha-compatible JSON API (Anti-Captcha, CapMonster Cloud, CapSolver…): `POST /getTaskResult
 * {clientKey, taskId}` answers `{errorId: 0, status: "processing"}` (CapSolver also `idle`), `{errorId: 0, status:
 * "ready", solution: {…}, …}` or `{errorId: 1+, errorCode, errorDescription}`
 * (https://anti-captcha.com/apidoc/methods/getTaskResult, https://docs.capmonster.cloud/docs/api/methods/get-task-result/,
 * https://docs.capsolver.com/en/guide/api-gettaskresult); `POST /getBalance {clientKey}` answers `{errorId: 0,
 * balance}` (https://anti-captcha.com/apidoc/methods/getBalance). CapSolver's task ids are strings, the others'
 * integers: a numeric id is sent as a number.
 */
export class CreateTaskClient extends SolverClientBase implements SolverClient {
  readonly protocol = 'createTask' as const;
  async #post(endpoint: 'get_result' | 'get_balance', path: string, body: Record<string, unknown>) {
    const startedAt = performance.now();
    const answer = await solverFetch({
      solver: this.name,
      endpoint,
      method: 'POST',
      url: `${this.config.url}${path}`,
      json: { clientKey: this.config.key, ...body },
      timeoutMs: this.timeoutMs,
    });
    const record = (outcome: Parameters<typeof recordRequest>[2]) =>
      recordRequest(this.metrics, { solver: this.name, endpoint }, outcome, startedAt);
    if (answer.kind === 'failed') return { ok: false as const, outcome: answer.outcome, detail: answer.detail, record };
    const json = parseJson(answer.text);
    if (
      typeof json !== 'object' ||
      json === null ||
      Array.isArray(json) ||
      typeof (json as { errorId?: unknown }).errorId !== 'number'
    ) {
      return { ok: false as const, outcome: 'bad_response' as const, detail: 'not a JSON answer with errorId', record };
    }
    return { ok: true as const, body: json as Record<string, unknown> & { errorId: number }, record };
  }

  async getResult(solverTaskId: string, appId: string): Promise<TaskResultAnswer> {
    const taskId = /^\d{1,15}$/.test(solverTaskId) ? Number(solverTaskId) : solverTaskId;
    const r = await this.#post('get_result', '/getTaskResult', { taskId });
    if (!r.ok) {
      r.record(r.outcome);
      return { kind: 'retry', outcome: r.outcome, detail: r.detail };
    }
    const { body } = r;
    if (body.errorId === 0 && (body.status === 'processing' || body.status === 'idle')) {
      r.record('not_ready');
      return { kind: 'not_ready' };
    }
    if (body.errorId !== 0) {
      r.record('solver_error');
      const code = typeof body.errorCode === 'string' ? body.errorCode : `ERROR_ID_${body.errorId}`;
      if (UNKNOWN_TASK_CODES.has(code)) return { kind: 'gone', code };
      if (ACCOUNT_CODES.has(code)) return { kind: 'retry', outcome: 'solver_error', detail: code.slice(0, 64) };
    }
    // getTaskResult's answer is exactly what these solvers POST as the callback: the JSON callback adapter parses
    // it, under the app's id (a CapSolver answer's own taskId is kept as the solver id).
    const parsed = parseCallback({
      method: 'POST',
      query: new URLSearchParams(),
      body: { kind: 'json', value: body },
      pathTaskId: appId,
    });
    if (!parsed.ok) {
      if (body.errorId === 0) r.record('bad_response');
      return { kind: 'retry', outcome: 'bad_response', detail: parsed.error.reason };
    }
    if (body.errorId === 0) r.record('ok');
    const result = parsed.value.solverTaskId === undefined ? { ...parsed.value, solverTaskId } : parsed.value;
    return { kind: 'ready', result, outcome: body.errorId === 0 ? 'ok' : 'solver_error' };
  }

  async getBalance(): Promise<BalanceAnswer> {
    const r = await this.#post('get_balance', '/getBalance', {});
    if (!r.ok) {
      r.record(r.outcome);
      return { kind: 'failed', outcome: r.outcome, detail: r.detail };
    }
    if (r.body.errorId !== 0) {
      r.record('solver_error');
      return {
        kind: 'failed',
        outcome: 'solver_error',
        detail: String(r.body.errorCode ?? r.body.errorId).slice(0, 64),
      };
    }
    const balance = typeof r.body.balance === 'number' ? r.body.balance : Number.NaN;
    if (!Number.isFinite(balance)) {
      r.record('bad_response');
      return { kind: 'failed', outcome: 'bad_response', detail: 'no numeric balance' };
    }
    r.record('ok');
    return { kind: 'ok', balance };
  }
}
