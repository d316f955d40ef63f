import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SqliteTaskStore } from '../packages/koa/src/delivery/stores/SqliteTaskStore.ts';
import { type CallbackResult, StoreUnavailableError } from '../packages/koa/src/delivery/TaskStore.ts';
import { requireBinary } from './support/binaries.ts';
import { SOURCE_CONDITION } from './support/server.ts';

/*
 * Write failures, simulated in a way that holds when the tests run as root. Root ignores file permissions, so a
 * chmod 0444 database stays writable, and remounting read-only or filling a size-limited tmpfs needs mount rights.
 * What root cannot escape is RLIMIT_FSIZE: with the soft file-size limit at 0, the kernel fails every write(2) to a
 * regular file with EFBIG. So the store runs in a child process, and `prlimit --pid <child> --fsize=0:` makes every
 * SQLite write in it fail at the system-call level (the WAL append on COMMIT), exactly the path a full disk or an
 * I/O error takes (SQLite reports SQLITE_IOERR_WRITE; ENOSPC would be SQLITE_FULL). Reads keep working, as they
 * would on a full disk. Raising the limit again is the "disk freed" moment. Only the child is limited: the test
 * runner keeps writing its own files.
 */

const BASE_MS = 1_700_000_000_000;
const MIN = 60_000;
const STORE_MODULE = pathToFileURL(
  join(import.meta.dirname, '../packages/koa/src/delivery/stores/SqliteTaskStore.ts'),
).href;

/** The child: one SqliteTaskStore, driven over IPC. Errors travel back with their name. */
const CHILD = `
import { SqliteTaskStore } from ${JSON.stringify(STORE_MODULE)};
const store = new SqliteTaskStore(process.env.CCM_DB);
const cb = (taskId, receivedAt) => ({ taskId, outcome: 'solved', code: 'c-' + taskId, format: 'query', receivedAt });
const ops = {
  // Callbacks one by one, announcing each as soon as the store has acknowledged it.
  async flood(ids, at) {
    for (const id of ids) {
      await store.recordCallback(cb(id, at));
      process.send({ ack: id });
    }
  },
  // A receiver's life in miniature: a callback for every id, a sweep every few callbacks.
  // Both children start at the same wall-clock moment and pause between requests as a server does (back-to-back
  // transactions would let one process starve the other's busy-wait), so their transactions really interleave.
  async race(ids, at, now, startAt) {
    const tally = { delivered: 0, late: 0, duplicate: 0, unregistered: 0, moved: [] };
    await new Promise((resolve) => setTimeout(resolve, startAt - Date.now()));
    for (let i = 0; i < ids.length; i++) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (i % 4 === 0) tally.moved.push(...(await store.expireDue(now, 2)));
      tally[(await store.recordCallback(cb(ids[i], at))).kind]++;
    }
    tally.moved.push(...(await store.expireDue(now, 1e6)));
    return tally;
  },
};
process.on('message', async (msg) => {
  try {
    const fn = ops[msg.op] ?? ((...args) => store[msg.op](...args));
    const value = await fn(...msg.args);
    process.send({ id: msg.id, ok: true, value: value ?? null });
  } catch (error) {
    process.send({ id: msg.id, ok: false, name: error.name, message: error.message });
  }
});
process.send({ ready: true });
`;

interface Reply {
  id?: number;
  ok?: boolean;
  value?: unknown;
  name?: string;
  message?: string;
  ready?: boolean;
  ack?: string;
}

/** A SqliteTaskStore in its own process, so it can be resource-limited or SIGKILLed. */
class StoreProcess {
  readonly child: ChildProcess;
  readonly acks: string[] = [];
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #next = 0;
  #stderr = '';

  private constructor(child: ChildProcess) {
    this.child = child;
    child.stderr?.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-4000);
    });
    child.on('message', (m: Reply) => {
      if (m.ack !== undefined) this.acks.push(m.ack);
      if (m.id === undefined) return;
      const waiter = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      if (m.ok) waiter?.resolve(m.value);
      else waiter?.reject(Object.assign(new Error(m.message), { name: m.name }));
    });
    child.on('exit', () => {
      for (const w of this.#pending.values()) w.reject(new Error(`store process exited\n${this.#stderr}`));
      this.#pending.clear();
    });
  }

  static async start(file: string): Promise<StoreProcess> {
    const child = spawn(process.execPath, [SOURCE_CONDITION, '--input-type=module', '-e', CHILD], {
      env: { ...process.env, CCM_DB: file },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    const proc = new StoreProcess(child);
    await new Promise<void>((resolve, reject) => {
      child.on('message', (m: Reply) => m.ready && resolve());
      child.once('exit', (code) => reject(new Error(`store process exited with ${code}\n${proc.#stderr}`)));
    });
    return proc;
  }

  call<T = unknown>(op: string, ...args: unknown[]): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, op, args });
    });
  }

  /** Sets the child's soft RLIMIT_FSIZE (bytes, or 'unlimited'); the hard limit stays, so no privilege is needed. */
  limitFileSize(limit: number | 'unlimited'): void {
    execFileSync(requireBinary('prlimit'), ['--pid', String(this.child.pid), `--fsize=${limit}:`]);
  }

  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill(signal);
    await exited;
  }
}

function callback(taskId: string, receivedAt: number): CallbackResult {
  return { taskId, outcome: 'solved', code: `c-${taskId}`, format: 'query', receivedAt };
}

const dir = mkdtempSync(join(tmpdir(), 'ccm-sqlite-faults-'));
let files = 0;
const newFile = () => join(dir, `f${++files}`, 'tasks.db');
const children: StoreProcess[] = [];
const startChild = async (file: string) => {
  const c = await StoreProcess.start(file);
  children.push(c);
  return c;
};

afterEach(async () => {
  for (const c of children.splice(0)) await c.kill('SIGKILL');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('SqliteTaskStore when the disk refuses writes', () => {
  it('rejects writes and ping with StoreUnavailableError, keeps state intact, and recovers when writes work again', async () => {
    const file = newFile();
    const proc = await startChild(file);
    await proc.call('register', ['t1', 't2'], BASE_MS, BASE_MS + MIN);
    await proc.call('ping');

    proc.limitFileSize(0);
    // All settled at once: awaiting them one by one left the later ones rejected with no handler yet whenever the
    // child's answers arrived together (vitest then reports unhandled rejections).
    const attempts = await Promise.allSettled([
      proc.call('recordCallback', callback('t1', BASE_MS + 1)),
      proc.call('ping'),
      proc.call('register', ['t3'], BASE_MS, BASE_MS + MIN),
      proc.call('expireDue', BASE_MS + MIN, 10),
      proc.call('recordCallback', callback('unknown', BASE_MS + 1)),
    ]);
    for (const attempt of attempts) {
      expect(attempt).toMatchObject({ status: 'rejected', reason: { name: 'StoreUnavailableError' } });
    }
    // Reads still work, and the failed transactions left nothing behind.
    expect(await proc.call('get', 't1')).toMatchObject({ state: 'pending', callbacks: 0 });
    expect(await proc.call('get', 'unknown')).toBeNull();
    expect(await proc.call('counts')).toEqual({ pending: 2, delivered: 0, missed: 0, late: 0 });

    proc.limitFileSize('unlimited');
    await proc.call('ping');
    // The callback that failed was never applied, so it delivers now rather than counting as a duplicate.
    expect(await proc.call('recordCallback', callback('t1', BASE_MS + 2))).toEqual({
      kind: 'delivered',
      id: 't1',
      submittedAt: BASE_MS,
    });
    expect(await proc.call('register', ['t3'], BASE_MS, BASE_MS + MIN)).toEqual({ added: ['t3'], merged: [] });
    await proc.kill();

    const reopened = new SqliteTaskStore(file);
    expect(await reopened.get('t1')).toMatchObject({ state: 'delivered', receivedAt: BASE_MS + 2, callbacks: 1 });
    expect(await reopened.counts()).toEqual({ pending: 2, delivered: 1, missed: 0, late: 0 });
    await reopened.close();
  });

  it('rejects a write it cannot lock within the busy timeout instead of hanging, then writes once the lock is free', async () => {
    const file = newFile();
    const store = new SqliteTaskStore(file, { busyTimeoutMs: 200 });
    await store.register(['locked'], BASE_MS, BASE_MS + MIN);
    const other = new DatabaseSync(file);
    other.exec('BEGIN IMMEDIATE'); // another process (here: connection) holds the write lock
    const started = Date.now();
    const error = await store.recordCallback(callback('locked', BASE_MS + 1)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).message).toMatch(/locked|busy/i);
    await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(Date.now() - started).toBeLessThan(2000);
    other.exec('ROLLBACK');
    other.close();
    expect(await store.recordCallback(callback('locked', BASE_MS + 2))).toEqual({
      kind: 'delivered',
      id: 'locked',
      submittedAt: BASE_MS,
    });
    await store.close();
  });
});

describe('SqliteTaskStore across processes', () => {
  it('loses no acknowledged callback when the process is SIGKILLed mid-stream', async () => {
    const file = newFile();
    const ids = Array.from({ length: 5000 }, (_, i) => `k${i}`);
    const setup = new SqliteTaskStore(file);
    await setup.register(ids, BASE_MS, BASE_MS + MIN);
    await setup.close();

    const proc = await startChild(file);
    void proc.call('flood', ids, BASE_MS + 1).catch(() => {});
    const until = Date.now() + 10_000;
    while (proc.acks.length < 300 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    await proc.kill('SIGKILL');
    const acked = [...proc.acks];
    expect(acked.length).toBeGreaterThanOrEqual(300);
    expect(acked.length).toBeLessThan(ids.length); // killed mid-stream, not after the end

    const reopened = new SqliteTaskStore(file);
    for (const id of acked) expect((await reopened.get(id))?.state, id).toBe('delivered');
    // Counts match the rows: whatever committed (acknowledged or not) was counted in the same transaction.
    const delivered = (await reopened.list('delivered', ids.length)).length;
    expect(delivered).toBeGreaterThanOrEqual(acked.length);
    expect(await reopened.counts()).toEqual({ pending: ids.length - delivered, delivered, missed: 0, late: 0 });
    await reopened.close();
  });

  it('counts each transition once when two processes sweep and record callbacks on one file', async () => {
    const file = newFile();
    const n = 600;
    const ids = Array.from({ length: n }, (_, i) => `x${i}`);
    const setup = new SqliteTaskStore(file);
    // Half the tasks are already due when the race starts, so expiry and callbacks genuinely collide.
    await setup.register(ids.slice(0, n / 2), BASE_MS, BASE_MS + MIN);
    await setup.register(ids.slice(n / 2), BASE_MS, BASE_MS + 60 * MIN);
    await setup.close();

    const [a, b] = await Promise.all([startChild(file), startChild(file)]);
    type Tally = { delivered: number; late: number; duplicate: number; unregistered: number; moved: string[] };
    const reversed = [...ids].reverse();
    const startAt = Date.now() + 200;
    const [ta, tb] = await Promise.all([
      a.call<Tally>('race', ids, BASE_MS + 2 * MIN, BASE_MS + MIN, startAt),
      b.call<Tally>('race', reversed, BASE_MS + 2 * MIN, BASE_MS + MIN, startAt),
    ]);
    // Both did real work on the same tasks: each sweeper moved some, each process saw the other's results.
    for (const t of [ta, tb]) {
      expect(t.moved.length).toBeGreaterThan(0);
      expect(t.duplicate).toBeGreaterThan(0);
      expect(t.delivered + t.late).toBeGreaterThan(0);
    }
    const moved = [...ta.moved, ...tb.moved];
    expect(new Set(moved).size).toBe(moved.length);
    // Every task got two callbacks: exactly one of them moved it (delivered or late), the other was a duplicate.
    expect(ta.delivered + tb.delivered + ta.late + tb.late).toBe(n);
    expect(ta.duplicate + tb.duplicate).toBe(n);
    expect(ta.unregistered + tb.unregistered).toBe(0);
    // A task the sweepers moved got its callback afterwards, so it is late; only due tasks were moved.
    expect(ta.late + tb.late).toBe(moved.length);
    expect(moved.every((id) => ids.indexOf(id) < n / 2)).toBe(true);
    expect(await a.call('counts')).toEqual({
      pending: 0,
      delivered: ta.delivered + tb.delivered,
      missed: 0,
      late: ta.late + tb.late,
    });
  });
});
