import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type {
  ForwardEvent,
  ForwardJob,
  ForwardOutbox,
  ForwardRecord,
  ForwardSettleItem,
  ReplayFilter,
} from '../TaskStore.ts';
import { pairs, type Scripts, toForward, toRecord } from './redisCommands.ts';
import type { RedisKeys } from './redisKeys.ts';

/** Runs one Redis call, labelled `op` in its error; rejects with StoreUnavailableError (also once the store is closed). */
type Call = <T>(op: string, fn: () => Promise<T>) => Promise<T>;

/**
 * A RedisTaskStore's forwarding outbox: the `fwd:` keys. The transition scripts write a task's forwards themselves
 * (with `scriptArgs`), in the same atomic run as the transition; the worker's claims and settles are scripts too.
 */
export class RedisForwardOutbox implements ForwardOutbox {
  readonly #redis: Redis & Scripts;
  readonly #keys: RedisKeys;
  readonly #call: Call;
  readonly #assertOpen: () => void;
  /** ',delivered,late,' style, '' while forwarding is off: passed to every script that may write a forward. */
  #events = '';

  constructor(redis: Redis & Scripts, keys: RedisKeys, call: Call, assertOpen: () => void) {
    this.#redis = redis;
    this.#keys = keys;
    this.#call = call;
    this.#assertOpen = assertOpen;
  }

  /** The forward arguments every transition script takes: prefix, enabled events, a fresh webhook id base. */
  scriptArgs(): [string, string, string] {
    return [this.#keys.forwardPrefix, this.#events, this.#events === '' ? '' : `msg_${newBase()}`];
  }

  enable(events: readonly ForwardEvent[]): void {
    this.#events = events.length === 0 ? '' : `,${events.join(',')},`;
  }

  async claimDue(now: number, limit: number, leaseMs: number): Promise<ForwardJob[]> {
    if (limit <= 0) {
      this.#assertOpen();
      return [];
    }
    const base = newBase();
    const rows = await this.#call('claimDue', () =>
      this.#redis.ccmClaim(
        this.#keys.forwardPrefix,
        this.#keys.taskPrefix,
        String(now),
        String(limit),
        String(now + leaseMs),
        base,
      ),
    );
    return rows.map(([member, fields, task], i): ForwardJob => {
      const f = toForward(member, pairs(fields));
      return { forward: f, lease: `${base}_${i + 1}`, task: toRecord(f.taskId, pairs(task)) };
    });
  }

  async settle(items: readonly ForwardSettleItem[]): Promise<number> {
    this.#assertOpen();
    if (items.length === 0) return 0;
    const args = [this.#keys.forwardPrefix];
    for (const item of items) {
      const r = item.result;
      args.push(
        `${item.event}:${item.taskId}`,
        item.lease,
        r.state,
        r.state === 'pending' ? String(r.nextAttemptAt) : '',
        String(item.at),
        r.status === null ? '' : String(r.status),
        r.error ?? '',
      );
    }
    return Number(await this.#call('settle', () => this.#redis.ccmSettle(...args)));
  }

  async forwardsOf(taskId: string): Promise<ForwardRecord[]> {
    const rows = await this.#call('forwardsOf', () => this.#redis.ccmForwardsOf(this.#keys.forwardPrefix, taskId));
    return rows.map(([event, fields]) => toForward(`${event}:${taskId}`, pairs(fields)));
  }

  async redeliver(taskId: string, now: number): Promise<number> {
    return Number(
      await this.#call('redeliver', () => this.#redis.ccmRedeliver(this.#keys.forwardPrefix, String(now), taskId)),
    );
  }

  async replay(filter: ReplayFilter, now: number): Promise<number> {
    return Number(
      await this.#call('replay', () =>
        this.#redis.ccmReplay(
          this.#keys.forwardPrefix,
          String(now),
          filter.state,
          String(filter.from),
          String(filter.to),
          String(filter.limit),
        ),
      ),
    );
  }

  async backlog(cap: number): Promise<{ readonly pending: number; readonly oldestCreatedAt: number | null }> {
    const [pending, oldest] = await this.#call('backlog', () =>
      Promise.all([
        this.#redis.zcard(`${this.#keys.forwardPrefix}due`),
        this.#redis.zrange(`${this.#keys.forwardPrefix}created:pending`, '0', '0', 'WITHSCORES'),
      ]),
    );
    return { pending: Math.min(cap, pending), oldestCreatedAt: oldest.length >= 2 ? Number(oldest[1]) : null };
  }
}

/** 16 random bytes, base64url: a base for webhook ids and lease tokens that no other call or instance shares. */
function newBase(): string {
  return randomBytes(16).toString('base64url');
}
