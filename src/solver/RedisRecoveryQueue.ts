import type { Redis } from 'ioredis';
import type { ParkedEntry, RecoveryEntry, RecoveryQueue } from './RecoveryQueue.ts';

/**
 * RecoveryQueue shared by every instance on one Redis: a sorted set `<prefix>recovery:due` scored by the next ask
 * (or, while leased, by the lease's end, so a leased entry is simply not due), and a hash per task
 * `<prefix>recovery:task:<id>` with solver, solver task id, deadline, asks and the lease owner. A parked task (no
 * solver task id yet) is a hash `<prefix>recovery:parked:<id>` that expires at the task's deadline, outside the
 * sorted set. Each operation is one Lua script, so two instances never claim one entry at once.
 */

const CLAIM = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[5] .. id
  local f = redis.call('HMGET', key, 'solver', 'sid', 'deadline', 'due', 'polls')
  if f[1] then
    redis.call('HSET', key, 'owner', ARGV[3])
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[4]), id)
    table.insert(out, {id, f[1], f[2], f[3], f[4], f[5]})
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out`;

const RESCHEDULE = `
if redis.call('HGET', KEYS[2], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'owner', '', 'due', ARGV[2], 'polls', ARGV[3])
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]), ARGV[4])
return 1`;

const ADD = `
redis.call('DEL', KEYS[3])
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], 'solver', ARGV[1], 'sid', ARGV[2], 'deadline', ARGV[3], 'due', ARGV[4], 'polls', '0', 'owner', '')
redis.call('ZADD', KEYS[1], tonumber(ARGV[4]), ARGV[5])
return 1`;

const PARK = `
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], 'solver', ARGV[1], 'deadline', ARGV[2], 'due', ARGV[3])
redis.call('PEXPIREAT', KEYS[2], ARGV[2])
return 1`;

const ATTACH = `
local f = redis.call('HMGET', KEYS[3], 'solver', 'deadline', 'due')
if not f[1] then return 0 end
redis.call('DEL', KEYS[3])
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
redis.call('HSET', KEYS[2], 'solver', f[1], 'sid', ARGV[1], 'deadline', f[2], 'due', f[3], 'polls', '0', 'owner', '')
redis.call('ZADD', KEYS[1], tonumber(f[3]), ARGV[2])
return 1`;

export class RedisRecoveryQueue implements RecoveryQueue {
  readonly #redis: Redis;
  readonly #due: string;
  readonly #taskPrefix: string;
  readonly #parkedPrefix: string;
  readonly #ownsConnection: boolean;

  constructor(redis: Redis, options: { prefix?: string; ownsConnection?: boolean } = {}) {
    this.#redis = redis;
    const prefix = options.prefix ?? 'ccm:';
    this.#due = `${prefix}recovery:due`;
    this.#taskPrefix = `${prefix}recovery:task:`;
    this.#parkedPrefix = `${prefix}recovery:parked:`;
    this.#ownsConnection = options.ownsConnection ?? false;
  }

  async add(entries: readonly Omit<RecoveryEntry, 'polls'>[]): Promise<void> {
    if (entries.length === 0) return;
    const pipeline = this.#redis.pipeline();
    for (const e of entries) {
      pipeline.eval(
        ADD,
        3,
        this.#due,
        this.#taskPrefix + e.id,
        this.#parkedPrefix + e.id,
        e.solver,
        e.solverTaskId,
        e.deadlineAt,
        e.dueAt,
        e.id,
      );
    }
    const results = await pipeline.exec();
    const failed = results?.find(([error]) => error);
    if (failed) throw failed[0];
  }

  async park(entries: readonly ParkedEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const pipeline = this.#redis.pipeline();
    for (const e of entries) {
      pipeline.eval(PARK, 2, this.#taskPrefix + e.id, this.#parkedPrefix + e.id, e.solver, e.deadlineAt, e.dueAt);
    }
    const results = await pipeline.exec();
    const failed = results?.find(([error]) => error);
    if (failed) throw failed[0];
  }

  async attach(id: string, solverTaskId: string): Promise<boolean> {
    const r = await this.#redis.eval(
      ATTACH,
      3,
      this.#due,
      this.#taskPrefix + id,
      this.#parkedPrefix + id,
      solverTaskId,
      id,
    );
    return r === 1;
  }

  async claim(now: number, limit: number, owner: string, leaseMs: number): Promise<RecoveryEntry[]> {
    if (limit <= 0) return [];
    const rows = (await this.#redis.eval(
      CLAIM,
      1,
      this.#due,
      now,
      limit,
      owner,
      leaseMs,
      this.#taskPrefix,
    )) as string[][];
    return rows.map(([id, solver, sid, deadline, due, polls]) => ({
      id: id!,
      solver: solver!,
      solverTaskId: sid!,
      deadlineAt: Number(deadline),
      dueAt: Number(due),
      polls: Number(polls),
    }));
  }

  async reschedule(id: string, owner: string, dueAt: number, polls: number): Promise<boolean> {
    const r = await this.#redis.eval(RESCHEDULE, 2, this.#due, this.#taskPrefix + id, owner, dueAt, polls, id);
    return r === 1;
  }

  async remove(id: string): Promise<void> {
    await this.#redis
      .multi()
      .zrem(this.#due, id)
      .del(this.#taskPrefix + id, this.#parkedPrefix + id)
      .exec();
  }

  async size(): Promise<number> {
    return this.#redis.zcard(this.#due);
  }

  async close(): Promise<void> {
    if (this.#ownsConnection) await this.#redis.quit().catch(() => {});
  }
}
