/**
 * Small builders for the PromQL in the rules, so every expression is assembled from the metric contract and the
 * threshold constants instead of typed by hand.
 */

import { type MonitoringConfig, serviceLabels, type Thresholds, type Windows } from './monitoringConfig.ts';

/**
 * Series that do not come from the receiver's metric contract: `up` is written by Prometheus for every scrape
 * target, `probe_success` by the blackbox exporter for every probe. Named once, here.
 */
export const EXTERNAL = {
  up: 'up',
  probeSuccess: 'probe_success',
} as const;

/** `metric{selector,extra…}`: `selector` is a comma-separated matcher list such as `job="captcha-callback"`. */
export function sel(metric: string, selector: string, ...matchers: string[]): string {
  return `${metric}{${[selector, ...matchers].filter((m) => m !== '').join(',')}}`;
}

/** `label="value"` / `label!="value"` matchers (values are from closed sets in the contract, never free text). */
export const eq = (label: string, value: string) => `${label}="${value}"`;
export const ne = (label: string, value: string) => `${label}!="${value}"`;

export type Aggregation = 'sum' | 'max' | 'min' | 'avg';

/** `agg without (a, b, …) (expr)` */
export function without(agg: Aggregation, expr: string, labels: readonly string[]): string {
  return `${agg} without (${labels.join(', ')}) (${expr})`;
}

/**
 * The monitoring config as the rule builders use it: the receiver's and the probe's series, and aggregation over
 * the instances of one service.
 */
export interface Scope {
  readonly config: MonitoringConfig;
  readonly thresholds: Thresholds;
  readonly windows: Windows;
  /** A receiver series: `metric{<selector>,extra…}`. */
  recv(metric: string, ...matchers: string[]): string;
  /** An outside-probe series: `metric{<probeSelector>,extra…}`. */
  probe(metric: string, ...matchers: string[]): string;
  /**
   * `agg without (<instance labels>, extra…) (expr)`: several instances behind a load balancer act as one service.
   */
  agg(agg: Aggregation, expr: string, ...labels: string[]): string;
  /** The label names the selector matches on (`job`, …): what names one service in an `on (…)` join. */
  readonly serviceLabels: readonly string[];
}

export function scope(config: MonitoringConfig): Scope {
  return {
    config,
    thresholds: config.thresholds,
    windows: config.windows,
    recv: (metric, ...matchers) => sel(metric, config.selector, ...matchers),
    probe: (metric, ...matchers) => sel(metric, config.probeSelector, ...matchers),
    agg: (agg, expr, ...labels) => without(agg, expr, [...config.instanceLabels, ...labels]),
    serviceLabels: serviceLabels(config.selector),
  };
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
