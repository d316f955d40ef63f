/** Bucket upper bounds in milliseconds: 0.05 ms × 1.25^i up to about 60 s; quantiles are accurate to one bucket. */
const BOUNDS_MS: readonly number[] = (() => {
  const b: number[] = [];
  for (let v = 0.05; v < 60_000; v *= 1.25) b.push(v);
  b.push(Number.POSITIVE_INFINITY);
  return b;
})();

class Buckets {
  counts = new Float64Array(BOUNDS_MS.length);
  n = 0;
  sum = 0;
  add(ms: number): void {
    let lo = 0;
    let hi = BOUNDS_MS.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ms <= BOUNDS_MS[mid]!) hi = mid;
      else lo = mid + 1;
    }
    this.counts[lo]!++;
    this.n++;
    this.sum += ms;
  }
  clear(): void {
    this.counts.fill(0);
    this.n = 0;
    this.sum = 0;
  }
}

/**
 * Handling latency over the last one to two windows (default 5 minutes each), kept as fixed log-spaced buckets so
 * recording is O(log buckets) and reading an average or a quantile never sorts samples.
 */
export class LatencyWindow {
  readonly #windowMs: number;
  readonly #now: () => number;
  #current = new Buckets();
  #previous = new Buckets();
  #windowStart: number;

  constructor(windowMs = 300_000, now: () => number = Date.now) {
    this.#windowMs = windowMs;
    this.#now = now;
    this.#windowStart = now();
  }

  record(ms: number): void {
    this.#rotate();
    this.#current.add(ms);
  }

  get count(): number {
    this.#rotate();
    return this.#current.n + this.#previous.n;
  }

  averageMs(): number {
    const n = this.count;
    return n === 0 ? 0 : (this.#current.sum + this.#previous.sum) / n;
  }

  /** The bucket upper bound below which a fraction `q` of samples fall (0 when empty). */
  quantileMs(q: number): number {
    const n = this.count;
    if (n === 0) return 0;
    const rank = Math.ceil(q * n);
    let seen = 0;
    for (let i = 0; i < BOUNDS_MS.length; i++) {
      seen += this.#current.counts[i]! + this.#previous.counts[i]!;
      if (seen >= rank) return Math.min(BOUNDS_MS[i]!, BOUNDS_MS[BOUNDS_MS.length - 2]!);
    }
    return BOUNDS_MS[BOUNDS_MS.length - 2]!;
  }

  #rotate(): void {
    const now = this.#now();
    if (now - this.#windowStart < this.#windowMs) return;
    const swap = this.#previous;
    swap.clear();
    if (now - this.#windowStart >= 2 * this.#windowMs) this.#current.clear();
    this.#previous = this.#current;
    this.#current = swap;
    this.#windowStart = now;
  }
}
