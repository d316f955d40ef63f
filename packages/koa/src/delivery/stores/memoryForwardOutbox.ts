import { randomUUID } from 'node:crypto';
import type {
  ForwardEvent,
  ForwardJob,
  ForwardOutbox,
  ForwardRecord,
  ForwardSettleItem,
  ForwardState,
  ReplayFilter,
  TaskRecord,
} from '../TaskStore.ts';
import { newWebhookId } from '../webhookId.ts';
import { TimeHeap } from './timeHeap.ts';

interface MutableForward {
  taskId: string;
  event: ForwardEvent;
  webhookId: string;
  state: ForwardState;
  createdAt: number;
  since: number;
  attempts: number;
  nextAttemptAt: number | null;
  lease: string | null;
  lastAttemptAt: number | null;
  lastStatus: number | null;
  lastError: string | null;
  doneAt: number | null;
  /** Sequence of this forward's live entry in the due heap. */
  dueSeq: number;
}

/** The key of one task's forward of one event. */
const forwardKey = (taskId: string, event: ForwardEvent) => `${event}:${taskId}`;

/**
 * A MemoryTaskStore's forwarding outbox. The store's transitions write their forward through `add` and drop a
 * deleted task's through `deleteOf`, in the same synchronous step as the transition, so the two cannot disagree.
 */
export class MemoryForwardOutbox implements ForwardOutbox {
  readonly #assertOpen: () => void;
  /** The task a claimed forward belongs to, as its job carries it. */
  readonly #taskRecord: (id: string) => TaskRecord | undefined;
  /** Events that write a forward; empty while forwarding is off. */
  #events: ReadonlySet<ForwardEvent> = new Set();
  readonly #forwards = new Map<string, MutableForward>();
  /** Pending forwards by next attempt time (entries made stale by a later change are skipped). */
  readonly #due = new TimeHeap();
  #sequence = 0;
  /** Pending forwards in insertion order, for the bounded backlog count. */
  readonly #pendingForwards = new Set<MutableForward>();

  constructor(assertOpen: () => void, taskRecord: (id: string) => TaskRecord | undefined) {
    this.#assertOpen = assertOpen;
    this.#taskRecord = taskRecord;
  }

  enable(events: readonly ForwardEvent[]): void {
    this.#events = new Set(events);
  }

  async claimDue(now: number, limit: number, leaseMs: number): Promise<ForwardJob[]> {
    this.#assertOpen();
    const jobs: ForwardJob[] = [];
    while (jobs.length < limit) {
      const top = this.#due.peek();
      if (!top || top[0] > now) break;
      this.#due.pop();
      const f = this.#forwards.get(top[2]);
      if (f?.state !== 'pending' || f.dueSeq !== top[1]) continue;
      f.attempts++;
      f.lease = randomUUID();
      this.#schedule(f, now + leaseMs);
      jobs.push({ forward: forwardRecord(f), lease: f.lease, task: this.#taskRecord(f.taskId) });
    }
    return jobs;
  }

  async settle(items: readonly ForwardSettleItem[]): Promise<number> {
    this.#assertOpen();
    let settled = 0;
    for (const item of items) settled += this.#settleForward(item) ? 1 : 0;
    return settled;
  }

  async forwardsOf(taskId: string): Promise<ForwardRecord[]> {
    this.#assertOpen();
    return this.#forwardsOfTask(taskId).map(forwardRecord);
  }

  async redeliver(taskId: string, now: number): Promise<number> {
    this.#assertOpen();
    let changed = 0;
    for (const f of this.#forwardsOfTask(taskId)) changed += this.#restart(f, now) ? 1 : 0;
    return changed;
  }

  async replay(filter: ReplayFilter, now: number): Promise<number> {
    this.#assertOpen();
    // A scan: the memory store is for tests and demos (SQLite and Redis use an index).
    const picked = [...this.#forwards.values()]
      .filter(
        (f) =>
          f.state !== 'pending' &&
          (filter.state === 'all' || f.state === filter.state) &&
          f.createdAt >= filter.from &&
          f.createdAt < filter.to,
      )
      .sort((a, b) => a.createdAt - b.createdAt)
      .slice(0, filter.limit);
    for (const f of picked) this.#restart(f, now);
    return picked.length;
  }

  async backlog(cap: number): Promise<{ readonly pending: number; readonly oldestCreatedAt: number | null }> {
    this.#assertOpen();
    let pending = 0;
    let oldest: number | null = null;
    for (const f of this.#pendingForwards) {
      if (pending >= cap) break;
      pending++;
      if (oldest === null || f.createdAt < oldest) oldest = f.createdAt;
    }
    return { pending, oldestCreatedAt: oldest };
  }

  /** Writes a pending forward for this event, if forwarding is on for it (with the transition, atomically). */
  add(taskId: string, event: ForwardEvent, at: number): void {
    if (!this.#events.has(event)) return;
    const key = forwardKey(taskId, event);
    if (this.#forwards.has(key)) return;
    const f: MutableForward = {
      taskId,
      event,
      webhookId: newWebhookId(),
      state: 'pending',
      createdAt: at,
      since: at,
      attempts: 0,
      nextAttemptAt: null,
      lease: null,
      lastAttemptAt: null,
      lastStatus: null,
      lastError: null,
      doneAt: null,
      dueSeq: -1,
    };
    this.#forwards.set(key, f);
    this.#pendingForwards.add(f);
    this.#schedule(f, at);
  }

  /** A task's forwards go with it (retention, or an unregistered record merged into its task). */
  deleteOf(taskId: string): void {
    for (const f of this.#forwardsOfTask(taskId)) {
      this.#forwards.delete(forwardKey(taskId, f.event));
      this.#pendingForwards.delete(f);
    }
  }

  #schedule(f: MutableForward, at: number): void {
    f.nextAttemptAt = at;
    f.dueSeq = this.#sequence++;
    this.#due.push([at, f.dueSeq, forwardKey(f.taskId, f.event)]);
  }

  #settleForward(item: ForwardSettleItem): boolean {
    const f = this.#forwards.get(forwardKey(item.taskId, item.event));
    if (f?.state !== 'pending' || f.lease !== item.lease) return false;
    const r = item.result;
    f.lease = null;
    f.lastAttemptAt = item.at;
    f.lastStatus = r.status;
    f.lastError = r.error;
    if (r.state === 'pending') {
      this.#schedule(f, r.nextAttemptAt);
      return true;
    }
    f.state = r.state;
    f.doneAt = item.at;
    f.nextAttemptAt = null;
    f.dueSeq = -1;
    this.#pendingForwards.delete(f);
    return true;
  }

  /** A new round for a forward: pending, due now, attempts and max age counted afresh, same webhook id. */
  #restart(f: MutableForward, now: number): boolean {
    // An attempt under a live lease is left to finish: restarting it would let a second one run beside it.
    if (f.state === 'pending' && f.lease !== null && (f.nextAttemptAt ?? 0) > now) return false;
    f.state = 'pending';
    f.since = now;
    f.attempts = 0;
    f.lease = null;
    f.doneAt = null;
    this.#pendingForwards.add(f);
    this.#schedule(f, now);
    return true;
  }

  #forwardsOfTask(taskId: string): MutableForward[] {
    const out: MutableForward[] = [];
    for (const event of ['delivered', 'late', 'missed'] as const) {
      const f = this.#forwards.get(forwardKey(taskId, event));
      if (f) out.push(f);
    }
    return out;
  }
}

/** The contract's view of a forward: the lease as a flag, the next attempt's time only while it is pending. */
function forwardRecord({ lease, dueSeq: _dueSeq, nextAttemptAt, ...fields }: MutableForward): ForwardRecord {
  return { ...fields, nextAttemptAt: fields.state === 'pending' ? nextAttemptAt : null, leased: lease !== null };
}
