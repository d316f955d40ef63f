/** The median of a list of numbers (the mean of the middle two for an even count). */
export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * A distribution-free confidence interval for the median: the k-th smallest and k-th largest value, k the largest
 * rank whose binomial coverage (n draws, p = ½) is still at least `confidence`. Undefined when there are too few
 * values for that coverage (fewer than 5 at 90 %). Per-round ratios on a shared machine have heavy tails, so an
 * interval from ranks, not from a standard deviation.
 */
export function medianInterval(
  xs: number[],
  confidence = 0.9,
): { low: number; high: number; coverage: number } | undefined {
  const n = xs.length;
  const s = [...xs].sort((a, b) => a - b);
  // P(X ≤ i) for X ~ Binomial(n, ½), accumulated term by term.
  let term = 0.5 ** n;
  let below = 0;
  let best: { low: number; high: number; coverage: number } | undefined;
  for (let k = 1; 2 * k <= n; k++) {
    // below = P(X ≤ k − 1): the chance the median lies under the k-th smallest value.
    below += term;
    term = (term * (n - (k - 1))) / k;
    const coverage = 1 - 2 * below;
    if (coverage < confidence) break;
    best = { low: s[k - 1]!, high: s[n - k]!, coverage };
  }
  return best;
}
