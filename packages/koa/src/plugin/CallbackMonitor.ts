import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { createNoopMeter, type Meter, type MeterProvider, metrics as otelMetrics } from '@opentelemetry/api';
import { DEFAULTS } from '../defaults.ts';
import { DeliveryTracker, type TaskSubmission } from '../delivery/DeliveryTracker.ts';
import { Forwarder, type ForwarderOptions } from '../delivery/Forwarder.ts';
import { MemoryTaskStore } from '../delivery/stores/MemoryTaskStore.ts';
import type { AttachResult, ForwardRecord, ReplayFilter, TaskRecord, TaskStore } from '../delivery/TaskStore.ts';
import { CallbackStats } from '../health/CallbackStats.ts';
import { type HealthReport, healthReport } from '../health/healthReport.ts';
import { ReceiverMetrics } from '../metrics/instruments.ts';
import {
  type CallbackHandler,
  createCallbackHandler,
  JSON_TYPE,
  type OnError,
  type OnResult,
  type PrereadBody,
  pathOf,
  type Reply,
} from './callbackHandler.ts';
import type { KoaMiddleware } from './koaTypes.ts';
import { validateOptions } from './validateOptions.ts';

export const METER_NAME = 'captcha-callback-monitor';

const json = (status: number, body: unknown): Reply => ({ status, contentType: JSON_TYPE, body: JSON.stringify(body) });
const NOT_FOUND = json(404, { error: 'not_found', reason: 'no such route' });

function writeReply(res: ServerResponse, reply: Reply, closing: boolean): void {
  res.statusCode = reply.status;
  // While shutting down, every answer ends its connection, so the listener's close does not wait out keep-alive.
  if (closing) res.setHeader('Connection', 'close');
  res.setHeader('Content-Type', reply.contentType);
  res.setHeader('Content-Length', Buffer.byteLength(reply.body));
  if (reply.headers) for (const [name, value] of Object.entries(reply.headers)) res.setHeader(name, value);
  res.end(reply.body);
}

/** Everything the receiver can be told; every field has a default. Checked by the constructor (a TypeError names the option). */
export interface CallbackMonitorOptions {
  /** Where results and tasks live. Default: a MemoryTaskStore (lost on restart; use SqliteTaskStore in production). */
  store?: TaskStore;
  /**
   * The meter for the contract's instruments. Default: the global MeterProvider's `captcha-callback-monitor` meter,
   * followed when the app registers its SDK after creating the monitor. Give `meter` or `meterProvider`, not both.
   */
  meter?: Meter;
  /** The MeterProvider to take the meter from, instead of the global one (`setMeterProvider` changes it later). */
  meterProvider?: MeterProvider;
  /** Set false to record no metrics at all (the benchmark's "metrics off" variant). Default true. */
  metrics?: boolean;
  /** Path of the callback route family. Default `/callback`. */
  prefix?: string;
  /** When set, callbacks are accepted only on `<prefix>/<secret>[/<taskId>]`. */
  secret?: string;
  /** Seconds a registered task waits for its callback before it is missed. Default 300. */
  deliveryTimeoutSeconds?: number;
  /** Sweeper period in ms. Default 1000. */
  sweepIntervalMs?: number;
  /**
   * Seconds settled tasks (and stored unregistered callbacks) are kept after their callback or deadline; the tracker
   * deletes older ones about once a minute. Pending tasks are never deleted. Default 604800 (7 days).
   */
  retentionSeconds?: number;
  /** Largest accepted body. Default 64 KiB. */
  maxBodyBytes?: number;
  /** Longest accepted query string. Default 8 KiB. */
  maxQueryBytes?: number;
  /**
   * Health paths; set to null to leave them out of `middleware()` and `requestListener()`. Defaults
   * `/health/callbacks` and `/healthz`.
   */
  healthPath?: string | null;
  healthzPath?: string | null;
  /** Your processing, run after the 200 is sent; failures are counted as `handler_error` and never reach the solver. */
  onResult?: OnResult;
  /**
   * Hand every stored result to the app at least once: POSTed to `forward.url` with Standard Webhooks signatures,
   * retried with backoff until `maxAgeMs`, from an outbox the store writes with the result. Needs a store with an
   * outbox (every bundled store). Default: off.
   */
  forward?: ForwarderOptions;
  /** Told about hook failures, store failures and sweeper failures (for logging). Must not throw. */
  onError?: OnError;
  /** Clock, for tests. */
  now?: () => number;
}

/** The parts the standalone server wires itself (recovery poller, task API); not part of the public API. */
export interface MonitorInternals {
  readonly tracker: DeliveryTracker;
  readonly stats: CallbackStats;
  readonly metrics: ReceiverMetrics;
  readonly forwarder: Forwarder | undefined;
}

const INTERNALS = new WeakMap<CallbackMonitor, MonitorInternals>();

/** The monitor's tracker, stats, metrics and forwarder, for the standalone server and the tests. */
export function monitorInternals(monitor: CallbackMonitor): MonitorInternals {
  const found = INTERNALS.get(monitor);
  if (!found) throw new TypeError('not a CallbackMonitor');
  return found;
}

/**
 * The receiver as a library: mount `middleware()` in any Koa 3 app, register tasks with `trackSubmitted`, read
 * results with `getTask` / `waitForResult`. Call `start()` to run the deadline sweeper and `close()` to stop it.
 */
export class CallbackMonitor {
  /** The store given in the options (or the default MemoryTaskStore). */
  readonly store: TaskStore;
  readonly #tracker: DeliveryTracker;
  readonly #stats: CallbackStats;
  readonly #metrics: ReceiverMetrics;
  readonly #forwarder: Forwarder | undefined;
  readonly #options: CallbackMonitorOptions;
  readonly #onError: OnError;
  /** The provider the instruments were last created from; undefined once the meter is fixed. */
  #provider: MeterProvider | undefined;
  #followsGlobal: boolean;
  #callbacks: CallbackHandler | undefined;
  #closing = false;

  constructor(options: CallbackMonitorOptions = {}) {
    validateOptions(options);
    this.#options = options;
    const onError = options.onError ?? (() => {});
    this.#onError = (error, where) => {
      try {
        onError(error, where);
      } catch {
        // A logging hook must never take the receiver down with it.
      }
    };
    this.store = options.store ?? new MemoryTaskStore();
    this.#stats = new CallbackStats(options.now);
    // The metrics API has no proxy provider: a meter taken from the global before the app's SDK registers stays a
    // no-op forever, so the monitor follows the global provider (checked per request) unless given its own.
    this.#followsGlobal = options.metrics !== false && !options.meter && !options.meterProvider;
    this.#provider = options.meterProvider ?? (this.#followsGlobal ? otelMetrics.getMeterProvider() : undefined);
    const meter =
      options.metrics === false ? createNoopMeter() : (options.meter ?? this.#provider!.getMeter(METER_NAME));
    this.#metrics = new ReceiverMetrics(meter, {
      secondsSinceLastCallback: () => this.#stats.secondsSinceLast(),
      pendingTasks: () => this.#tracker.counts.pending,
      forwardBacklog: () => this.#forwarder?.backlog ?? 0,
      forwardOldestPendingAge: () => this.#forwarder?.oldestPendingAgeSeconds ?? 0,
    });
    const outbox = this.store.forwards;
    if (options.forward && !outbox) {
      throw new TypeError('CallbackMonitor: option "forward" needs a store with a forwarding outbox (store.forwards)');
    }
    this.#forwarder = options.forward && outbox ? new Forwarder(outbox, options.forward, this.#metrics) : undefined;
    const forwarder = this.#forwarder;
    this.#tracker = new DeliveryTracker(
      {
        store: this.store,
        ...(options.deliveryTimeoutSeconds === undefined
          ? {}
          : { deliveryTimeoutSeconds: options.deliveryTimeoutSeconds }),
        ...(options.sweepIntervalMs === undefined ? {} : { sweepIntervalMs: options.sweepIntervalMs }),
        ...(options.retentionSeconds === undefined ? {} : { retentionSeconds: options.retentionSeconds }),
        ...(options.now === undefined ? {} : { now: options.now }),
        onMaintenanceError: (error) => this.#onError(error, 'sweep'),
        ...(forwarder ? { onTransition: () => forwarder.resultStored() } : {}),
      },
      this.#metrics,
    );
    INTERNALS.set(this, { tracker: this.#tracker, stats: this.#stats, metrics: this.#metrics, forwarder });
  }

  /**
   * Records the contract's instruments on this provider's meter from now on (totals counted so far included), as
   * OpenTelemetry's instrumentations do; the monitor then stops following the global provider.
   */
  setMeterProvider(provider: MeterProvider): void {
    if (this.#options.metrics === false) return;
    this.#followsGlobal = false;
    this.#bindProvider(provider);
  }

  /** True when results are forwarded to the app (the `forward` option). */
  get forwarding(): boolean {
    return this.#forwarder !== undefined;
  }

  #bindProvider(provider: MeterProvider): void {
    this.#provider = provider;
    this.#metrics.bind(provider.getMeter(METER_NAME));
  }

  /** When following the global provider: rebinds once the app has registered (or replaced) its SDK's provider. */
  #followGlobalProvider(): void {
    if (!this.#followsGlobal) return;
    const current = otelMetrics.getMeterProvider();
    if (current !== this.#provider) this.#bindProvider(current);
  }

  /**
   * Callback routes plus `/health/callbacks` and `/healthz`, as one Koa middleware; anything else goes to `next`.
   * Mount it anywhere: before a body parser it reads the body itself; after one (`@koa/bodyparser`, `koa-body`) it
   * uses the raw body the parser kept (`ctx.request.rawBody`) or else what it parsed (`ctx.request.body`).
   */
  middleware(): KoaMiddleware {
    const serve = this.#router();
    return async (ctx, next) => {
      const request = ctx.request as { body?: unknown; rawBody?: unknown };
      const replying = serve(ctx.req, ctx.path, { raw: request.rawBody, parsed: request.body });
      if (!replying) return next();
      const reply = await replying;
      ctx.status = reply.status;
      ctx.type = reply.contentType;
      if (reply.headers) ctx.set(reply.headers);
      ctx.body = reply.body;
    };
  }

  /**
   * The same routes as `middleware()` as a plain `node:http` request listener, for a listener that serves nothing
   * else: no framework runs per callback. Requests outside the routes go to `fallback`, or get a JSON 404.
   */
  requestListener(fallback?: RequestListener): RequestListener {
    const serve = this.#router();
    return (req, res) => {
      const replying = serve(req, pathOf(req.url ?? '/'));
      if (replying) void replying.then((reply) => writeReply(res, reply, this.#closing));
      else if (fallback) fallback(req, res);
      else writeReply(res, NOT_FOUND, this.#closing);
    };
  }

  /** Decides synchronously whether a request is ours; if it is, resolves to the reply (never rejects). */
  #router(): (req: IncomingMessage, path: string, preread?: PrereadBody) => Promise<Reply> | undefined {
    const o = this.#options;
    this.#callbacks ??= createCallbackHandler({
      prefix: (o.prefix ?? DEFAULTS.prefix).replace(/\/+$/, ''),
      secret: o.secret,
      maxBodyBytes: o.maxBodyBytes ?? DEFAULTS.maxBodyBytes,
      maxQueryBytes: o.maxQueryBytes ?? DEFAULTS.maxQueryBytes,
      tracker: this.#tracker,
      stats: this.#stats,
      metrics: this.#metrics,
      onResult: o.onResult,
      onError: this.#onError,
    });
    const callbacks = this.#callbacks;
    const healthPath = o.healthPath === undefined ? DEFAULTS.healthPath : o.healthPath;
    const healthzPath = o.healthzPath === undefined ? DEFAULTS.healthzPath : o.healthzPath;
    return (req, path, preread) => {
      this.#followGlobalProvider();
      if (req.method === 'GET' || req.method === 'HEAD') {
        if (path === healthPath) {
          const report = this.health();
          return Promise.resolve(json(report.status === 'stale' ? 503 : 200, report));
        }
        if (path === healthzPath) {
          return this.storeReachable().then((ok) => json(ok ? 200 : 503, { status: ok ? 'ok' : 'store_unavailable' }));
        }
      }
      return callbacks.matches(path) ? callbacks.handle(req, path, preread) : undefined;
    };
  }

  /** The `/health/callbacks` report, from running aggregates (O(1)). */
  health(): HealthReport {
    this.#followGlobalProvider();
    return healthReport(this.#stats, this.#tracker, (this.#options.now ?? Date.now)(), this.#metrics.recoveredCount);
  }

  /** True when the store answers a write-capable ping within `timeoutMs`. */
  async storeReachable(timeoutMs = 2000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      return await Promise.race([this.store.ping().then(() => true as const), timeout]);
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Registers tasks for delivery tracking: app ids, or `{ id, solverTaskId?, timeoutSeconds? }` (the solver's task id
   * when already known, and a deadline for this task instead of `deliveryTimeoutSeconds`). Resolves to the new ids.
   */
  trackSubmitted(tasks: string | readonly (string | TaskSubmission)[]): Promise<string[]> {
    this.#followGlobalProvider();
    return this.#tracker.trackSubmitted(tasks);
  }

  /** Tells the monitor the solver's task id of a registered task, once the solver's createTask has answered. */
  attachSolverTaskId(id: string, solverTaskId: string): Promise<AttachResult> {
    return this.#tracker.attachSolverTaskId(id, solverTaskId);
  }

  /** The task with this app id, or else with this solver task id. */
  getTask(id: string): Promise<TaskRecord | undefined> {
    return this.#tracker.get(id);
  }

  /** Waits for the task (by app id, or else by solver task id) to settle; see DeliveryTracker.waitForResult. */
  waitForResult(id: string, timeoutMs = 30_000): Promise<TaskRecord | undefined> {
    return this.#tracker.waitForResult(id, timeoutMs);
  }

  /**
   * The forwards of the task with this app id (or else solver task id), one per event; undefined when no such task.
   * Empty when forwarding is off.
   */
  async getForwards(id: string): Promise<ForwardRecord[] | undefined> {
    const task = await this.#tracker.get(id);
    if (!task) return undefined;
    return this.store.forwards ? this.store.forwards.forwardsOf(task.id) : [];
  }

  /**
   * Sends the task's forwards again (by app id, or else solver task id), same webhook id, as a new round of retries.
   * Resolves to how many were scheduled, or undefined when no such task. Needs `forward`.
   */
  async redeliver(id: string): Promise<number | undefined> {
    const forwarder = this.#requireForwarder();
    const task = await this.#tracker.get(id);
    return task ? forwarder.redeliver(task.id) : undefined;
  }

  /**
   * Replays settled forwards (`state`: dead, gone, delivered or all) whose event time is in `[from, to)` (unix ms),
   * oldest first, at most `limit`; resolves to how many were scheduled. Needs `forward`.
   */
  replayForwards(filter: ReplayFilter): Promise<number> {
    return this.#requireForwarder().replay(filter);
  }

  #requireForwarder(): Forwarder {
    if (!this.#forwarder) throw new Error('forwarding is off (no forward option)');
    return this.#forwarder;
  }

  /** Starts the deadline sweeper, the retention purge and, with `forward`, the forwarder. */
  start(): this {
    this.#tracker.start();
    this.#forwarder?.start();
    return this;
  }

  /**
   * Stops the sweeper and releases waiters; from now on `requestListener()` answers with `Connection: close`. The
   * store stays open: close it yourself.
   */
  async close(): Promise<void> {
    this.#closing = true;
    await this.#tracker.close();
    // After the tracker: attempts in flight finish and their settlements are written before the store closes.
    await this.#forwarder?.close();
  }
}
