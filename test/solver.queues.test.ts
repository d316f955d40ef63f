/**
 * One suite for every RecoveryQueue (memory, SQLite, Redis): schedule, leases, lost leases, parked tasks, bounded
 * claims; and for the shared ones, two connections (as two instances) never holding one entry at once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteTaskStore } from '../packages/koa/src/delivery/stores/SqliteTaskStore.ts';
import { createRecoveryQueue } from '../src/solver/createRecoveryQueue.ts';
import { MemoryRecoveryQueue, type RecoveryQueue } from '../src/solver/RecoveryQueue.ts';
import { RedisRecoveryQueue } from '../src/solver/RedisRecoveryQueue.ts';
import { SqliteRecoveryQueue } from '../src/solver/SqliteRecoveryQueue.ts';
import { waitFor } from './support/ports.ts';
import { type RedisServer, startRedis } from './support/redis.ts';
import { startNode } from './support/server.ts';

let dir: string;
let redis: RedisServer;
let counter = 0;
const opened: RecoveryQueue[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ccm-recovery-queue-'));
  redis = await startRedis();
});

afterAll(async () => {
  for (const q of opened) await q.close().catch(() => {});
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Each kind opens a fresh queue; `twin` opens a second connection to the same queue (a second instance). */
interface Kind {
  name: string;
  open(): Promise<{ queue: RecoveryQueue; twin?: () => Promise<RecoveryQueue> }>;
}

const KINDS: Kind[] = [
  { name: 'memory', open: async () => ({ queue: new MemoryRecoveryQueue() }) },
  {
    name: 'sqlite',
    open: async () => {
      const file = join(dir, `q${++counter}.db`);
      const make = async () => {
        const q = new SqliteRecoveryQueue(file);
        opened.push(q);
        return q;
      };
      return { queue: await make(), twin: make };
    },
  },
  {
    name: 'redis',
    open: async () => {
      const prefix = `t${++counter}:`;
      const make = async () => {
        const q = new RedisRecoveryQueue(new Redis(redis.url), { prefix, ownsConnection: true });
        opened.push(q);
        return q;
      };
      return { queue: await make(), twin: make };
    },
  },
];

const T0 = 1_800_000_000_000;
const entry = (id: string, dueAt: number, deadlineAt = T0 + 600_000) => ({
  id,
  solver: 'cs',
  solverTaskId: `sid-${id}`,
  deadlineAt,
  dueAt,
});

describe.each(KINDS)('$name recovery queue', (kind) => {
  it('claims due entries in due order, at most limit, each leased: not claimed again until the lease ends', async () => {
    const { queue } = await kind.open();
    await queue.add([entry('c', T0 + 300), entry('a', T0 + 100), entry('b', T0 + 200), entry('later', T0 + 10_000)]);
    expect(await queue.size()).toBe(4);
    expect(await queue.claim(T0, 10, 'x', 5000)).toEqual([]);
    const first = await queue.claim(T0 + 1000, 2, 'x', 5000);
    expect(first.map((e) => e.id)).toEqual(['a', 'b']);
    expect(first[0]).toEqual({ ...entry('a', T0 + 100), polls: 0 });
    // a and b are leased: the next claim gets c only.
    expect((await queue.claim(T0 + 1000, 10, 'y', 5000)).map((e) => e.id)).toEqual(['c']);
    expect(await queue.claim(T0 + 2000, 10, 'y', 5000)).toEqual([]);
    // The lease runs out (its holder died): the entry is claimable again, by anyone.
    expect((await queue.claim(T0 + 6001, 10, 'y', 5000)).map((e) => e.id).sort()).toEqual(['a', 'b', 'c']);
  });

  it('reschedule by the holder sets the next ask and the asks; a lost lease changes nothing', async () => {
    const { queue } = await kind.open();
    await queue.add([entry('a', T0)]);
    await queue.claim(T0, 1, 'x', 1000);
    // x's lease ran out and y claimed the entry: x's reschedule is refused.
    expect((await queue.claim(T0 + 1001, 1, 'y', 1000)).map((e) => e.id)).toEqual(['a']);
    expect(await queue.reschedule('a', 'x', T0 + 50, 7)).toBe(false);
    expect(await queue.reschedule('a', 'y', T0 + 5000, 1)).toBe(true);
    expect(await queue.claim(T0 + 4999, 1, 'z', 1000)).toEqual([]);
    expect(await queue.claim(T0 + 5000, 1, 'z', 1000)).toEqual([{ ...entry('a', T0 + 5000), polls: 1 }]);
    await queue.remove('a');
    expect(await queue.size()).toBe(0);
    expect(await queue.claim(T0 + 99_999, 1, 'z', 1000)).toEqual([]);
  });

  it('adding a queued id again leaves its schedule, asks and lease as they are', async () => {
    const { queue } = await kind.open();
    await queue.add([entry('a', T0)]);
    await queue.claim(T0, 1, 'x', 1000);
    expect(await queue.reschedule('a', 'x', T0 + 3000, 2)).toBe(true);
    await queue.add([entry('a', T0)]);
    expect(await queue.claim(T0 + 100, 1, 'x', 1000)).toEqual([]);
    expect(await queue.claim(T0 + 3000, 1, 'x', 1000)).toEqual([{ ...entry('a', T0 + 3000), polls: 2 }]);
  });

  it('a parked task is never claimed; attach queues it with its schedule; expired parked tasks go', async () => {
    const { queue } = await kind.open();
    await queue.park([
      { id: 'p', solver: 'twoc', deadlineAt: T0 + 60_000, dueAt: T0 + 100 },
      // Past on the wall clock too: Redis lets a parked entry expire at its deadline by its own clock.
      { id: 'old', solver: 'twoc', deadlineAt: Date.now() - 1000, dueAt: T0 + 100 },
    ]);
    expect(await queue.size()).toBe(0);
    expect(await queue.claim(T0 + 1000, 10, 'x', 1000)).toEqual([]);
    expect(await queue.attach('nobody', 'sid')).toBe(false);
    expect(await queue.attach('p', 'sid-p')).toBe(true);
    expect(await queue.attach('p', 'sid-p')).toBe(false);
    expect(await queue.claim(T0 + 1000, 10, 'x', 1000)).toEqual([
      { id: 'p', solver: 'twoc', solverTaskId: 'sid-p', deadlineAt: T0 + 60_000, dueAt: T0 + 100, polls: 0 },
    ]);
    // 'old' passed its deadline unattached: the claim above dropped it, so attaching it now does nothing.
    expect(await queue.attach('old', 'sid-old')).toBe(false);
    // Parking a queued id changes nothing; adding a parked id replaces the parked entry.
    await queue.park([{ id: 'p', solver: 'other', deadlineAt: T0 + 60_000, dueAt: T0 }]);
    expect(await queue.attach('p', 'x')).toBe(false);
    await queue.park([{ id: 'q', solver: 'twoc', deadlineAt: T0 + 60_000, dueAt: T0 }]);
    await queue.add([entry('q', T0 + 200)]);
    expect(await queue.attach('q', 'x')).toBe(false);
    expect((await queue.claim(T0 + 1000, 10, 'y', 1000)).map((e) => [e.id, e.solverTaskId])).toEqual([['q', 'sid-q']]);
    await queue.park([{ id: 'r', solver: 'twoc', deadlineAt: T0 + 60_000, dueAt: T0 }]);
    await queue.remove('r');
    expect(await queue.attach('r', 'x')).toBe(false);
  });

  // An in-process queue has no second connection: this case exists only for the shared queues.
  if (kind.name !== 'memory') {
    it('two connections claiming at once never hold one entry together, and every entry is claimed', async () => {
      const { queue, twin } = await kind.open();
      const other = await twin!();
      await queue.add(Array.from({ length: 200 }, (_, i) => entry(`e${i}`, T0 + i)));
      const seen = new Map<string, string>();
      const claimer = async (q: RecoveryQueue, owner: string) => {
        for (let round = 0; round < 40; round++) {
          for (const e of await q.claim(T0 + 10_000, 7, owner, 60_000)) {
            expect(seen.has(e.id), `${e.id} claimed by ${seen.get(e.id)} and ${owner}`).toBe(false);
            seen.set(e.id, owner);
          }
          await new Promise((r) => setImmediate(r));
        }
      };
      await Promise.all([claimer(queue, 'a'), claimer(other, 'b')]);
      expect(seen.size).toBe(200);
      expect(new Set(seen.values())).toEqual(new Set(['a', 'b']));
    });
  }
});

describe('recovery queue beside the SQLite store', () => {
  it('shares the store file: both connections write, the store keeps working, the queue survives a reopen', async () => {
    const file = join(dir, 'store.db');
    const store = new SqliteTaskStore(file);
    const queue = await createRecoveryQueue(`sqlite:${file}`);
    expect(queue).toBeInstanceOf(SqliteRecoveryQueue);
    await store.register(['t1', 't2'], T0, T0 + 60_000);
    await queue.add([entry('t1', T0)]);
    await store.register(['t3'], T0, T0 + 60_000);
    expect((await store.counts()).pending).toBe(3);
    await queue.close();
    const again = await createRecoveryQueue(`sqlite:${file}`);
    expect((await again.claim(T0, 5, 'x', 1000)).map((e) => e.id)).toEqual(['t1']);
    await again.close();
    await store.close();
  });

  it('two processes claiming from one file at once never hold one entry together (BEGIN IMMEDIATE)', async () => {
    const file = join(dir, 'processes.db');
    const seed = new SqliteRecoveryQueue(file);
    await seed.add(Array.from({ length: 300 }, (_, i) => entry(`e${i}`, T0 + i)));
    await seed.close();
    const module = fileURLToPath(new URL('../src/solver/SqliteRecoveryQueue.ts', import.meta.url));
    // Each process opens the file, says "ready", and claims small batches (pausing between them, so the two
    // interleave) once told to go, until nothing is due for it three times running.
    const script = `
      const { SqliteRecoveryQueue } = await import(${JSON.stringify(module)});
      const q = new SqliteRecoveryQueue(${JSON.stringify(file)}, { busyTimeoutMs: 2000 });
      process.stdout.write('ready\\n');
      await new Promise((r) => process.stdin.once('data', r));
      const ids = [];
      for (let empty = 0; empty < 3; ) {
        const got = await q.claim(${T0 + 10_000}, 3, process.argv[1], 600000);
        if (got.length === 0) empty++;
        ids.push(...got.map((e) => e.id));
        await new Promise((r) => setTimeout(r, 2));
      }
      await q.close();
      process.stdout.write(JSON.stringify(ids));
      process.exit(0);`;
    const start = (owner: string) => {
      const proc = startNode(['--input-type=module', '-e', script, owner], { stdin: 'pipe' });
      const done = proc.done.then(({ code, stdout, stderr }) => {
        if (code !== 0) throw new Error(stderr);
        return JSON.parse(stdout.slice(stdout.indexOf('\n') + 1)) as string[];
      });
      return { child: proc.child, done, ready: () => proc.stdout().startsWith('ready\n') };
    };
    const procs = [start('a'), start('b')];
    await waitFor(() => procs.every((p) => p.ready()), 20_000, 'both processes ready');
    for (const p of procs) p.child.stdin!.write('go\n');
    const [a, b] = await Promise.all(procs.map((p) => p.done));
    // Both took part: otherwise this run tested nothing.
    expect(a!.length).toBeGreaterThan(0);
    expect(b!.length).toBeGreaterThan(0);
    const all = [...a!, ...b!];
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBe(300);
  }, 30_000);

  it('STORE_URL chooses the queue: memory for memory: and sqlite::memory:, Redis for redis://', async () => {
    expect(await createRecoveryQueue('memory:')).toBeInstanceOf(MemoryRecoveryQueue);
    expect(await createRecoveryQueue('sqlite::memory:')).toBeInstanceOf(MemoryRecoveryQueue);
    const r = await createRecoveryQueue(`${redis.url}?prefix=factory:`);
    opened.push(r);
    expect(r).toBeInstanceOf(RedisRecoveryQueue);
    await r.add([entry('f', T0)]);
    const raw = new Redis(redis.url);
    expect(await raw.zcard('factory:recovery:due')).toBe(1);
    raw.disconnect();
  });
});
