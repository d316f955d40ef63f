import {
  type CallbackResult,
  type CallbackTransition,
  StoreUnavailableError,
  type TaskCounts,
  type TaskRecord,
  type TaskState,
  type TaskStore,
} from '../TaskStore.ts';

interface MutableTask {
  id: string;
  state: TaskState;
  registered: boolean;
  outcome: TaskRecord['outcome'];
  code: string | null;
  format: TaskRecord['format'];
  submittedAt: number | null;
  deadlineAt: number | null;
  receivedAt: number | null;
  callbacks: number;
  /** Sequence of this task's live entry in the deadline heap (a purged and re-registered id gets a new one). */
  deadlineSeq: number;
  /** Sequence of this task's live entry in the settled heap, or -1 while pending. */
  settledSeq: number;
}

/** [time, sequence, id]: the sequence keeps equal times in insertion order and identifies the live entry. */
type Entry = [number, number, string];
const before = (a: Entry, b: Entry) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

/** A binary min-heap of times, so neither expiry nor retention ever scans tasks. */
class TimeHeap {
  readonly #items: Entry[] = [];
  get size(): number {
    return this.#items.length;
  }
  peek(): Entry | undefined {
    return this.#items[0];
  }
  push(item: Entry): void {
    const a = this.#items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(a[i]!, a[p]!)) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop(): Entry | undefined {
    const a = this.#items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l]!, a[m]!)) m = l;
        if (r < a.length && before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}

/** Process-local store for tests and for embedding where losing state on restart is acceptable. */
export class MemoryTaskStore implements TaskStore {
  readonly #tasks = new Map<string, MutableTask>();
  readonly #deadlines = new TimeHeap();
  /** Settled tasks by settling time (receipt, or deadline when missed): the retention queue. */
  readonly #settled = new TimeHeap();
  #sequence = 0;
  #counts = { pending: 0, delivered: 0, missed: 0, late: 0 };
  #closed = false;

  async register(ids: readonly string[], submittedAt: number, deadlineAt: number): Promise<string[]> {
    this.#assertOpen();
    const added: string[] = [];
    for (const id of ids) {
      if (this.#tasks.has(id)) continue;
      this.#tasks.set(id, {
        id,
        state: 'pending',
        registered: true,
        outcome: null,
        code: null,
        format: null,
        submittedAt,
        deadlineAt,
        receivedAt: null,
        callbacks: 0,
        deadlineSeq: this.#sequence,
        settledSeq: -1,
      });
      this.#deadlines.push([deadlineAt, this.#sequence++, id]);
      this.#counts.pending++;
      added.push(id);
    }
    return added;
  }

  async recordCallback(r: CallbackResult): Promise<CallbackTransition> {
    this.#assertOpen();
    const task = this.#tasks.get(r.taskId);
    if (!task) {
      const settledSeq = this.#settle(r.taskId, r.receivedAt);
      this.#tasks.set(r.taskId, {
        id: r.taskId,
        state: 'delivered',
        registered: false,
        outcome: r.outcome,
        code: r.code,
        format: r.format,
        submittedAt: null,
        deadlineAt: null,
        receivedAt: r.receivedAt,
        callbacks: 1,
        deadlineSeq: -1,
        settledSeq,
      });
      // Unregistered callbacks are stored but stay out of the counts: the delivery rate is about registered tasks.
      return { kind: 'unregistered' };
    }
    task.callbacks++;
    if (task.state === 'delivered' || task.state === 'late') return { kind: 'duplicate' };
    task.outcome = r.outcome;
    task.code = r.code;
    task.format = r.format;
    task.receivedAt = r.receivedAt;
    task.settledSeq = this.#settle(task.id, r.receivedAt);
    const submittedAt = task.submittedAt ?? r.receivedAt;
    if (task.state === 'pending') {
      task.state = 'delivered';
      this.#counts.pending--;
      this.#counts.delivered++;
      return { kind: 'delivered', submittedAt };
    }
    task.state = 'late';
    this.#counts.missed--;
    this.#counts.late++;
    return { kind: 'late', submittedAt };
  }

  async expireDue(now: number, limit: number): Promise<string[]> {
    this.#assertOpen();
    const moved: string[] = [];
    while (moved.length < limit) {
      const top = this.#deadlines.peek();
      if (!top || top[0] > now) break;
      this.#deadlines.pop();
      const task = this.#tasks.get(top[2]);
      if (task?.state !== 'pending' || task.deadlineSeq !== top[1]) continue;
      task.state = 'missed';
      task.settledSeq = this.#settle(task.id, top[0]);
      this.#counts.pending--;
      this.#counts.missed++;
      moved.push(task.id);
    }
    return moved;
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    this.#assertOpen();
    const t = this.#tasks.get(id);
    return t ? record(t) : undefined;
  }

  async list(state: TaskState, limit: number): Promise<TaskRecord[]> {
    this.#assertOpen();
    const out: TaskRecord[] = [];
    for (const t of this.#tasks.values()) {
      if (t.state === state) out.push(record(t));
    }
    // Pending by deadline; settled by settling time: the callback's receipt, or the deadline when missed.
    const at = (t: TaskRecord) => (state === 'pending' ? t.deadlineAt : (t.receivedAt ?? t.deadlineAt)) ?? 0;
    out.sort((a, b) => at(a) - at(b));
    return out.slice(0, limit);
  }

  async counts(): Promise<TaskCounts> {
    this.#assertOpen();
    return { ...this.#counts };
  }

  async purge(olderThan: number, limit: number): Promise<number> {
    this.#assertOpen();
    let deleted = 0;
    while (deleted < limit) {
      const top = this.#settled.peek();
      if (!top || top[0] >= olderThan) break;
      this.#settled.pop();
      const task = this.#tasks.get(top[2]);
      // Skip entries made stale by a later transition (missed → late re-queues the task at its receipt time).
      if (!task || task.state === 'pending' || task.settledSeq !== top[1]) continue;
      this.#tasks.delete(task.id);
      deleted++;
    }
    return deleted;
  }

  async ping(): Promise<void> {
    this.#assertOpen();
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /** Queues a task for retention at its settling time; returns the entry's sequence. */
  #settle(id: string, at: number): number {
    const seq = this.#sequence++;
    this.#settled.push([at, seq, id]);
    return seq;
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreUnavailableError('memory store is closed');
  }
}

function record(t: MutableTask): TaskRecord {
  return {
    id: t.id,
    state: t.state,
    registered: t.registered,
    outcome: t.outcome,
    code: t.code,
    format: t.format,
    submittedAt: t.submittedAt,
    deadlineAt: t.deadlineAt,
    receivedAt: t.receivedAt,
    callbacks: t.callbacks,
  };
}
