/**
 * What the demo's simulated solver does for each task (decided up front from a seed, so a seed gives the same run) and
 * the HTTP request it sends for it, in every callback format the receiver accepts.
 */
import type { CallbackFormat } from '@captcha-callback-monitor/koa';
import type { TrafficOptions } from './trafficGenerator.ts';

/** mulberry32: a small, fast, seedable PRNG; good enough to pick demo outcomes reproducibly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What the simulated solver does for one task; decided up front so a seed gives the same run. */
export interface TaskPlan {
  readonly id: string;
  readonly format: CallbackFormat;
  readonly lost: boolean;
  readonly failed: boolean;
  readonly invalidFirst: boolean;
  readonly duplicate: boolean;
  readonly delayMs: number;
}

export function planTask(
  n: number,
  runId: string,
  random: () => number,
  o: Pick<TrafficOptions, 'formats' | 'lostRatio' | 'failureRatio' | 'invalidRatio' | 'duplicateRatio' | 'latency'>,
): TaskPlan {
  const format = o.formats[n % o.formats.length] ?? 'query';
  // Draw every number every time so one ratio's change does not reshuffle the others.
  const lost = random() < o.lostRatio;
  const failed = random() < o.failureRatio;
  const invalidFirst = random() < o.invalidRatio;
  const duplicate = random() < o.duplicateRatio;
  const delayMs = Math.round((o.latency.min + random() * (o.latency.max - o.latency.min)) * 1000);
  return { id: `demo-${runId}-${n}`, format, lost, failed, invalidFirst, duplicate, delayMs };
}

/** The HTTP request a solver sends for a plan, in the plan's format (the shapes README's per-solver recipes show). */
export function callbackRequest(
  callbackUrl: string,
  plan: Pick<TaskPlan, 'id' | 'format' | 'failed'>,
): { url: string; init: RequestInit } {
  const base = callbackUrl.replace(/\/+$/, '');
  const token = `03AGdBq2${plan.id.replace(/[^A-Za-z0-9]/g, '')}`;
  const id = encodeURIComponent(plan.id);
  switch (plan.format) {
    case 'query': {
      const code = plan.failed ? 'ERROR_CAPTCHA_UNSOLVABLE' : token;
      return { url: `${base}?id=${id}&code=${encodeURIComponent(code)}`, init: { method: 'GET' } };
    }
    case 'form': {
      const code = plan.failed ? 'ERROR_CAPTCHA_UNSOLVABLE' : token;
      return {
        url: base,
        init: {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ id: plan.id, code }).toString(),
        },
      };
    }
    case 'ucaptcha': {
      const query = plan.failed ? `captcha_id=${id}&status=0` : `captcha_id=${id}&status=1&code=${token}`;
      return { url: `${base}?${query}`, init: { method: 'GET' } };
    }
    case 'json': {
      const body = plan.failed
        ? { errorId: 12, errorCode: 'ERROR_CAPTCHA_UNSOLVABLE' }
        : { errorId: 0, status: 'ready', solution: { gRecaptchaResponse: token } };
      return {
        url: `${base}/${id}`,
        init: { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) },
      };
    }
  }
}

/** A callback the receiver must refuse with 400: the `code` is missing. */
export function invalidCallbackRequest(callbackUrl: string, id: string): { url: string; init: RequestInit } {
  return { url: `${callbackUrl.replace(/\/+$/, '')}?id=${encodeURIComponent(id)}`, init: { method: 'GET' } };
}
