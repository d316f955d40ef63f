/**
 * Small builders for the PromQL in the rules, so every expression is assembled from the metric contract and the
 * threshold constants instead of typed by hand.
 */

/**
 * Series that do not come from the receiver's metric contract: `up` is written by Prometheus for every scrape
 * target, `probe_success` by the blackbox exporter for every probe. Named once, here.
 */
export const EXTERNAL = {
  up: 'up',
  probeSuccess: 'probe_success',
} as const;

/** Label Prometheus gives every target; removed when several receiver instances are aggregated into one service. */
export const INSTANCE = 'instance';

/** `metric{job="…",extra…}` */
export function sel(metric: string, job: string, ...matchers: string[]): string {
  return `${metric}{${[`job="${job}"`, ...matchers].join(',')}}`;
}

/** `label="value"` / `label!="value"` matchers (values are from closed sets in the contract, never free text). */
export const eq = (label: string, value: string) => `${label}="${value}"`;
export const ne = (label: string, value: string) => `${label}!="${value}"`;

/** `agg without (instance, …) (expr)`: several instances behind a load balancer act as one service. */
export function without(agg: 'sum' | 'max' | 'min' | 'avg', expr: string, ...labels: string[]): string {
  return `${agg} without (${[INSTANCE, ...labels].join(', ')}) (${expr})`;
}

export const increase = (selector: string, window: string) => `increase(${selector}[${window}])`;
export const rate = (selector: string, window: string) => `rate(${selector}[${window}])`;

/**
 * `(a or b * 0)`: `a`, or zero with `b`'s labels when `a` has no series. OpenTelemetry exports a counter only after
 * its first increment, so e.g. `captcha_tasks_delivered_total` is absent while every task so far was missed; a
 * plain ratio would then be empty and a 0 % delivery rate would stay silent.
 */
export const orZero = (a: string, b: string) => `(${a} or ${b} * 0)`;

/** A number as PromQL text, without binary floating-point noise (1 - 0.95 → 0.05, not 0.050000000000000044). */
export function num(x: number): string {
  return String(Number(x.toPrecision(12)));
}

/** Seconds in a simple Prometheus duration such as `5m`, `1h`, `3d`. */
export function durationSeconds(d: string): number {
  const m = /^(\d+)([smhd])$/.exec(d);
  if (!m) throw new Error(`unsupported duration ${d}`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
}
