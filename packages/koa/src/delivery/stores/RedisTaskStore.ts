import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import {
  type AttachResult,
  type CallbackResult,
  type CallbackTransition,
  type ForwardOutbox,
  type NewTask,
  REGISTER_BATCH_SIZE,
  type RegisterResult,
  StoreUnavailableError,
  type TaskCounts,
  type TaskRecord,
  type TaskState,
  type TaskStore,
} from '../TaskStore.ts';
import {
  defineScripts,
  type LinkReply,
  pairs,
  type Scripts,
  toAttachResult,
  toRecord,
  toTransition,
} from './redisCommands.ts';
import { RedisForwardOutbox } from './redisForwardOutbox.ts';
import { type RedisKeys, redisKeys } from './redisKeys.ts';
import { UnconfirmedCallbacks } from './redisUnconfirmed.ts';

export interface RedisTaskStoreOptions {
  /** Prepended to every key, so several deployments can share one Redis database. Default `ccm:`. */
  readonly keyPrefix?: string;
  /** A command without a reply after this many ms rejects (a hung Redis must still give a prompt 503). Default 1000. */
  readonly commandTimeoutMs?: number;
  /** How long one connection attempt may take, and how long `open` waits for the first one. Default 2000. */
  readonly connectTimeoutMs?: number;
  /** Connection errors (ioredis reports them as events while it reconnects); for logging. */
  readonly onConnectionError?: (error: Error) => void;
  /**
   * How many callbacks whose `recordCallback` rejected are remembered until `reconcile` settles them. Beyond it the
   * oldest is forgotten (counted in `unconfirmedDropped` and reported through `onWarning`): if Redis had applied it,
   * no instance counts it. Default 10,000.
   */
  readonly unconfirmedLimit?: number;
  /** Conditions worth a log line that are not errors of a call (an unconfirmed callback forgotten). */
  readonly onWarning?: (message: string) => void;
}

/**
 * The shared store: several receiver instances on one Redis. ioredis is configured to fail fast rather than queue:
 * while Redis is unreachable every call rejects at once (no offline queue), a command in flight when the connection
 * drops rejects instead of being re-sent (a re-sent transition script could run twice), and a hung Redis is cut off
 * by the command timeout. ioredis keeps reconnecting in the background (at least once a second), so the store
 * recovers by itself when Redis returns.
 *
 * A rejected call is not proof that nothing happened: the script may have run with its reply lost (the connection
 * dropped after Redis read the command, or the reply came after the command timeout). So every recordCallback
 * passes a fresh token; the script that settles a task writes it into that task's own hash (`firstToken`, with the
 * transition's kind), and a duplicate writes it as the task's `lastDupToken`. Nothing else is kept in Redis: no key
 * per call, no TTL; the fields go when retention deletes the task. A rejected call's token is kept in memory
 * (bounded) until `reconcile` asks the task whether it carries that token. A lost duplicate's reply is recovered only
 * while no later duplicate of the same task has overwritten `lastDupToken`; otherwise the duplicates counter misses
 * it (nothing else does: a duplicate changes no state).
 *
 * Durability is Redis's: run it with `appendonly yes` (fsync every second, or `appendfsync always`) so that an
 * acknowledged result survives a Redis restart.
 *
 * The key layout is in redisKeys.ts, the Lua in redisTaskScripts.ts and redisForwardScripts.ts, their commands and
 * reply decoding in redisCommands.ts, the rejected calls kept for `reconcile` in redisUnconfirmed.ts, and the
 * forwarding outbox in redisForwardOutbox.ts.
 */
export class RedisTaskStore implements TaskStore {
  readonly #redis: Redis & Scripts;
  readonly #keys: RedisKeys;
  /** Tokens are this instance's random prefix and a counter: unique across instances, cheap per call. */
  readonly #tokenPrefix = randomBytes(9).toString('base64url');
  #tokenCounter = 0;
  readonly #unconfirmed: UnconfirmedCallbacks;
  #closed = false;
  readonly #outbox: RedisForwardOutbox;
  readonly forwards: ForwardOutbox;

  /** Creates the store without waiting for a connection; prefer `RedisTaskStore.open`. */
  constructor(url: string, options: RedisTaskStoreOptions = {}) {
    this.#keys = redisKeys(options.keyPrefix ?? 'ccm:');
    const commandTimeoutMs = options.commandTimeoutMs ?? 1000;
    const redis = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: commandTimeoutMs,
      connectTimeout: options.connectTimeoutMs ?? 2000,
      retryStrategy: (attempt) => Math.min(100 * attempt, 1000),
    });
    // Without a listener ioredis prints every reconnect failure; the failures themselves surface as rejections.
    redis.on('error', (error: Error) => options.onConnectionError?.(error));
    this.#redis = defineScripts(redis);
    this.#outbox = new RedisForwardOutbox(
      this.#redis,
      this.#keys,
      (op, fn) => this.#call(op, fn),
      () => this.#assertOpen(),
    );
    this.forwards = this.#outbox;
    this.#unconfirmed = new UnconfirmedCallbacks({
      limit: options.unconfirmedLimit ?? 10_000,
      commandTimeoutMs,
      onWarning: options.onWarning,
      assertOpen: () => this.#assertOpen(),
      ask: (triples) =>
        this.#call('reconcile', () =>
          this.#redis.ccmReconcile(this.#keys.taskPrefix, this.#keys.solverPrefix, ...triples),
        ),
    });
  }

  /** Connects and waits until Redis answers; rejects (and stops reconnecting) when it does not within the timeout. */
  static async open(url: string, options: RedisTaskStoreOptions = {}): Promise<RedisTaskStore> {
    const store = new RedisTaskStore(url, options);
    try {
      await store.#redis.connect();
      // ioredis sends the URL's SELECT on connect but only reports its failure as an event and carries on in
      // database 0: a database out of range (e.g. /99 on a 16-database Redis) would silently write elsewhere.
      const db = store.#redis.options.db ?? 0;
      if (db !== 0) await store.#redis.select(db);
      await store.ping();
      return store;
    } catch (error) {
      await store.close();
      throw new StoreUnavailableError(`cannot reach Redis: ${(error as Error).message}`, { cause: error });
    }
  }

  /** The key prefix in use. */
  get keyPrefix(): string {
    return this.#keys.prefix;
  }

  /** Callbacks whose call rejected and whose fate `reconcile` has not settled yet. */
  get unconfirmedCount(): number {
    return this.#unconfirmed.count;
  }

  /** Unconfirmed callbacks forgotten because the list was full (see `unconfirmedLimit`). */
  get unconfirmedDropped(): number {
    return this.#unconfirmed.dropped;
  }

  async register(
    tasks: readonly (string | NewTask)[],
    submittedAt: number,
    deadlineAt: number,
  ): Promise<RegisterResult> {
    const added: string[] = [];
    const merged: RegisterResult['merged'][number][] = [];
    for (let i = 0; i < tasks.length; i += REGISTER_BATCH_SIZE) {
      const args = [
        ...this.#keys.stateKeys,
        this.#keys.taskPrefix,
        this.#keys.solverPrefix,
        String(submittedAt),
        String(deadlineAt),
        ...this.#outbox.scriptArgs(),
      ];
      for (const item of tasks.slice(i, i + REGISTER_BATCH_SIZE)) {
        const task: NewTask = typeof item === 'string' ? { id: item } : item;
        args.push(task.id, task.solverTaskId ?? '', task.deadlineAt === undefined ? '' : String(task.deadlineAt));
      }
      const [chunkAdded, merges] = await this.#call('register', () => this.#redis.ccmRegister(...args));
      added.push(...chunkAdded);
      for (let j = 0; j + 1 < merges.length; j += 2) {
        const id = merges[j] as string;
        const reply = merges[j + 1] as LinkReply;
        const task = tasks.find((t) => typeof t !== 'string' && t.id === id) as NewTask;
        const linked = toAttachResult(id, task.solverTaskId!, reply);
        if (linked.kind === 'merged') merged.push({ transition: linked.transition, result: linked.result });
      }
    }
    return { added, merged };
  }

  async attachSolverTaskId(id: string, solverTaskId: string): Promise<AttachResult> {
    const reply = await this.#call('attachSolverTaskId', () =>
      this.#redis.ccmAttach(
        ...this.#keys.stateKeys,
        this.#keys.taskPrefix,
        this.#keys.solverPrefix,
        id,
        solverTaskId,
        ...this.#outbox.scriptArgs(),
      ),
    );
    return toAttachResult(id, solverTaskId, reply);
  }

  async recordCallback(r: CallbackResult): Promise<CallbackTransition> {
    this.#assertOpen();
    if (r.taskId === undefined && r.solverTaskId === undefined) {
      throw new StoreUnavailableError('Redis store: a callback needs a task id or a solver id');
    }
    const token = `${this.#tokenPrefix}${(this.#tokenCounter++).toString(36)}`;
    let reply: [string, string, string?];
    try {
      reply = await this.#redis.ccmRecordCallback(
        ...this.#keys.stateKeys,
        this.#keys.taskPrefix,
        this.#keys.solverPrefix,
        r.taskId ?? '',
        r.solverTaskId ?? '',
        r.outcome,
        r.code,
        r.format,
        String(r.receivedAt),
        r.solution == null ? '' : JSON.stringify(r.solution),
        r.metadata == null ? '' : JSON.stringify(r.metadata),
        token,
        ...this.#outbox.scriptArgs(),
        r.recovered === true ? '1' : '',
      );
    } catch (error) {
      // The script may have run although the reply never came: reconcile() finds out.
      this.#unconfirmed.remember({ token, result: r, failedAt: Date.now() });
      throw new StoreUnavailableError(`Redis store: recordCallback failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return toTransition(reply);
  }

  /**
   * Asks Redis which rejected callbacks it applied after all, and reports each of those exactly once: per unconfirmed
   * call, the task it would have been filed under is asked (in one read-only script per batch) whether its
   * `firstToken` (or `lastDupToken`) is that call's token. A token no task carries is forgotten only once it cannot
   * appear any more: its script may still be queued in Redis (a hung server runs what it had read when it resumes),
   * so only when Redis has answered for it more than twice the command timeout after its call rejected. Until then it
   * is asked for again on the next call. (A callback applied as unregistered whose record was merged into a task
   * since, or a task deleted by retention since, no longer carries the token: nothing is reported for it, which
   * changes no counter in the first case.)
   */
  reconcile(): Promise<ReadonlyArray<{ readonly transition: CallbackTransition; readonly result: CallbackResult }>> {
    return this.#unconfirmed.reconcile();
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
        k.taskPrefix,
        String(now),
        String(limit),
        ...this.#outbox.scriptArgs(),
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
        k.taskPrefix,
        String(olderThan),
        String(limit),
        k.solverPrefix,
        k.forwardPrefix,
      ),
    );
    return Number(deleted);
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    const reply = await this.#call('get', () => this.#redis.ccmGet(this.#keys.taskPrefix, this.#keys.solverPrefix, id));
    if (reply.length === 0) return undefined;
    return toRecord(reply[0], pairs(reply[1]));
  }

  async list(state: TaskState, limit: number): Promise<TaskRecord[]> {
    if (limit <= 0) {
      this.#assertOpen();
      return [];
    }
    const flat = await this.#call('list', () =>
      this.#redis.ccmList(this.#keys.state[state], this.#keys.taskPrefix, String(limit)),
    );
    const out: TaskRecord[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const record = toRecord(flat[i] as string, pairs(flat[i + 1] as string[]));
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
