/** The benchmark's interval for the median of per-round ratios (bench/lib/stats.ts, bench/report/format.ts). */
import { describe, expect, it } from 'vitest';
import { medianInterval } from '../bench/lib/stats.ts';
import { pairedInterval } from '../bench/report/format.ts';
import type { PeerSummary, Run } from '../bench/report/types.ts';

/** P(k ≤ X ≤ n − k) for X ~ Binomial(n, ½), from the binomial coefficients themselves. */
function coverageOfRanks(n: number, k: number): number {
  let c = 1;
  let inside = 0;
  for (let i = 0; i <= n; i++) {
    if (i >= k && i <= n - k) inside += c;
    c = (c * (n - i)) / (i + 1);
  }
  return inside / 2 ** n;
}

describe('medianInterval', () => {
  it('picks the narrowest pair of ranks whose coverage is still at least the confidence', () => {
    for (const n of [5, 6, 7, 9, 15, 20, 31]) {
      const values = Array.from({ length: n }, (_, i) => (i * 7919) % 101); // a fixed shuffle, not sorted
      const sorted = [...values].sort((a, b) => a - b);
      const interval = medianInterval(values, 0.9);
      expect(interval, `n = ${n}`).toBeDefined();
      const k = sorted.indexOf(interval!.low) + 1;
      expect(interval!.high).toBe(sorted[n - k]);
      expect(interval!.coverage).toBeCloseTo(coverageOfRanks(n, k), 12);
      expect(interval!.coverage).toBeGreaterThanOrEqual(0.9);
      // One rank further in would drop below the confidence.
      if (2 * (k + 1) <= n) expect(coverageOfRanks(n, k + 1)).toBeLessThan(0.9);
    }
  });

  it('is the 4th to the 12th of 15 values at 90 % (96.5 % coverage), the whole range of 7', () => {
    const fifteen = medianInterval(Array.from({ length: 15 }, (_, i) => 15 - i));
    expect(fifteen).toEqual({ low: 4, high: 12, coverage: 1 - (2 * (1 + 15 + 105 + 455)) / 2 ** 15 });
    const seven = medianInterval([3, 1, 2, 7, 5, 6, 4]);
    expect(seven).toMatchObject({ low: 1, high: 7 });
  });

  it('has no interval for fewer than five values at 90 %', () => {
    expect(medianInterval([1, 2, 3, 4])).toBeUndefined();
    expect(medianInterval([])).toBeUndefined();
  });
});

describe('pairedInterval', () => {
  const peer = (key: string, p99s: number[]): PeerSummary => ({
    key,
    label: key,
    runs: p99s.map((p99) => ({ p99 }) as Run),
  });
  it('is computed on the per-round ratios, in round order', () => {
    const a = peer('a', [10, 22, 30, 44, 50, 66, 70]);
    const b = peer('b', [10, 20, 30, 40, 50, 60, 70]);
    // Ratios 1, 1.1, 1, 1.1, 1, 1.1, 1: seven rounds take the whole range.
    expect(pairedInterval(a, b, (r) => r.p99)).toBe('98 % interval of the median 1.00–1.10');
  });
  it('is empty with too few rounds or a failed peer', () => {
    expect(pairedInterval(peer('a', [1, 2]), peer('b', [1, 2]), (r) => r.p99)).toBe('');
    expect(
      pairedInterval({ ...peer('a', [1, 2, 3, 4, 5]), error: 'x' }, peer('b', [1, 2, 3, 4, 5]), (r) => r.p99),
    ).toBe('');
  });
});
