import { monitorInternals } from '@captcha-callback-monitor/koa/internal';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { RedisTaskStore } from '../packages/koa/src/delivery/stores/RedisTaskStore.ts';
import type { CallbackResult, TaskRecord, TaskStore } from '../packages/koa/src/delivery/TaskStore.ts';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import { CallbackMonitor } from '../packages/koa/src/plugin/CallbackMonitor.ts';
import { createPrometheusReader } from '../src/server/telemetry.ts';
import { createSolverClient } from '../src/solver/clients.ts';
import { DOCUMENTED_LIMITS, type SolverConfig } from '../src/solver/config.ts';
import { RecoveryPoller } from '../src/solver/RecoveryPoller.ts';
import { MemoryRecoveryQueue, type RecoveryQueue } from '../src/solver/RecoveryQueue.ts';
import { RedisRecoveryQueue } from '../src/solver/RedisRecoveryQueue.ts';
import type { SolverClient } from '../src/solver/types.ts';
import { formPost, jsonPost, listen } from './support/http.ts';
import { waitFor } from './support/ports.ts';
import { type RedisServer, startRedis } from './support/redis.ts';
import {
  type SimulatorFlavor,
  type SolverSimulator,
  startSolverSimulator,
  WITHIN_LIMITS,
} from './support/solverSimulator.ts';

/*
 * Recovery end to end: a real CallbackMonitor behind a real HTTP listener (real callbacks), the RecoveryPoller with
 * real clients, and the loopback solver simulator enforcing the solvers' documented limits at their documented
 * values (nothing is lowered: the tasks' deadlines are long enough instead). Only RECOVERY_AFTER is short (4 s),
 * which configuration allows (≥ 1 s).
 */

const FLAVORS: readonly SimulatorFlavor[] = ['2captcha', 'anticaptcha', 'capmonster', 'capsolver'];
const RECOVERY_AFTER_MS = 4000;
const TIMEOUT_SECONDS = 90;

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

function solverConfig(flavor: SimulatorFlavor, url: string): SolverConfig {
  const protocol = flavor === '2captcha' ? 'res.php' : 'createTask';
  const limits = DOCUMENTED_LIMITS[protocol];
  return {
    name: flavor,
    protocol,
    url,
    key: `key-${flavor}-0123456789abcdef`,
    lowBalance: undefined,
    pacing: {
      pollIntervalMs: limits.defaultPollIntervalSeconds * 1000,
      maxPollsPerTask: limits.maxPollsPerTask,
      balanceIntervalMs: 60_000,
    },
  };
}

async function simulators(): Promise<Map<SimulatorFlavor, SolverSimulator>> {
  const sims = new Map<SimulatorFlavor, SolverSimulator>();
  for (const flavor of FLAVORS) {
    const sim = await startSolverSimulator({ flavor, key: `key-${flavor}-0123456789abcdef` });
    cleanups.push(() => sim.close());
    sims.set(flavor, sim);
  }
  return sims;
}

async function instance(
  store: TaskStore,
  sims: Map<SimulatorFlavor, SolverSimulator>,
  queue: RecoveryQueue,
  owner: string,
) {
  const reader = createPrometheusReader();
  const provider = new MeterProvider({ readers: [reader.exporter] });
  const hooked: CallbackResult[] = [];
  const monitor = new CallbackMonitor({
    store,
    meter: provider.getMeter('test'),
    deliveryTimeoutSeconds: TIMEOUT_SECONDS,
    onResult: (r) => void hooked.push(r),
  });
  const listening = await listen(monitor.requestListener());
  const configs = new Map(FLAVORS.map((f) => [f, solverConfig(f, sims.get(f)!.url)]));
  const clients = new Map<string, SolverClient>([...configs].map(([f, c]) => [f, createSolverClient(c)]));
  const poller = new RecoveryPoller({
    tracker: monitorInternals(monitor).tracker,
    queue,
    clients,
    pacing: (s) => configs.get(s as SimulatorFlavor)!.pacing,
    recoveryAfterMs: RECOVERY_AFTER_MS,
    metrics: monitorInternals(monitor).metrics,
    onResult: (r) => void hooked.push(r),
    owner,
    tickMs: 100,
  });
  monitor.start();
  poller.start();
  cleanups.push(async () => {
    await poller.stop();
    await monitor.close();
    await listening.close();
    await provider.shutdown();
  });
  const { url } = listening;
  const metric = async (name: string) => {
    const line = (await reader.scrape()).split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  };
  return { monitor, poller, url, metric, hooked };
}

/**
 * No simulator saw a request over a documented limit; each slow task (not ready at its first ask) was asked about at
 * least twice, every other task `asksOf(task)` times.
 */
function expectPoliteAsks<T extends { flavor: SimulatorFlavor; solverTaskId: string; slow: boolean }>(
  sims: Map<SimulatorFlavor, SolverSimulator>,
  tasks: readonly T[],
  asksOf: (task: T) => number,
): void {
  for (const [flavor, sim] of sims) expect({ flavor, ...sim.overLimit }).toEqual({ flavor, ...WITHIN_LIMITS });
  for (const t of tasks) {
    const asks = sims.get(t.flavor)!.polls(t.solverTaskId).length;
    if (t.slow) expect(asks).toBeGreaterThanOrEqual(2);
    else expect(asks).toBe(asksOf(t));
  }
}

/** What the solver would POST: 2Captcha a form `id`, `code`; the createTask solvers their getTaskResult JSON. */
async function sendCallback(receiver: string, flavor: SimulatorFlavor, appId: string, solverId: string, token: string) {
  const res =
    flavor === '2captcha'
      ? await fetch(
          `${receiver}/callback/${appId}`,
          formPost(new URLSearchParams({ id: solverId, code: token }).toString()),
        )
      : await fetch(
          `${receiver}/callback/${appId}`,
          jsonPost({
            errorId: 0,
            status: 'ready',
            solution: { gRecaptchaResponse: token },
            ...(flavor === 'capsolver' ? { taskId: solverId } : {}),
          }),
        );
  expect(res.status).toBe(200);
}

describe('recovery polling', () => {
  it('200 tasks over both protocols, 20 % of callbacks never sent: every one recovered before its deadline, within every documented limit', async () => {
    const sims = await simulators();
    const a = await instance(
      new (await import('../packages/koa/src/delivery/stores/MemoryTaskStore.ts')).MemoryTaskStore(),
      sims,
      new MemoryRecoveryQueue(),
      'a',
    );
    const tasks = Array.from({ length: 200 }, (_, i) => {
      const flavor = FLAVORS[i % FLAVORS.length]!;
      const solverTaskId = flavor === 'capsolver' ? `cs-${i}-0000-4000-8000-000000000000` : String(7_000_000 + i);
      // Every fifth task's callback is lost. A third of those are still being solved at the first ask, so they need
      // a second one, after the solver's own interval.
      const lost = i % 5 === 0;
      const slow = lost && i % 3 === 0;
      return { id: `order-${i}`, flavor, solverTaskId, lost, slow, token: `03AGdBq-${i}` };
    });
    const start = Date.now();
    for (const t of tasks) {
      sims
        .get(t.flavor)!
        .addTask(t.solverTaskId, { answer: t.token, readyAt: t.slow ? start + RECOVERY_AFTER_MS + 3000 : start });
    }
    await a.monitor.trackSubmitted(
      tasks.map((t) => ({ id: t.id, solverTaskId: t.solverTaskId, timeoutSeconds: TIMEOUT_SECONDS })),
    );
    await a.poller.watch(tasks.map((t) => ({ id: t.id, solver: t.flavor, solverTaskId: t.solverTaskId })));
    for (const t of tasks.filter((x) => !x.lost)) await sendCallback(a.url, t.flavor, t.id, t.solverTaskId, t.token);
    // The real callbacks all landed before the first recovery ask was due.
    expect(Date.now() - start).toBeLessThan(RECOVERY_AFTER_MS);

    const lost = tasks.filter((t) => t.lost);
    expect(lost).toHaveLength(40);
    await waitFor(async () => a.poller.recovered === 40, 60_000, '40 recovered tasks');
    for (const t of lost) {
      const record = (await a.monitor.getTask(t.id)) as TaskRecord;
      expect(record).toMatchObject({
        id: t.id,
        state: 'delivered',
        code: t.token,
        solverTaskId: t.solverTaskId,
        recovered: true,
      });
      expect(record.receivedAt!).toBeLessThan(record.deadlineAt!);
    }
    // Tasks whose callback came were never asked about; slow ones were asked twice, the rest once.
    // (Slow ones were not ready 3 s after their first ask: at least two asks, each after the solver's interval.)
    expectPoliteAsks(sims, tasks, (t) => (t.lost ? 1 : 0));
    expect(await a.metric(PROM.tasksRecoveredTotal)).toBe(40);
    expect(await a.metric(PROM.tasksDeliveredTotal)).toBe(200);
    expect(a.hooked.filter((r) => r.recovered === true)).toHaveLength(40);
    for (const t of tasks.filter((x) => !x.lost)) {
      expect(await a.monitor.getTask(t.id), t.id).toMatchObject({ state: 'delivered', recovered: false });
    }

    // The real callback, late: a duplicate, the recovered result kept.
    const late = lost[0]!;
    await sendCallback(a.url, late.flavor, late.id, late.solverTaskId, 'ANOTHER-TOKEN');
    expect(await a.metric(PROM.duplicatesTotal)).toBe(1);
    expect(await a.monitor.getTask(late.id)).toMatchObject({
      state: 'delivered',
      code: late.token,
      callbacks: 2,
      recovered: true,
    });
  }, 90_000);
});

describe('recovery with two instances on one Redis', () => {
  let redis: RedisServer;

  it('each task is asked about by one instance at a time, and recovered once', async () => {
    redis = await startRedis();
    cleanups.push(() => redis.stop());
    const sims = await simulators();
    // Each answer takes 300 ms, so two instances asking about one task at once would overlap in the simulator.
    for (const sim of sims.values()) sim.answerDelayMs = 300;
    const queue = () => {
      const client = new Redis(redis.url, { lazyConnect: false, maxRetriesPerRequest: 1 });
      return new RedisRecoveryQueue(client, { prefix: 'test:', ownsConnection: true });
    };
    const storeA = await RedisTaskStore.open(redis.url);
    const storeB = await RedisTaskStore.open(redis.url);
    const qa = queue();
    const qb = queue();
    cleanups.push(
      () => storeA.close(),
      () => storeB.close(),
      () => qa.close(),
      () => qb.close(),
    );
    const a = await instance(storeA, sims, qa, 'instance-a');
    const b = await instance(storeB, sims, qb, 'instance-b');
    const start = Date.now();
    const tasks = Array.from({ length: 40 }, (_, i) => {
      const flavor = FLAVORS[i % FLAVORS.length]!;
      return { id: `r-${i}`, flavor, solverTaskId: `${9_000_000 + i}`, token: `tok-${i}`, slow: i % 2 === 0 };
    });
    for (const t of tasks)
      sims
        .get(t.flavor)!
        .addTask(t.solverTaskId, { answer: t.token, readyAt: t.slow ? start + RECOVERY_AFTER_MS + 3000 : start });
    // Registered and watched through both instances (as two app servers behind a balancer would).
    await a.monitor.trackSubmitted(
      tasks.slice(0, 20).map((t) => ({ id: t.id, solverTaskId: t.solverTaskId, timeoutSeconds: TIMEOUT_SECONDS })),
    );
    await b.monitor.trackSubmitted(
      tasks.slice(20).map((t) => ({ id: t.id, solverTaskId: t.solverTaskId, timeoutSeconds: TIMEOUT_SECONDS })),
    );
    await a.poller.watch(tasks.map((t) => ({ id: t.id, solver: t.flavor, solverTaskId: t.solverTaskId })));
    await b.poller.watch(tasks.map((t) => ({ id: t.id, solver: t.flavor, solverTaskId: t.solverTaskId })));
    await waitFor(() => a.poller.recovered + b.poller.recovered === 40, 60_000, '40 recovered over both instances');
    // Give a second claim of an already recovered task the chance to happen before counting.
    await new Promise((r) => setTimeout(r, 500));
    expect(a.poller.recovered + b.poller.recovered).toBe(40);
    expect(a.poller.recovered).toBeGreaterThan(0);
    expect(b.poller.recovered).toBeGreaterThan(0);
    expectPoliteAsks(sims, tasks, () => 1);
    expect((await a.metric(PROM.tasksRecoveredTotal)) + (await b.metric(PROM.tasksRecoveredTotal))).toBe(40);
    expect(await qa.size()).toBe(0);
  }, 90_000);
});
