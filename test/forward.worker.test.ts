import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Forwarder, type ForwarderEvent } from '../packages/koa/src/delivery/Forwarder.ts';
import { LoopPace, threadDemand } from '../packages/koa/src/delivery/forwardPace.ts';
import { WorkerSender } from '../packages/koa/src/delivery/forwardThread.ts';
import { MemoryTaskStore } from '../packages/koa/src/delivery/stores/MemoryTaskStore.ts';
import { SqliteTaskStore } from '../packages/koa/src/delivery/stores/SqliteTaskStore.ts';
import type { TaskStore } from '../packages/koa/src/delivery/TaskStore.ts';
import { type CallbackMonitorOptions, PROM } from '../packages/koa/src/index.ts';
import { listen } from './support/http.ts';
import { waitFor } from './support/ports.ts';
import { startReceiver } from './support/receiver.ts';
import { parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';

/*
 * Forwarding off the callback event loop, in process: attempts on the worker thread reach the app for every result,
 * signed, and are counted on this thread's instruments; a worker thread that dies is noticed, its attempts are
 * retried and a new thread is started; the pace holds claims back while the event loop is busy and lets them go once
 * it has room. Then the CLI: FORWARD_THREAD=worker runs a thread at the lowest priority, loop none. Mechanisms only,
 * never speeds (a busy shared machine): generous limits, waits for conditions.
 */

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const dir = mkdtempSync(join(tmpdir(), 'ccm-forward-worker-'));
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Hit {
  readonly body: string;
  readonly headers: IncomingHttpHeaders;
  readonly taskId: string;
  readonly status: number;
}

/**
 * The app, in this process: records every request and answers 204, or `answer(taskId, attempt)` when that gives a
 * status (and headers); `hold` keeps every answer back until `release()`.
 */
async function app(answer?: (taskId: string, attempt: number) => [number, Record<string, string>?] | undefined) {
  const hits: Hit[] = [];
  const held: Array<() => void> = [];
  let holding = false;
  const server = await listen((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const taskId = (JSON.parse(body) as { data: { id: string } }).data.id;
      const attempt = hits.filter((h) => h.taskId === taskId).length + 1;
      const [status, headers] = answer?.(taskId, attempt) ?? [204];
      hits.push({ body, headers: req.headers, taskId, status });
      const reply = () => {
        res.writeHead(status, headers);
        res.end();
      };
      if (holding) held.push(reply);
      else reply();
    });
  });
  cleanups.push(() => server.close());
  return {
    url: `${server.url}/hook`,
    hits,
    delivered: () => new Set(hits.filter((h) => h.status < 300).map((h) => h.taskId)),
    hold: () => {
      holding = true;
    },
    release: () => {
      holding = false;
      for (const reply of held.splice(0)) reply();
    },
  };
}

function verify(hits: readonly Hit[]): void {
  const wh = new Webhook(SECRET);
  for (const h of hits) {
    const payload = wh.verify(h.body, h.headers as Record<string, string>) as { data: { id: string } };
    expect(payload.data.id).toBe(h.taskId);
  }
}

/** A started monitor on `store`, its callbacks served on a loopback listener, its metrics read as the CLI's. */
async function monitorWith(store: TaskStore, options: CallbackMonitorOptions) {
  const r = await startReceiver({ store, ...options });
  cleanups.push(() => r.close());
  return {
    monitor: r.monitor,
    callback: async (id: string) => {
      const res = await fetch(`${r.url}/callback?id=${id}&code=tok-${id}`);
      await res.text();
      return res.status;
    },
    metrics: r.metrics,
  };
}

const stores: Array<[string, () => TaskStore]> = [
  ['memory', () => new MemoryTaskStore()],
  ['SQLite file', () => new SqliteTaskStore(join(dir, `w-${randomBytes(4).toString('hex')}.db`))],
];

describe.each(stores)('attempts on a worker thread (%s store)', (_name, makeStore) => {
  it('forwards every result, signed, and counts attempts, retries and backlog on this thread', async () => {
    // t-1 fails twice (the second time with Retry-After), t-2 is gone: outcomes other than success are counted too.
    const sink = await app((id, attempt): [number, Record<string, string>?] | undefined => {
      if (id === 't-1' && attempt <= 2) return [503, attempt === 2 ? { 'retry-after': '1' } : {}];
      return id === 't-2' ? [410] : undefined;
    });
    const m = await monitorWith(makeStore(), {
      forward: { url: sink.url, secret: SECRET, worker: true, retryMinMs: 100, retryMaxMs: 2000, statsIntervalMs: 100 },
    });
    const ids = Array.from({ length: 120 }, (_, i) => `t-${i}`);
    await m.monitor.trackSubmitted(ids);
    for (const id of ids) expect(await m.callback(id)).toBe(200);
    await waitFor(() => ids.every((id) => id === 't-2' || sink.delivered().has(id)), 60_000, 'every result');
    verify(sink.hits);
    const ofT1 = sink.hits.filter((h) => h.taskId === 't-1');
    expect(ofT1.map((h) => h.status)).toEqual([503, 503, 204]);
    expect(new Set(ofT1.map((h) => h.headers['webhook-id'])).size).toBe(1);
    await waitFor(async () => (await m.metrics()).get(PROM.forwardBacklog) === 0, 30_000, 'an empty backlog');
    const metrics = await m.metrics();
    expect(metrics.get(`${PROM.forwardAttemptsTotal}{outcome="success"}`)).toBe(ids.length - 1);
    expect(metrics.get(`${PROM.forwardAttemptsTotal}{outcome="http_error"}`)).toBe(2);
    expect(metrics.get(`${PROM.forwardAttemptsTotal}{outcome="gone"}`)).toBe(1);
    expect(metrics.get(`${PROM.forwardDurationCount}{outcome="success"}`)).toBe(ids.length - 1);
    expect(metrics.get(PROM.forwardOldestPendingAge)).toBe(0);
    expect((await m.monitor.getForwards('t-2'))?.[0]).toMatchObject({ state: 'gone', attempts: 1 });
  });
});

describe('a worker thread that dies', () => {
  it('WorkerSender: the attempts it held end as failed, onExit is told, and the next thread sends', async () => {
    const sink = await app();
    const exits: unknown[] = [];
    const sender = new WorkerSender({
      http: { url: sink.url, secret: SECRET, timeoutMs: 10_000, maxSockets: 4 },
      onExit: (e) => exits.push(e),
    });
    cleanups.push(() => sender.close());
    sender.start();
    expect(await sender.niceness).toBe(process.platform === 'linux' ? 19 : null);
    sink.hold();
    const body = (id: string) => JSON.stringify({ data: { id } });
    const held = [sender.send('msg_a', body('a')), sender.send('msg_b', body('b'))];
    await waitFor(() => sink.hits.length === 2, 30_000, 'both attempts at the app');
    sender.crashForTest();
    const results = await Promise.all(held);
    for (const r of results) expect(r).toMatchObject({ outcome: 'network_error', error: 'forward worker exited' });
    expect(exits).toEqual([
      expect.objectContaining({ kind: 'worker_exit', attempts: 2, error: expect.stringContaining('crash requested') }),
    ]);
    sink.release();
    // Sent before the new thread is up: it waits for it.
    expect(await sender.send('msg_c', body('c'))).toMatchObject({ outcome: 'success', status: 204 });
    expect(sender.worker).toBeDefined();
  });

  it('Forwarder: a crash mid-way loses no result; the cut attempts are retried with the same webhook id', async () => {
    const sink = await app();
    const store = new SqliteTaskStore(join(dir, 'crash.db'));
    const events: ForwarderEvent[] = [];
    const forwarder = new Forwarder(store.forwards!, {
      url: sink.url,
      secret: SECRET,
      worker: true,
      concurrency: 4,
      retryMinMs: 100,
      retryMaxMs: 500,
      pollIntervalMs: 50,
      onEvent: (e) => events.push(e),
    });
    cleanups.push(async () => {
      await forwarder.close();
      await store.close();
    });
    forwarder.start();
    const ids = Array.from({ length: 40 }, (_, i) => `c-${i}`);
    await store.register(ids, Date.now(), Date.now() + 3600_000);
    sink.hold();
    for (const id of ids) {
      await store.recordCallback({ taskId: id, outcome: 'solved', code: 'x', format: 'query', receivedAt: Date.now() });
      forwarder.resultStored();
    }
    await waitFor(() => sink.hits.length === 4, 30_000, 'four attempts in flight');
    forwarder.workerSender!.crashForTest();
    await waitFor(() => events.some((e) => e.kind === 'worker_exit'), 30_000, 'the exit reported');
    sink.release();
    await waitFor(() => ids.every((id) => sink.delivered().has(id)), 60_000, 'every result after the restart');
    // The sink may count a cut attempt as answered (it answers the held requests on release); the store settles a
    // forward only on a new attempt's 2xx, so wait for the store before counting the attempts.
    await waitFor(
      async () => {
        const states = await Promise.all(ids.map(async (id) => (await store.forwards!.forwardsOf(id))[0]?.state));
        return states.every((state) => state === 'delivered');
      },
      60_000,
      'every forward settled delivered in the store',
    );
    expect(events.find((e) => e.kind === 'worker_exit')).toMatchObject({ attempts: 4 });
    // The four cut attempts were made again, under the webhook id each forward always has.
    for (const id of ids) {
      const hits = sink.hits.filter((h) => h.taskId === id);
      expect(new Set(hits.map((h) => h.headers['webhook-id'])).size).toBe(1);
    }
    expect(sink.hits.length).toBeGreaterThanOrEqual(ids.length + 4);
    verify(sink.hits);
    for (const id of ids) expect((await store.forwards!.forwardsOf(id))[0]?.state).toBe('delivered');
  });
});

describe('the pace: callbacks first', () => {
  it('LoopPace lets claims go while the loop has room, a trickle while it is busy, and calms down slowly', async () => {
    let utilization = 0;
    const pace = new LoopPace({
      busyAt: 0.7,
      windowMs: 10,
      calmWindows: 5,
      trickleMs: 400,
      trickleSize: 3,
      utilization: () => utilization,
    });
    pace.start();
    cleanups.push(async () => pace.stop());
    // Results keep arriving throughout, as in a burst of callbacks: only the loop's demand changes.
    const arrivals = setInterval(() => pace.arrival(), 2);
    cleanups.push(async () => clearInterval(arrivals));
    let wakes = 0;
    const wake = () => wakes++;
    expect(pace.claim(wake)).toBe(Number.POSITIVE_INFINITY);
    utilization = 0.95;
    await waitFor(() => pace.busy, 10_000, 'the busy loop seen');
    // Busy: the first trickle claim goes (none before it), of at most trickleSize; then none for trickleMs.
    expect(pace.claim(wake)).toBe(3);
    const putOff = performance.now();
    expect(pace.claim(wake)).toBe(0);
    expect(pace.deferred).toBe(1);
    await waitFor(() => wakes === 1, 10_000, 'the trickle wake');
    expect(performance.now() - putOff).toBeGreaterThanOrEqual(300);
    expect(pace.claim(wake)).toBe(3);
    expect(pace.claim(wake)).toBe(0);
    // Room again: busy until calmWindows quiet windows in a row, then the wake, well before the trickle interval.
    utilization = 0.2;
    const quietFrom = performance.now();
    await waitFor(() => wakes === 2, 10_000, 'the wake once the loop has room');
    expect(performance.now() - quietFrom).toBeGreaterThanOrEqual(40);
    expect(pace.busy).toBe(false);
    expect(pace.claim(wake)).toBe(Number.POSITIVE_INFINITY);
    expect(pace.deferred).toBe(2);
  });

  it('LoopPace never holds forwards back for a busy loop without results arriving, and lets go once they stop', async () => {
    let utilization = 0.95;
    // A trickle interval far away, so only the end of the burst can wake the put-off claim.
    const pace = new LoopPace({
      busyAt: 0.7,
      windowMs: 10,
      calmWindows: 1000,
      trickleMs: 60_000,
      utilization: () => utilization,
    });
    pace.start();
    cleanups.push(async () => pace.stop());
    // The forwarder's own catch-up (or the app's work) keeps the loop busy: claims go on at full speed.
    await new Promise((r) => setTimeout(r, 200));
    expect(pace.busy).toBe(false);
    expect(pace.claim(() => {})).toBe(Number.POSITIVE_INFINITY);
    // Results arrive: busy. They stop, the demand stays high: the burst is over after a few quiet windows.
    const arrivals = setInterval(() => pace.arrival(), 2);
    cleanups.push(async () => clearInterval(arrivals));
    await waitFor(() => pace.busy, 10_000, 'busy while results arrive');
    await new Promise((r) => setTimeout(r, 100));
    expect(pace.busy).toBe(true);
    clearInterval(arrivals);
    let woken = false;
    pace.claim(() => {});
    expect(pace.claim(() => (woken = true))).toBe(0);
    await waitFor(() => woken, 10_000, 'the wake once results stop');
    expect(pace.busy).toBe(false);
    utilization = 0.2;
  });

  it("LoopPace takes the forwarder's own time off the loop's demand: forwards keeping up never read as a burst", async () => {
    // The loop wants the CPU for 95 % of every window while results keep arriving; `ownShare` of each window is the
    // forwarder's own (reported through `spent` for the window being judged).
    let ownShare = 0.5;
    let judgedAt = performance.now();
    const pace = new LoopPace({
      busyAt: 0.7,
      windowMs: 10,
      calmWindows: 1,
      trickleMs: 60_000,
      utilization: () => {
        const now = performance.now();
        pace.spent((now - judgedAt) * ownShare);
        judgedAt = now;
        return 0.95;
      },
    });
    pace.start();
    cleanups.push(async () => pace.stop());
    const arrivals = setInterval(() => pace.arrival(), 2);
    cleanups.push(async () => clearInterval(arrivals));
    // Half of it the forwarder's: the callbacks' 45 % leaves room, so claims go on at full speed.
    await new Promise((r) => setTimeout(r, 200));
    expect(pace.busy).toBe(false);
    expect(pace.claim(() => {})).toBe(Number.POSITIVE_INFINITY);
    // The forwarder's share small: the callbacks' 90 % is a burst, and only the trickle may go.
    ownShare = 0.05;
    await waitFor(() => pace.busy, 10_000, "busy once the demand is the callbacks'");
    expect(pace.claim(() => {})).toBe(16);
    expect(pace.claim(() => {})).toBe(0);
    // Back to half: room again (calmWindows 1), and the put-off claim is woken.
    ownShare = 0.5;
    await waitFor(() => !pace.busy && !pace.waiting, 10_000, "room once the demand is the forwarder's");
  });

  it('threadDemand reads an idle loop low and a spinning one high', async () => {
    const demand = threadDemand();
    await new Promise((r) => setTimeout(r, 200));
    expect(demand()).toBeLessThan(0.5);
    const until = performance.now() + 200;
    while (performance.now() < until) {}
    expect(demand()).toBeGreaterThan(0.5);
  });

  it('Forwarder: while this event loop is kept busy, forwards wait in the outbox; all go once it has room', async () => {
    const sink = await app();
    const store = new MemoryTaskStore();
    const forwarder = new Forwarder(store.forwards!, {
      url: sink.url,
      secret: SECRET,
      worker: true,
      concurrency: 4,
      pollIntervalMs: 50,
      // This thread's real demand (threadDemand); a long trickle interval, so no claim goes while it is busy.
      pace: { busyAt: 0.5, windowMs: 20, trickleMs: 60_000 },
    });
    cleanups.push(() => forwarder.close());
    forwarder.start();
    const ids = Array.from({ length: 30 }, (_, i) => `b-${i}`);
    await store.register(ids, Date.now(), Date.now() + 3600_000);
    // A burst: the loop busy 19 ms in every 20 (as a flood of callbacks would keep it), while the results arrive.
    let burst = true;
    const spin = () => {
      if (!burst) return;
      const until = performance.now() + 19;
      while (performance.now() < until) {}
      forwarder.resultStored();
      setTimeout(spin, 1);
    };
    spin();
    await waitFor(() => forwarder.pace.busy, 10_000, 'the pace to see the busy loop');
    for (const id of ids) {
      await store.recordCallback({ taskId: id, outcome: 'solved', code: 'x', format: 'query', receivedAt: Date.now() });
      forwarder.resultStored();
    }
    await new Promise((r) => setTimeout(r, 1000));
    // The first trickle claim's sends run on a nice-19 thread, which a busy machine can starve for over a second:
    // wait for the next claim, the one put off (well inside the 60 s trickle interval).
    await waitFor(() => forwarder.pace.deferred > 0, 30_000, 'a claim put off while the loop is busy');
    const duringBurst = sink.hits.length;
    expect(forwarder.pace.deferred).toBeGreaterThan(0);
    // At most one trickle claim (4 forwards) went during the burst.
    expect(duringBurst).toBeLessThanOrEqual(4);
    burst = false;
    await waitFor(() => ids.every((id) => sink.delivered().has(id)), 60_000, 'every result after the burst');
    verify(sink.hits);
  });
});

/** The nice values of a process's threads (Linux /proc), by thread name. */
function threadNiceness(pid: number): Array<{ name: string; nice: number }> {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { name: readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(), nice: Number(fields[16]) };
  });
}

describe.runIf(process.platform === 'linux')('the CLI', () => {
  it.each([
    ['worker', 1],
    ['loop', 0],
  ] as const)(
    'FORWARD_THREAD=%s: forwards every result; %i thread(s) at nice 19, never the event loop',
    async (thread, expected) => {
      const sink = await app();
      const server: RunningServer = await startServer({
        STORE_URL: `sqlite:${join(dir, `cli-${thread}.db`)}`,
        FORWARD_URL: sink.url,
        FORWARD_SECRET: SECRET,
        FORWARD_THREAD: thread,
      });
      cleanups.push(() => server.kill());
      const ids = Array.from({ length: 30 }, (_, i) => `${thread}-${i}`);
      for (const id of ids) {
        const res = await fetch(`${server.publicUrl}/callback?id=${id}&code=tok-${id}`);
        expect(res.status).toBe(200);
      }
      await waitFor(() => ids.every((id) => sink.delivered().has(id)), 60_000, 'every result');
      verify(sink.hits);
      await waitFor(
        async () => parseMetrics(await scrape(server)).get('captcha_forward_attempts_total{outcome="success"}') === 30,
        30_000,
        'the attempts counted on /metrics',
      );
      const threads = threadNiceness(server.process.pid!);
      expect(threads.filter((t) => t.nice === 19)).toHaveLength(expected);
      expect(threads.find((t) => t.name === 'node' || t.name === 'MainThread')?.nice ?? 0).toBe(0);
      expect(await server.stop()).toBe(0);
    },
  );
});
