import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback stand-in for the solver APIs the receiver cannot reach from here. It implements the documented
 * requests and answers of both protocols and enforces the documented limits, counting every request over a limit.
 *
 * - res.php (2Captcha, https://2captcha.com/2captcha-api and https://2captcha.com/api-docs/limits):
 *   `GET /res.php?key&action=get&id[&json=1]` → `OK|answer` / `{"status":1,"request":"answer"}`, `CAPCHA_NOT_READY`,
 *   `ERROR_…`; asking about one task again sooner than 5 s is over the limit ("If captcha is not solved yet - retry
 *   in 5 seconds"; the limits page says a badly timed client gets an error and a block: answered
 *   ERROR_TOO_MUCH_REQUESTS here); `action=getbalance`; `add_pingback`/`get_pingbacks`/`del_pingback` with `addr`
 *   (https://2captcha.com/h/how-to-configure-automatic-response-retrieval-via-pingback).
 * - createTask (https://anti-captcha.com/apidoc/methods/getTaskResult, …/getBalance): `POST /getTaskResult
 *   {clientKey, taskId}` → `{errorId:0,status:"processing"}`, `{errorId:0,status:"ready",solution}`, `{errorId:1,
 *   errorCode}`; `POST /getBalance {clientKey}` → `{errorId:0,balance}`. Per flavour:
 *   - capmonster: polls of one task faster than every 2 s are refused with ERROR_TOO_MUCH_REQUESTS, at most 120
 *     per task (https://docs.capmonster.cloud/docs/api/methods/get-task-result/);
 *   - capsolver: at most 120 queries per task, after which the result is lost, and results kept 5 minutes after
 *     creation (https://docs.capsolver.com/en/guide/api-gettaskresult): both answered ERROR_TASKID_INVALID;
 *   - anticaptcha: getBalance at most once every 30 s (https://anti-captcha.com/apidoc/methods/getBalance; the page
 *     names no error, answered ERROR_TOO_MUCH_REQUESTS here).
 *
 * `limits` can be lowered by a test that says so; the defaults are the documented values.
 */

export type SimulatorFlavor = '2captcha' | 'anticaptcha' | 'capmonster' | 'capsolver';

export interface SimulatorLimits {
  /** Minimum time between two asks about one task (arrival to arrival). */
  readonly minPollIntervalMs: number;
  readonly maxPollsPerTask: number;
  /** How long after creation the solver keeps a task's result. */
  readonly resultWindowMs: number;
  readonly minBalanceIntervalMs: number;
}

export const DOCUMENTED_SIMULATOR_LIMITS: Record<SimulatorFlavor, SimulatorLimits> = {
  '2captcha': {
    minPollIntervalMs: 5000,
    maxPollsPerTask: Number.POSITIVE_INFINITY,
    resultWindowMs: Number.POSITIVE_INFINITY,
    minBalanceIntervalMs: 0,
  },
  anticaptcha: {
    minPollIntervalMs: 0,
    maxPollsPerTask: Number.POSITIVE_INFINITY,
    resultWindowMs: Number.POSITIVE_INFINITY,
    minBalanceIntervalMs: 30_000,
  },
  capmonster: {
    minPollIntervalMs: 2000,
    maxPollsPerTask: 120,
    resultWindowMs: Number.POSITIVE_INFINITY,
    minBalanceIntervalMs: 0,
  },
  capsolver: { minPollIntervalMs: 0, maxPollsPerTask: 120, resultWindowMs: 5 * 60_000, minBalanceIntervalMs: 0 },
};

export interface SimulatedTask {
  /** The solved answer (res.php `code`) or the createTask `solution` object. */
  readonly answer?: string | Record<string, unknown>;
  /** A task-level error instead of a result, e.g. ERROR_CAPTCHA_UNSOLVABLE. */
  readonly error?: string;
  /** Unix ms when the result becomes ready (default: now). */
  readonly readyAt?: number;
}

export type FaultMode = 'timeout' | '5xx' | 'garbage' | 'html';

export interface OverLimit {
  tooFast: number;
  tooMany: number;
  afterWindow: number;
  balanceTooFast: number;
  /** Asks about one task while another ask about it was still being answered. */
  concurrent: number;
}

interface TaskState {
  readonly spec: SimulatedTask;
  readonly createdAt: number;
  polls: number;
  lastPollAt: number | undefined;
  inFlight: number;
  lost: boolean;
  readonly pollTimes: number[];
}

/** A simulator's `overLimit` when no request broke a documented limit. */
export const WITHIN_LIMITS: Readonly<OverLimit> = {
  tooFast: 0,
  tooMany: 0,
  afterWindow: 0,
  balanceTooFast: 0,
  concurrent: 0,
};

export interface SolverSimulator {
  readonly flavor: SimulatorFlavor;
  readonly url: string;
  readonly overLimit: OverLimit;
  /** Every request, in arrival order: endpoint, task id (for result asks), arrival time. */
  readonly requests: { endpoint: string; taskId?: string; at: number }[];
  readonly pingbacks: Set<string>;
  balance: number;
  addTask(id: string, task: SimulatedTask): void;
  /** Asks about this task so far, with their arrival times. */
  polls(id: string): readonly number[];
  /** The next `count` requests (default: all until cleared with `fault(null)`) fail this way. */
  fault(mode: FaultMode | null, count?: number): void;
  /** Delay every answer by this long (widens the window in which two asks could overlap). */
  answerDelayMs: number;
  close(): Promise<void>;
}

export async function startSolverSimulator(options: {
  flavor: SimulatorFlavor;
  key: string;
  balance?: number;
  limits?: Partial<SimulatorLimits>;
}): Promise<SolverSimulator> {
  const { flavor, key } = options;
  const limits: SimulatorLimits = { ...DOCUMENTED_SIMULATOR_LIMITS[flavor], ...options.limits };
  const resPhp = flavor === '2captcha';
  const tasks = new Map<string, TaskState>();
  const overLimit: OverLimit = { ...WITHIN_LIMITS };
  const requests: SolverSimulator['requests'] = [];
  const pingbacks = new Set<string>();
  let faultMode: FaultMode | null = null;
  let faultsLeft = 0;
  let lastBalanceAt: number | undefined;

  const sim: SolverSimulator = {
    flavor,
    url: '',
    overLimit,
    requests,
    pingbacks,
    balance: options.balance ?? 10,
    answerDelayMs: 0,
    addTask(id, task) {
      tasks.set(id, {
        spec: task,
        createdAt: Date.now(),
        polls: 0,
        lastPollAt: undefined,
        inFlight: 0,
        lost: false,
        pollTimes: [],
      });
    },
    polls(id) {
      return tasks.get(id)?.pollTimes ?? [];
    },
    fault(mode, count = Number.POSITIVE_INFINITY) {
      faultMode = mode;
      faultsLeft = mode === null ? 0 : count;
    },
    close: async () => {},
  };

  const send = (res: ServerResponse, status: number, body: unknown) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' });
    res.end(text);
  };

  /** Applies the limits to one ask about `id`; returns the over-limit error code, or undefined. */
  const pollLimit = (t: TaskState, now: number): string | undefined => {
    if (t.inFlight > 1) overLimit.concurrent++;
    if (t.lost) return resPhp ? 'ERROR_NO_SUCH_CAPCHA_ID' : 'ERROR_TASKID_INVALID';
    if (now - t.createdAt > limits.resultWindowMs) {
      overLimit.afterWindow++;
      t.lost = true;
      return 'ERROR_TASKID_INVALID';
    }
    if (t.polls > limits.maxPollsPerTask) {
      overLimit.tooMany++;
      t.lost = true;
      return resPhp ? 'ERROR_NO_SUCH_CAPCHA_ID' : 'ERROR_TASKID_INVALID';
    }
    if (t.lastPollAt !== undefined && now - t.lastPollAt < limits.minPollIntervalMs) {
      overLimit.tooFast++;
      return 'ERROR_TOO_MUCH_REQUESTS';
    }
    return undefined;
  };

  const handleResPhp = (q: URLSearchParams, res: ServerResponse) => {
    const json = q.get('json') === '1';
    const answer = (status: 0 | 1, request: unknown) =>
      json
        ? send(res, 200, { status, request })
        : send(res, 200, status === 1 ? (request === 'OK' ? 'OK' : `OK|${String(request)}`) : String(request));
    const action = q.get('action') ?? '';
    requests.push({ endpoint: action, taskId: q.get('id') ?? undefined, at: Date.now() });
    if (q.get('key') !== key) return answer(0, 'ERROR_KEY_DOES_NOT_EXIST');
    if (action === 'getbalance')
      return json
        ? send(res, 200, { status: 1, request: sim.balance.toFixed(5) })
        : send(res, 200, sim.balance.toFixed(5));
    if (action === 'add_pingback' || action === 'del_pingback') {
      const addr = q.get('addr');
      if (!addr) return answer(0, 'ERROR_WRONG_ADDR');
      if (action === 'add_pingback') pingbacks.add(addr);
      else if (addr === 'all') pingbacks.clear();
      else pingbacks.delete(addr);
      return answer(1, 'OK');
    }
    if (action === 'get_pingbacks') return send(res, 200, { status: 1, request: [...pingbacks] });
    if (action !== 'get') return answer(0, 'ERROR_NO_SUCH_METHOD');
    const id = q.get('id') ?? '';
    const t = tasks.get(id);
    if (!t) return answer(0, 'ERROR_WRONG_CAPTCHA_ID');
    return pollAnswer(t, (kind, value) => {
      if (kind === 'not_ready') return answer(0, 'CAPCHA_NOT_READY');
      if (kind === 'error') return answer(0, value as string);
      return answer(1, value);
    });
  };

  const handleCreateTask = (path: string, body: Record<string, unknown>, res: ServerResponse) => {
    const endpoint = path.slice(1);
    requests.push({ endpoint, taskId: body.taskId === undefined ? undefined : String(body.taskId), at: Date.now() });
    const error = (code: string) => send(res, 200, { errorId: 1, errorCode: code, errorDescription: code });
    if (body.clientKey !== key) return error('ERROR_KEY_DOES_NOT_EXIST');
    if (path === '/getBalance') {
      const now = Date.now();
      const tooFast = lastBalanceAt !== undefined && now - lastBalanceAt < limits.minBalanceIntervalMs;
      lastBalanceAt = now;
      if (tooFast) {
        overLimit.balanceTooFast++;
        return error('ERROR_TOO_MUCH_REQUESTS');
      }
      return send(res, 200, { errorId: 0, balance: sim.balance });
    }
    if (path !== '/getTaskResult') return error('ERROR_NO_SUCH_METHOD');
    const t = tasks.get(String(body.taskId));
    if (!t) return error(flavor === 'capsolver' ? 'ERROR_TASKID_INVALID' : 'ERROR_NO_SUCH_CAPCHA_ID');
    return pollAnswer(t, (kind, value) => {
      if (kind === 'not_ready') return send(res, 200, { errorId: 0, status: 'processing' });
      if (kind === 'error') return error(value as string);
      const solution = typeof value === 'string' ? { gRecaptchaResponse: value } : value;
      const extra = flavor === 'capsolver' ? { taskId: String(body.taskId) } : { cost: '0.00100', solveCount: 0 };
      return send(res, 200, { errorId: 0, status: 'ready', solution, ...extra });
    });
  };

  const pollAnswer = (t: TaskState, reply: (kind: 'not_ready' | 'error' | 'ready', value?: unknown) => void) => {
    const now = Date.now();
    t.polls++;
    t.pollTimes.push(now);
    t.inFlight++;
    const limited = pollLimit(t, now);
    t.lastPollAt = now;
    const finish = () => {
      t.inFlight--;
      if (limited) return reply('error', limited);
      if ((t.spec.readyAt ?? t.createdAt) > Date.now()) return reply('not_ready');
      if (t.spec.error) return reply('error', t.spec.error);
      reply('ready', t.spec.answer ?? 'SIMULATED-TOKEN');
    };
    if (sim.answerDelayMs > 0) setTimeout(finish, sim.answerDelayMs);
    else finish();
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (faultMode !== null && faultsLeft > 0) {
        faultsLeft--;
        requests.push({ endpoint: `fault:${faultMode}`, at: Date.now() });
        if (faultMode === 'timeout') return; // never answered; closed with the server
        if (faultMode === '5xx') return send(res, 502, '<html><body>502 Bad Gateway</body></html>');
        if (faultMode === 'html') return send(res, 200, '<html><body>maintenance</body></html>');
        return send(res, 200, '{"errorId":'); // garbage: truncated JSON
      }
      const url = new URL(req.url ?? '/', 'http://sim');
      if (resPhp) {
        if (req.method !== 'GET' || url.pathname !== '/res.php') return send(res, 404, 'not found');
        return handleResPhp(url.searchParams, res);
      }
      if (req.method !== 'POST') return send(res, 405, 'method not allowed');
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        return send(res, 400, { errorId: 1, errorCode: 'ERROR_BAD_REQUEST' });
      }
      if (typeof body !== 'object' || body === null)
        return send(res, 400, { errorId: 1, errorCode: 'ERROR_BAD_REQUEST' });
      handleCreateTask(url.pathname, body as Record<string, unknown>, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  (sim as { url: string }).url = `http://127.0.0.1:${port}`;
  sim.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return sim;
}
