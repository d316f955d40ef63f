import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { CallbackFormat, Outcome } from '../../metrics/contract.ts';
import type { ForwardEvent, ForwardRecord, ForwardState, ResultDetails, TaskRecord, TaskState } from '../TaskStore.ts';
import { SETTLED_AT, TASK_COLUMNS } from './sqliteSchema.ts';

/** A `tasks` row as `SELECT ${TASK_COLUMNS}` returns it. */
export interface TaskRow {
  id: string;
  state: TaskState;
  registered: number;
  outcome: Outcome | null;
  code: string | null;
  format: CallbackFormat | null;
  submitted_at: number | null;
  deadline_at: number | null;
  received_at: number | null;
  callbacks: number;
  solver_task_id: string | null;
  solution: string | null;
  metadata: string | null;
  recovered: number;
}

/**
 * A task's forward that no claim has taken yet (version 8): its event is the task's state; its webhook id is stored
 * only by version 8 (see waitingWebhookId).
 */
export interface UnclaimedRow {
  id: string;
  state: 'delivered' | 'late';
  forward_at: number;
  forward_id: string | null;
}

/** What a callback's lookup reads: enough to decide its transition and whether to link the solver id. */
export type CallbackRow = [id: string, state: TaskState, submittedAt: number | null, solverTaskId: string | null];

/** A `forwards` row as `SELECT *` returns it. */
export interface ForwardRow {
  task_id: string;
  event: ForwardEvent;
  webhook_id: string;
  state: ForwardState;
  created_at: number;
  since: number;
  attempts: number;
  next_attempt_at: number | null;
  lease: string | null;
  last_attempt_at: number | null;
  last_status: number | null;
  last_error: string | null;
  done_at: number | null;
}

/** Every statement the store runs, prepared once per connection. */
export type SqliteStatements = ReturnType<typeof prepareStatements>;

/** The oldest settled tasks of one state older than ?1, at most ?2: a range scan of `tasks_settled_at`. */
const oldestSettled = (state: TaskState) =>
  `SELECT * FROM (SELECT id, ${SETTLED_AT} AS at FROM tasks
     WHERE state = '${state}' AND state <> 'pending' AND ${SETTLED_AT} < ?1 ORDER BY at, id LIMIT ?2)`;

/*
 * Used only when the task has no solver id yet, so the link is part of the UPDATE that counts or settles (no
 * statement of its own); the subquery leaves it NULL when another task holds that solver id.
 */
const LINK_IF_FREE = '(SELECT ?1 WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE solver_task_id = ?1))';

/** A new forwarding round; the statements that use it pick which rows. */
const RESTART_FORWARD = `UPDATE forwards SET state = 'pending', since = ?1, next_attempt_at = ?1, attempts = 0,
      lease = NULL, done_at = NULL`;

/** One bounded range scan of `forwards_created` per settled state. */
const settledForwards = (state: ForwardState) =>
  `SELECT * FROM (SELECT task_id, event, created_at FROM forwards
         WHERE state = '${state}' AND created_at >= ?2 AND created_at < ?3 ORDER BY created_at LIMIT ?4)`;

/** For the callback lookups, which read a few columns by position rather than build an object per row. */
function returningArrays(statement: StatementSync): StatementSync {
  statement.setReturnArrays(true);
  return statement;
}

export function prepareStatements(db: DatabaseSync) {
  return {
    begin: db.prepare('BEGIN IMMEDIATE'),
    commit: db.prepare('COMMIT'),
    rollback: db.prepare('ROLLBACK'),
    insertPending: db.prepare(
      `INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks)
       VALUES (?, 'pending', 1, ?, ?, 0) ON CONFLICT (id) DO NOTHING`,
    ),
    insertUnregistered: db.prepare(
      `INSERT INTO tasks (id, state, registered, outcome, code, format, received_at, callbacks, solver_task_id,
         solution, metadata, recovered)
       VALUES (?, 'delivered', 0, ?, ?, ?, ?, 1, ?, ?, ?, ?)`,
    ),
    insertUnregisteredForwarding: db.prepare(
      `INSERT INTO tasks (id, state, registered, outcome, code, format, received_at, callbacks, solver_task_id,
         solution, metadata, recovered, forward_at)
       VALUES (?1, 'delivered', 0, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9, ?5)`,
    ),
    /** A callback's task by the app's id (the path): state, submitted_at, solver_task_id. */
    selectById: returningArrays(db.prepare('SELECT state, submitted_at, solver_task_id FROM tasks WHERE id = ?')),
    /** A callback's task by the solver's id, when the app's id is unknown. */
    selectBySolver: returningArrays(
      db.prepare('SELECT id, state, submitted_at, solver_task_id FROM tasks WHERE solver_task_id = ?'),
    ),
    /**
     * A callback with only the solver's id: the task linked to it, else the task whose app id it is. One statement
     * for both probes: the compound's LIMIT stops it after the first arm that finds the row.
     */
    selectBySolverOrId: returningArrays(
      db.prepare(
        `SELECT id, state, submitted_at, solver_task_id FROM tasks WHERE solver_task_id = ?1
       UNION ALL SELECT id, state, submitted_at, solver_task_id FROM tasks WHERE id = ?1 LIMIT 1`,
      ),
    ),
    countDuplicate: db.prepare('UPDATE tasks SET callbacks = callbacks + 1 WHERE id = ?'),
    /** A callback's first result on a pending (→ delivered) or missed (→ late) task. */
    settle: db.prepare(
      `UPDATE tasks SET state = ?, outcome = ?, code = ?, format = ?, received_at = ?, solution = ?, metadata = ?,
         recovered = ?, callbacks = callbacks + 1
       WHERE id = ?`,
    ),
    /** The same with forwarding on for its event: the result's forward waits on the row until a claim takes it. */
    settleForwarding: db.prepare(
      `UPDATE tasks SET state = ?1, outcome = ?2, code = ?3, format = ?4, received_at = ?5, solution = ?6, metadata = ?7,
         recovered = ?8, callbacks = callbacks + 1, forward_at = ?5
       WHERE id = ?9`,
    ),
    /** The same two, also linking the callback's solver id to a task that has none, unless another task holds it. */
    countDuplicateLink: db.prepare(
      `UPDATE tasks SET callbacks = callbacks + 1, solver_task_id = ${LINK_IF_FREE} WHERE id = ?2`,
    ),
    settleLink: db.prepare(
      `UPDATE tasks SET solver_task_id = ${LINK_IF_FREE}, state = ?2, outcome = ?3, code = ?4, format = ?5,
         received_at = ?6, solution = ?7, metadata = ?8, recovered = ?9, callbacks = callbacks + 1
       WHERE id = ?10`,
    ),
    settleLinkForwarding: db.prepare(
      `UPDATE tasks SET solver_task_id = ${LINK_IF_FREE}, state = ?2, outcome = ?3, code = ?4, format = ?5,
         received_at = ?6, solution = ?7, metadata = ?8, recovered = ?9, callbacks = callbacks + 1, forward_at = ?6
       WHERE id = ?10`,
    ),
    selectLinkTarget: db.prepare('SELECT registered, state, submitted_at, solver_task_id FROM tasks WHERE id = ?'),
    selectHolder: db.prepare(`SELECT ${TASK_COLUMNS} FROM tasks WHERE solver_task_id = ?`),
    link: db.prepare('UPDATE tasks SET solver_task_id = ? WHERE id = ?'),
    deleteOne: db.prepare('DELETE FROM tasks WHERE id = ?'),
    mergeSettle: db.prepare(
      `UPDATE tasks SET solver_task_id = ?, state = ?, outcome = ?, code = ?, format = ?, received_at = ?, solution = ?,
         metadata = ?, recovered = ?, callbacks = callbacks + ?
       WHERE id = ?`,
    ),
    mergeDuplicate: db.prepare('UPDATE tasks SET solver_task_id = ?, callbacks = callbacks + ? WHERE id = ?'),
    /*
     * The inner SELECT is the bounded index range scan; the outer UPDATE then touches each chosen row by key.
     * (Repeating `state = 'pending'` in the outer WHERE makes SQLite scan every pending row instead.)
     */
    expire: db.prepare(
      `UPDATE tasks SET state = 'missed' WHERE id IN (
         SELECT id FROM tasks WHERE state = 'pending' AND deadline_at <= ? ORDER BY deadline_at, id LIMIT ?
       ) RETURNING id, deadline_at`,
    ),
    /** By the app's id first; the solver id's arm runs only when that finds nothing. */
    selectOne: db.prepare(
      `SELECT ${TASK_COLUMNS} FROM tasks WHERE id = ?1
       UNION ALL SELECT ${TASK_COLUMNS} FROM tasks WHERE solver_task_id = ?1 LIMIT 1`,
    ),
    selectPending: db.prepare(
      `SELECT ${TASK_COLUMNS} FROM tasks WHERE state = 'pending' ORDER BY deadline_at, id LIMIT ?`,
    ),
    selectSettled: db.prepare(
      `SELECT ${TASK_COLUMNS} FROM tasks WHERE state = ? AND state <> 'pending' ORDER BY ${SETTLED_AT}, id LIMIT ?`,
    ),
    selectCounts: db.prepare('SELECT pending, delivered, missed, late FROM counts WHERE one = 1'),
    addCounts: db.prepare(
      `UPDATE counts SET pending = pending + ?, delivered = delivered + ?, missed = missed + ?, late = late + ?
       WHERE one = 1`,
    ),
    /** One group commit's transitions and the forwards it left waiting on their tasks' rows. */
    addBatchCounts: db.prepare(
      `UPDATE counts SET pending = pending + ?, delivered = delivered + ?, missed = missed + ?, late = late + ?,
         unclaimed = unclaimed + ?
       WHERE one = 1`,
    ),
    addUnclaimed: db.prepare('UPDATE counts SET unclaimed = unclaimed + ? WHERE one = 1'),
    selectUnclaimedCount: db.prepare('SELECT unclaimed AS n FROM counts WHERE one = 1'),
    beat: db.prepare('UPDATE heartbeat SET beats = beats + 1 WHERE one = 1'),
    selectSalt: db.prepare('SELECT salt FROM store_identity WHERE one = 1'),
    insertForward: db.prepare(
      `INSERT OR IGNORE INTO forwards (task_id, event, webhook_id, state, created_at, since, next_attempt_at)
       VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?4)`,
    ),
    /*
     * INDEXED BY: left to itself the planner takes forwards_created for `state = 'pending'` and sorts every pending
     * row by next attempt time (a temporary b-tree per claim: under a backlog of 12,000 it was half the process's
     * CPU).
     */
    selectDueForwards: db.prepare(
      `SELECT task_id, event FROM forwards INDEXED BY forwards_due
       WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?`,
    ),
    /** Unclaimed forwards due at ?1, oldest first, at most ?2: a range scan of `tasks_forward_due`. */
    selectDueUnclaimed: db.prepare(
      `SELECT id, state, forward_at, forward_id FROM tasks INDEXED BY tasks_forward_due
       WHERE forward_at IS NOT NULL AND forward_at <= ? ORDER BY forward_at LIMIT ?`,
    ),
    selectUnclaimedOf: db.prepare(
      'SELECT id, state, forward_at, forward_id FROM tasks WHERE id = ? AND forward_at IS NOT NULL',
    ),
    clearUnclaimed: db.prepare('UPDATE tasks SET forward_at = NULL, forward_id = NULL WHERE id = ?'),
    oldestUnclaimed: db.prepare('SELECT min(forward_at) AS at FROM tasks WHERE forward_at IS NOT NULL'),
    leaseForward: db.prepare(
      `UPDATE forwards SET attempts = attempts + 1, lease = ?, next_attempt_at = ? WHERE task_id = ? AND event = ?
       RETURNING *`,
    ),
    selectTaskById: db.prepare(`SELECT ${TASK_COLUMNS} FROM tasks WHERE id = ?`),
    settleForward: db.prepare(
      `UPDATE forwards SET state = ?, next_attempt_at = ?, done_at = ?, last_attempt_at = ?, last_status = ?,
         last_error = ?, lease = NULL
       WHERE task_id = ? AND event = ? AND lease = ? AND state = 'pending'`,
    ),
    selectForwardsOf: db.prepare('SELECT * FROM forwards WHERE task_id = ? ORDER BY event'),
    /** A pending row under a live lease (an attempt running now) is left to finish. */
    redeliver: db.prepare(
      `${RESTART_FORWARD} WHERE task_id = ?2 AND (state <> 'pending' OR lease IS NULL OR next_attempt_at <= ?1)`,
    ),
    replayState: db.prepare(
      `${RESTART_FORWARD} WHERE (task_id, event) IN (SELECT task_id, event FROM forwards
         WHERE state = ?2 AND created_at >= ?3 AND created_at < ?4 ORDER BY created_at LIMIT ?5)`,
    ),
    /** The settled states' scans merged oldest first. */
    replayAll: db.prepare(
      `${RESTART_FORWARD} WHERE (task_id, event) IN (SELECT task_id, event FROM (
         ${(['delivered', 'gone', 'dead'] as const).map(settledForwards).join(' UNION ALL ')}) ORDER BY created_at LIMIT ?4)`,
    ),
    countPendingForwards: db.prepare(
      "SELECT count(*) AS n FROM (SELECT 1 FROM forwards WHERE state = 'pending' LIMIT ?)",
    ),
    oldestPendingForward: db.prepare("SELECT min(created_at) AS at FROM forwards WHERE state = 'pending'"),
    /*
     * One bounded range scan of `tasks_settled_at` per settled state, merged oldest first; the outer DELETE then
     * removes each chosen row by key.
     */
    purge: db.prepare(
      `DELETE FROM tasks WHERE id IN (
         SELECT id FROM (${(['delivered', 'missed', 'late'] as const).map(oldestSettled).join(' UNION ALL ')})
         ORDER BY at, id LIMIT ?2
       )`,
    ),
  };
}

export function toRecord(row: TaskRow): TaskRecord {
  return {
    id: row.id,
    state: row.state,
    registered: row.registered === 1,
    outcome: row.outcome,
    code: row.code,
    format: row.format,
    submittedAt: row.submitted_at,
    deadlineAt: row.deadline_at,
    receivedAt: row.received_at,
    callbacks: row.callbacks,
    solverTaskId: row.solver_task_id,
    solution: parseJson(row.solution),
    metadata: parseJson(row.metadata),
    recovered: row.recovered === 1,
  };
}

export function parseJson(text: string | null): ResultDetails | null {
  return text === null ? null : (JSON.parse(text) as ResultDetails);
}

/** An unclaimed forward as its `forwards` row will start: pending, due at its event time, never attempted. */
export function unclaimedToForward(row: UnclaimedRow, webhookId: string): ForwardRecord {
  return {
    taskId: row.id,
    event: row.state,
    webhookId,
    state: 'pending',
    createdAt: row.forward_at,
    since: row.forward_at,
    attempts: 0,
    nextAttemptAt: row.forward_at,
    leased: false,
    lastAttemptAt: null,
    lastStatus: null,
    lastError: null,
    doneAt: null,
  };
}

export function toForward(row: ForwardRow): ForwardRecord {
  return {
    taskId: row.task_id,
    event: row.event,
    webhookId: row.webhook_id,
    state: row.state,
    createdAt: row.created_at,
    since: row.since,
    attempts: row.attempts,
    nextAttemptAt: row.state === 'pending' ? row.next_attempt_at : null,
    leased: row.lease !== null,
    lastAttemptAt: row.last_attempt_at,
    lastStatus: row.last_status,
    lastError: row.last_error,
    doneAt: row.done_at,
  };
}
