/**
 * Demo traffic generator: plays an app that registers CAPTCHA tasks (`POST /tasks` on the management listener) and a
 * solver that calls back (GET/POST on the callback route) in every supported format, with a configurable rate,
 * failure ratio, solve latency, share of lost callbacks, malformed callbacks and duplicates. It exists so the
 * dashboards and alerts have something real to show (`captcha-callback-monitor demo`, the compose `demo` profile)
 * and so the live PromQL test can feed a receiver.
 */
import { type CallbackFormat, FORMATS } from '@captcha-callback-monitor/koa';
import { callbackRequest, invalidCallbackRequest, planTask, seededRandom, type TaskPlan } from './taskPlan.ts';

export interface TrafficOptions {
  /**
   * Base URL of the management listener (the /tasks API), e.g. `http://127.0.0.1:9464`. Several instances sharing a
   * store: a comma-separated list, used in turn.
   */
  readonly managementUrl: string;
  /**
   * The callback URL the solver is given, including the secret segment if one is configured. A comma-separated list
   * plays a load balancer: task n registers on management URL n and is called back on the next callback URL, so
   * with two instances every callback reaches the instance that did not register the task.
   */
  readonly callbackUrl: string;
  /** Bearer token for the /tasks API, when the receiver has `API_TOKEN`. */
  readonly apiToken?: string | undefined;
  /** Tasks registered per second. */
  readonly rate: number;
  /** Share of callbacks that report a solver failure (ERROR_CAPTCHA_UNSOLVABLE and its equivalents). */
  readonly failureRatio: number;
  /** Share of tasks whose callback never comes (they become `missed` at the receiver's deadline). */
  readonly lostRatio: number;
  /** Share of tasks that first get a malformed callback (400, counted as `invalid_request`). */
  readonly invalidRatio: number;
  /** Share of delivered tasks whose callback is sent twice (counted as a duplicate). */
  readonly duplicateRatio: number;
  /** Solve time range in seconds (submit → callback), drawn uniformly. */
  readonly latency: { readonly min: number; readonly max: number };
  /** Callback formats to rotate through. */
  readonly formats: readonly CallbackFormat[];
  /** Stop registering after this many seconds (0: no time limit). */
  readonly durationSeconds: number;
  /** Stop registering after this many tasks (0: no count limit). */
  readonly count: number;
  /** Seed for the pseudo-random choices, so a run can be repeated. */
  readonly seed: number;
  /** Most requests in flight at once; tasks beyond it are skipped and counted as `dropped`. */
  readonly maxInFlight: number;
  /** Where progress lines go (default: nowhere). */
  readonly progress?: ((line: string) => void) | undefined;
  /** How often a progress line is written, in milliseconds. */
  readonly progressIntervalMs: number;
  /** Stops the run early (registration stops, pending callbacks are abandoned). */
  readonly signal?: AbortSignal | undefined;
}

export const DEFAULT_TRAFFIC: Omit<TrafficOptions, 'managementUrl' | 'callbackUrl'> = {
  rate: 5,
  failureRatio: 0.1,
  lostRatio: 0.05,
  invalidRatio: 0.01,
  duplicateRatio: 0.02,
  latency: { min: 1, max: 8 },
  formats: FORMATS,
  durationSeconds: 60,
  count: 0,
  seed: 1,
  maxInFlight: 256,
  progressIntervalMs: 1000,
};

export interface TrafficStats {
  /** Tasks the receiver accepted (`POST /tasks` answered 201). */
  submitted: number;
  /** Callbacks answered 200 (duplicates included). */
  callbacks: number;
  solved: number;
  failed: number;
  /** Tasks deliberately left without a callback. */
  lost: number;
  /** Malformed callbacks sent (expected to be refused with 400). */
  invalid: number;
  duplicates: number;
  /** Requests that failed at the HTTP level or got an unexpected status. */
  httpErrors: number;
  /** Tasks skipped because `maxInFlight` requests were already open. */
  dropped: number;
  /** Tasks whose callback was still to come when the run ended (duration reached or stopped): the receiver will count them missed. */
  abandoned: number;
  byFormat: Record<CallbackFormat, number>;
  /** Seconds the run took, including waiting for the last callbacks. */
  elapsedSeconds: number;
  /** The last unexpected answer or error, for the progress line. */
  lastError?: string;
}

function newStats(): TrafficStats {
  return {
    submitted: 0,
    callbacks: 0,
    solved: 0,
    failed: 0,
    lost: 0,
    invalid: 0,
    duplicates: 0,
    httpErrors: 0,
    dropped: 0,
    abandoned: 0,
    byFormat: { query: 0, form: 0, ucaptcha: 0, json: 0 },
    elapsedSeconds: 0,
  };
}

export function formatProgress(s: TrafficStats, pending: number, previousErrors = 0): string {
  const parts = [
    `demo: ${s.elapsedSeconds.toFixed(0)} s`,
    `submitted ${s.submitted}`,
    `callbacks ${s.callbacks} (solved ${s.solved}, failed ${s.failed}, duplicates ${s.duplicates})`,
    `lost ${s.lost}`,
    `invalid ${s.invalid}`,
    `waiting ${pending}`,
  ];
  if (s.dropped > 0) parts.push(`dropped ${s.dropped}`);
  if (s.abandoned > 0) parts.push(`abandoned ${s.abandoned}`);
  // The last error only when there are new ones since the previous line, so one error is not repeated every second.
  const fresh = s.httpErrors > previousErrors && s.lastError;
  if (s.httpErrors > 0) parts.push(`http errors ${s.httpErrors}${fresh ? ` (last: ${s.lastError})` : ''}`);
  return parts.join(', ');
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/**
 * Runs the simulation until `durationSeconds` or `count` is reached (or `signal` aborts), then waits for the
 * callbacks already scheduled, and resolves to what was sent. Never throws for HTTP failures: they are counted.
 */
export async function runTraffic(options: TrafficOptions): Promise<TrafficStats> {
  const o = options;
  if (!(o.rate > 0)) throw new Error('rate must be > 0');
  if (o.durationSeconds <= 0 && o.count <= 0 && !o.signal) {
    throw new Error('an unbounded run needs a signal to stop it; set durationSeconds or count');
  }
  const random = seededRandom(o.seed);
  const runId = `${Date.now().toString(36)}${Math.floor(random() * 1296).toString(36)}`;
  const stats = newStats();
  const started = performance.now();
  const list = (urls: string) =>
    urls
      .split(',')
      .map((u) => u.trim().replace(/\/+$/, ''))
      .filter((u) => u !== '');
  const tasksUrls = list(o.managementUrl).map((u) => `${u}/tasks`);
  const callbackUrls = list(o.callbackUrl);
  const pick = (urls: string[], n: number) => urls[n % urls.length] ?? '';
  const authHeaders: Record<string, string> = o.apiToken ? { authorization: `Bearer ${o.apiToken}` } : {};
  const inFlight = new Set<Promise<void>>();
  let waiting = 0;
  const halt = new AbortController();
  const stopOnSignal = () => halt.abort();
  if (o.signal?.aborted) halt.abort();
  o.signal?.addEventListener('abort', stopOnSignal, { once: true });

  const fail = (what: string) => {
    stats.httpErrors += 1;
    stats.lastError = what.slice(0, 120);
  };

  async function send(url: string, init: RequestInit, expected: number): Promise<boolean> {
    if (halt.signal.aborted) return false;
    try {
      const res = await fetch(url, { ...init, signal: AbortSignal.any([AbortSignal.timeout(10_000), halt.signal]) });
      await res.arrayBuffer();
      if (res.status !== expected) {
        fail(`${init.method ?? 'GET'} ${new URL(url).pathname} answered ${res.status}, expected ${expected}`);
        return false;
      }
      return true;
    } catch (error) {
      // Cut because the run ended: not an error of the receiver's.
      if (!halt.signal.aborted) fail(`${init.method ?? 'GET'} ${new URL(url).pathname}: ${(error as Error).message}`);
      return false;
    }
  }

  async function simulate(plan: TaskPlan, n: number): Promise<void> {
    const callbackUrl = pick(callbackUrls, n + 1);
    const registered = await send(
      pick(tasksUrls, n),
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...authHeaders },
        body: JSON.stringify({ id: plan.id }),
      },
      201,
    );
    if (!registered) return;
    stats.submitted += 1;
    if (plan.lost) {
      stats.lost += 1;
      return;
    }
    waiting += 1;
    await sleep(plan.delayMs, halt.signal);
    waiting -= 1;
    if (halt.signal.aborted) {
      stats.abandoned += 1;
      return;
    }
    if (plan.invalidFirst) {
      const bad = invalidCallbackRequest(callbackUrl, plan.id);
      if (await send(bad.url, bad.init, 400)) stats.invalid += 1;
    }
    const req = callbackRequest(callbackUrl, plan);
    const times = plan.duplicate ? 2 : 1;
    for (let i = 0; i < times; i++) {
      if (!(await send(req.url, req.init, 200))) {
        if (halt.signal.aborted && i === 0) stats.abandoned += 1;
        return;
      }
      stats.callbacks += 1;
      if (i === 0) {
        stats.byFormat[plan.format] += 1;
        if (plan.failed) stats.failed += 1;
        else stats.solved += 1;
      } else {
        stats.duplicates += 1;
      }
    }
  }

  let reportedErrors = 0;
  const report = () => {
    stats.elapsedSeconds = (performance.now() - started) / 1000;
    o.progress?.(formatProgress(stats, waiting, reportedErrors));
    reportedErrors = stats.httpErrors;
  };
  const ticker = o.progress ? setInterval(report, o.progressIntervalMs) : undefined;
  ticker?.unref();

  const intervalMs = 1000 / o.rate;
  const deadline = o.durationSeconds > 0 ? started + o.durationSeconds * 1000 : Number.POSITIVE_INFINITY;
  // The run ends at the deadline (or the caller's signal): registration stops, callbacks still to come are
  // abandoned and requests in flight are cut, so `durationSeconds` is the run's length, not its registration phase.
  const deadlineTimer = Number.isFinite(deadline)
    ? setTimeout(() => halt.abort(), Math.max(0, deadline - performance.now()))
    : undefined;
  let n = 0;
  try {
    for (;;) {
      if (halt.signal.aborted) break;
      if (o.count > 0 && n >= o.count) break;
      const due = started + n * intervalMs;
      if (due >= deadline) break;
      const now = performance.now();
      if (due > now) {
        await sleep(due - now, halt.signal);
        continue;
      }
      const plan = planTask(n, runId, random, o);
      const index = n;
      n += 1;
      if (inFlight.size >= o.maxInFlight) {
        stats.dropped += 1;
        continue;
      }
      const p: Promise<void> = simulate(plan, index).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
  } finally {
    if (ticker) clearInterval(ticker);
    if (deadlineTimer) clearTimeout(deadlineTimer);
    o.signal?.removeEventListener('abort', stopOnSignal);
  }
  stats.elapsedSeconds = (performance.now() - started) / 1000;
  o.progress?.(formatProgress(stats, 0, reportedErrors));
  return stats;
}

/** Thrown when the receiver does not answer within the readiness wait. */
export class ReceiverNotReadyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReceiverNotReadyError';
  }
}

/**
 * Waits until every receiver answers: `GET /healthz` 200 on each callback URL's origin (the public listener) and
 * `GET /metrics` 200 on each management URL. Polls every 250 ms up to `timeoutMs`; throws ReceiverNotReadyError
 * naming what did not answer and how (refused, status, timeout) otherwise. `timeoutMs` 0 skips the wait.
 */
export async function waitForReceiver(
  o: Pick<TrafficOptions, 'managementUrl' | 'callbackUrl' | 'signal'>,
  timeoutMs: number,
): Promise<void> {
  if (timeoutMs <= 0) return;
  const list = (urls: string) =>
    urls
      .split(',')
      .map((u) => u.trim())
      .filter((u) => u !== '');
  const probes = [
    ...new Set(list(o.callbackUrl).map((u) => `${new URL(u).origin}/healthz`)),
    ...new Set(list(o.managementUrl).map((u) => `${u.replace(/\/+$/, '')}/metrics`)),
  ];
  const until = performance.now() + timeoutMs;
  const last = new Map<string, string>();
  for (;;) {
    await Promise.all(
      probes
        .filter((url) => last.get(url) !== 'ok')
        .map(async (url) => {
          try {
            const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
            await res.arrayBuffer();
            last.set(url, res.status === 200 ? 'ok' : `answered ${res.status}`);
          } catch (error) {
            const cause = (error as { cause?: { code?: string } }).cause?.code;
            last.set(url, cause === 'ECONNREFUSED' ? 'connection refused' : (cause ?? (error as Error).message));
          }
        }),
    );
    const waitingFor = probes.filter((url) => last.get(url) !== 'ok');
    if (waitingFor.length === 0) return;
    if (o.signal?.aborted) throw new ReceiverNotReadyError('stopped while waiting for the receiver');
    if (performance.now() >= until) {
      throw new ReceiverNotReadyError(
        `no receiver answered within ${Math.round(timeoutMs / 1000)} s: ${waitingFor.map((u) => `${u} (${last.get(u)})`).join(', ')}. ` +
          'Start it first (npm start), or point --callback-url / --management-url at it.',
      );
    }
    await sleep(250, o.signal);
  }
}
