import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { ForwardOutcome } from '../metrics/contract.ts';
import type { ReceiverMetrics } from '../metrics/instruments.ts';
import type {
  ForwardEvent,
  ForwardJob,
  ForwardOutbox,
  ForwardSettleItem,
  ForwardSettlement,
  ReplayFilter,
} from './TaskStore.ts';
import { taskJson } from './taskJson.ts';

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
  /** Told about store failures and dead letters (for logging); must not throw. Never given the URL or a payload. */
  readonly onEvent?: (event: ForwarderEvent) => void;
  readonly now?: () => number;
  /** In [0, 1): the jitter source, for tests. */
  readonly random?: () => number;
}

export type ForwarderEvent =
  | { readonly kind: 'store_error'; readonly error: unknown }
  | { readonly kind: 'dead_letter'; readonly taskId: string; readonly event: ForwardEvent; readonly attempts: number };

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

/** `Retry-After` as milliseconds from `now`: delta seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now: number): number | undefined {
  if (header === null) return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Standard Webhooks signature: `v1,` and base64 HMAC-SHA256 of `id.timestamp.body` keyed with the secret's bytes. */
export function sign(secretKey: Buffer | KeyObject, webhookId: string, timestampSeconds: number, body: string): string {
  const mac = createHmac('sha256', secretKey).update(`${webhookId}.${timestampSeconds}.${body}`).digest('base64');
  return `v1,${mac}`;
}

/** The key bytes of a `whsec_<base64>` secret. */
export function secretKey(secret: string): Buffer {
  return Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
}

interface AttemptResult {
  readonly outcome: ForwardOutcome;
  readonly status: number | null;
  readonly error: string | null;
  readonly retryAfter: number | undefined;
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
  readonly #url: URL;
  readonly #request: typeof httpRequest;
  readonly #agent: HttpAgent;
  /** A KeyObject made once: a Buffer key is turned into one on every createHmac call. */
  readonly #key: KeyObject;
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
    this.#url = new URL(options.url);
    this.#key = createSecretKey(secretKey(options.secret));
    this.events = options.events ?? ['delivered', 'late'];
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxAgeMs = options.maxAgeMs ?? 24 * 3600 * 1000;
    this.#concurrency = options.concurrency ?? 16;
    // node:http with a keep-alive pool of one socket per attempt in flight: measured on loopback at about a third of
    // fetch()'s CPU per request (fetch with an abort signal and a cancelled body also reconnected every time).
    const https = this.#url.protocol === 'https:';
    this.#request = https ? (httpsRequest as unknown as typeof httpRequest) : httpRequest;
    this.#agent = https
      ? new HttpsAgent({ keepAlive: true, maxSockets: this.#concurrency })
      : new HttpAgent({ keepAlive: true, maxSockets: this.#concurrency });
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
    outbox.enable(this.events);
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
    this.#pollTimer = setInterval(() => this.kick(), this.#pollIntervalMs);
    this.#pollTimer.unref();
    this.#statsTimer = setInterval(() => void this.refreshStats(), this.#statsIntervalMs);
    this.#statsTimer.unref();
    this.kick();
    void this.refreshStats();
  }

  /** Looks for due forwards soon (after the current event-loop turn); many kicks in one turn make one claim. */
  kick(): void {
    if (this.#closed || this.#pumpScheduled) return;
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
        let jobs: ForwardJob[];
        try {
          jobs = await this.#outbox.claimDue(this.#now(), free, this.#leaseMs);
        } catch (error) {
          this.#onEvent({ kind: 'store_error', error });
          break;
        }
        for (const job of jobs) this.#run(job);
        // A full batch may have left more due: claim again while there is room.
        if (jobs.length < free && !this.#again) break;
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
    const started = performance.now();
    const result = await this.#send(f.webhookId, body);
    this.#metrics?.forwardAttempt(result.outcome, (performance.now() - started) / 1000);
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
  }

  #send(webhookId: string, body: string): Promise<AttemptResult> {
    const timestamp = Math.floor(this.#now() / 1000);
    return new Promise<AttemptResult>((resolve) => {
      let done = false;
      const finish = (result: AttemptResult) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(result);
      };
      const req = this.#request(
        this.#url,
        {
          method: 'POST',
          agent: this.#agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'user-agent': 'captcha-callback-monitor',
            'webhook-id': webhookId,
            'webhook-timestamp': String(timestamp),
            'webhook-signature': sign(this.#key, webhookId, timestamp, body),
          },
        },
        (res: IncomingMessage) => {
          // Only the status matters; the body is read and dropped so the connection can be reused.
          res.resume();
          res.once('end', () => finish(this.#classify(res)));
          res.once('error', () => finish(this.#classify(res)));
          res.once('close', () => finish(this.#classify(res)));
        },
      );
      // The whole attempt, connection to answer, within the timeout (a redirect is not followed: it is an answer).
      const timer = setTimeout(() => {
        finish({
          outcome: 'timeout',
          status: null,
          error: `timeout after ${this.#timeoutMs} ms`,
          retryAfter: undefined,
        });
        req.destroy();
      }, this.#timeoutMs);
      req.once('error', (error: NodeJS.ErrnoException) => {
        // Only the error code: a message may quote the URL, which can carry credentials.
        const code = typeof error.code === 'string' ? error.code.slice(0, 40) : 'unknown';
        finish({ outcome: 'network_error', status: null, error: `network error: ${code}`, retryAfter: undefined });
      });
      req.end(body);
    });
  }

  #classify(res: IncomingMessage): AttemptResult {
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return { outcome: 'success', status, error: null, retryAfter: undefined };
    if (status === 410) return { outcome: 'gone', status, error: 'HTTP 410', retryAfter: undefined };
    const header = res.headers['retry-after'];
    return {
      outcome: 'http_error',
      status,
      error: `HTTP ${status}`,
      retryAfter: retryAfterMs(typeof header === 'string' ? header : null, this.#now()),
    };
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
      this.#settling = this.#settling.then(() =>
        this.#outbox.settle(items).then(
          () => {},
          // The leases run out and the forwards are attempted again: at least once, never lost.
          (error) => this.#onEvent({ kind: 'store_error', error }),
        ),
      );
    });
  }

  /** Stops claiming, lets attempts in flight finish (each within its timeout) and writes their settlements. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#pollTimer);
    clearInterval(this.#statsTimer);
    this.#pollTimer = undefined;
    this.#statsTimer = undefined;
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    await new Promise((resolve) => setImmediate(resolve));
    await this.#settling;
    this.#agent.destroy();
  }
}
