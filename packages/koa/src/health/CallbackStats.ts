import { ERROR_TYPES, type ErrorType } from '../metrics/contract.ts';
import { LatencyWindow } from './LatencyWindow.ts';

/** Running aggregates of the callback route for the health report; every read and write is O(1). */
export class CallbackStats {
  readonly startedAt: number;
  readonly latency: LatencyWindow;
  totalReceived = 0;
  totalErrors = 0;
  readonly errorBreakdown: Record<ErrorType, number>;
  /** Unix ms of the last accepted callback, or null before the first. */
  lastCallbackAt: number | null = null;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
    this.startedAt = now();
    this.latency = new LatencyWindow(300_000, now);
    this.errorBreakdown = Object.fromEntries(ERROR_TYPES.map((t) => [t, 0])) as Record<ErrorType, number>;
  }

  /** One request on the callback route answered, whatever its status. */
  request(ms: number): void {
    this.totalReceived++;
    this.latency.record(ms);
  }

  error(type: ErrorType): void {
    this.totalErrors++;
    this.errorBreakdown[type]++;
  }

  accepted(at: number): void {
    this.lastCallbackAt = at;
  }

  /** Seconds since the last accepted callback, or since start-up before the first (for the gauge). */
  secondsSinceLast(): number {
    return (this.#now() - (this.lastCallbackAt ?? this.startedAt)) / 1000;
  }
}
