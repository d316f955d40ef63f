import {
  type AttachResult,
  type CallbackResult,
  type CallbackTransition,
  type ForwardOutbox,
  type NewTask,
  type RegisterResult,
  type ResultDetails,
  StoreUnavailableError,
  type TaskCounts,
  type TaskRecord,
  type TaskState,
  type TaskStore,
} from '../TaskStore.ts';
import { MemoryForwardOutbox } from './memoryForwardOutbox.ts';
import { TimeHeap } from './timeHeap.ts';

interface MutableTask {
  id: string;
  solverTaskId: string | null;
  state: TaskState;
  registered: boolean;
  outcome: TaskRecord['outcome'];
  code: string | null;
  format: TaskRecord['format'];
  solution: ResultDetails | null;
  metadata: ResultDetails | null;
  recovered: boolean;
  submittedAt: number | null;
  deadlineAt: number | null;
  receivedAt: number | null;
  callbacks: number;
  /** Sequence of this task's live entry in the deadline heap (a purged and re-registered id gets a new one). */
  deadlineSeq: number;
  /** Sequence of this task's live entry in the settled heap, or -1 while pending. */
  settledSeq: number;
}

/**
 * Process-local store for tests and for embedding where losing state on restart is acceptable. The forwarding outbox
 * is in memoryForwardOutbox.ts.
 */
export class MemoryTaskStore implements TaskStore {
  readonly #tasks = new Map<string, MutableTask>();
  /** Solver task id → app id. */
  readonly #solverIds = new Map<string, string>();
  readonly #deadlines = new TimeHeap();
  /** Settled tasks by settling time (receipt, or deadline when missed): the retention queue. */
  readonly #settled = new TimeHeap();
  #sequence = 0;
  #counts = { pending: 0, delivered: 0, missed: 0, late: 0 };
  #closed = false;
  readonly #outbox = new MemoryForwardOutbox(
    () => this.#assertOpen(),
    (id) => {
      const task = this.#tasks.get(id);
      return task ? record(task) : undefined;
    },
  );
  readonly forwards: ForwardOutbox = this.#outbox;

  async register(
    tasks: readonly (string | NewTask)[],
    submittedAt: number,
    deadlineAt: number,
  ): Promise<RegisterResult> {
    this.#assertOpen();
    const added: string[] = [];
    const merged: RegisterResult['merged'][number][] = [];
    for (const item of tasks) {
      const task: NewTask = typeof item === 'string' ? { id: item } : item;
      if (this.#tasks.has(task.id)) continue;
      const deadline = task.deadlineAt ?? deadlineAt;
      this.#tasks.set(task.id, {
        id: task.id,
        solverTaskId: null,
        state: 'pending',
        registered: true,
        outcome: null,
        code: null,
        format: null,
        solution: null,
        metadata: null,
        recovered: false,
        submittedAt,
        deadlineAt: deadline,
        receivedAt: null,
        callbacks: 0,
        deadlineSeq: this.#sequence,
        settledSeq: -1,
      });
      this.#deadlines.push([deadline, this.#sequence++, task.id]);
      this.#counts.pending++;
      added.push(task.id);
      if (task.solverTaskId !== undefined) {
        const linked = this.#link(task.id, task.solverTaskId);
        if (linked.kind === 'merged') merged.push({ transition: linked.transition, result: linked.result });
      }
    }
    return { added, merged };
  }

  async attachSolverTaskId(id: string, solverTaskId: string): Promise<AttachResult> {
    this.#assertOpen();
    return this.#link(id, solverTaskId);
  }

  /** Links a solver id to a registered task, merging an unregistered callback stored under it first. */
  #link(id: string, solverTaskId: string): AttachResult {
    const task = this.#tasks.get(id);
    if (!task?.registered) return { kind: 'unknown' };
    if (task.solverTaskId === solverTaskId) return { kind: 'unchanged' };
    if (task.solverTaskId !== null) return { kind: 'conflict' };
    const holder = this.#bySolverId(solverTaskId);
    if (holder && holder !== task && holder.registered) return { kind: 'conflict' };
    task.solverTaskId = solverTaskId;
    this.#solverIds.set(solverTaskId, task.id);
    if (!holder || holder === task) return { kind: 'attached' };
    // The callback came before the app told us the solver's id: it becomes this task's callback.
    this.#deleteTask(holder.id);
    const result: CallbackResult = {
      taskId: task.id,
      solverTaskId,
      outcome: holder.outcome ?? 'solved',
      code: holder.code ?? '',
      format: holder.format ?? 'query',
      receivedAt: holder.receivedAt ?? 0,
      solution: holder.solution,
      metadata: holder.metadata,
      recovered: holder.recovered,
    };
    const transition = this.#apply(task, result, holder.callbacks);
    return { kind: 'merged', transition, result };
  }

  #bySolverId(solverTaskId: string): MutableTask | undefined {
    const id = this.#solverIds.get(solverTaskId);
    return id === undefined ? undefined : this.#tasks.get(id);
  }

  async recordCallback(r: CallbackResult): Promise<CallbackTransition> {
    this.#assertOpen();
    const byAppId = r.taskId === undefined ? undefined : this.#tasks.get(r.taskId);
    // With no app id, a solver id that no task is linked to may be a task's app id (apps that register the id the
    // solver returned as their own): that task is the one. Storing the callback as unregistered under that id
    // instead would overwrite the registered task. Its solver id is not linked then: the app id already finds it.
    const task =
      byAppId ??
      (r.solverTaskId === undefined ? undefined : this.#bySolverId(r.solverTaskId)) ??
      (r.taskId === undefined && r.solverTaskId !== undefined ? this.#tasks.get(r.solverTaskId) : undefined);
    if (!task) {
      const id = r.taskId ?? r.solverTaskId;
      if (id === undefined) throw new StoreUnavailableError('memory store: a callback needs a task id or a solver id');
      const settledSeq = this.#settle(id, r.receivedAt);
      const solverTaskId = r.solverTaskId !== undefined && !this.#bySolverId(r.solverTaskId) ? r.solverTaskId : null;
      this.#tasks.set(id, {
        id,
        solverTaskId,
        state: 'delivered',
        registered: false,
        outcome: r.outcome,
        code: r.code,
        format: r.format,
        solution: r.solution ?? null,
        metadata: r.metadata ?? null,
        recovered: r.recovered === true,
        submittedAt: null,
        deadlineAt: null,
        receivedAt: r.receivedAt,
        callbacks: 1,
        deadlineSeq: -1,
        settledSeq,
      });
      if (solverTaskId !== null) this.#solverIds.set(solverTaskId, id);
      this.#outbox.add(id, 'delivered', r.receivedAt);
      // Unregistered callbacks are stored but stay out of the counts: the delivery rate is about registered tasks.
      return { kind: 'unregistered', id };
    }
    if (
      task === byAppId &&
      task.solverTaskId === null &&
      r.solverTaskId !== undefined &&
      !this.#bySolverId(r.solverTaskId)
    ) {
      task.solverTaskId = r.solverTaskId;
      this.#solverIds.set(r.solverTaskId, task.id);
    }
    return this.#apply(task, r, 1);
  }

  /** A callback (or `callbacks` merged ones) for a known task: the first result settles it, later ones are counted. */
  #apply(task: MutableTask, r: CallbackResult, callbacks: number): CallbackTransition {
    task.callbacks += callbacks;
    if (task.state === 'delivered' || task.state === 'late') return { kind: 'duplicate', id: task.id };
    task.outcome = r.outcome;
    task.code = r.code;
    task.format = r.format;
    task.solution = r.solution ?? null;
    task.metadata = r.metadata ?? null;
    task.recovered = r.recovered === true;
    task.receivedAt = r.receivedAt;
    task.settledSeq = this.#settle(task.id, r.receivedAt);
    const submittedAt = task.submittedAt ?? r.receivedAt;
    if (task.state === 'pending') {
      task.state = 'delivered';
      this.#counts.pending--;
      this.#counts.delivered++;
      this.#outbox.add(task.id, 'delivered', r.receivedAt);
      return { kind: 'delivered', id: task.id, submittedAt };
    }
    task.state = 'late';
    this.#counts.missed--;
    this.#counts.late++;
    this.#outbox.add(task.id, 'late', r.receivedAt);
    return { kind: 'late', id: task.id, submittedAt };
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
      this.#outbox.add(task.id, 'missed', top[0]);
      moved.push(task.id);
    }
    return moved;
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    this.#assertOpen();
    const t = this.#tasks.get(id) ?? this.#bySolverId(id);
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
      this.#deleteTask(task.id);
      if (task.solverTaskId !== null && this.#solverIds.get(task.solverTaskId) === task.id) {
        this.#solverIds.delete(task.solverTaskId);
      }
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

  /** A task's forwards go with it (retention, or an unregistered record merged into its task). */
  #deleteTask(id: string): void {
    this.#tasks.delete(id);
    this.#outbox.deleteOf(id);
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
    solverTaskId: t.solverTaskId,
    state: t.state,
    registered: t.registered,
    outcome: t.outcome,
    code: t.code,
    format: t.format,
    solution: t.solution,
    metadata: t.metadata,
    recovered: t.recovered,
    submittedAt: t.submittedAt,
    deadlineAt: t.deadlineAt,
    receivedAt: t.receivedAt,
    callbacks: t.callbacks,
  };
}
