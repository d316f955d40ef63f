import { Redis } from 'ioredis';
import type { CallbackFormat, Outcome } from '../../metrics/contract.ts';
import {
  type CallbackResult,
  type CallbackTransition,
  StoreUnavailableError,
  TASK_STATES,
  type TaskCounts,
  type TaskRecord,
  type TaskState,
  type TaskStore,
} from '../TaskStore.ts';

export interface RedisTaskStoreOptions {
  /** Prepended to every key, so several deployments can share one Redis database. Default `ccm:`. */
  readonly keyPrefix?: string;
  /** A command without a reply after this many ms rejects (a hung Redis must still give a prompt 503). Default 1000. */
  readonly commandTimeoutMs?: number;
  /** How long one connection attempt may take, and how long `open` waits for the first one. Default 2000. */
  readonly connectTimeoutMs?: number;
  /** Connection errors (ioredis reports them as events while it reconnects); for logging. */
  readonly onConnectionError?: (error: Error) => void;
}

/** Ids registered per script call: large batches are split so one script never blocks Redis for long. */
const REGISTER_CHUNK = 1000;

/*
 * Key layout (P = key prefix):
 *   P task:<id>        hash: state, registered (1/0), outcome, code, format, submittedAt, deadlineAt, receivedAt,
 *                      callbacks
 *   P state:<state>    sorted set of ids per state: pending scored by deadline (it doubles as the deadline queue
 *                      that expiry pops from), settled states by settling time (the callback's receipt, or the
 *                      deadline when missed)
 *   P settled          sorted set of every settled id (delivered, missed, late, unregistered), scored by its
 *                      settling time: the callback's receipt, or the deadline when missed. The retention queue.
 *   P counts           hash: pending, delivered, missed, late (registered tasks only)
 *   P ping             written by ping()
 * Each transition is one Lua script, which Redis runs atomically: the state check and every write it implies
 * (hash, per-state sets, counts) happen with no other command in between, so with several receivers on one Redis
 * each transition happens, and is reported to a caller, exactly once.
 *
 * Scripts that discover ids inside Redis (register, expire, list) build task keys from the prefix, so this store
 * needs one Redis (primary), not Redis Cluster.
 */

/** KEYS: counts, state:pending. ARGV: task key prefix, submittedAt, deadlineAt, ids… → newly registered ids. */
const REGISTER = `
local added = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local key = ARGV[1] .. id
  if redis.call('HSETNX', key, 'state', 'pending') == 1 then
    redis.call('HSET', key, 'registered', '1', 'submittedAt', ARGV[2], 'deadlineAt', ARGV[3], 'callbacks', '0')
    redis.call('ZADD', KEYS[2], ARGV[3], id)
    added[#added + 1] = id
  end
end
if #added > 0 then redis.call('HINCRBY', KEYS[1], 'pending', #added) end
return added
`;

/**
 * KEYS: task, counts, state:pending, state:delivered, state:missed, state:late, settled.
 * ARGV: id, outcome, code, format, receivedAt → { kind, submittedAt? }.
 */
const RECORD_CALLBACK = `
local task = KEYS[1]
local id = ARGV[1]
local state = redis.call('HGET', task, 'state')
if not state then
  redis.call('HSET', task, 'state', 'delivered', 'registered', '0', 'outcome', ARGV[2], 'code', ARGV[3],
    'format', ARGV[4], 'receivedAt', ARGV[5], 'callbacks', '1')
  redis.call('ZADD', KEYS[4], ARGV[5], id)
  redis.call('ZADD', KEYS[7], ARGV[5], id)
  return {'unregistered'}
end
redis.call('HINCRBY', task, 'callbacks', 1)
if state ~= 'pending' and state ~= 'missed' then return {'duplicate'} end
local submitted = redis.call('HGET', task, 'submittedAt') or ARGV[5]
redis.call('HSET', task, 'outcome', ARGV[2], 'code', ARGV[3], 'format', ARGV[4], 'receivedAt', ARGV[5])
redis.call('ZADD', KEYS[7], ARGV[5], id)
if state == 'pending' then
  redis.call('HSET', task, 'state', 'delivered')
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[4], ARGV[5], id)
  redis.call('HINCRBY', KEYS[2], 'pending', -1)
  redis.call('HINCRBY', KEYS[2], 'delivered', 1)
  return {'delivered', submitted}
end
redis.call('HSET', task, 'state', 'late')
redis.call('ZREM', KEYS[5], id)
redis.call('ZADD', KEYS[6], ARGV[5], id)
redis.call('HINCRBY', KEYS[2], 'missed', -1)
redis.call('HINCRBY', KEYS[2], 'late', 1)
return {'late', submitted}
`;

/**
 * KEYS: state:pending, state:missed, counts, settled. ARGV: task key prefix, now, limit → moved ids, deadline order.
 * Only the due head of the deadline set is read (ZRANGEBYSCORE … LIMIT), so the cost is bounded by `limit`.
 */
const EXPIRE_DUE = `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local moved = {}
for i = 1, #due, 2 do
  local id = due[i]
  local key = ARGV[1] .. id
  redis.call('ZREM', KEYS[1], id)
  if redis.call('HGET', key, 'state') == 'pending' then
    redis.call('HSET', key, 'state', 'missed')
    redis.call('ZADD', KEYS[2], due[i + 1], id)
    redis.call('ZADD', KEYS[4], due[i + 1], id)
    moved[#moved + 1] = id
  end
end
if #moved > 0 then
  redis.call('HINCRBY', KEYS[3], 'pending', -#moved)
  redis.call('HINCRBY', KEYS[3], 'missed', #moved)
end
return moved
`;

/**
 * KEYS: settled, state:delivered, state:missed, state:late. ARGV: task key prefix, olderThan (exclusive), limit →
 * how many tasks were deleted. Reads only the oldest `limit` entries of the settled set. Counts stay as they are.
 */
const PURGE = `
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local sets = { delivered = KEYS[2], missed = KEYS[3], late = KEYS[4] }
local deleted = 0
for _, id in ipairs(old) do
  local key = ARGV[1] .. id
  local state = redis.call('HGET', key, 'state')
  redis.call('ZREM', KEYS[1], id)
  if state and sets[state] then
    redis.call('DEL', key)
    redis.call('ZREM', sets[state], id)
    deleted = deleted + 1
  end
end
return deleted
`;

/** KEYS: state:<state>. ARGV: task key prefix, limit → { id, {field, value, …}, … }, one consistent snapshot. */
const LIST = `
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. id)
end
return out
`;

interface Scripts {
  ccmRegister(...args: string[]): Promise<string[]>;
  ccmRecordCallback(...args: string[]): Promise<[string, string?]>;
  ccmExpireDue(...args: string[]): Promise<string[]>;
  ccmList(...args: string[]): Promise<Array<string | string[]>>;
  ccmPurge(...args: string[]): Promise<number>;
}

/**
 * The shared store: several receiver instances on one Redis. ioredis is configured to fail fast rather than queue:
 * while Redis is unreachable every call rejects at once (no offline queue), a command in flight when the connection
 * drops rejects instead of being re-sent (a re-sent transition script could run twice), and a hung Redis is cut off
 * by the command timeout. ioredis keeps reconnecting in the background (at least once a second), so the store
 * recovers by itself when Redis returns.
 *
 * Durability is Redis's: run it with `appendonly yes` (fsync every second, or `appendfsync always`) so that an
 * acknowledged result survives a Redis restart.
 */
export class RedisTaskStore implements TaskStore {
  readonly #redis: Redis & Scripts;
  readonly #prefix: string;
  readonly #taskPrefix: string;
  readonly #keys: { counts: string; ping: string; settled: string; state: Record<TaskState, string> };
  #closed = false;

  /** Creates the store without waiting for a connection; prefer `RedisTaskStore.open`. */
  constructor(url: string, options: RedisTaskStoreOptions = {}) {
    const p = options.keyPrefix ?? 'ccm:';
    this.#prefix = p;
    this.#taskPrefix = `${p}task:`;
    this.#keys = {
      counts: `${p}counts`,
      ping: `${p}ping`,
      settled: `${p}settled`,
      state: Object.fromEntries(TASK_STATES.map((s) => [s, `${p}state:${s}`])) as Record<TaskState, string>,
    };
    const redis = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: options.commandTimeoutMs ?? 1000,
      connectTimeout: options.connectTimeoutMs ?? 2000,
      retryStrategy: (attempt) => Math.min(100 * attempt, 1000),
    });
    // Without a listener ioredis prints every reconnect failure; the failures themselves surface as rejections.
    redis.on('error', (error: Error) => options.onConnectionError?.(error));
    redis.defineCommand('ccmRegister', { numberOfKeys: 2, lua: REGISTER });
    redis.defineCommand('ccmRecordCallback', { numberOfKeys: 7, lua: RECORD_CALLBACK });
    redis.defineCommand('ccmExpireDue', { numberOfKeys: 4, lua: EXPIRE_DUE });
    redis.defineCommand('ccmPurge', { numberOfKeys: 4, lua: PURGE });
    redis.defineCommand('ccmList', { numberOfKeys: 1, lua: LIST, readOnly: true });
    this.#redis = redis as Redis & Scripts;
  }

  /** Connects and waits until Redis answers; rejects (and stops reconnecting) when it does not within the timeout. */
  static async open(url: string, options: RedisTaskStoreOptions = {}): Promise<RedisTaskStore> {
    const store = new RedisTaskStore(url, options);
    try {
      await store.#redis.connect();
      await store.ping();
      return store;
    } catch (error) {
      await store.close();
      throw new StoreUnavailableError(`cannot reach Redis: ${(error as Error).message}`, { cause: error });
    }
  }

  /** The key prefix in use. */
  get keyPrefix(): string {
    return this.#prefix;
  }

  async register(ids: readonly string[], submittedAt: number, deadlineAt: number): Promise<string[]> {
    const added: string[] = [];
    for (let i = 0; i < ids.length; i += REGISTER_CHUNK) {
      const chunk = ids.slice(i, i + REGISTER_CHUNK);
      const k = this.#keys;
      const args = [k.counts, k.state.pending, this.#taskPrefix, String(submittedAt), String(deadlineAt), ...chunk];
      added.push(...(await this.#call('register', () => this.#redis.ccmRegister(...args))));
    }
    return added;
  }

  async recordCallback(r: CallbackResult): Promise<CallbackTransition> {
    const s = this.#keys.state;
    const reply = await this.#call('recordCallback', () =>
      this.#redis.ccmRecordCallback(
        this.#taskPrefix + r.taskId,
        this.#keys.counts,
        s.pending,
        s.delivered,
        s.missed,
        s.late,
        this.#keys.settled,
        r.taskId,
        r.outcome,
        r.code,
        r.format,
        String(r.receivedAt),
      ),
    );
    const [kind, submittedAt] = reply;
    if (kind === 'delivered' || kind === 'late') return { kind, submittedAt: Number(submittedAt) };
    if (kind === 'unregistered' || kind === 'duplicate') return { kind };
    throw new StoreUnavailableError(`Redis store: unexpected reply to recordCallback: ${String(kind)}`);
  }

  async expireDue(now: number, limit: number): Promise<string[]> {
    if (limit <= 0) {
      this.#assertOpen();
      return [];
    }
    const k = this.#keys;
    return this.#call('expireDue', () =>
      this.#redis.ccmExpireDue(
        k.state.pending,
        k.state.missed,
        k.counts,
        k.settled,
        this.#taskPrefix,
        String(now),
        String(limit),
      ),
    );
  }

  async purge(olderThan: number, limit: number): Promise<number> {
    if (limit <= 0) {
      this.#assertOpen();
      return 0;
    }
    const k = this.#keys;
    const deleted = await this.#call('purge', () =>
      this.#redis.ccmPurge(
        k.settled,
        k.state.delivered,
        k.state.missed,
        k.state.late,
        this.#taskPrefix,
        String(olderThan),
        String(limit),
      ),
    );
    return Number(deleted);
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    const hash = await this.#call('get', () => this.#redis.hgetall(this.#taskPrefix + id));
    return toRecord(id, hash);
  }

  async list(state: TaskState, limit: number): Promise<TaskRecord[]> {
    if (limit <= 0) {
      this.#assertOpen();
      return [];
    }
    const flat = await this.#call('list', () =>
      this.#redis.ccmList(this.#keys.state[state], this.#taskPrefix, String(limit)),
    );
    const out: TaskRecord[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const fields = flat[i + 1] as string[];
      const hash: Record<string, string> = {};
      for (let j = 0; j + 1 < fields.length; j += 2) hash[fields[j]!] = fields[j + 1]!;
      const record = toRecord(flat[i] as string, hash);
      if (record) out.push(record);
    }
    return out;
  }

  async counts(): Promise<TaskCounts> {
    const [pending, delivered, missed, late] = await this.#call('counts', () =>
      this.#redis.hmget(this.#keys.counts, 'pending', 'delivered', 'missed', 'late'),
    );
    return {
      pending: Number(pending ?? 0),
      delivered: Number(delivered ?? 0),
      missed: Number(missed ?? 0),
      late: Number(late ?? 0),
    };
  }

  /**
   * A small write, not PING: a Redis that answers but refuses writes (maxmemory with noeviction, a failed RDB save
   * with stop-writes-on-bgsave-error, a read-only replica after failover) cannot store callbacks either.
   */
  async ping(): Promise<void> {
    await this.#call('ping', () => this.#redis.set(this.#keys.ping, String(Date.now()), 'PX', 60_000));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (this.#redis.status === 'ready') await this.#redis.quit();
    } catch {
      // Closing anyway.
    } finally {
      this.#redis.disconnect();
    }
  }

  async #call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.#assertOpen();
    try {
      return await fn();
    } catch (error) {
      throw new StoreUnavailableError(`Redis store: ${op} failed: ${(error as Error).message}`, { cause: error });
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreUnavailableError('Redis store is closed');
  }
}

function toRecord(id: string, h: Record<string, string>): TaskRecord | undefined {
  const state = h.state as TaskState | undefined;
  if (state === undefined) return undefined;
  return {
    id,
    state,
    registered: h.registered === '1',
    outcome: (h.outcome as Outcome | undefined) ?? null,
    code: h.code ?? null,
    format: (h.format as CallbackFormat | undefined) ?? null,
    submittedAt: num(h.submittedAt),
    deadlineAt: num(h.deadlineAt),
    receivedAt: num(h.receivedAt),
    callbacks: Number(h.callbacks ?? 0),
  };
}

function num(value: string | undefined): number | null {
  return value === undefined || value === '' ? null : Number(value);
}
