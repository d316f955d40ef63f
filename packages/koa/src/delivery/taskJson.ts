import type { ForwardRecord, TaskRecord } from './TaskStore.ts';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * The JSON shape of a task, as `GET /tasks/:id` answers it and as a forward carries it in `data`. `id` is always the
 * app's id (whichever id the task was asked by), `code` the solver's answer (token or error code), `solution` and
 * `metadata` everything else the solver sent. `recovered` is true when the result was fetched from the solver's API by
 * recovery polling rather than delivered by its callback.
 */
export function taskJson(t: TaskRecord) {
  return {
    id: t.id,
    solver_task_id: t.solverTaskId,
    state: t.state,
    registered: t.registered,
    outcome: t.outcome,
    code: t.code,
    solution: t.solution,
    metadata: t.metadata,
    recovered: t.recovered,
    format: t.format,
    submitted_at: iso(t.submittedAt),
    deadline_at: iso(t.deadlineAt),
    received_at: iso(t.receivedAt),
    callbacks: t.callbacks,
  };
}

/** The JSON shape of one forward (an outbox row) on the API. */
export function forwardJson(f: ForwardRecord) {
  return {
    event: `task.${f.event}`,
    state: f.state,
    webhook_id: f.webhookId,
    attempts: f.attempts,
    in_flight: f.leased && f.state === 'pending',
    last_status: f.lastStatus,
    last_error: f.lastError,
    last_attempt_at: iso(f.lastAttemptAt),
    next_attempt_at: iso(f.nextAttemptAt),
    created_at: iso(f.createdAt),
    round_started_at: iso(f.since),
    done_at: iso(f.doneAt),
  };
}
