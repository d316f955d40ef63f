/** Number formatting and the per-round ratios the targets and the tables are computed from. */
import { median, medianInterval } from '../lib/stats.ts';
import type { PeerSummary, Run } from './types.ts';

export const mb = (bytes: number | undefined) => (bytes === undefined ? 'n/a' : (bytes / 1024 / 1024).toFixed(0));
export const fx = (x: number | undefined, digits = 2) =>
  x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits);
/** The per-round ratios f(a)/f(b) of two peers' rounds, in round order; empty when either peer failed. */
export function roundRatios(a: PeerSummary | undefined, b: PeerSummary | undefined, f: (r: Run) => number): number[] {
  if (!a || !b || a.error || b.error) return [];
  const n = Math.min(a.runs.length, b.runs.length);
  return Array.from({ length: n }, (_, i) => f(a.runs[i]!) / f(b.runs[i]!));
}

/**
 * Median over rounds of a per-round ratio f(a)/f(b): both runs of a round are minutes apart at most, so drift in
 * what else the machine is doing cancels better than in a ratio of medians.
 */
export function paired(
  a: PeerSummary | undefined,
  b: PeerSummary | undefined,
  f: (r: Run) => number,
): number | undefined {
  const q = roundRatios(a, b, f);
  return q.length === 0 ? undefined : median(q);
}
export function pairedRange(a: PeerSummary | undefined, b: PeerSummary | undefined, f: (r: Run) => number): string {
  const q = roundRatios(a, b, f);
  return q.length > 1 ? `${fx(Math.min(...q))}–${fx(Math.max(...q))}` : '';
}
/**
 * How sure the median of the per-round ratios is: its distribution-free interval (at least 90 % coverage), e.g.
 * `96 % interval of the median 0.91–1.04` (15 rounds); empty with fewer than five rounds.
 */
export function pairedInterval(a: PeerSummary | undefined, b: PeerSummary | undefined, f: (r: Run) => number): string {
  const i = medianInterval(roundRatios(a, b, f));
  return i ? `${fx(i.coverage * 100, 0)} % interval of the median ${fx(i.low)}–${fx(i.high)}` : '';
}
export const rps = (x: Run) => x.rps;
export const p99of = (x: Run) => x.p99;
export const cpu = (x: Run) => x.cpuUsPerRequest;
export const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || b === 0 ? undefined : a / b;
