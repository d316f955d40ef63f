import { performance } from 'node:perf_hooks';
import type { ReceiverMetrics } from '../metrics/instruments.ts';
import { type ForwardSender, HttpSender } from './forwardHttp.ts';
import { LoopPace, type PaceOptions } from './forwardPace.ts';
import { type WorkerExit, WorkerSender } from './forwardThread.ts';
import type {
  ForwardEvent,
  ForwardJob,
  ForwardOutbox,
  ForwardSettleItem,
  ForwardSettlement,
  ReplayFilter,
} from './TaskStore.ts';
import { taskJson } from './taskJson.ts';

export { retryAfterMs, secretKey, sign } from './forwardHttp.ts';

/** Where and how results are handed to the app. Every duration in milliseconds. */
export interface ForwarderOptions {
  /** The app's endpoint (http or https). Never logged: it may carry credentials. */
  readonly url: string;
  /** `whsec_<base64>`: the Standard Webhooks signing secret. */
  readonly secret: string;
  /** Which transitions are forwarded. Default `delivered` and `late` (every task's first result). */
  readonly events?: readonly ForwardEvent[];
  /** One attempt's limit, connection to answer. Default 10000. */
  readonly timeoutMs?: number;
  /** How long a forward is retried (from its event, or its last replay) before it is a dead letter. Default 24 h. */
  readonly maxAgeMs?: number;
  /** Attempts in flight at once on this instance. Default 16. */
  readonly concurrency?: number;
  /** First retry delay, and the floor of every later one. Default 1000. */
  readonly retryMinMs?: number;
  /** Cap of the retry delay (Retry-After included). Default 600000 (10 min). */
  readonly retryMaxMs?: number;
  /** How often the worker looks for due forwards besides being woken by new ones. Default 500. */
  readonly pollIntervalMs?: number;
  /** How often the backlog gauges are refreshed from the store. Default 1000. */
  readonly statsIntervalMs?: number;
  /**
   * Send from a worker thread (signatures, HTTP requests and answers off this event loop) at the lowest CPU priority
   * (nice 19, Linux): while callbacks keep the CPU busy they get it first, and forwards wait in the outbox and catch up
   * afterwards. The outbox (claims, settlements, metrics) stays here with the store, so any store works. A thread that
   * dies is restarted (see WorkerSender). Default false.
   */
  readonly worker?: boolean;
  /**
   * Callbacks first: while this event loop's thread is busy with results arriving (it wanted the CPU for `pace.busyAt`
   * of a 20 ms window or more, default 0.7, the forwarder's own claims and settlements aside), forwards wait in the
   * outbox, but for a trickle of 16 every 400 ms; they catch up once the loop has room (see LoopPace). `{ busyAt: 1 }`
   * turns it off.
   */
  readonly pace?: PaceOptions;
  /**
   * Told about store failures, dead letters and worker thread exits (for logging); must not throw. Never given the URL
   * or a payload.
   */
  readonly onEvent?: (event: ForwarderEvent) => void;
  readonly now?: () => number;
  /** In [0, 1): the jitter source, for tests. */
  readonly random?: () => number;
}

export type ForwarderEvent =
  | { readonly kind: 'store_error'; readonly error: unknown }
  | { readonly kind: 'dead_letter'; readonly taskId: string; readonly event: ForwardEvent; readonly attempts: number }
  | WorkerExit;

/** The backlog cap: counting stops here so the gauge's store query stays bounded. */
export const BACKLOG_COUNT_CAP = 100_000;

/**
 * The delay before retry number `attempts` (1 = after the first failed attempt), exponential with full jitter: a
 * uniformly random delay between `min` and `min × 2^(attempts−1)`, capped at `max`. The first retry comes after
 * exactly `min`; the ceiling doubles with each attempt until it reaches `max`.
 */
export function retryDelay(attempts: number, min: number, max: number, random: () => number = Math.random): number {
  const ceiling = Math.min(max, min * 2 ** Math.min(Math.max(attempts - 1, 0), 40));
  return Math.round(min + random() * Math.max(0, ceiling - min));
}

/**
 * The outbox worker: claims due forwards from the store under a lease, POSTs each to the app with Standard Webhooks
 * headers, and settles it (delivered on 2xx, gone on 410, else a retry with backoff, or dead past the maximum age).
 * At least once: a forward is settled only after the app answered, so a crash between the two repeats it, with the
 * same `webhook-id`. The lease (the attempt's timeout plus a margin) keeps every other instance off a forward while one
 * works it; a holder that dies lets it run out, and the forward is taken over.
 */
export class Forwarder {
  readonly #outbox: ForwardOutbox;
  readonly #metrics: ReceiverMetrics | undefined;
  readonly #sender: ForwardSender;
  readonly #pace: LoopPace;
  readonly #timeoutMs: number;
  readonly #maxAgeMs: number;
  readonly #concurrency: number;
  readonly #retryMinMs: number;
  readonly #retryMaxMs: number;
  readonly #pollIntervalMs: number;
  readonly #statsIntervalMs: number;
  readonly #leaseMs: number;
  readonly #onEvent: (event: ForwarderEvent) => void;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly events: readonly ForwardEvent[];
  readonly #inFlight = new Set<Promise<void>>();
  #settleQueue: ForwardSettleItem[] = [];
  #settleScheduled = false;
  #settling: Promise<void> = Promise.resolve();
  #claiming = false;
  #again = false;
  #pumpScheduled = false;
  #pollTimer: NodeJS.Timeout | undefined;
  #statsTimer: NodeJS.Timeout | undefined;
  #backlog = 0;
  #oldestCreatedAt: number | null = null;
  #closed = false;

  constructor(outbox: ForwardOutbox, options: ForwarderOptions, metrics?: ReceiverMetrics) {
    this.#outbox = outbox;
    this.#metrics = metrics;
    this.events = options.events ?? ['delivered', 'late'];
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxAgeMs = options.maxAgeMs ?? 24 * 3600 * 1000;
    this.#concurrency = options.concurrency ?? 16;
    this.#retryMinMs = options.retryMinMs ?? 1000;
    this.#retryMaxMs = Math.max(options.retryMaxMs ?? 600_000, this.#retryMinMs);
    this.#pollIntervalMs = options.pollIntervalMs ?? 500;
    this.#statsIntervalMs = options.statsIntervalMs ?? 1000;
    // Longer than an attempt can last (it is aborted at its timeout), with room to write its settlement.
    this.#leaseMs = this.#timeoutMs + 5000;
    const onEvent = options.onEvent ?? (() => {});
    this.#onEvent = (event) => {
      try {
        onEvent(event);
      } catch {
        // A logging hook must never stop the worker.
      }
    };
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    const http = {
      url: options.url,
      secret: options.secret,
      timeoutMs: this.#timeoutMs,
      maxSockets: this.#concurrency,
    };
    this.#sender = options.worker
      ? new WorkerSender({ http, onExit: (exit) => this.#onEvent(exit) })
      : new HttpSender({ ...http, now: this.#now });
    this.#pace = new LoopPace(options.pace);
    outbox.enable(this.events);
  }

  /** The worker thread's sender when `worker` is set (its thread and its crash hook, for tests). */
  get workerSender(): WorkerSender | undefined {
    return this.#sender instanceof WorkerSender ? this.#sender : undefined;
  }

  /** The pace, which holds claims back while the loop is busy (`deferred` counts the times it did). */
  get pace(): LoopPace {
    return this.#pace;
  }

  /** Forwards waiting for the app (as of the last refresh, at most BACKLOG_COUNT_CAP). */
  get backlog(): number {
    return this.#backlog;
  }

  /** Seconds since the event of the oldest forward still waiting, 0 when none. */
  get oldestPendingAgeSeconds(): number {
    return this.#oldestCreatedAt === null ? 0 : Math.max(0, (this.#now() - this.#oldestCreatedAt) / 1000);
  }

  start(): void {
    if (this.#pollTimer || this.#closed) return;
    this.#sender.start?.();
    this.#pace.start();
    this.#pollTimer = setInterval(() => this.kick(), this.#pollIntervalMs);
    this.#pollTimer.unref();
    this.#statsTimer = setInterval(() => void this.refreshStats(), this.#statsIntervalMs);
    this.#statsTimer.unref();
    this.kick();
    void this.refreshStats();
  }

  /** A transition was stored (it may have written a forward): counts for the pace, and looks for it soon. */
  resultStored(): void {
    this.#pace.arrival();
    this.kick();
  }

  /**
   * Looks for due forwards soon (after the current event-loop turn); many kicks in one turn make one claim. While the
   * pace holds a put-off claim, it calls back itself once a claim may go: a burst's callbacks then cost no turn here.
   */
  kick(): void {
    if (this.#closed || this.#pumpScheduled || this.#pace.waiting) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      void this.#pump();
    });
  }

  async refreshStats(): Promise<void> {
    try {
      const b = await this.#outbox.backlog(BACKLOG_COUNT_CAP);
      this.#backlog = b.pending;
      this.#oldestCreatedAt = b.oldestCreatedAt;
    } catch (error) {
      this.#onEvent({ kind: 'store_error', error });
    }
  }

  /** Makes a task's forwards due now again (a new round: attempts and maximum age from now). */
  redeliver(taskId: string): Promise<number> {
    return this.#outbox.redeliver(taskId, this.#now()).then((n) => {
      if (n > 0) this.kick();
      return n;
    });
  }

  /** Replays settled forwards (dead letters by default) by event time, at most `filter.limit`. */
  replay(filter: ReplayFilter): Promise<number> {
    return this.#outbox.replay(filter, this.#now()).then((n) => {
      if (n > 0) this.kick();
      return n;
    });
  }

  async #pump(): Promise<void> {
    if (this.#claiming) {
      this.#again = true;
      return;
    }
    this.#claiming = true;
    try {
      for (;;) {
        this.#again = false;
        const free = this.#concurrency - this.#inFlight.size;
        // Under a backlog, claim in batches (each claim is a store transaction) rather than one per finished attempt.
        const batch = this.#inFlight.size === 0 ? 1 : Math.max(1, this.#concurrency >> 2);
        if (free < batch || this.#closed) break;
        // While callbacks keep the loop busy, only a trickle (the pace kicks again once a claim may go).
        const allowed = Math.min(
          free,
          this.#pace.claim(() => this.kick()),
        );
        if (allowed === 0) break;
        let jobs: ForwardJob[];
        try {
          // A SQLite claim is a transaction run right here: its time is the forwarder's own (see LoopPace.spent).
          const claimedAt = performance.now();
          const claim = this.#outbox.claimDue(this.#now(), allowed, this.#leaseMs);
          this.#pace.spent(performance.now() - claimedAt);
          jobs = await claim;
        } catch (error) {
          this.#onEvent({ kind: 'store_error', error });
          break;
        }
        const sentAt = performance.now();
        for (const job of jobs) this.#run(job);
        this.#pace.spent(performance.now() - sentAt);
        // A full batch may have left more due: claim again while there is room.
        if (jobs.length < allowed && !this.#again) break;
      }
    } finally {
      this.#claiming = false;
    }
  }

  #run(job: ForwardJob): void {
    const running = this.#attempt(job)
      .catch((error) => this.#onEvent({ kind: 'store_error', error }))
      .finally(() => {
        this.#inFlight.delete(running);
        this.kick();
      });
    this.#inFlight.add(running);
  }

  async #attempt(job: ForwardJob): Promise<void> {
    const f = job.forward;
    const base = { taskId: f.taskId, event: f.event, lease: job.lease };
    if (!job.task) {
      // Deleted meanwhile (retention): nothing is left to send.
      this.#queueSettle({
        ...base,
        at: this.#now(),
        result: { state: 'dead', status: null, error: 'task deleted' },
      });
      return;
    }
    const body = JSON.stringify({
      type: `task.${f.event}`,
      timestamp: new Date(f.createdAt).toISOString(),
      data: taskJson(job.task),
    });
    const result = await this.#sender.send(f.webhookId, body);
    const answeredAt = performance.now();
    this.#metrics?.forwardAttempt(result.outcome, result.seconds);
    const at = this.#now();
    let settlement: ForwardSettlement;
    if (result.outcome === 'success') settlement = { state: 'delivered', status: result.status, error: null };
    else if (result.outcome === 'gone') settlement = { state: 'gone', status: result.status, error: result.error };
    else {
      const deadline = f.since + this.#maxAgeMs;
      if (at >= deadline) {
        settlement = { state: 'dead', status: result.status, error: result.error };
        this.#metrics?.deadLetter();
        this.#onEvent({ kind: 'dead_letter', taskId: f.taskId, event: f.event, attempts: f.attempts });
      } else {
        let delay = retryDelay(f.attempts, this.#retryMinMs, this.#retryMaxMs, this.#random);
        if (result.retryAfter !== undefined) delay = Math.min(Math.max(delay, result.retryAfter), this.#retryMaxMs);
        // The last attempt is made at the maximum age, so a forward is never dead before it.
        settlement = {
          state: 'pending',
          nextAttemptAt: Math.min(at + delay, deadline),
          status: result.status,
          error: result.error,
        };
      }
    }
    this.#queueSettle({ ...base, at, result: settlement });
    this.#pace.spent(performance.now() - answeredAt);
  }

  /** Settlements of one event-loop turn go to the store in one call (one transaction on SQLite). */
  #queueSettle(item: ForwardSettleItem): void {
    this.#settleQueue.push(item);
    if (this.#settleScheduled) return;
    this.#settleScheduled = true;
    setImmediate(() => {
      this.#settleScheduled = false;
      const items = this.#settleQueue;
      this.#settleQueue = [];
      this.#settling = this.#settling.then(() => {
        const settledAt = performance.now();
        const settled = this.#outbox.settle(items);
        this.#pace.spent(performance.now() - settledAt);
        return settled.then(
          () => {},
          // The leases run out and the forwards are attempted again: at least once, never lost.
          (error) => this.#onEvent({ kind: 'store_error', error }),
        );
      });
    });
  }

  /** Stops claiming, lets attempts in flight finish (each within its timeout) and writes their settlements. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#pace.stop();
    clearInterval(this.#pollTimer);
    clearInterval(this.#statsTimer);
    this.#pollTimer = undefined;
    this.#statsTimer = undefined;
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    await new Promise((resolve) => setImmediate(resolve));
    await this.#settling;
    await this.#sender.close();
  }
}
