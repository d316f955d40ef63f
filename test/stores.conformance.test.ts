import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DeliveryTracker } from '../packages/koa/src/delivery/DeliveryTracker.ts';
import { MemoryTaskStore } from '../packages/koa/src/delivery/stores/MemoryTaskStore.ts';
import { RedisTaskStore } from '../packages/koa/src/delivery/stores/RedisTaskStore.ts';
import { SqliteTaskStore } from '../packages/koa/src/delivery/stores/SqliteTaskStore.ts';
import {
  type CallbackResult,
  type CallbackTransition,
  StoreUnavailableError,
  type TaskRecord,
  type TaskStore,
} from '../packages/koa/src/delivery/TaskStore.ts';
import { parseCallback } from '../packages/koa/src/plugin/parseCallback.ts';
import { createStore } from '../src/server/createStore.ts';
import { type RedisServer, startRedis } from './support/redis.ts';

/** Unix ms, far from 0 so that a store mixing up "null" and "0" shows. */
const BASE_MS = 1_700_000_000_000;
const MIN = 60_000;

type Fields = Partial<CallbackResult>;

/** A solved query callback that names its task by `ref`, with `fields` changed. */
function solved(
  ref: Pick<CallbackResult, 'taskId'> | Pick<CallbackResult, 'solverTaskId'>,
  receivedAt: number,
  code: string,
  fields: Fields,
): CallbackResult {
  return { ...ref, outcome: 'solved', code, format: 'query', receivedAt, ...fields };
}

/** A callback that names its task by the app's id. */
const callback = (taskId: string, receivedAt: number, code = `code-${taskId}`, fields: Fields = {}) =>
  solved({ taskId }, receivedAt, code, fields);

/** A callback that names its task by the solver's id only (a query or body id, no path id). */
const bySolver = (solverTaskId: string, receivedAt: number, code = `code-${solverTaskId}`, fields: Fields = {}) =>
  solved({ solverTaskId }, receivedAt, code, fields);

/** A transition `recordCallback` answers with; delivered and late ones carry the submission time (BASE_MS unless given). */
function transition(kind: 'delivered' | 'late', id: string, submittedAt?: number): CallbackTransition;
function transition(kind: 'duplicate' | 'unregistered', id: string): CallbackTransition;
function transition(kind: CallbackTransition['kind'], id: string, submittedAt = BASE_MS): CallbackTransition {
  return kind === 'delivered' || kind === 'late' ? { kind, id, submittedAt } : { kind, id };
}

/**
 * A whole record as `get` returns it, for toEqual: a registered task submitted at BASE_MS, pending, without solver id,
 * result or callbacks, with `fields` (which name its deadline) changed.
 */
function record(id: string, fields: Partial<TaskRecord> & Pick<TaskRecord, 'deadlineAt'>): TaskRecord {
  return {
    id,
    solverTaskId: null,
    state: 'pending',
    registered: true,
    outcome: null,
    code: null,
    format: null,
    solution: null,
    metadata: null,
    recovered: false,
    submittedAt: BASE_MS,
    receivedAt: null,
    callbacks: 0,
    ...fields,
  };
}

/** Registers each task on its own, in the object's order, submitted at BASE_MS with its deadline `minutes` later. */
async function registerOneByOne(s: TaskStore, minutes: Readonly<Record<string, number>>): Promise<void> {
  for (const [id, m] of Object.entries(minutes)) await s.register([id], BASE_MS, BASE_MS + m * MIN);
}

interface StoreFactory {
  /** A new, empty store. */
  fresh(): Promise<TaskStore>;
  /** Two instances on one new, empty backing (one file, one Redis key space), as two receivers would share it. */
  pair(): Promise<[TaskStore, TaskStore]>;
  /** False for a store that does not have the forwarding outbox yet: its outbox cases are skipped, loudly. */
  readonly outbox?: boolean;
}

/**
 * The one suite every TaskStore must pass. `setup` runs in beforeAll (it may start servers); the stores it opens
 * are closed after each test.
 */
function storeConformance(name: string, setup: () => Promise<StoreFactory>, teardown?: () => Promise<void>): void {
  describe(`TaskStore conformance: ${name}`, () => {
    let factory: StoreFactory;
    const opened: TaskStore[] = [];
    const fresh = async () => {
      const s = await factory.fresh();
      opened.push(s);
      return s;
    };
    const pair = async () => {
      const p = await factory.pair();
      opened.push(...p);
      return p;
    };

    beforeAll(async () => {
      factory = await setup();
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });
    if (teardown) afterAll(teardown);

    it('registers tasks once and returns only the ids it added', async () => {
      const s = await fresh();
      expect(await s.register(['a', 'b', 'a'], BASE_MS, BASE_MS + 5 * MIN)).toEqual({ added: ['a', 'b'], merged: [] });
      expect(await s.register(['b', 'c'], BASE_MS + 1, BASE_MS + 9 * MIN)).toEqual({ added: ['c'], merged: [] });
      expect(await s.register([], BASE_MS, BASE_MS)).toEqual({ added: [], merged: [] });
      // Re-registering leaves the first registration untouched.
      expect(await s.get('b')).toEqual(record('b', { deadlineAt: BASE_MS + 5 * MIN }));
      expect(await s.counts()).toEqual({ pending: 3, delivered: 0, missed: 0, late: 0 });
    });

    it('returns undefined for an unknown id', async () => {
      const s = await fresh();
      expect(await s.get('nobody')).toBeUndefined();
    });

    it('moves pending → delivered on the first callback and keeps the result', async () => {
      const s = await fresh();
      await s.register(['t1', 't2'], BASE_MS, BASE_MS + 5 * MIN);
      expect(await s.recordCallback(callback('t1', BASE_MS + 1500))).toEqual(transition('delivered', 't1'));
      expect(await s.get('t1')).toEqual(
        record('t1', {
          state: 'delivered',
          outcome: 'solved',
          code: 'code-t1',
          format: 'query',
          deadlineAt: BASE_MS + 5 * MIN,
          receivedAt: BASE_MS + 1500,
          callbacks: 1,
        }),
      );
      expect(await s.counts()).toEqual({ pending: 1, delivered: 1, missed: 0, late: 0 });
    });

    it('counts a repeated callback as a duplicate and keeps the first result', async () => {
      const s = await fresh();
      await s.register(['t1'], BASE_MS, BASE_MS + 5 * MIN);
      await s.recordCallback(callback('t1', BASE_MS + 1000, 'first'));
      const second = callback('t1', BASE_MS + 2000, 'ERROR_X', { outcome: 'failed', format: 'json' });
      expect(await s.recordCallback(second)).toEqual(transition('duplicate', 't1'));
      expect(await s.recordCallback(second)).toEqual(transition('duplicate', 't1'));
      const t1 = await s.get('t1');
      expect(t1).toMatchObject({ state: 'delivered', outcome: 'solved', code: 'first', format: 'query', callbacks: 3 });
      expect(t1?.receivedAt).toBe(BASE_MS + 1000);
      expect(await s.counts()).toEqual({ pending: 0, delivered: 1, missed: 0, late: 0 });
    });

    it('stores a callback nobody registered without counting it', async () => {
      const s = await fresh();
      const r = callback('ghost', BASE_MS, 'ERROR_CAPTCHA_UNSOLVABLE', { outcome: 'failed', format: 'form' });
      expect(await s.recordCallback(r)).toEqual(transition('unregistered', 'ghost'));
      expect(await s.get('ghost')).toEqual(
        record('ghost', {
          state: 'delivered',
          registered: false,
          outcome: 'failed',
          code: 'ERROR_CAPTCHA_UNSOLVABLE',
          format: 'form',
          submittedAt: null,
          deadlineAt: null,
          receivedAt: BASE_MS,
          callbacks: 1,
        }),
      );
      expect(await s.recordCallback({ ...r, receivedAt: BASE_MS + 5 })).toEqual(transition('duplicate', 'ghost'));
      expect((await s.get('ghost'))?.callbacks).toBe(2);
      expect(await s.counts()).toEqual({ pending: 0, delivered: 0, missed: 0, late: 0 });
      // A later registration of the same id is ignored: the result is already there.
      expect(await s.register(['ghost'], BASE_MS + 10, BASE_MS + 5 * MIN)).toEqual({ added: [], merged: [] });
      expect(await s.list('delivered', 10)).toMatchObject([{ id: 'ghost', registered: false }]);
      expect(await s.counts()).toEqual({ pending: 0, delivered: 0, missed: 0, late: 0 });
    });

    it('expires due tasks oldest deadline first, at most `limit` per call', async () => {
      const s = await fresh();
      // Registered out of deadline order, and ids sorting against deadline order, so neither insertion order nor
      // key order can pass for deadline order.
      await registerOneByOne(s, { x3: 3, z1: 1, w4: 4, y2: 2, later: 60 });
      expect(await s.expireDue(BASE_MS, 10)).toEqual([]);
      expect(await s.expireDue(BASE_MS + 4 * MIN, 0)).toEqual([]);
      expect(await s.expireDue(BASE_MS + 4 * MIN, 3)).toEqual(['z1', 'y2', 'x3']);
      expect(await s.counts()).toEqual({ pending: 2, delivered: 0, missed: 3, late: 0 });
      // The deadline is inclusive.
      expect(await s.expireDue(BASE_MS + 4 * MIN, 3)).toEqual(['w4']);
      expect(await s.expireDue(BASE_MS + 4 * MIN, 3)).toEqual([]);
      expect(await s.get('y2')).toMatchObject({ state: 'missed', receivedAt: null, callbacks: 0 });
      expect(await s.get('later')).toMatchObject({ state: 'pending' });
      expect(await s.counts()).toEqual({ pending: 1, delivered: 0, missed: 4, late: 0 });
    });

    it('never expires a task that already got its callback', async () => {
      const s = await fresh();
      await s.register(['a', 'b'], BASE_MS, BASE_MS + MIN);
      await s.recordCallback(callback('a', BASE_MS + 10));
      expect(await s.expireDue(BASE_MS + 2 * MIN, 10)).toEqual(['b']);
      expect(await s.get('a')).toMatchObject({ state: 'delivered' });
      expect(await s.counts()).toEqual({ pending: 0, delivered: 1, missed: 1, late: 0 });
    });

    it('moves missed → late on a callback after the deadline, then counts duplicates', async () => {
      const s = await fresh();
      await s.register(['slow'], BASE_MS, BASE_MS + MIN);
      await s.expireDue(BASE_MS + MIN, 10);
      expect(await s.recordCallback(callback('slow', BASE_MS + 2 * MIN, 'late-code'))).toEqual(
        transition('late', 'slow'),
      );
      expect(await s.get('slow')).toMatchObject({
        state: 'late',
        registered: true,
        code: 'late-code',
        receivedAt: BASE_MS + 2 * MIN,
        callbacks: 1,
      });
      expect(await s.counts()).toEqual({ pending: 0, delivered: 0, missed: 0, late: 1 });
      expect(await s.recordCallback(callback('slow', BASE_MS + 3 * MIN, 'again'))).toEqual(
        transition('duplicate', 'slow'),
      );
      expect(await s.get('slow')).toMatchObject({ state: 'late', code: 'late-code', callbacks: 2 });
      expect(await s.counts()).toEqual({ pending: 0, delivered: 0, missed: 0, late: 1 });
    });

    it('lists one state, at most `limit`: pending by deadline, settled by settling time, oldest first', async () => {
      const s = await fresh();
      // Ids sort against deadline order, so key order cannot pass for it.
      await registerOneByOne(s, { pa: 3, pc: 1, pb: 2, ma: -2, mb: -3, mc: -1 });
      await s.expireDue(BASE_MS, 10);
      await registerOneByOne(s, { dv: 10, dw: 5 });
      await s.recordCallback(callback('dv', BASE_MS + 2 * MIN)); // delivered: ordered by receipt, not by deadline
      await s.recordCallback(callback('dw', BASE_MS + 3 * MIN));
      await s.recordCallback(callback('ghost', BASE_MS + 1 * MIN)); // unregistered: ordered by receipt time too
      await s.recordCallback(callback('mb', BASE_MS + 2)); // late

      const ids = async (state: 'pending' | 'delivered' | 'missed' | 'late', limit: number) =>
        (await s.list(state, limit)).map((t) => t.id);
      expect(await ids('pending', 10)).toEqual(['pc', 'pb', 'pa']);
      expect(await ids('pending', 2)).toEqual(['pc', 'pb']);
      expect(await ids('pending', 0)).toEqual([]);
      expect(await ids('missed', 10)).toEqual(['ma', 'mc']);
      expect(await ids('delivered', 10)).toEqual(['ghost', 'dv', 'dw']);
      expect(await ids('delivered', 2)).toEqual(['ghost', 'dv']);
      expect(await ids('late', 10)).toEqual(['mb']);
      expect((await s.list('late', 10))[0]).toMatchObject({
        state: 'late',
        code: 'code-mb',
        deadlineAt: BASE_MS - 3 * MIN,
      });
      expect(await s.counts()).toEqual({ pending: 3, delivered: 2, missed: 2, late: 1 });
    });

    it('keeps counts in step with every kind of transition', async () => {
      const s = await fresh();
      const expectCounts = async (pending: number, delivered: number, missed: number, late: number) =>
        expect(await s.counts()).toEqual({ pending, delivered, missed, late });
      await expectCounts(0, 0, 0, 0);
      await s.register(['a', 'b', 'c', 'd'], BASE_MS, BASE_MS + MIN);
      await expectCounts(4, 0, 0, 0);
      await s.register(['a', 'b'], BASE_MS, BASE_MS + MIN); // idempotent
      await expectCounts(4, 0, 0, 0);
      await s.recordCallback(callback('a', BASE_MS + 1)); // delivered
      await expectCounts(3, 1, 0, 0);
      await s.recordCallback(callback('a', BASE_MS + 2)); // duplicate
      await expectCounts(3, 1, 0, 0);
      await s.recordCallback(callback('zz', BASE_MS + 3)); // unregistered
      await expectCounts(3, 1, 0, 0);
      await s.expireDue(BASE_MS + MIN, 2); // missed ×2
      await expectCounts(1, 1, 2, 0);
      await s.recordCallback(callback('b', BASE_MS + 2 * MIN)); // late
      await expectCounts(1, 1, 1, 1);
      await s.recordCallback(callback('b', BASE_MS + 3 * MIN)); // duplicate of a late one
      await expectCounts(1, 1, 1, 1);
      await s.expireDue(BASE_MS + MIN, 10);
      await expectCounts(0, 1, 2, 1);
    });

    it('lets exactly one of 20 concurrent callbacks for one task deliver it', async () => {
      const s = await fresh();
      await s.register(['hot'], BASE_MS, BASE_MS + MIN);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => s.recordCallback(callback('hot', BASE_MS + i))),
      );
      expect(results.filter((r) => r.kind === 'delivered')).toHaveLength(1);
      expect(results.filter((r) => r.kind === 'duplicate')).toHaveLength(19);
      expect((await s.get('hot'))?.callbacks).toBe(20);
      expect(await s.counts()).toEqual({ pending: 0, delivered: 1, missed: 0, late: 0 });
      // The same for an id nobody registered: one stores it, the rest are duplicates.
      const ghosts = await Promise.all(
        Array.from({ length: 20 }, (_, i) => s.recordCallback(callback('cold', BASE_MS + i))),
      );
      expect(ghosts.filter((r) => r.kind === 'unregistered')).toHaveLength(1);
      expect((await s.get('cold'))?.callbacks).toBe(20);
    });

    it('lets two instances on one backing deliver a task exactly once', async () => {
      const [a, b] = await pair();
      await a.register(['shared'], BASE_MS, BASE_MS + MIN);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).recordCallback(callback('shared', BASE_MS + i))),
      );
      expect(results.filter((r) => r.kind === 'delivered')).toHaveLength(1);
      expect(await b.counts()).toEqual({ pending: 0, delivered: 1, missed: 0, late: 0 });
      expect(await a.get('shared')).toMatchObject({ state: 'delivered', callbacks: 20 });
    });

    it('lets two instances expiring concurrently move each task exactly once', async () => {
      const [a, b] = await pair();
      const n = 300;
      const ids = Array.from({ length: n }, (_, i) => `e${String(i).padStart(4, '0')}`);
      for (let i = 0; i < n; i += 50) await a.register(ids.slice(i, i + 50), BASE_MS, BASE_MS + i);
      const drain = async (s: TaskStore) => {
        const moved: string[] = [];
        for (;;) {
          const batch = await s.expireDue(BASE_MS + n, 7);
          if (batch.length === 0) return moved;
          moved.push(...batch);
        }
      };
      const [byA, byB] = await Promise.all([drain(a), drain(b)]);
      const all = [...byA, ...byB];
      expect(new Set(all).size).toBe(all.length);
      expect(all.sort()).toEqual(ids);
      expect(await a.counts()).toEqual({ pending: 0, delivered: 0, missed: n, late: 0 });
      expect(await b.counts()).toEqual({ pending: 0, delivered: 0, missed: n, late: 0 });
    });

    it('settles a race between expiry on one instance and callbacks on the other exactly once per task', async () => {
      const [a, b] = await pair();
      const n = 100;
      const ids = Array.from({ length: n }, (_, i) => `r${i}`);
      await a.register(ids, BASE_MS, BASE_MS + MIN);
      const [moved, transitions] = await Promise.all([
        (async () => {
          const out: string[] = [];
          for (
            let batch = await a.expireDue(BASE_MS + MIN, 5);
            batch.length > 0;
            batch = await a.expireDue(BASE_MS + MIN, 5)
          ) {
            out.push(...batch);
          }
          return out;
        })(),
        Promise.all(ids.map((id) => b.recordCallback(callback(id, BASE_MS + 2 * MIN)))),
      ]);
      const kinds = transitions.map((t) => t.kind);
      const late = kinds.filter((k) => k === 'late').length;
      const delivered = kinds.filter((k) => k === 'delivered').length;
      expect(late + delivered).toBe(n);
      // Every task the sweeper moved got its callback afterwards, as late; none was moved after delivery.
      expect(late).toBe(moved.length);
      expect(await a.counts()).toEqual({ pending: 0, delivered, missed: 0, late });
    });

    it('purges settled tasks older than the cut-off by settling time, never pending ones, counts untouched', async () => {
      const s = await fresh();
      await s.register(['d1', 'd2', 'm1', 'lt'], BASE_MS, BASE_MS + MIN);
      await s.recordCallback(callback('d1', BASE_MS + 1000)); // delivered, settled at BASE_MS+1s
      await s.recordCallback(callback('ghost', BASE_MS + 2000)); // unregistered, settled at BASE_MS+2s
      await s.recordCallback(callback('d2', BASE_MS + 3000)); // delivered, settled at BASE_MS+3s
      expect((await s.expireDue(BASE_MS + MIN, 10)).sort()).toEqual(['lt', 'm1']); // missed, settled at their deadline BASE_MS+1min
      await s.recordCallback(callback('lt', BASE_MS + 5 * MIN)); // late: settled again, at its receipt BASE_MS+5min
      await s.register(['overdue'], BASE_MS, BASE_MS - 10 * MIN); // pending with a long-past deadline, not swept yet
      await s.register(['p1'], BASE_MS, BASE_MS + 60 * MIN);
      const before = { pending: 2, delivered: 2, missed: 1, late: 1 };
      expect(await s.counts()).toEqual(before);

      expect(await s.purge(BASE_MS + 1000, 10)).toBe(0); // the cut-off is exclusive
      expect(await s.purge(BASE_MS + 10 * MIN, 0)).toBe(0);
      expect(await s.purge(BASE_MS + 10 * MIN, 2)).toBe(2); // oldest first: d1, ghost
      expect(await s.get('d1')).toBeUndefined();
      expect(await s.get('ghost')).toBeUndefined();
      expect(await s.get('d2')).toMatchObject({ state: 'delivered' });
      expect(await s.purge(BASE_MS + 10 * MIN, 2)).toBe(2); // d2, m1
      expect(await s.get('m1')).toBeUndefined();
      // A late task is kept by its receipt time, not its (older) deadline.
      expect(await s.purge(BASE_MS + 5 * MIN, 10)).toBe(0);
      expect(await s.get('lt')).toMatchObject({ state: 'late' });
      expect(await s.purge(BASE_MS + 10 * MIN, 10)).toBe(1);
      expect(await s.get('lt')).toBeUndefined();
      // However old, a pending task is never purged.
      expect(await s.purge(BASE_MS + 1e12, 100)).toBe(0);
      expect((await s.list('pending', 10)).map((t) => t.id)).toEqual(['overdue', 'p1']);
      for (const state of ['delivered', 'missed', 'late'] as const) expect(await s.list(state, 10)).toEqual([]);
      expect(await s.counts()).toEqual(before);

      // A callback for a purged id is a new, unregistered result; a purged id can be registered afresh.
      expect(await s.recordCallback(callback('d1', BASE_MS + 20 * MIN))).toEqual(transition('unregistered', 'd1'));
      expect(await s.register(['m1'], BASE_MS + 20 * MIN, BASE_MS + 25 * MIN)).toEqual({ added: ['m1'], merged: [] });
      expect(await s.counts()).toEqual({ ...before, pending: 3 });
    });

    it('purges in bounded batches, oldest first', async () => {
      const s = await fresh();
      const ids = Array.from({ length: 300 }, (_, i) => `k${String(i).padStart(3, '0')}`);
      await s.register(ids, BASE_MS, BASE_MS + 60 * MIN);
      // Settled newest-id-first, so neither key order nor registration order can pass for settling order.
      for (let i = ids.length - 1; i >= 0; i--) await s.recordCallback(callback(ids[i]!, BASE_MS + 1000 - i));
      expect(await s.purge(BASE_MS + 2000, 120)).toBe(120);
      expect(await s.get('k299')).toBeUndefined();
      expect(await s.get('k180')).toBeUndefined();
      expect(await s.get('k179')).toMatchObject({ state: 'delivered' });
      expect(await s.purge(BASE_MS + 2000, 120)).toBe(120);
      expect(await s.purge(BASE_MS + 2000, 120)).toBe(60);
      expect(await s.purge(BASE_MS + 2000, 120)).toBe(0);
      expect(await s.list('delivered', 10)).toEqual([]);
      expect(await s.counts()).toEqual({ pending: 0, delivered: 300, missed: 0, late: 0 });
    });

    it("never lets a purged task's old deadline expire the same id registered again", async () => {
      const s = await fresh();
      await s.register(['again'], BASE_MS, BASE_MS + MIN);
      await s.recordCallback(callback('again', BASE_MS + 1));
      expect(await s.purge(BASE_MS + 2, 10)).toBe(1);
      expect(await s.register(['again'], BASE_MS + 2, BASE_MS + 60 * MIN)).toEqual({ added: ['again'], merged: [] });
      expect(await s.expireDue(BASE_MS + 2 * MIN, 10)).toEqual([]);
      expect(await s.get('again')).toMatchObject({ state: 'pending', deadlineAt: BASE_MS + 60 * MIN });
    });

    // ---- two ids per task: the app's id and the solver's task id ------------------------------------------------

    it('registers tasks with solver ids and their own deadlines, and the sweep honours each deadline', async () => {
      const s = await fresh();
      expect(
        await s.register(
          [
            { id: 'a', solverTaskId: 'sa', deadlineAt: BASE_MS + 3 * MIN },
            { id: 'b', deadlineAt: BASE_MS + 1 * MIN },
            'c', // the call's deadline, BASE_MS + 2 min
            { id: 'd', solverTaskId: 'sd' },
          ],
          BASE_MS,
          BASE_MS + 2 * MIN,
        ),
      ).toEqual({ added: ['a', 'b', 'c', 'd'], merged: [] });
      expect(await s.get('a')).toEqual(record('a', { solverTaskId: 'sa', deadlineAt: BASE_MS + 3 * MIN }));
      expect(await s.get('d')).toMatchObject({ solverTaskId: 'sd', deadlineAt: BASE_MS + 2 * MIN });
      const pending = (await s.list('pending', 10)).map((t) => t.id);
      // c and d share a deadline: their order between them is the store's.
      expect([pending[0], pending.slice(1, 3).sort(), pending[3], pending.length]).toEqual(['b', ['c', 'd'], 'a', 4]);
      expect(await s.expireDue(BASE_MS + 1 * MIN - 1, 10)).toEqual([]);
      expect(await s.expireDue(BASE_MS + 1 * MIN, 10)).toEqual(['b']);
      expect((await s.expireDue(BASE_MS + 2 * MIN, 10)).sort()).toEqual(['c', 'd']);
      expect(await s.expireDue(BASE_MS + 3 * MIN - 1, 10)).toEqual([]);
      expect(await s.expireDue(BASE_MS + 3 * MIN, 10)).toEqual(['a']);
      expect(await s.counts()).toEqual({ pending: 0, delivered: 0, missed: 4, late: 0 });
      // Registering a known id again neither repeats the registration nor attaches the solver id given with it.
      expect(
        await s.register([{ id: 'b', solverTaskId: 'sb', deadlineAt: BASE_MS + 60 * MIN }], BASE_MS, BASE_MS),
      ).toEqual({
        added: [],
        merged: [],
      });
      expect(await s.get('b')).toMatchObject({ solverTaskId: null, state: 'missed', deadlineAt: BASE_MS + MIN });
      expect(await s.get('sb')).toBeUndefined();
    });

    it('finds a task by its app id, else by its solver id', async () => {
      const s = await fresh();
      await s.register([{ id: 'app-1', solverTaskId: 'solver-1' }, 'app-2'], BASE_MS, BASE_MS + MIN);
      expect(await s.get('app-1')).toMatchObject({ id: 'app-1', solverTaskId: 'solver-1', state: 'pending' });
      expect(await s.get('solver-1')).toEqual(await s.get('app-1'));
      expect(await s.get('app-2')).toMatchObject({ id: 'app-2', solverTaskId: null });
      expect(await s.get('solver-2')).toBeUndefined();
      // An app id that is also another task's solver id: the app id wins.
      await s.register([{ id: 'app-3', solverTaskId: 'app-2' }], BASE_MS, BASE_MS + MIN);
      expect(await s.get('app-2')).toMatchObject({ id: 'app-2' });
    });

    it("links the solver id a callback by the app's id carries, so later callbacks by solver id find the task", async () => {
      const s = await fresh();
      await s.register(['t'], BASE_MS, BASE_MS + MIN);
      expect(await s.recordCallback({ ...callback('t', BASE_MS + 1), solverTaskId: 's-t' })).toEqual(
        transition('delivered', 't'),
      );
      expect(await s.get('t')).toMatchObject({ solverTaskId: 's-t', state: 'delivered', code: 'code-t' });
      expect(await s.get('s-t')).toMatchObject({ id: 't' });
      expect(await s.recordCallback(bySolver('s-t', BASE_MS + 2, 'again'))).toEqual(transition('duplicate', 't'));
      expect(await s.get('t')).toMatchObject({ code: 'code-t', callbacks: 2 });
      // A duplicate by the app's id also links the solver id when the task has none yet.
      await s.register(['u'], BASE_MS, BASE_MS + MIN);
      await s.recordCallback(callback('u', BASE_MS + 1));
      expect(await s.recordCallback({ ...callback('u', BASE_MS + 2), solverTaskId: 's-u' })).toEqual(
        transition('duplicate', 'u'),
      );
      expect(await s.get('s-u')).toMatchObject({ id: 'u', solverTaskId: 's-u', callbacks: 2 });
      expect(await s.counts()).toEqual({ pending: 0, delivered: 2, missed: 0, late: 0 });
    });

    it('finds the task registered with the solver id for a callback that carries only that id', async () => {
      const s = await fresh();
      await s.register(
        [
          { id: 'app', solverTaskId: 'sol' },
          { id: 'slow', solverTaskId: 'sol-slow' },
        ],
        BASE_MS,
        BASE_MS + MIN,
      );
      expect(await s.recordCallback(bySolver('sol', BASE_MS + 5))).toEqual(transition('delivered', 'app'));
      expect(await s.get('app')).toMatchObject({
        id: 'app',
        solverTaskId: 'sol',
        state: 'delivered',
        registered: true,
        code: 'code-sol',
        receivedAt: BASE_MS + 5,
        callbacks: 1,
      });
      expect(await s.expireDue(BASE_MS + MIN, 10)).toEqual(['slow']);
      expect(await s.recordCallback(bySolver('sol-slow', BASE_MS + 2 * MIN))).toEqual(transition('late', 'slow'));
      expect(await s.recordCallback(bySolver('sol', BASE_MS + 6))).toEqual(transition('duplicate', 'app'));
      expect(await s.list('delivered', 10)).toMatchObject([{ id: 'app', callbacks: 2 }]);
      // No record was made under the solver ids.
      expect((await s.get('sol'))?.id).toBe('app');
      expect(await s.counts()).toEqual({ pending: 0, delivered: 1, missed: 0, late: 1 });
    });

    it("delivers a task registered under the solver's id for a callback that carries only that id", async () => {
      // Apps that register the id the solver returned as their own id, with no solver id: the callback's solver id
      // is that task's app id.
      const s = await fresh();
      await s.register(['73400123'], BASE_MS, BASE_MS + MIN);
      expect(await s.recordCallback(bySolver('73400123', BASE_MS + 1))).toEqual(transition('delivered', '73400123'));
      expect(await s.get('73400123')).toMatchObject({ registered: true, state: 'delivered', callbacks: 1 });
      expect(await s.recordCallback(bySolver('73400123', BASE_MS + 2))).toEqual(transition('duplicate', '73400123'));
      expect(await s.counts()).toEqual({ pending: 0, delivered: 1, missed: 0, late: 0 });
    });

    it('files a callback whose path id and solver id differ under the path id, keeping the solver id', async () => {
      const s = await fresh();
      await s.register(['p', { id: 'q', solverTaskId: 'sq' }, { id: 'r', solverTaskId: 'sr' }], BASE_MS, BASE_MS + MIN);
      // The path wins; the solver id is kept on the task.
      await s.register(['p2'], BASE_MS, BASE_MS + MIN);
      expect(await s.recordCallback({ ...callback('p2', BASE_MS + 1), solverTaskId: 'fresh' })).toMatchObject({
        kind: 'delivered',
        id: 'p2',
      });
      expect(await s.get('fresh')).toMatchObject({ id: 'p2', solverTaskId: 'fresh' });
      // The path wins even when the solver id belongs to another task; that task keeps it and stays pending.
      expect(await s.recordCallback({ ...callback('p', BASE_MS + 2), solverTaskId: 'sq' })).toEqual(
        transition('delivered', 'p'),
      );
      expect(await s.get('p')).toMatchObject({ solverTaskId: null, state: 'delivered' });
      expect(await s.get('q')).toMatchObject({ solverTaskId: 'sq', state: 'pending', callbacks: 0 });
      expect((await s.get('sq'))?.id).toBe('q');
      // A task keeps the solver id it has; another one in a callback by its app id does not replace it.
      expect(await s.recordCallback({ ...callback('r', BASE_MS + 3), solverTaskId: 'other' })).toMatchObject({
        kind: 'delivered',
        id: 'r',
      });
      expect(await s.get('r')).toMatchObject({ solverTaskId: 'sr' });
      expect(await s.get('other')).toBeUndefined();
      // An unknown path id with a known solver id: the solver id finds the task.
      expect(await s.recordCallback({ ...callback('nobody', BASE_MS + 4), solverTaskId: 'sq' })).toEqual(
        transition('delivered', 'q'),
      );
      expect(await s.get('nobody')).toBeUndefined();
      expect(await s.counts()).toEqual({ pending: 0, delivered: 4, missed: 0, late: 0 });
    });

    it('refuses a callback that names no task', async () => {
      const s = await fresh();
      await s.register(['x'], BASE_MS, BASE_MS + MIN);
      const anonymous: CallbackResult = { outcome: 'solved', code: 'c', format: 'json', receivedAt: BASE_MS };
      await expect(s.recordCallback(anonymous)).rejects.toBeInstanceOf(StoreUnavailableError);
      // Only that call: a callback stored at the same moment is unaffected.
      const [bad, good] = await Promise.allSettled([
        s.recordCallback(anonymous),
        s.recordCallback(callback('x', BASE_MS)),
      ]);
      expect(bad.status).toBe('rejected');
      expect(good).toEqual({ status: 'fulfilled', value: transition('delivered', 'x') });
    });

    it('attaches a solver id: attached, unchanged, unknown, conflict', async () => {
      const s = await fresh();
      await s.register(['a', 'b', { id: 'c', solverTaskId: 'sc' }], BASE_MS, BASE_MS + MIN);
      await s.recordCallback(callback('ghost', BASE_MS)); // unregistered
      expect(await s.attachSolverTaskId('a', 'sa')).toEqual({ kind: 'attached' });
      expect(await s.get('a')).toMatchObject({ solverTaskId: 'sa', state: 'pending' });
      expect(await s.attachSolverTaskId('a', 'sa')).toEqual({ kind: 'unchanged' });
      expect(await s.attachSolverTaskId('c', 'sc')).toEqual({ kind: 'unchanged' });
      expect(await s.attachSolverTaskId('nobody', 'sn')).toEqual({ kind: 'unknown' });
      expect(await s.attachSolverTaskId('ghost', 'sg')).toEqual({ kind: 'unknown' }); // not registered
      expect(await s.get('sn')).toBeUndefined();
      expect(await s.get('sg')).toBeUndefined();
      // The task has another solver id; the solver id belongs to another registered task.
      expect(await s.attachSolverTaskId('a', 'sa2')).toEqual({ kind: 'conflict' });
      expect(await s.attachSolverTaskId('b', 'sc')).toEqual({ kind: 'conflict' });
      expect(await s.get('a')).toMatchObject({ solverTaskId: 'sa' });
      expect(await s.get('b')).toMatchObject({ solverTaskId: null });
      expect((await s.get('sc'))?.id).toBe('c');
      expect(await s.get('sa2')).toBeUndefined();
      // A settled task can still be given its solver id.
      await s.recordCallback(callback('b', BASE_MS + 1));
      expect(await s.attachSolverTaskId('b', 'sb')).toEqual({ kind: 'attached' });
      expect(await s.recordCallback(bySolver('sb', BASE_MS + 2))).toEqual(transition('duplicate', 'b'));
      expect(await s.recordCallback(bySolver('sa', BASE_MS + 3))).toEqual(transition('delivered', 'a'));
      expect(await s.counts()).toEqual({ pending: 1, delivered: 2, missed: 0, late: 0 });
    });

    it('merges a callback that came by solver id before attach: the task gets it, the unregistered record goes', async () => {
      const s = await fresh();
      const solution = { gRecaptchaResponse: 'tok-early', userAgent: 'UA/1.0' };
      const metadata = { cost: '0.00120', solveCount: 1 };
      const early = bySolver('early', BASE_MS + 100, 'tok-early', { format: 'json', solution, metadata });
      expect(await s.recordCallback(early)).toEqual(transition('unregistered', 'early'));
      expect(await s.recordCallback({ ...early, code: 'second', receivedAt: BASE_MS + 200 })).toEqual(
        transition('duplicate', 'early'),
      );
      expect(await s.get('early')).toMatchObject({ registered: false, solverTaskId: 'early', callbacks: 2 });
      await s.register(['m'], BASE_MS, BASE_MS + MIN);
      expect(await s.attachSolverTaskId('m', 'early')).toEqual({
        kind: 'merged',
        transition: transition('delivered', 'm'),
        result: {
          taskId: 'm',
          solverTaskId: 'early',
          outcome: 'solved',
          code: 'tok-early',
          format: 'json',
          receivedAt: BASE_MS + 100,
          solution: early.solution,
          metadata: early.metadata,
          recovered: false,
        },
      });
      expect(await s.get('m')).toEqual(
        record('m', {
          solverTaskId: 'early',
          state: 'delivered',
          outcome: 'solved',
          code: 'tok-early',
          format: 'json',
          solution,
          metadata,
          deadlineAt: BASE_MS + MIN,
          receivedAt: BASE_MS + 100,
          callbacks: 2,
        }),
      );
      // The unregistered record is gone: the solver id finds the task, and only the task is listed.
      expect(await s.get('early')).toEqual(await s.get('m'));
      expect((await s.list('delivered', 10)).map((t) => t.id)).toEqual(['m']);
      expect(await s.counts()).toEqual({ pending: 0, delivered: 1, missed: 0, late: 0 });
      expect(await s.attachSolverTaskId('m', 'early')).toEqual({ kind: 'unchanged' });
      expect(await s.recordCallback({ ...early, receivedAt: BASE_MS + 300 })).toEqual(transition('duplicate', 'm'));
      expect(await s.get('m')).toMatchObject({ callbacks: 3, receivedAt: BASE_MS + 100 });
      // Purged later, it goes with its solver id.
      expect(await s.purge(BASE_MS + 1000, 10)).toBe(1);
      expect(await s.get('early')).toBeUndefined();
    });

    it('merges into a missed task as late, and into a settled one as a duplicate that keeps the first result', async () => {
      const s = await fresh();
      await s.register(['missed', 'done'], BASE_MS, BASE_MS + MIN);
      expect((await s.expireDue(BASE_MS + MIN, 10)).sort()).toEqual(['done', 'missed']);
      await s.register(['done2'], BASE_MS, BASE_MS + 10 * MIN);
      await s.recordCallback(callback('done2', BASE_MS + 10, 'first'));
      await s.recordCallback(bySolver('s-missed', BASE_MS + 2 * MIN, 'late-tok'));
      await s.recordCallback(bySolver('s-done', BASE_MS + 20, 'dup-tok'));
      await s.recordCallback(bySolver('s-done', BASE_MS + 21, 'dup-tok-2'));
      const late = await s.attachSolverTaskId('missed', 's-missed');
      expect(late).toMatchObject({ kind: 'merged', transition: transition('late', 'missed') });
      expect(await s.get('missed')).toMatchObject({ state: 'late', code: 'late-tok', callbacks: 1 });
      const dup = await s.attachSolverTaskId('done2', 's-done');
      expect(dup).toMatchObject({
        kind: 'merged',
        transition: transition('duplicate', 'done2'),
        result: { taskId: 'done2', solverTaskId: 's-done', code: 'dup-tok', receivedAt: BASE_MS + 20 },
      });
      expect(await s.get('done2')).toMatchObject({
        state: 'delivered',
        code: 'first',
        receivedAt: BASE_MS + 10,
        callbacks: 3,
        solverTaskId: 's-done',
      });
      expect(await s.get('s-missed')).toMatchObject({ id: 'missed' });
      expect((await s.list('delivered', 10)).map((t) => t.id)).toEqual(['done2']);
      expect(await s.counts()).toEqual({ pending: 0, delivered: 1, missed: 1, late: 1 });
    });

    it('merges on register: counts and callbacks add up, and a solver id held by a registered task is left off', async () => {
      const s = await fresh();
      await s.recordCallback({ ...bySolver('x1', BASE_MS + 5), metadata: { cost: 0.002 } });
      // A callback by an unregistered app id carrying a solver id links it too, so registration can merge it.
      expect(await s.recordCallback({ ...callback('u', BASE_MS + 6), solverTaskId: 'x2' })).toEqual(
        transition('unregistered', 'u'),
      );
      expect((await s.get('x2'))?.id).toBe('u');
      await s.register([{ id: 'held', solverTaskId: 'x3' }], BASE_MS, BASE_MS + MIN);
      const result = await s.register(
        [
          { id: 'r1', solverTaskId: 'x1' },
          { id: 'r2', solverTaskId: 'x2' },
          { id: 'r3', solverTaskId: 'x3' },
          { id: 'r4', solverTaskId: 'x4' },
        ],
        BASE_MS + 1,
        BASE_MS + MIN,
      );
      expect(result.added).toEqual(['r1', 'r2', 'r3', 'r4']);
      expect(result.merged).toEqual([
        {
          transition: transition('delivered', 'r1', BASE_MS + 1),
          result: {
            taskId: 'r1',
            solverTaskId: 'x1',
            outcome: 'solved',
            code: 'code-x1',
            format: 'query',
            receivedAt: BASE_MS + 5,
            solution: null,
            metadata: { cost: 0.002 },
            recovered: false,
          },
        },
        {
          transition: transition('delivered', 'r2', BASE_MS + 1),
          result: {
            taskId: 'r2',
            solverTaskId: 'x2',
            outcome: 'solved',
            code: 'code-u',
            format: 'query',
            receivedAt: BASE_MS + 6,
            solution: null,
            metadata: null,
            recovered: false,
          },
        },
      ]);
      expect(await s.get('u')).toBeUndefined();
      expect(await s.get('x2')).toMatchObject({ id: 'r2', state: 'delivered', code: 'code-u', callbacks: 1 });
      expect(await s.get('x1')).toMatchObject({ id: 'r1', state: 'delivered', metadata: { cost: 0.002 } });
      expect(await s.get('r3')).toMatchObject({ state: 'pending', solverTaskId: null });
      expect((await s.get('x3'))?.id).toBe('held');
      expect(await s.get('r4')).toMatchObject({ state: 'pending', solverTaskId: 'x4' });
      expect((await s.list('delivered', 10)).map((t) => t.id).sort()).toEqual(['r1', 'r2']);
      expect(await s.counts()).toEqual({ pending: 3, delivered: 2, missed: 0, late: 0 });
    });

    it('unlinks a purged task’s solver id, so it can be stored or attached afresh', async () => {
      const s = await fresh();
      await s.register([{ id: 'pa', solverTaskId: 'spa' }], BASE_MS, BASE_MS + MIN);
      await s.recordCallback(bySolver('spa', BASE_MS + 1));
      await s.recordCallback(bySolver('sghost', BASE_MS + 2)); // unregistered, linked to its own solver id
      expect(await s.purge(BASE_MS + 10, 10)).toBe(2);
      expect(await s.get('spa')).toBeUndefined();
      expect(await s.get('sghost')).toBeUndefined();
      await s.register(['pb', 'pc'], BASE_MS + 20, BASE_MS + MIN);
      expect(await s.attachSolverTaskId('pb', 'spa')).toEqual({ kind: 'attached' });
      expect(await s.recordCallback(bySolver('spa', BASE_MS + 30))).toEqual(
        transition('delivered', 'pb', BASE_MS + 20),
      );
      expect(await s.recordCallback({ ...callback('pc', BASE_MS + 31), solverTaskId: 'sghost' })).toMatchObject({
        kind: 'delivered',
        id: 'pc',
      });
      expect((await s.get('sghost'))?.id).toBe('pc');
    });

    it('keeps the whole solution and metadata exactly (nested objects, arrays, unicode)', async () => {
      const s = await fresh();
      const solution = {
        gRecaptchaResponse: '03AGdBq24PBCbwiDRaS_MJ7Z49ta3Jw',
        userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0',
        respKey: 'E0_eyJ0eXAiOiJKV1Q',
        cookies: { cf_clearance: 'abc', nested: { deeper: [1, 2.5, -3e-7, { x: null }], empty: {} } },
        text: 'Ünïcödé ✓ 漢字 🧩 "quotes" \\ back\\slash\n newline',
        flags: [true, false, null],
      };
      const metadata = { cost: '0.00099', createTime: 1700000000, endTime: 1700000012, solveCount: 2, errorId: 0 };
      await s.register(['rich'], BASE_MS, BASE_MS + MIN);
      const r: CallbackResult = { ...callback('rich', BASE_MS + 1), format: 'json', solution, metadata };
      await s.recordCallback(r);
      expect(await s.get('rich')).toMatchObject({ solution, metadata });
      expect((await s.get('rich'))?.solution).toEqual(solution);
      expect((await s.get('rich'))?.metadata).toEqual(metadata);
      expect((await s.list('delivered', 10))[0]).toMatchObject({ id: 'rich', solution, metadata });
      // A duplicate keeps the first result's details.
      await s.recordCallback({ ...r, solution: { other: 1 }, metadata: null });
      expect((await s.get('rich'))?.solution).toEqual(solution);
      // Unregistered ones keep theirs; no details read back as null.
      await s.recordCallback({ ...r, taskId: 'loose', metadata: { status: 0, ключ: 'значение' } });
      expect(await s.get('loose')).toMatchObject({ solution, metadata: { status: 0, ключ: 'значение' } });
      await s.recordCallback({ ...callback('bare', BASE_MS + 2), solution: null });
      expect(await s.get('bare')).toMatchObject({ solution: null, metadata: null });
    });

    it('marks a result recovered only when recovery stored it; the first result decides, a merge carries it', async () => {
      const s = await fresh();
      await s.register(['rec', 'cb', 'forged', 'missed'], BASE_MS, BASE_MS + MIN);
      expect(await s.recordCallback({ ...callback('rec', BASE_MS + 1), recovered: true })).toEqual(
        transition('delivered', 'rec'),
      );
      expect(await s.get('rec')).toMatchObject({ state: 'delivered', code: 'code-rec', recovered: true });
      // The real callback afterwards is a duplicate: the recovered result and its mark stay.
      expect(await s.recordCallback(callback('rec', BASE_MS + 2, 'real'))).toEqual(transition('duplicate', 'rec'));
      expect(await s.get('rec')).toMatchObject({ code: 'code-rec', callbacks: 2, recovered: true });
      // A callback's result is not recovered, and a recovered duplicate after it does not make it so.
      expect(await s.recordCallback(callback('cb', BASE_MS + 3))).toMatchObject({ kind: 'delivered' });
      expect(await s.recordCallback({ ...callback('cb', BASE_MS + 4), recovered: true })).toEqual(
        transition('duplicate', 'cb'),
      );
      expect(await s.get('cb')).toMatchObject({ code: 'code-cb', callbacks: 2, recovered: false });
      // The solver's own fields are kept whole, a `recovered` among them included, and are not the mark.
      await s.recordCallback({ ...callback('forged', BASE_MS + 5), format: 'json', metadata: { recovered: true } });
      expect(await s.get('forged')).toMatchObject({ metadata: { recovered: true }, recovered: false });
      // missed → late by a recovered result.
      expect(await s.expireDue(BASE_MS + MIN, 10)).toEqual(['missed']);
      expect(await s.get('missed')).toMatchObject({ state: 'missed', recovered: false });
      await s.recordCallback({ ...callback('missed', BASE_MS + 2 * MIN), recovered: true });
      expect(await s.get('missed')).toMatchObject({ state: 'late', recovered: true });
      const flags = (await s.list('delivered', 10)).map((t) => [t.id, t.recovered]);
      expect(flags).toEqual([
        ['rec', true],
        ['cb', false],
        ['forged', false],
      ]);
      // A stored result merged into its task brings its mark along, on register and on attach.
      expect(await s.recordCallback({ ...bySolver('s-rec', BASE_MS + 6), recovered: true })).toEqual(
        transition('unregistered', 's-rec'),
      );
      expect(await s.get('s-rec')).toMatchObject({ registered: false, recovered: true });
      await s.recordCallback(bySolver('s-cb', BASE_MS + 7));
      const registered = await s.register([{ id: 'm-rec', solverTaskId: 's-rec' }], BASE_MS, BASE_MS + 10 * MIN);
      expect(registered.merged).toMatchObject([{ transition: { kind: 'delivered' }, result: { recovered: true } }]);
      await s.register(['m-cb'], BASE_MS, BASE_MS + 10 * MIN);
      expect(await s.attachSolverTaskId('m-cb', 's-cb')).toMatchObject({
        kind: 'merged',
        result: { recovered: false },
      });
      expect(await s.get('m-rec')).toMatchObject({ registered: true, state: 'delivered', recovered: true });
      expect(await s.get('m-cb')).toMatchObject({ registered: true, state: 'delivered', recovered: false });
    });

    it('keeps a callback whose JSON body says "recovered": true unrecovered (parser → tracker → store)', async () => {
      const s = await fresh();
      const tracker = new DeliveryTracker({ store: s });
      await s.register(['j1'], BASE_MS, BASE_MS + MIN);
      const parsed = parseCallback({
        method: 'POST',
        query: new URLSearchParams(),
        pathTaskId: 'j1',
        body: { kind: 'json', value: { errorId: 0, status: 'ready', solution: { token: 'tok' }, recovered: true } },
      });
      if (!parsed.ok) throw new Error(`not parsed: ${parsed.error.reason}`);
      // As the callback handler builds it.
      const result: CallbackResult = { ...parsed.value, receivedAt: BASE_MS + 1 };
      expect(await tracker.recordCallback(result)).toMatchObject({ kind: 'delivered', id: 'j1' });
      expect(await s.get('j1')).toMatchObject({ code: 'tok', metadata: { recovered: true }, recovered: false });
    });

    it('lets two instances correlating one task by different ids deliver it exactly once', async () => {
      const [a, b] = await pair();
      const n = 20;
      const tasks = Array.from({ length: n }, (_, i) => ({ id: `app-${i}`, solverTaskId: `sol-${i}` }));
      await a.register(tasks, BASE_MS, BASE_MS + MIN);
      // One callback by the app's id on one instance, one by the solver's id only on the other, all at once.
      const results = await Promise.all(
        tasks.flatMap((t, i) => [
          (i % 2 ? a : b).recordCallback(callback(t.id, BASE_MS + 1)),
          (i % 2 ? b : a).recordCallback(bySolver(t.solverTaskId, BASE_MS + 2)),
        ]),
      );
      for (const [i, t] of tasks.entries()) {
        const pairKinds = [results[2 * i]!, results[2 * i + 1]!].map((r) => `${r.kind}:${r.id}`).sort();
        expect(pairKinds).toEqual([`delivered:${t.id}`, `duplicate:${t.id}`]);
      }
      expect(await a.counts()).toEqual({ pending: 0, delivered: n, missed: 0, late: 0 });
      expect(await b.get('sol-3')).toMatchObject({ id: 'app-3', callbacks: 2 });
      expect(await b.list('delivered', 2 * n)).toHaveLength(n);
    });

    it('lets attach on one instance and a callback by solver id on the other settle a task exactly once', async () => {
      const [a, b] = await pair();
      const n = 20;
      const ids = Array.from({ length: n }, (_, i) => `late-attach-${i}`);
      await a.register(ids, BASE_MS, BASE_MS + MIN);
      const [attached, callbacks] = await Promise.all([
        Promise.all(ids.map((id) => a.attachSolverTaskId(id, `s-${id}`))),
        Promise.all(ids.map((id) => b.recordCallback(bySolver(`s-${id}`, BASE_MS + 1)))),
      ]);
      for (const [i, id] of ids.entries()) {
        const attach = attached[i]!;
        const cb = callbacks[i]!;
        // Either the callback came first (stored unregistered, then merged by attach) or the attach did.
        if (attach.kind === 'merged') {
          expect(cb).toEqual(transition('unregistered', `s-${id}`));
          expect(attach.transition).toEqual(transition('delivered', id));
        } else {
          expect(attach).toEqual({ kind: 'attached' });
          expect(cb).toEqual(transition('delivered', id));
        }
        expect(await b.get(`s-${id}`)).toMatchObject({ id, state: 'delivered', callbacks: 1 });
      }
      expect(await b.counts()).toEqual({ pending: 0, delivered: n, missed: 0, late: 0 });
      expect(await a.list('delivered', 2 * n)).toHaveLength(n);
    });

    // ---- the forwarding outbox ----
    const itOutbox = (title: string, fn: () => Promise<void>) =>
      it(title, async (ctx) => {
        if (factory.outbox === false) ctx.skip();
        await fn();
      });

    /** The store's outbox; every store must have one (a store without it cannot forward, and fails here). */
    const outbox = (s: TaskStore) => {
      expect(s.forwards, 'the store has a forwarding outbox').toBeDefined();
      return s.forwards!;
    };
    const settleOk = (taskId: string, lease: string, at: number) => ({
      taskId,
      event: 'delivered' as const,
      lease,
      at,
      result: { state: 'delivered' as const, status: 200, error: null },
    });

    itOutbox('writes no forward while forwarding is off', async () => {
      const s = await fresh();
      await s.register(['a', 'm'], BASE_MS, BASE_MS + MIN);
      await s.recordCallback(callback('a', BASE_MS + 1));
      await s.recordCallback(callback('ghost', BASE_MS + 2));
      await s.expireDue(BASE_MS + MIN, 10);
      for (const id of ['a', 'ghost', 'm']) expect(await outbox(s).forwardsOf(id)).toEqual([]);
      expect(await outbox(s).claimDue(BASE_MS + 10 * MIN, 10, 1000)).toEqual([]);
      expect(await outbox(s).backlog(100)).toEqual({ pending: 0, oldestCreatedAt: null });
    });

    itOutbox(
      'writes one pending forward per enabled event with the transition: delivered, unregistered, missed, late',
      async () => {
        const s = await fresh();
        outbox(s).enable(['delivered', 'missed', 'late']);
        await s.register(['d', 'm', 'l'], BASE_MS, BASE_MS + MIN);
        await s.recordCallback(callback('d', BASE_MS + 1000));
        await s.recordCallback(callback('d', BASE_MS + 2000)); // a duplicate writes nothing
        await s.recordCallback(callback('ghost', BASE_MS + 3000));
        expect((await s.expireDue(BASE_MS + MIN, 10)).sort()).toEqual(['l', 'm']);
        await s.recordCallback(callback('l', BASE_MS + 2 * MIN));
        const d = await outbox(s).forwardsOf('d');
        expect(d).toEqual([
          {
            taskId: 'd',
            event: 'delivered',
            webhookId: expect.stringMatching(/^msg_[A-Za-z0-9_-]{22,}$/),
            state: 'pending',
            createdAt: BASE_MS + 1000,
            since: BASE_MS + 1000,
            attempts: 0,
            nextAttemptAt: BASE_MS + 1000,
            leased: false,
            lastAttemptAt: null,
            lastStatus: null,
            lastError: null,
            doneAt: null,
          },
        ]);
        expect(await outbox(s).forwardsOf('ghost')).toMatchObject([{ event: 'delivered', createdAt: BASE_MS + 3000 }]);
        expect(await outbox(s).forwardsOf('m')).toMatchObject([{ event: 'missed', createdAt: BASE_MS + MIN }]);
        const l = await outbox(s).forwardsOf('l');
        expect(l.map((f) => [f.event, f.createdAt]).sort()).toEqual([
          ['late', BASE_MS + 2 * MIN],
          ['missed', BASE_MS + MIN],
        ]);
        const ids = new Set([...d, ...l].map((f) => f.webhookId));
        expect(ids.size).toBe(3);
        expect(await outbox(s).backlog(100)).toEqual({ pending: 5, oldestCreatedAt: BASE_MS + 1000 });
        expect(await outbox(s).backlog(2)).toMatchObject({ pending: 2 });
      },
    );

    itOutbox('writes the forward of a result that also links its solver id to the task', async () => {
      const s = await fresh();
      outbox(s).enable(['delivered']);
      await s.register(['t'], BASE_MS, BASE_MS + MIN);
      expect(await s.recordCallback({ ...callback('t', BASE_MS + 10), solverTaskId: 's-t' })).toEqual(
        transition('delivered', 't'),
      );
      expect(await s.get('s-t')).toMatchObject({ id: 't', solverTaskId: 's-t', state: 'delivered' });
      expect(await outbox(s).forwardsOf('t')).toMatchObject([
        { event: 'delivered', state: 'pending', createdAt: BASE_MS + 10 },
      ]);
      expect(await outbox(s).backlog(10)).toEqual({ pending: 1, oldestCreatedAt: BASE_MS + 10 });
    });

    itOutbox('forwards only the enabled events', async () => {
      const s = await fresh();
      outbox(s).enable(['delivered']);
      await s.register(['d', 'm'], BASE_MS, BASE_MS + MIN);
      await s.recordCallback(callback('d', BASE_MS + 1));
      await s.expireDue(BASE_MS + MIN, 10);
      await s.recordCallback(callback('m', BASE_MS + 2 * MIN));
      expect(await outbox(s).forwardsOf('d')).toHaveLength(1);
      expect(await outbox(s).forwardsOf('m')).toEqual([]);
    });

    itOutbox(
      'claims due forwards under a lease, bounded, oldest due first; only the current lease settles',
      async () => {
        const s = await fresh();
        outbox(s).enable(['delivered']);
        for (let i = 0; i < 5; i++) await s.recordCallback(callback(`f${i}`, BASE_MS + 1000 * (5 - i)));
        expect(await outbox(s).claimDue(BASE_MS, 10, 5000)).toEqual([]); // none due yet
        const first = await outbox(s).claimDue(BASE_MS + 4000, 2, 5000);
        expect(first.map((j) => j.forward.taskId)).toEqual(['f4', 'f3']);
        expect(first[0]).toMatchObject({
          forward: { attempts: 1, leased: true, nextAttemptAt: BASE_MS + 9000, state: 'pending' },
          task: { id: 'f4', state: 'delivered', code: 'code-f4' },
        });
        // Leased rows are not due again until the lease runs out.
        const second = await outbox(s).claimDue(BASE_MS + 8000, 10, 5000);
        expect(second.map((j) => j.forward.taskId).sort()).toEqual(['f0', 'f1', 'f2']);
        expect(await outbox(s).claimDue(BASE_MS + 8999, 10, 5000)).toEqual([]);
        // The holder of f4 and f3 died: their leases ran out, a claim takes both over with new leases, second attempts.
        const takeover = await outbox(s).claimDue(BASE_MS + 9000, 10, 5000);
        expect(takeover.map((j) => [j.forward.taskId, j.forward.attempts]).sort()).toEqual([
          ['f3', 2],
          ['f4', 2],
        ]);
        const f4 = takeover.find((j) => j.forward.taskId === 'f4')!;
        expect(f4.lease).not.toBe(first[0]!.lease);
        expect(await outbox(s).settle([settleOk('f4', first[0]!.lease, BASE_MS + 9001)])).toBe(0); // the old lease: refused
        expect(await outbox(s).settle([settleOk('f4', f4.lease, BASE_MS + 9002)])).toBe(1);
        expect(await outbox(s).settle([settleOk('f4', f4.lease, BASE_MS + 9003)])).toBe(0); // once
        expect(await outbox(s).forwardsOf('f4')).toMatchObject([
          {
            state: 'delivered',
            attempts: 2,
            doneAt: BASE_MS + 9002,
            lastStatus: 200,
            nextAttemptAt: null,
            leased: false,
          },
        ]);
      },
    );

    itOutbox('settles retries, gone and dead letters; a retry is due at its time', async () => {
      const s = await fresh();
      outbox(s).enable(['delivered']);
      for (const id of ['r', 'g', 'x']) await s.recordCallback(callback(id, BASE_MS));
      const jobs = await outbox(s).claimDue(BASE_MS, 10, 1000);
      const lease = (id: string) => jobs.find((j) => j.forward.taskId === id)!.lease;
      const at = BASE_MS + 100;
      expect(
        await outbox(s).settle([
          {
            taskId: 'r',
            event: 'delivered',
            lease: lease('r'),
            at,
            result: { state: 'pending', nextAttemptAt: BASE_MS + 5000, status: 503, error: 'HTTP 503' },
          },
          {
            taskId: 'g',
            event: 'delivered',
            lease: lease('g'),
            at,
            result: { state: 'gone', status: 410, error: 'HTTP 410' },
          },
          {
            taskId: 'x',
            event: 'delivered',
            lease: lease('x'),
            at,
            result: { state: 'dead', status: null, error: 'timeout' },
          },
        ]),
      ).toBe(3);
      expect(await outbox(s).forwardsOf('r')).toMatchObject([
        {
          state: 'pending',
          attempts: 1,
          nextAttemptAt: BASE_MS + 5000,
          lastStatus: 503,
          lastError: 'HTTP 503',
          lastAttemptAt: at,
          leased: false,
        },
      ]);
      expect(await outbox(s).forwardsOf('g')).toMatchObject([{ state: 'gone', doneAt: at, lastStatus: 410 }]);
      expect(await outbox(s).forwardsOf('x')).toMatchObject([{ state: 'dead', doneAt: at, lastError: 'timeout' }]);
      expect(await outbox(s).claimDue(BASE_MS + 4999, 10, 1000)).toEqual([]);
      expect(
        (await outbox(s).claimDue(BASE_MS + 5000, 10, 1000)).map((j) => [j.forward.taskId, j.forward.attempts]),
      ).toEqual([['r', 2]]);
      expect(await outbox(s).backlog(10)).toEqual({ pending: 1, oldestCreatedAt: BASE_MS });
    });

    itOutbox(
      'redelivers one task and replays dead letters by event time, as new rounds with the same webhook id',
      async () => {
        const s = await fresh();
        outbox(s).enable(['delivered']);
        for (let i = 0; i < 6; i++) await s.recordCallback(callback(`k${i}`, BASE_MS + i * 1000));
        const jobs = await outbox(s).claimDue(BASE_MS + 10_000, 10, 1000);
        const now = BASE_MS + 20_000;
        await outbox(s).settle(
          jobs.map((j) => ({
            taskId: j.forward.taskId,
            event: 'delivered' as const,
            lease: j.lease,
            at: now,
            result:
              j.forward.taskId === 'k5'
                ? { state: 'delivered' as const, status: 200, error: null }
                : { state: 'dead' as const, status: 500, error: 'HTTP 500' },
          })),
        );
        const before = (await outbox(s).forwardsOf('k5'))[0]!;
        expect(await outbox(s).redeliver('k5', now + 1)).toBe(1);
        expect(await outbox(s).forwardsOf('k5')).toEqual([
          { ...before, state: 'pending', since: now + 1, attempts: 0, nextAttemptAt: now + 1, doneAt: null },
        ]);
        expect(await outbox(s).redeliver('nobody', now + 1)).toBe(0);
        // Dead ones with event time in [BASE_MS+1s, BASE_MS+4s): k1, k2, k3; the limit takes the oldest two.
        expect(
          await outbox(s).replay({ state: 'dead', from: BASE_MS + 1000, to: BASE_MS + 4000, limit: 2 }, now + 2),
        ).toBe(2);
        const state = async (id: string) => (await outbox(s).forwardsOf(id))[0]!.state;
        expect([await state('k0'), await state('k1'), await state('k2'), await state('k3')]).toEqual([
          'dead',
          'pending',
          'pending',
          'dead',
        ]);
        // `all` takes every settled state (here the dead k0, k3, k4), never a pending one (k1, k2, k5).
        expect(await outbox(s).replay({ state: 'all', from: BASE_MS, to: BASE_MS + 60_000, limit: 100 }, now + 3)).toBe(
          3,
        );
        expect(
          await outbox(s).replay({ state: 'dead', from: BASE_MS, to: BASE_MS + 60_000, limit: 100 }, now + 3),
        ).toBe(0);
        const due = await outbox(s).claimDue(now + 3, 100, 1000);
        expect(due.map((j) => j.forward.taskId).sort()).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5']);
        expect(due.every((j) => j.forward.attempts === 1)).toBe(true);
        // A forward under a live lease is left to its attempt.
        expect(await outbox(s).redeliver('k0', now + 4)).toBe(0);
      },
    );

    itOutbox('redelivers a forward nobody has claimed yet: due now, attempts 0, the same webhook id', async () => {
      const s = await fresh();
      outbox(s).enable(['delivered']);
      await s.recordCallback(callback('u', BASE_MS + 5000));
      const before = (await outbox(s).forwardsOf('u'))[0]!;
      expect(await outbox(s).claimDue(BASE_MS + 1000, 10, 1000)).toEqual([]);
      expect(await outbox(s).redeliver('u', BASE_MS + 1000)).toBe(1);
      expect(await outbox(s).forwardsOf('u')).toEqual([
        { ...before, since: BASE_MS + 1000, nextAttemptAt: BASE_MS + 1000 },
      ]);
      const jobs = await outbox(s).claimDue(BASE_MS + 1000, 10, 1000);
      expect(jobs.map((j) => [j.forward.taskId, j.forward.webhookId, j.forward.attempts])).toEqual([
        ['u', before.webhookId, 1],
      ]);
      expect(await outbox(s).backlog(10)).toEqual({ pending: 1, oldestCreatedAt: BASE_MS + 5000 });
    });

    itOutbox(
      "deletes a task's forwards with it: retention, and an unregistered record merged into its task",
      async () => {
        const s = await fresh();
        outbox(s).enable(['delivered']);
        await s.recordCallback(callback('old', BASE_MS));
        await s.recordCallback(bySolver('s-1', BASE_MS + 1));
        expect(await outbox(s).backlog(10)).toEqual({ pending: 2, oldestCreatedAt: BASE_MS });
        expect(await s.purge(BASE_MS + 1, 10)).toBe(1);
        expect(await outbox(s).forwardsOf('old')).toEqual([]);
        expect(await outbox(s).backlog(10)).toEqual({ pending: 1, oldestCreatedAt: BASE_MS + 1 });
        await s.register(['app-1'], BASE_MS + 2, BASE_MS + MIN);
        expect(await s.attachSolverTaskId('app-1', 's-1')).toMatchObject({ kind: 'merged' });
        expect(await outbox(s).forwardsOf('s-1')).toEqual([]);
        expect(await outbox(s).backlog(10)).toEqual({ pending: 1, oldestCreatedAt: BASE_MS + 1 });
        expect(await outbox(s).forwardsOf('app-1')).toMatchObject([
          { event: 'delivered', state: 'pending', createdAt: BASE_MS + 1 },
        ]);
        // Registered again after retention, an id gets a new forward with a new webhook id.
        const first = (await outbox(s).forwardsOf('app-1'))[0]!.webhookId;
        expect(await s.purge(BASE_MS + 10, 10)).toBe(1);
        await s.recordCallback(callback('app-1', BASE_MS + 20));
        expect((await outbox(s).forwardsOf('app-1'))[0]!.webhookId).not.toBe(first);
      },
    );

    itOutbox('lets two instances claiming at once take each due forward exactly once', async () => {
      const [a, b] = await pair();
      outbox(a).enable(['delivered']);
      outbox(b).enable(['delivered']);
      const n = 60;
      await Promise.all(
        Array.from({ length: n }, (_, i) => (i % 2 ? a : b).recordCallback(callback(`c${i}`, BASE_MS + i))),
      );
      const claims = await Promise.all(
        Array.from({ length: 8 }, (_, i) => outbox(i % 2 ? a : b).claimDue(BASE_MS + n, 10, 60_000)),
      );
      const ids = claims.flat().map((j) => j.forward.taskId);
      expect(new Set(ids).size).toBe(ids.length);
      const rest = [
        ...(await outbox(a).claimDue(BASE_MS + n, 100, 60_000)),
        ...(await outbox(b).claimDue(BASE_MS + n, 100, 60_000)),
      ];
      expect([...ids, ...rest.map((j) => j.forward.taskId)].sort()).toEqual(
        Array.from({ length: n }, (_, i) => `c${i}`).sort(),
      );
    });

    it('rejects every call with StoreUnavailableError once closed', async () => {
      const s = await factory.fresh();
      await expect(s.ping()).resolves.toBeUndefined();
      await s.close();
      const unavailable = expect.any(StoreUnavailableError);
      await expect(s.ping()).rejects.toEqual(unavailable);
      await expect(s.recordCallback(callback('x', BASE_MS))).rejects.toEqual(unavailable);
      await expect(s.register(['x'], BASE_MS, BASE_MS)).rejects.toEqual(unavailable);
      await expect(s.attachSolverTaskId('x', 'sx')).rejects.toEqual(unavailable);
      await expect(s.get('x')).rejects.toEqual(unavailable);
      await expect(s.list('pending', 10)).rejects.toEqual(unavailable);
      await expect(s.counts()).rejects.toEqual(unavailable);
      await expect(s.expireDue(BASE_MS, 10)).rejects.toEqual(unavailable);
      await expect(s.purge(BASE_MS, 10)).rejects.toEqual(unavailable);
      if (s.reconcile) await expect(s.reconcile()).rejects.toEqual(unavailable);
      if (factory.outbox === false) return;
      const o = outbox(s);
      await expect(o.claimDue(BASE_MS, 10, 1000)).rejects.toEqual(unavailable);
      await expect(o.settle([])).rejects.toEqual(unavailable);
      await expect(o.forwardsOf('x')).rejects.toEqual(unavailable);
      await expect(o.redeliver('x', BASE_MS)).rejects.toEqual(unavailable);
      await expect(o.replay({ state: 'dead', from: 0, to: BASE_MS, limit: 10 }, BASE_MS)).rejects.toEqual(unavailable);
      await expect(o.backlog(10)).rejects.toEqual(unavailable);
      await s.close(); // idempotent
    });
  });
}

// ---- memory ----------------------------------------------------------------------------------------------------

storeConformance('memory', async () => ({
  fresh: async () => new MemoryTaskStore(),
  pair: async () => {
    // A memory store cannot be shared between instances; racing one instance against itself is what remains.
    const s = new MemoryTaskStore();
    return [s, s];
  },
}));

// ---- sqlite ----------------------------------------------------------------------------------------------------

const sqliteDir = mkdtempSync(join(tmpdir(), 'ccm-sqlite-'));
let sqliteFiles = 0;
storeConformance(
  'sqlite (file)',
  async () => ({
    fresh: async () => new SqliteTaskStore(join(sqliteDir, `fresh-${++sqliteFiles}`, 'tasks.db')),
    pair: async () => {
      const file = join(sqliteDir, `pair-${++sqliteFiles}.db`);
      return [new SqliteTaskStore(file), new SqliteTaskStore(file)];
    },
  }),
  async () => rmSync(sqliteDir, { recursive: true, force: true }),
);

storeConformance('sqlite (:memory:)', async () => ({
  fresh: async () => new SqliteTaskStore(':memory:'),
  pair: async () => {
    // An in-memory database belongs to its one connection: as with the memory store, one instance races itself.
    const s = new SqliteTaskStore(':memory:');
    return [s, s];
  },
}));

// ---- redis -----------------------------------------------------------------------------------------------------

let redis: RedisServer | undefined;
let prefixes = 0;
storeConformance(
  'redis',
  async () => {
    const server = await startRedis();
    redis = server;
    // Each test gets its own key prefix on the one server, so no test sees another's keys.
    const open = (prefix: string) => RedisTaskStore.open(server.url, { keyPrefix: prefix });
    return {
      fresh: () => open(`t${++prefixes}:`),
      pair: async () => {
        const prefix = `t${++prefixes}:`;
        return [await open(prefix), await open(prefix)];
      },
    };
  },
  async () => redis?.stop(),
);

// ---- store-specific behaviour ------------------------------------------------------------------------------------

describe('SqliteTaskStore specifics', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ccm-sqlite-x-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps tasks and counts across a reopen, and creates the parent directory', async () => {
    const file = join(dir, 'nested', 'deeper', 'tasks.db');
    const first = new SqliteTaskStore(file);
    await first.register(['keep', 'gone'], BASE_MS, BASE_MS + MIN);
    await first.recordCallback(callback('keep', BASE_MS + 1));
    await first.close();
    const second = new SqliteTaskStore(file);
    expect(await second.get('keep')).toMatchObject({ state: 'delivered', code: 'code-keep' });
    expect(await second.counts()).toEqual({ pending: 1, delivered: 1, missed: 0, late: 0 });
    expect(await second.expireDue(BASE_MS + MIN, 10)).toEqual(['gone']);
    await second.close();
  });

  it('works in memory with sqlite::memory:', async () => {
    const s = await createStore('sqlite::memory:');
    expect(s).toBeInstanceOf(SqliteTaskStore);
    expect(await s.register(['m'], BASE_MS, BASE_MS + MIN)).toEqual({ added: ['m'], merged: [] });
    await s.ping();
    await s.close();
  });

  it('rejects with StoreUnavailableError once closed', async () => {
    const s = new SqliteTaskStore(':memory:');
    await s.close();
    await expect(s.recordCallback(callback('x', BASE_MS))).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});

describe('RedisTaskStore outages', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(async () => server.stop());

  it('rejects promptly while Redis is down and recovers by itself when it returns', async () => {
    const s = await RedisTaskStore.open(server.url, { keyPrefix: 'down:' });
    try {
      await s.register(['before'], BASE_MS, BASE_MS + MIN);
      await server.kill();
      const started = Date.now();
      await expect(s.recordCallback(callback('before', BASE_MS + 1))).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.expireDue(BASE_MS + MIN, 10)).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(2000);

      await server.resume(); // an empty Redis: nothing is persisted in this test server
      const back = Date.now();
      for (;;) {
        try {
          await s.ping();
          break;
        } catch {
          expect(Date.now() - back, 'reconnected within 3 s').toBeLessThan(3000);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      expect(await s.recordCallback(callback('after', BASE_MS + 2))).toEqual(transition('unregistered', 'after'));
    } finally {
      await s.close();
    }
  });

  it('rejects within the command timeout when Redis hangs', async () => {
    const s = await RedisTaskStore.open(server.url, { keyPrefix: 'hang:', commandTimeoutMs: 500 });
    try {
      server.pause();
      const started = Date.now();
      await expect(s.recordCallback(callback('h', BASE_MS))).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(2000);
      server.unpause();
      // The hung command may still have run once Redis woke up; the next one must see the store healthy again.
      await expect(s.ping()).resolves.toBeUndefined();
      const replay = await s.recordCallback(callback('h', BASE_MS + 1));
      expect(['unregistered', 'duplicate']).toContain(replay.kind);
    } finally {
      server.unpause();
      await s.close();
    }
  });

  it('refuses to open when Redis cannot be reached', async () => {
    const dead = await startRedis();
    await dead.stop();
    const started = Date.now();
    await expect(RedisTaskStore.open(dead.url)).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

describe('createStore', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ccm-create-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('opens memory:, sqlite:<path> and sqlite:///absolute', async () => {
    const m = await createStore('memory:');
    expect(m).toBeInstanceOf(MemoryTaskStore);
    const rel = await createStore(`sqlite:${join(dir, 'a', 'x.db')}`);
    expect(rel).toBeInstanceOf(SqliteTaskStore);
    const abs = await createStore(`sqlite://${join(dir, 'y.db')}`);
    expect(abs).toBeInstanceOf(SqliteTaskStore);
    for (const s of [m, rel, abs]) await s.close();
  });

  it('opens redis://host:port/db with a key prefix', async () => {
    const server = await startRedis();
    try {
      const s = await createStore(`${server.url.replace(/\/0$/, '/3')}?prefix=app1:`);
      expect(s).toBeInstanceOf(RedisTaskStore);
      expect((s as unknown as RedisTaskStore).keyPrefix).toBe('app1:');
      expect(await s.register(['r'], BASE_MS, BASE_MS + MIN)).toEqual({ added: ['r'], merged: [] });
      await s.close();
    } finally {
      await server.stop();
    }
  });

  it.each([
    ['postgres://localhost/db', /unsupported store URL scheme/],
    ['sqlite:', /needs a file path/],
    ['sqlite://host/file.db', /names a host/],
    ['redis://localhost:6379/notanumber', /database number/],
    ['redis://user:secret@localhost:6379/x', /\[credentials\]/],
    ['memory', /unsupported store URL scheme/],
  ])('rejects %s with a clear message', async (url, message) => {
    const error = await createStore(url).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toMatch(message);
    expect(error?.message).not.toContain('secret');
  });
});
