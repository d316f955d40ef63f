import { stat } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { AttemptResult, ForwardSender, HttpSenderOptions } from './forwardHttp.ts';

/** What the worker thread is started with. */
export interface WorkerInit {
  readonly http: HttpSenderOptions;
  /** The thread's nice value (Linux only); undefined leaves it as it is. */
  readonly niceness: number | undefined;
}

/** Main thread → worker: forwards to send (id, webhook id, body), stop once the ones in flight end, or crash (tests). */
export type ToWorker =
  | { readonly kind: 'send'; readonly jobs: ReadonlyArray<readonly [number, string, string]> }
  | { readonly kind: 'stop' }
  | { readonly kind: 'crash' };

/** Worker → main thread: started (at which nice value), attempts ended, stopped. */
export type ToMain =
  | { readonly kind: 'ready'; readonly niceness: number | null }
  | { readonly kind: 'done'; readonly results: ReadonlyArray<readonly [number, AttemptResult]> }
  | { readonly kind: 'stopped' };

/** The worker thread ended without being asked to: the attempts it held count as failed, and it is started again. */
export interface WorkerExit {
  readonly kind: 'worker_exit';
  readonly code: number;
  /** The uncaught error's name and message, when it died of one. */
  readonly error: string | null;
  /** Attempts it held, settled as failed attempts (retried after the usual backoff: at least once, never lost). */
  readonly attempts: number;
  readonly restartInMs: number;
}

export interface WorkerSenderOptions {
  readonly http: HttpSenderOptions;
  /** Default 19 (the lowest priority). */
  readonly niceness?: number;
  readonly onExit?: (exit: WorkerExit) => void;
  /** The first restart after an unrequested exit waits this long, doubling for each exit in a row. Default 100. */
  readonly restartMinMs?: number;
  /** Default 10000. */
  readonly restartMaxMs?: number;
}

/** The worker's entry, next to this module: `.ts` when running the sources, `.js` when built. */
const ENTRY = new URL(`./forwardWorker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

/** A worker that lived this long is healthy again: its next exit restarts it after the shortest delay. */
const HEALTHY_AFTER_MS = 60_000;

/**
 * Sends forwards from a worker thread (forwardWorker.ts) at the lowest CPU priority: the HTTP requests, signatures
 * and answers leave the receiver's event loop, and while a burst of callbacks keeps the CPU busy the kernel gives it to
 * the callbacks first; forwards then wait in the outbox and catch up afterwards. Forwards of one event-loop turn
 * go to the thread in one message, and its answers come back the same way.
 *
 * A thread that dies (an uncaught error, or out of memory) is noticed: the attempts it held resolve as failed
 * (`network_error`, so they are retried after the backoff, with the same webhook id), `onExit` is told, and a new
 * thread is started after a delay that doubles while it keeps dying (up to `restartMaxMs`).
 */
export class WorkerSender implements ForwardSender {
  readonly #options: WorkerSenderOptions;
  readonly #pending = new Map<number, (result: AttemptResult) => void>();
  #queue: Array<readonly [number, string, string]> = [];
  #flushScheduled = false;
  #nextId = 1;
  #worker: Worker | undefined;
  #ready: Promise<number | null> = Promise.resolve(null);
  #startedAt = 0;
  #exitsInARow = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #closing = false;
  #stopped: Promise<void> | undefined;

  constructor(options: WorkerSenderOptions) {
    this.#options = options;
  }

  /** Starts the thread (sends before it wait for it); idempotent. */
  start(): void {
    if (this.#worker || this.#closing || this.#restartTimer) return;
    // The libuv thread pool is started by the first thread that uses it, and a new thread inherits its creator's nice
    // value: start it from here, so the pool (file system, DNS, some crypto) never runs at the worker's priority.
    stat('.', () => {});
    this.#spawn();
  }

  /** The worker thread's nice value once it started (null: not on Linux, or it could not be set). */
  get niceness(): Promise<number | null> {
    return this.#ready;
  }

  /** The running thread, for tests (undefined while a restart is pending). */
  get worker(): Worker | undefined {
    return this.#worker;
  }

  send(webhookId: string, body: string): Promise<AttemptResult> {
    if (this.#closing) return Promise.resolve(failed('forward worker stopped'));
    return new Promise<AttemptResult>((resolve) => {
      const id = this.#nextId++;
      this.#pending.set(id, resolve);
      this.#queue.push([id, webhookId, body]);
      this.start();
      this.#scheduleFlush();
    });
  }

  /** Lets the attempts in flight end (the thread answers them), then stops the thread. */
  close(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#restartTimer);
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    const worker = this.#worker;
    if (!worker) {
      this.#failAll('forward worker stopped');
      return;
    }
    this.#flush();
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.ref();
    worker.postMessage({ kind: 'stop' } satisfies ToWorker);
    // Each attempt ends within its timeout; past that (plus a margin) the thread is ended regardless.
    const limit = setTimeout(() => void worker.terminate(), this.#options.http.timeoutMs + 5000);
    await exited;
    clearTimeout(limit);
    this.#failAll('forward worker stopped');
  }

  #spawn(): void {
    const init: WorkerInit = { http: this.#options.http, niceness: this.#options.niceness ?? 19 };
    const worker = new Worker(ENTRY, { workerData: init, name: 'captcha-callback-monitor forwarder' });
    // Nothing here keeps the process alive: the outbox does (the Forwarder's timers), and close() stops the thread.
    worker.unref();
    this.#worker = worker;
    this.#startedAt = performance.now();
    let error: string | null = null;
    let resolveReady: (n: number | null) => void = () => {};
    this.#ready = new Promise((resolve) => (resolveReady = resolve));
    worker.on('message', (message: ToMain) => {
      if (message.kind === 'done') {
        for (const [id, result] of message.results) {
          const resolve = this.#pending.get(id);
          this.#pending.delete(id);
          resolve?.(result);
        }
      } else if (message.kind === 'ready') resolveReady(message.niceness);
    });
    worker.on('error', (e) => {
      error = e instanceof Error ? `${e.name}: ${e.message}`.slice(0, 200) : 'unknown error';
    });
    worker.once('exit', (code) => {
      resolveReady(null);
      if (this.#worker === worker) this.#worker = undefined;
      if (this.#closing) return;
      const attempts = this.#failAll('forward worker exited');
      if (performance.now() - this.#startedAt >= HEALTHY_AFTER_MS) this.#exitsInARow = 0;
      const min = this.#options.restartMinMs ?? 100;
      const restartInMs = Math.min(this.#options.restartMaxMs ?? 10_000, min * 2 ** Math.min(this.#exitsInARow, 20));
      this.#exitsInARow++;
      this.#restartTimer = setTimeout(() => {
        this.#restartTimer = undefined;
        if (this.#closing) return;
        this.#spawn();
        this.#scheduleFlush();
      }, restartInMs);
      this.#restartTimer.unref();
      try {
        this.#options.onExit?.({ kind: 'worker_exit', code, error, attempts, restartInMs });
      } catch {
        // A logging hook must never stop the forwarder.
      }
    });
  }

  /** Tests only: makes the thread die of an uncaught error, as a bug in it would. */
  crashForTest(): void {
    this.#worker?.postMessage({ kind: 'crash' } satisfies ToWorker);
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    // While a restart is pending, forwards wait here for the new thread.
    if (!this.#worker || this.#queue.length === 0) return;
    const jobs = this.#queue;
    this.#queue = [];
    this.#worker.postMessage({ kind: 'send', jobs } satisfies ToWorker);
  }

  /** Resolves every attempt not answered yet as failed; returns how many there were. */
  #failAll(reason: string): number {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#queue = [];
    for (const resolve of pending) resolve(failed(reason));
    return pending.length;
  }
}

function failed(reason: string): AttemptResult {
  return { outcome: 'network_error', status: null, error: reason, retryAfter: undefined, seconds: 0 };
}
