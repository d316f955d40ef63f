import type { SolverEndpoint, SolverRequestOutcome } from '@captcha-callback-monitor/koa';
import type { SolverMetrics } from '@captcha-callback-monitor/koa/internal';

/** Default time a solver has to answer one request. The solvers' own SDKs wait 30 s; recovery can ask again. */
export const SOLVER_REQUEST_TIMEOUT_MS = 10_000;
/** Solver answers are small JSON documents; anything longer is not one of them. */
const MAX_ANSWER_BYTES = 256 * 1024;

export interface SolverHttpRequest {
  readonly solver: string;
  readonly endpoint: SolverEndpoint;
  readonly method: 'GET' | 'POST';
  /** The full URL; it may carry the key in its query (res.php): never log or rethrow it. */
  readonly url: string;
  readonly json?: unknown;
  readonly timeoutMs?: number;
}

/** A request that got an HTTP answer, or the closed reason it did not. Carries no URL and no key. */
export type SolverHttpAnswer =
  | { readonly kind: 'answer'; readonly status: number; readonly text: string }
  | { readonly kind: 'failed'; readonly outcome: 'http_error' | 'timeout' | 'network_error'; readonly detail: string };

/**
 * One request to a solver API with a timeout. Never throws and never puts the URL (which may hold the key) into
 * what it returns: errors are reduced to a closed outcome and a short, key-free detail.
 */
export async function solverFetch(req: SolverHttpRequest): Promise<SolverHttpAnswer> {
  const signal = AbortSignal.timeout(req.timeoutMs ?? SOLVER_REQUEST_TIMEOUT_MS);
  try {
    const response = await fetch(req.url, {
      method: req.method,
      signal,
      redirect: 'error',
      headers:
        req.json === undefined
          ? { accept: 'application/json' }
          : { 'content-type': 'application/json', accept: 'application/json' },
      body: req.json === undefined ? undefined : JSON.stringify(req.json),
    });
    const text = await readLimited(response);
    if (response.status < 200 || response.status > 299) {
      return { kind: 'failed', outcome: 'http_error', detail: `HTTP ${response.status}` };
    }
    return { kind: 'answer', status: response.status, text };
  } catch (error) {
    if (signal.aborted) return { kind: 'failed', outcome: 'timeout', detail: 'no answer in time' };
    const e = error as { cause?: { code?: unknown }; name?: string };
    const code = typeof e.cause?.code === 'string' ? e.cause.code : (e.name ?? 'error');
    return { kind: 'failed', outcome: 'network_error', detail: code.slice(0, 40) };
  }
}

async function readLimited(response: Response): Promise<string> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_ANSWER_BYTES) {
      await reader.cancel();
      break;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Records one request's outcome and latency, measured from `startedAt` (performance.now()). */
export function recordRequest(
  metrics: SolverMetrics | undefined,
  req: Pick<SolverHttpRequest, 'solver' | 'endpoint'>,
  outcome: SolverRequestOutcome,
  startedAt: number,
): void {
  metrics?.request(req.solver, req.endpoint, outcome, (performance.now() - startedAt) / 1000);
}

/** Parses a JSON answer; undefined when it is not JSON. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
