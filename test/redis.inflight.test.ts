import { connect, createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DeliveryTracker } from '../packages/koa/src/delivery/DeliveryTracker.ts';
import { RedisTaskStore, type RedisTaskStoreOptions } from '../packages/koa/src/delivery/stores/RedisTaskStore.ts';
import { type CallbackResult, StoreUnavailableError } from '../packages/koa/src/delivery/TaskStore.ts';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import { ReceiverMetrics } from '../packages/koa/src/metrics/instruments.ts';
import { type RedisServer, startRedis } from './support/redis.ts';
import { prometheusMeter } from './support/receiver.ts';

/*
 * The Redis in-flight gap: a recordCallback whose script ran in Redis but whose reply never reached the store (the
 * connection dropped after Redis read the command, or the reply came after the command timeout). The call rejects,
 * so the solver got a 503; `reconcile()` must then report that callback exactly once, and must never report one that
 * Redis did not apply. The replies are really lost here: a loopback proxy between the store and redis-server cuts the
 * connection at a chosen point of the one command, or redis-server is stopped (SIGSTOP) with the command in its
 * socket buffer. The store finds such a call through its token, which the script wrote into the task's own hash.
 */

const BASE_MS = 1_700_000_000_000;
const MIN = 60_000;

type Mode =
  /** Forward both ways. */
  | 'pass'
  /** Forward the next command, then cut the connection when Redis answers it: applied, reply lost. */
  | 'cut-after-reply'
  /** Swallow the next command and cut: Redis never sees it. */
  | 'cut-before-send'
  /** Cut the store's side at once but hold the next command, and send it on the old connection at `release()`. */
  | 'hold-then-send';

/** A TCP proxy in front of redis-server that can lose exactly one command's reply, or the command itself. */
class CuttingProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #mode: Mode = 'pass';
  #held: Array<() => void> = [];
  /** Resolves when the armed cut has happened. */
  #cut: { promise: Promise<void>; resolve: () => void } | undefined;
  port = 0;

  constructor(targetPort: number) {
    this.#server = createServer((client) => {
      const upstream = connect({ port: targetPort, host: '127.0.0.1' });
      this.#sockets.add(client).add(upstream);
      let cutOnReply = false;
      let holding = false;
      const cut = () => {
        client.destroy();
        this.#cut?.resolve();
      };
      client.on('data', (chunk) => {
        const mode = this.#mode;
        if (mode !== 'pass') this.#mode = 'pass'; // every mode is one-shot
        if (mode === 'cut-before-send') {
          upstream.destroy();
          cut();
          return;
        }
        if (mode === 'hold-then-send') {
          holding = true;
          this.#held.push(() => upstream.write(chunk));
          cut();
          return;
        }
        if (mode === 'cut-after-reply') cutOnReply = true;
        upstream.write(chunk);
      });
      upstream.on('data', (chunk) => {
        if (cutOnReply) {
          upstream.destroy();
          cut();
        } else if (!holding) {
          client.write(chunk);
        }
      });
      client.on('close', () => {
        if (!holding) upstream.destroy();
      });
      upstream.on('close', () => client.destroy());
      for (const s of [client, upstream]) {
        s.on('error', () => undefined);
        s.on('close', () => this.#sockets.delete(s));
      }
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as { port: number }).port;
  }

  /** Arms a one-shot mode for the next chunk the store sends; the promise resolves once the cut has happened. */
  arm(mode: Exclude<Mode, 'pass'>): Promise<void> {
    this.#mode = mode;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.#cut = { promise, resolve };
    return promise;
  }

  /** Sends the held commands to Redis on their old connections. */
  release(): void {
    for (const send of this.#held.splice(0)) send();
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function callback(taskId: string, receivedAt: number, extra: Partial<CallbackResult> = {}): CallbackResult {
  return { taskId, outcome: 'solved', code: `code-${taskId}`, format: 'json', receivedAt, ...extra };
}

/** Waits until the store answers again (ioredis reconnects on its own after a cut). */
async function untilReady(store: RedisTaskStore): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    try {
      await store.ping();
      return;
    } catch (error) {
      if (Date.now() > until) throw error;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

type Reconciled = Awaited<ReturnType<RedisTaskStore['reconcile']>>;

/**
 * Calls reconcile() until the store has nothing unconfirmed left (or the deadline passes), collecting every report.
 * Rejections (Redis not reachable yet) are retried, as the tracker's next sweep would.
 */
async function reconcileUntilSettled(store: RedisTaskStore, withinMs = 15_000): Promise<Reconciled[number][]> {
  const reports: Reconciled[number][] = [];
  const until = Date.now() + withinMs;
  while (store.unconfirmedCount > 0) {
    if (Date.now() > until) throw new Error(`still ${store.unconfirmedCount} unconfirmed after ${withinMs} ms`);
    try {
      reports.push(...(await store.reconcile()));
    } catch {
      // Not reachable yet.
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return reports;
}

describe('RedisTaskStore: callbacks applied although their call rejected', () => {
  let server: RedisServer;
  let proxy: CuttingProxy;
  let prefixes = 0;
  const opened: RedisTaskStore[] = [];
  const open = async (options: RedisTaskStoreOptions & { direct?: boolean } = {}) => {
    const url = options.direct ? server.url : `redis://127.0.0.1:${proxy.port}/0`;
    const store = await RedisTaskStore.open(url, { keyPrefix: `inflight${++prefixes}:`, ...options });
    opened.push(store);
    // The script is loaded (EVALSHA falls back to EVAL once per server) so the armed command is the script itself.
    await store.recordCallback(callback('warm-up', BASE_MS));
    return store;
  };

  beforeAll(async () => {
    server = await startRedis();
    proxy = new CuttingProxy(server.port);
    await proxy.start();
  });
  afterEach(async () => {
    server.unpause();
    for (const s of opened.splice(0)) await s.close();
  });
  afterAll(async () => {
    await proxy.stop();
    await server.stop();
  });

  it('reports a callback whose reply was lost when the connection dropped, exactly once', async () => {
    const store = await open();
    await store.register(['t1'], BASE_MS, BASE_MS + MIN);
    const r = callback('t1', BASE_MS + 5, { solverTaskId: 's1', solution: { token: 'tok', userAgent: 'UA ✓' } });

    const cut = proxy.arm('cut-after-reply');
    await expect(store.recordCallback(r)).rejects.toBeInstanceOf(StoreUnavailableError);
    await cut;
    expect(store.unconfirmedCount).toBe(1);

    // Redis applied it: the task is delivered, yet no caller was told.
    await untilReady(store);
    expect(await store.get('s1')).toMatchObject({ id: 't1', state: 'delivered', callbacks: 1 });
    const reports = await reconcileUntilSettled(store);
    expect(reports).toEqual([{ transition: { kind: 'delivered', id: 't1', submittedAt: BASE_MS }, result: r }]);
    expect(await store.reconcile()).toEqual([]);
    expect(await store.counts()).toEqual({ pending: 0, delivered: 1, missed: 0, late: 0 });
    // Another instance on the same Redis never reports it: only the instance whose call rejected does.
    const other = await open({ direct: true, keyPrefix: store.keyPrefix });
    expect(await other.reconcile()).toEqual([]);
  });

  it('reports a callback whose script ran after the command timeout (Redis hung with the command read)', async () => {
    const store = await open({ commandTimeoutMs: 300, direct: true });
    await store.register(['hung'], BASE_MS, BASE_MS + MIN);
    server.pause(); // SIGSTOP: the command waits in redis-server's socket buffer
    try {
      await expect(store.recordCallback(callback('hung', BASE_MS + 1))).rejects.toBeInstanceOf(StoreUnavailableError);
      // While Redis hangs, reconcile cannot learn anything: it rejects, reports nothing, forgets nothing.
      await expect(store.reconcile()).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(store.unconfirmedCount).toBe(1);
    } finally {
      server.unpause();
    }
    const reports = await reconcileUntilSettled(store);
    expect(reports).toEqual([
      { transition: { kind: 'delivered', id: 'hung', submittedAt: BASE_MS }, result: callback('hung', BASE_MS + 1) },
    ]);
    expect(await store.reconcile()).toEqual([]);
    expect(await store.get('hung')).toMatchObject({ state: 'delivered', callbacks: 1 });
  });

  it('keeps a token Redis does not have yet while its script may still run, and reports it when it does', async () => {
    // The command reaches Redis on the old connection only after the store has reconnected and asked: a token
    // missing from that first answer must not be forgotten. (A store that forgot it would never report it.)
    const store = await open({ commandTimeoutMs: 2000 }); // grace: 4 s from the rejection
    await store.register(['slow'], BASE_MS, BASE_MS + MIN);
    const cut = proxy.arm('hold-then-send');
    await expect(store.recordCallback(callback('slow', BASE_MS + 1))).rejects.toBeInstanceOf(StoreUnavailableError);
    await cut;
    await untilReady(store);
    expect(await store.reconcile()).toEqual([]);
    expect(store.unconfirmedCount).toBe(1);
    expect(await store.get('slow')).toMatchObject({ state: 'pending' });

    proxy.release();
    const reports = await reconcileUntilSettled(store);
    expect(reports).toEqual([
      { transition: { kind: 'delivered', id: 'slow', submittedAt: BASE_MS }, result: callback('slow', BASE_MS + 1) },
    ]);
    expect(await store.get('slow')).toMatchObject({ state: 'delivered', callbacks: 1 });
  });

  it('never reports a callback Redis did not apply, and forgets it once that is certain', async () => {
    const store = await open({ commandTimeoutMs: 300 }); // grace: 600 ms
    await store.register(['lost'], BASE_MS, BASE_MS + MIN);
    const cut = proxy.arm('cut-before-send');
    await expect(store.recordCallback(callback('lost', BASE_MS + 1))).rejects.toBeInstanceOf(StoreUnavailableError);
    await cut;
    expect(store.unconfirmedCount).toBe(1);
    await untilReady(store);
    expect(await reconcileUntilSettled(store)).toEqual([]);
    expect(await store.get('lost')).toMatchObject({ state: 'pending', callbacks: 0 });
    // The solver's retry (or the recovery poll) then delivers it, counted once, by the call that succeeds.
    expect(await store.recordCallback(callback('lost', BASE_MS + 2))).toEqual({
      kind: 'delivered',
      id: 'lost',
      submittedAt: BASE_MS,
    });
    expect(await store.reconcile()).toEqual([]);
  });

  it('reports a duplicate whose reply was lost as a duplicate, once', async () => {
    const store = await open();
    await store.register(['dup'], BASE_MS, BASE_MS + MIN);
    expect(await store.recordCallback(callback('dup', BASE_MS + 1))).toMatchObject({ kind: 'delivered' });
    const cut = proxy.arm('cut-after-reply');
    await expect(store.recordCallback(callback('dup', BASE_MS + 2))).rejects.toBeInstanceOf(StoreUnavailableError);
    await cut;
    await untilReady(store);
    expect(await reconcileUntilSettled(store)).toEqual([
      { transition: { kind: 'duplicate', id: 'dup' }, result: callback('dup', BASE_MS + 2) },
    ]);
    expect(await store.reconcile()).toEqual([]);
    expect(await store.get('dup')).toMatchObject({ state: 'delivered', callbacks: 2, receivedAt: BASE_MS + 1 });
  });

  it('finds a lost unregistered callback (solver id only) in its own record, and keeps no key per call', async () => {
    const store = await open();
    for (let i = 0; i < 20; i++) await store.recordCallback(callback(`ok${i}`, BASE_MS + i));
    const r: CallbackResult = {
      solverTaskId: 'sv9',
      outcome: 'solved',
      code: 'c',
      format: 'query',
      receivedAt: BASE_MS,
    };
    const cut = proxy.arm('cut-after-reply');
    await expect(store.recordCallback(r)).rejects.toBeInstanceOf(StoreUnavailableError);
    await cut;
    await untilReady(store);
    expect(await reconcileUntilSettled(store)).toEqual([
      { transition: { kind: 'unregistered', id: 'sv9' }, result: r },
    ]);
    // The tokens live in the task hashes: Redis holds the task, link, index and count keys, and nothing per call.
    const raw = new Redis(server.url);
    try {
      const keys = (await raw.keys(`${store.keyPrefix}*`)).map((k) => k.slice(store.keyPrefix.length));
      expect(keys.length).toBeGreaterThan(20);
      expect(keys.filter((k) => !/^(task:|solver:|state:|settled$|counts$|ping$)/.test(k))).toEqual([]);
      expect(await raw.hget(`${store.keyPrefix}task:sv9`, 'firstKind')).toBe('unregistered');
    } finally {
      raw.disconnect();
    }
  });

  it('a DeliveryTracker counts a callback whose reply was lost exactly once, at its next sweep, and never an unapplied one', async () => {
    const store = await open({ commandTimeoutMs: 1000 }); // grace for an unapplied call: 2 s
    const meter = prometheusMeter();
    const errors: unknown[] = [];
    let tracker: DeliveryTracker | undefined;
    const metrics = new ReceiverMetrics(meter.provider.getMeter('inflight'), {
      secondsSinceLastCallback: () => 0,
      pendingTasks: () => tracker?.counts.pending ?? 0,
    });
    tracker = new DeliveryTracker(
      { store, deliveryTimeoutSeconds: 600, onMaintenanceError: (e) => errors.push(e) },
      metrics,
    );
    const t = tracker;
    const scrape = meter.metrics;
    /** Sweeps (as the tracker's timer would) until the store has nothing unconfirmed left. */
    const sweepUntilSettled = async () => {
      const until = Date.now() + 15_000;
      while (store.unconfirmedCount > 0) {
        if (Date.now() > until) throw new Error(`still ${store.unconfirmedCount} unconfirmed`);
        await t.sweep();
        await new Promise((r) => setTimeout(r, 50));
      }
      await t.sweep(); // one more, after the list is empty: it must count nothing more
    };
    try {
      await t.trackSubmitted(['d1']);
      await t.sweep();
      let m = await scrape();
      expect(m.get(PROM.tasksSubmittedTotal)).toBe(1);
      expect(m.get(PROM.tasksPending)).toBe(1);

      // Applied in Redis, reply lost: the callback is answered 503 (the tracker rejects) and not counted yet.
      const cut = proxy.arm('cut-after-reply');
      await expect(t.recordCallback(callback('d1', Date.now()))).rejects.toBeInstanceOf(StoreUnavailableError);
      await cut;
      expect(store.unconfirmedCount).toBe(1);
      expect((await scrape()).get(PROM.tasksDeliveredTotal)).toBe(0);

      await untilReady(store);
      await sweepUntilSettled();
      m = await scrape();
      expect(m.get(PROM.tasksDeliveredTotal)).toBe(1);
      expect(m.get(PROM.tasksPending)).toBe(0);
      await t.sweep();
      await t.sweep();
      m = await scrape();
      expect(m.get(PROM.tasksDeliveredTotal)).toBe(1);
      expect(m.get(PROM.tasksPending)).toBe(0);
      expect(m.get(PROM.duplicatesTotal)).toBe(0);

      // Swallowed by the proxy, never applied: never counted, and forgotten once its grace has passed.
      await t.trackSubmitted(['u1']);
      const swallowed = proxy.arm('cut-before-send');
      await expect(t.recordCallback(callback('u1', Date.now()))).rejects.toBeInstanceOf(StoreUnavailableError);
      await swallowed;
      expect(store.unconfirmedCount).toBe(1);
      await untilReady(store);
      await sweepUntilSettled();
      m = await scrape();
      expect(m.get(PROM.tasksDeliveredTotal)).toBe(1);
      expect(m.get(PROM.tasksPending)).toBe(1);
      expect(await store.get('u1')).toMatchObject({ state: 'pending', callbacks: 0 });
      // The solver's retry is counted by the call that succeeds.
      expect(await t.recordCallback(callback('u1', Date.now()))).toMatchObject({ kind: 'delivered', id: 'u1' });
      await t.sweep();
      m = await scrape();
      expect(m.get(PROM.tasksDeliveredTotal)).toBe(2);
      expect(m.get(PROM.tasksPending)).toBe(0);
      expect(m.get(PROM.tasksSubmittedTotal)).toBe(2);
    } finally {
      await t.close();
      await meter.close();
    }
  });

  it('bounds the unconfirmed list: the oldest are dropped, counted and reported as a warning', async () => {
    const warnings: string[] = [];
    const store = await open({ direct: true, unconfirmedLimit: 2, onWarning: (m) => warnings.push(m) });
    await server.kill();
    try {
      for (const id of ['a', 'b', 'c']) {
        await expect(store.recordCallback(callback(id, BASE_MS))).rejects.toBeInstanceOf(StoreUnavailableError);
      }
      expect(store.unconfirmedCount).toBe(2);
      expect(store.unconfirmedDropped).toBe(1);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/1 unconfirmed callback\(s\) forgotten \(limit 2\)/);
    } finally {
      await server.resume();
    }
    // Nothing reached Redis (it was down; the new server is empty): nothing is reported, and both are forgotten.
    await untilReady(store);
    expect(await reconcileUntilSettled(store)).toEqual([]);
  });
});
