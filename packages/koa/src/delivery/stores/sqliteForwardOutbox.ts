import { randomUUID } from 'node:crypto';
import type {
  ForwardEvent,
  ForwardJob,
  ForwardOutbox,
  ForwardRecord,
  ForwardSettleItem,
  ReplayFilter,
} from '../TaskStore.ts';
import { newWebhookId, waitingWebhookId } from '../webhookId.ts';
import type { SqliteCommitQueue } from './sqliteCommitQueue.ts';
import {
  type ForwardRow,
  type SqliteStatements,
  type TaskRow,
  toForward,
  toRecord,
  type UnclaimedRow,
  unclaimedToForward,
} from './sqliteStatements.ts';

/** Runs `fn` as a read, labelled `op` in its error; throws StoreUnavailableError. */
type Read = <T>(op: string, fn: () => T) => T;

/**
 * A SqliteTaskStore's forwarding outbox: the `forwards` table, and the forwards still waiting on their task's row.
 * A callback's result sets its task's `forward_at` in the UPDATE that settles it (the store picks that
 * statement when `enabledFor` says so); a merge and `missed` write their row through `add`, inside the transition's
 * own transaction. The first claim or redeliver that needs an unclaimed forward moves it into its row first (in the
 * same transaction); `forwardsOf` and `backlog` read both, and replay never touches a pending forward. The worker's writes here wait out WAL holds
 * like every other write.
 */
export class SqliteForwardOutbox implements ForwardOutbox {
  readonly #sql: SqliteStatements;
  readonly #queue: SqliteCommitQueue;
  readonly #read: Read;
  /** The store's salt, from which a waiting forward's webhook id is derived (see waitingWebhookId). */
  readonly #salt: string;
  /** Events that write a forward; empty while forwarding is off. */
  #events: ReadonlySet<ForwardEvent> = new Set();

  constructor(sql: SqliteStatements, queue: SqliteCommitQueue, read: Read) {
    this.#sql = sql;
    this.#queue = queue;
    this.#read = read;
    this.#salt = (sql.selectSalt.get() as { salt: string }).salt;
  }

  /** A waiting forward's webhook id: the one a version 8 file stored with it, else derived. */
  #webhookIdOf(u: UnclaimedRow): string {
    return u.forward_id ?? waitingWebhookId(this.#salt, u.id, u.forward_at);
  }

  /** Whether any event writes a forward: while none does, a callback skips the per-event check altogether. */
  get enabled(): boolean {
    return this.#events.size > 0;
  }

  enabledFor(event: ForwardEvent): boolean {
    return this.#events.has(event);
  }

  /** Writes the pending forward a transition makes, inside the caller's transaction (when forwarding is on for it). */
  add(taskId: string, event: ForwardEvent, at: number): void {
    if (this.#events.has(event)) this.#sql.insertForward.run(taskId, event, newWebhookId(), at);
  }

  enable(events: readonly ForwardEvent[]): void {
    this.#events = new Set(events);
  }

  /** Moves unclaimed forwards into their `forwards` rows, inside the caller's transaction. */
  #toRows(unclaimed: readonly UnclaimedRow[]): void {
    if (unclaimed.length === 0) return;
    for (const u of unclaimed) {
      this.#sql.insertForward.run(u.id, u.state, this.#webhookIdOf(u), u.forward_at);
      this.#sql.clearUnclaimed.run(u.id);
    }
    this.#sql.addUnclaimed.run(-unclaimed.length);
  }

  claimDue(now: number, limit: number, leaseMs: number): Promise<ForwardJob[]> {
    return this.#queue.writeWhenResumed('claimDue', () => {
      const jobs: ForwardJob[] = [];
      if (limit <= 0) return jobs;
      // The oldest `limit` due forwards overall are among the oldest `limit` of each kind: the unclaimed ones become
      // rows (due at their event time), then one scan of the rows picks.
      this.#toRows(this.#sql.selectDueUnclaimed.all(now, limit) as unknown as UnclaimedRow[]);
      const due = this.#sql.selectDueForwards.all(now, limit) as Array<{ task_id: string; event: ForwardEvent }>;
      // One random draw per claim: each row's token is unique all the same.
      const base = randomUUID();
      for (const [i, d] of due.entries()) {
        const lease = `${base}_${i}`;
        const row = this.#sql.leaseForward.get(lease, now + leaseMs, d.task_id, d.event) as ForwardRow | undefined;
        if (!row) continue;
        const task = this.#sql.selectTaskById.get(d.task_id) as TaskRow | undefined;
        jobs.push({ forward: toForward(row), lease, task: task ? toRecord(task) : undefined });
      }
      return jobs;
    });
  }

  settle(items: readonly ForwardSettleItem[]): Promise<number> {
    return this.#queue.writeWhenResumed('settle', () => {
      let settled = 0;
      for (const item of items) {
        const r = item.result;
        const pending = r.state === 'pending';
        settled += Number(
          this.#sql.settleForward.run(
            r.state,
            pending ? r.nextAttemptAt : null,
            pending ? null : item.at,
            item.at,
            r.status,
            r.error,
            item.taskId,
            item.event,
            item.lease,
          ).changes,
        );
      }
      return settled;
    });
  }

  async forwardsOf(taskId: string): Promise<ForwardRecord[]> {
    return this.#read('forwardsOf', () => {
      const rows = (this.#sql.selectForwardsOf.all(taskId) as unknown as ForwardRow[]).map(toForward);
      const unclaimed = this.#sql.selectUnclaimedOf.get(taskId) as UnclaimedRow | undefined;
      if (unclaimed) rows.push(unclaimedToForward(unclaimed, this.#webhookIdOf(unclaimed)));
      return rows.sort((a, b) => (a.event < b.event ? -1 : a.event > b.event ? 1 : 0));
    });
  }

  redeliver(taskId: string, now: number): Promise<number> {
    return this.#queue.writeWhenResumed('redeliver', () => {
      const unclaimed = this.#sql.selectUnclaimedOf.get(taskId) as UnclaimedRow | undefined;
      if (unclaimed) this.#toRows([unclaimed]);
      return Number(this.#sql.redeliver.run(now, taskId).changes);
    });
  }

  replay(filter: ReplayFilter, now: number): Promise<number> {
    return this.#queue.writeWhenResumed('replay', () =>
      Number(
        (filter.state === 'all'
          ? this.#sql.replayAll.run(now, filter.from, filter.to, filter.limit)
          : this.#sql.replayState.run(now, filter.state, filter.from, filter.to, filter.limit)
        ).changes,
      ),
    );
  }

  async backlog(cap: number): Promise<{ readonly pending: number; readonly oldestCreatedAt: number | null }> {
    return this.#read('backlog', () => {
      const { n: rows } = this.#sql.countPendingForwards.get(cap) as { n: number };
      const { n: waiting } = this.#sql.selectUnclaimedCount.get() as { n: number };
      const { at } = this.#sql.oldestPendingForward.get() as { at: number | null };
      const { at: oldestWaiting } = this.#sql.oldestUnclaimed.get() as { at: number | null };
      const oldest = at === null ? oldestWaiting : oldestWaiting === null ? at : Math.min(at, oldestWaiting);
      return { pending: Math.min(cap, rows + waiting), oldestCreatedAt: oldest };
    });
  }
}
