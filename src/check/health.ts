/**
 * Reads a receiver's `/health/callbacks` (and its `/healthz`, the outside probe's target) and says what it found:
 * a report, a receiver that is down, or an answer that is not a health report at all.
 */
import type { HealthReport } from '@captcha-callback-monitor/koa/internal';

export type Probe =
  | { readonly kind: 'report'; readonly report: HealthReport; readonly notes: readonly string[] }
  /** Unreachable, timed out, a 5xx that is not a stale report, or `/healthz` refusing: the EndpointDown alert. */
  | { readonly kind: 'down'; readonly reason: string }
  /** Something answered, but not with a health report (a wrong URL, most likely): the check cannot judge. */
  | { readonly kind: 'unknown'; readonly reason: string };

export interface ProbeOptions {
  readonly url: string;
  /** `/healthz` to probe as well; null to skip. */
  readonly healthzUrl: string | null;
  readonly timeoutMs: number;
}

/** Why a request got no answer, in a few words (the error code, never a message that could carry a URL). */
export function networkReason(error: unknown, timeoutMs: number): string {
  const e = error as { name?: string; cause?: { code?: unknown; name?: string } };
  if (e.name === 'TimeoutError' || e.cause?.name === 'TimeoutError') return `no answer within ${timeoutMs / 1000} s`;
  const code = e.cause?.code;
  return typeof code === 'string' && /^[A-Z0-9_]+$/.test(code) ? `unreachable (${code})` : 'unreachable';
}

const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** True when `body` has every key the check reads, with the right types. */
export function isHealthReport(body: unknown): body is HealthReport {
  const b = body as Partial<HealthReport> | null;
  if (b === null || typeof b !== 'object') return false;
  const d = b.delivery as Partial<HealthReport['delivery']> | undefined;
  return (
    typeof b.status === 'string' &&
    isNum(b.total_received) &&
    isNum(b.total_errors) &&
    isNum(b.p95_latency_ms) &&
    isNum(b.seconds_since_last_callback) &&
    b.error_breakdown !== null &&
    typeof b.error_breakdown === 'object' &&
    d !== undefined &&
    d !== null &&
    isNum(d.delivered) &&
    isNum(d.missed)
  );
}

async function get(url: string, o: ProbeOptions): Promise<Response> {
  return fetch(url, {
    headers: { accept: 'application/json' },
    redirect: 'manual',
    signal: AbortSignal.timeout(o.timeoutMs),
  });
}

export async function probe(o: ProbeOptions): Promise<Probe> {
  let res: Response;
  let body: unknown;
  try {
    res = await get(o.url, o);
    const text = await res.text();
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
  } catch (error) {
    return { kind: 'down', reason: `health endpoint ${networkReason(error, o.timeoutMs)}` };
  }
  if (!isHealthReport(body)) {
    // A 5xx without a report is the receiver (or its proxy) failing; anything else is most likely the wrong URL.
    if (res.status >= 500) return { kind: 'down', reason: `health endpoint answered HTTP ${res.status}` };
    return {
      kind: 'unknown',
      reason: `HTTP ${res.status} without a health report: is --url the /health/callbacks URL?`,
    };
  }
  const notes: string[] = [];
  if (o.healthzUrl !== null) {
    try {
      const z = await get(o.healthzUrl, o);
      await z.arrayBuffer();
      if (z.status >= 500)
        return { kind: 'down', reason: `/healthz answered HTTP ${z.status} (the store cannot take writes)` };
      if (z.status >= 300) notes.push(`/healthz answered HTTP ${z.status}, not judged`);
    } catch (error) {
      return { kind: 'down', reason: `/healthz ${networkReason(error, o.timeoutMs)}` };
    }
  }
  return { kind: 'report', report: body, notes };
}
