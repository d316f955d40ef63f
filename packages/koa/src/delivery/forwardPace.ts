import { closeSync, openSync, readSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/** When the forwarder yields the event loop to the callback path (every duration in milliseconds). */
export interface PaceOptions {
  /**
   * How much of a `windowMs` window the event loop's thread wanted the CPU (0–1: on it, or waiting for it; see
   * threadDemand), less the forwarder's own time on it, from which the loop counts as busy. 1 turns yielding off.
   * Default 0.7.
   */
  readonly busyAt?: number;
  /** Default 20. */
  readonly windowMs?: number;
  /**
   * Windows in a row below `busyAt` before a busy loop counts as having room again, while results keep arriving.
   * Default 3. (Once no result has been stored for three windows in a row, the burst is over whatever the loop's
   * demand: the forwarder's own catch-up never holds itself back.)
   */
  readonly calmWindows?: number;
  /**
   * While busy, one claim of at most `trickleSize` forwards this often, so forwarding never stops. Default 400: one
   * claim of 16 costs the worker thread less than four of 4 (it wakes once).
   */
  readonly trickleMs?: number;
  /** Default 16 (the forwarder's default concurrency). */
  readonly trickleSize?: number;
  /** The loop's demand over the last window, for tests; default: this thread's (see threadDemand). */
  readonly utilization?: () => number;
}

/** Windows in a row without a stored result after which a burst counts as over. */
const QUIET_WINDOWS = 3;

/**
 * Callbacks first: samples how much this thread wanted the CPU every `windowMs`, and whether results were stored in
 * that window (`arrival`). From a window at or above `busyAt` with results arriving (a burst of callbacks is keeping
 * the loop busy) until `calmWindows` windows in a row below it, or QUIET_WINDOWS without a result, the forwarder may
 * claim only a trickle: `trickleSize` forwards every `trickleMs`. The other forwards wait in the outbox meanwhile
 * (durable, so nothing is lost) and are caught up once the burst is over: the callback path never waits for the app.
 * The forwarder's own time (`spent`) does not count towards the demand, and a loop kept busy by anything else but
 * results arriving never holds forwards back.
 */
export class LoopPace {
  readonly #busyAt: number;
  readonly #windowMs: number;
  readonly #calmWindows: number;
  readonly #trickleMs: number;
  readonly #trickleSize: number;
  readonly #utilization: () => number;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  #calm = 0;
  #quiet = 0;
  #arrivals = 0;
  #own = 0;
  #sampledAt = performance.now();
  #lastClaimAt = Number.NEGATIVE_INFINITY;
  #waiter: (() => void) | undefined;
  /** How many times a claim was put off (for tests and the bench). */
  deferred = 0;

  constructor(options: PaceOptions = {}) {
    this.#busyAt = options.busyAt ?? 0.7;
    this.#windowMs = options.windowMs ?? 20;
    this.#calmWindows = Math.max(1, options.calmWindows ?? 3);
    this.#trickleMs = options.trickleMs ?? 400;
    this.#trickleSize = Math.max(1, options.trickleSize ?? 16);
    this.#utilization = options.utilization ?? threadDemand();
  }

  /** True while the loop is busy (as of the last sample). */
  get busy(): boolean {
    return this.#busy;
  }

  /** A result was stored (the forwarder's `resultStored`): the load the pace protects. */
  arrival(): void {
    this.#arrivals++;
  }

  /**
   * The forwarder's own time on this thread (its claims, bodies and settlements), taken off the loop's demand when the
   * window is judged: forwards keeping up with a steady stream of results must not read as a burst of callbacks, or
   * the catch-up they cause would hold them back for as long as results keep coming.
   */
  spent(ms: number): void {
    this.#own += ms;
  }

  /** True while a put-off claim waits for its `wake` (the next trickle, or room). */
  get waiting(): boolean {
    return this.#waiter !== undefined;
  }

  start(): void {
    if (this.#timer || this.#busyAt >= 1) return;
    this.#sampledAt = performance.now();
    this.#own = 0;
    this.#timer = setInterval(() => this.#sample(), this.#windowMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#busy = false;
    this.#wake();
  }

  /**
   * How many forwards may be claimed now (and counts the claim): all of them while the loop has room, the trickle's
   * size while it is busy and the trickle interval has passed, else 0, and `wake` is called once a claim may go.
   */
  claim(wake: () => void): number {
    if (!this.#busy) return Number.POSITIVE_INFINITY;
    const now = performance.now();
    if (now - this.#lastClaimAt >= this.#trickleMs) {
      this.#lastClaimAt = now;
      return this.#trickleSize;
    }
    this.deferred++;
    this.#waiter = wake;
    return 0;
  }

  #sample(): void {
    const loop = this.#utilization();
    const now = performance.now();
    const elapsed = now - this.#sampledAt;
    const demand = loop - (elapsed > 0 ? Math.min(this.#own, elapsed) / elapsed : 0);
    this.#sampledAt = now;
    this.#own = 0;
    const arrived = this.#arrivals > 0;
    this.#arrivals = 0;
    this.#quiet = arrived ? 0 : this.#quiet + 1;
    if (arrived && demand >= this.#busyAt) {
      this.#busy = true;
      this.#calm = 0;
    } else if (this.#busy) {
      if (demand < this.#busyAt) this.#calm++;
      if (this.#calm >= this.#calmWindows || this.#quiet >= QUIET_WINDOWS) {
        this.#busy = false;
        this.#calm = 0;
      }
    }
    if (this.#waiter && (!this.#busy || now - this.#lastClaimAt >= this.#trickleMs)) this.#wake();
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }
}

/**
 * How much of the wall time since the previous call this thread wanted the CPU: the time it ran plus, on Linux, the
 * time it waited for a CPU while runnable (/proc/thread-self/schedstat), so a loop kept busy on a machine whose other
 * work takes the CPUs reads busy too, while its own CPU share alone would read low. Not perf_hooks'
 * eventLoopUtilization: a sampling profiler (`--cpu-prof`, an APM agent's) interrupts the loop's wait so often that an
 * idle loop reads 0.4–0.9 there, which would hold forwards back for good; this reads about 0.05. Where schedstat is
 * missing, the CPU time alone (process.threadCpuUsage).
 */
export function threadDemand(): () => number {
  const schedstat = openSchedstat();
  const sample = (): number => {
    if (schedstat) {
      const n = readSync(schedstat.fd, schedstat.buffer, 0, schedstat.buffer.length, 0);
      const [ran, waited] = schedstat.buffer.toString('latin1', 0, n).split(' ');
      return (Number(ran) + Number(waited)) / 1e6;
    }
    const cpu = process.threadCpuUsage();
    return (cpu.user + cpu.system) / 1000;
  };
  let used = sample();
  let at = performance.now();
  return () => {
    const nowUsed = sample();
    const now = performance.now();
    const share = now > at ? (nowUsed - used) / (now - at) : 0;
    used = nowUsed;
    at = now;
    return share;
  };
}

/** This thread's schedstat (run time, run-queue wait, in ns), open for re-reading; undefined where there is none. */
function openSchedstat(): { fd: number; buffer: Buffer } | undefined {
  if (process.platform !== 'linux') return undefined;
  let fd: number | undefined;
  try {
    // thread-self resolves when opened: this fd keeps reading the opening thread (the event loop's) after.
    fd = openSync('/proc/thread-self/schedstat', 'r');
    const buffer = Buffer.alloc(80);
    const n = readSync(fd, buffer, 0, buffer.length, 0);
    if (!/^\d+ \d+ \d+/.test(buffer.toString('latin1', 0, n))) throw new Error('unexpected schedstat');
    return { fd, buffer };
  } catch {
    if (fd !== undefined) closeSync(fd);
    return undefined;
  }
}
