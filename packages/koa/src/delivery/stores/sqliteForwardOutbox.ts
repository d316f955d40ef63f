import { randomUUID } from 'node:crypto';
import type {
  ForwardEvent,
  ForwardJob,
  ForwardOutbox,
  ForwardRecord,
  ForwardSettleItem,
  ReplayFilter,
} from '../TaskStore.ts';
import { newWebhookId } from '../webhookId.ts';
import type { SqliteCommitQueue } from './sqliteCommitQueue.ts';
import { type ForwardRow, type SqliteStatements, type TaskRow, toForward, toRecord } from './sqliteStatements.ts';

/** Runs `fn` as a read, labelled `op` in its error; throws StoreUnavailableError. */
type Read = <T>(op: string, fn: () => T) => T;

/**
 * A SqliteTaskStore's forwarding outbox: the `forwards` table. The store's transitions write their forward through
 * `add`, inside their own transaction; the worker's writes here wait out WAL holds like every other write.
 */
export class SqliteForwardOutbox implements ForwardOutbox {
  readonly #sql: SqliteStatements;
  readonly #queue: SqliteCommitQueue;
  readonly #read: Read;
  /** Events that write a forward; empty while forwarding is off. */
  #events: ReadonlySet<ForwardEvent> = new Set();

  constructor(sql: SqliteStatements, queue: SqliteCommitQueue, read: Read) {
    this.#sql = sql;
    this.#queue = queue;
    this.#read = read;
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

  claimDue(now: number, limit: number, leaseMs: number): Promise<ForwardJob[]> {
    return this.#queue.writeWhenResumed('claimDue', () => {
      const jobs: ForwardJob[] = [];
      if (limit <= 0) return jobs;
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
    const rows = this.#read('forwardsOf', () => this.#sql.selectForwardsOf.all(taskId)) as unknown as ForwardRow[];
    return rows.map(toForward);
  }

  redeliver(taskId: string, now: number): Promise<number> {
    return this.#queue.writeWhenResumed('redeliver', () => Number(this.#sql.redeliver.run(now, taskId).changes));
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
      const { n } = this.#sql.countPendingForwards.get(cap) as { n: number };
      const { at } = this.#sql.oldestPendingForward.get() as { at: number | null };
      return { pending: n, oldestCreatedAt: at };
    });
  }
}
