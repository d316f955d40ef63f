import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { SQLITE_SCHEMA, SqliteTaskStore } from '../packages/koa/src/delivery/stores/SqliteTaskStore.ts';

/** The schema files were created with up to version 2 (commit 4934993), verbatim. */
const SCHEMA_V2 = `
CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'missed', 'late')),
  registered INTEGER NOT NULL, outcome TEXT, code TEXT, format TEXT,
  submitted_at INTEGER, deadline_at INTEGER, received_at INTEGER, callbacks INTEGER NOT NULL DEFAULT 0,
  sort_at INTEGER GENERATED ALWAYS AS (coalesce(deadline_at, received_at)) VIRTUAL
) WITHOUT ROWID;
CREATE INDEX tasks_state_sort ON tasks (state, sort_at);
CREATE INDEX tasks_settled ON tasks (coalesce(received_at, deadline_at)) WHERE state <> 'pending';
CREATE TABLE counts (one INTEGER PRIMARY KEY CHECK (one = 1), pending INTEGER NOT NULL, delivered INTEGER NOT NULL,
  missed INTEGER NOT NULL, late INTEGER NOT NULL);
INSERT INTO counts VALUES (1, 2, 1, 0, 0);
CREATE TABLE heartbeat (one INTEGER PRIMARY KEY CHECK (one = 1), beats INTEGER NOT NULL);
INSERT INTO heartbeat VALUES (1, 0);
INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks) VALUES
  ('p1', 'pending', 1, 1000, 5000, 0), ('p2', 'pending', 1, 1000, 3000, 0);
INSERT INTO tasks (id, state, registered, outcome, code, format, submitted_at, deadline_at, received_at, callbacks)
  VALUES ('d1', 'delivered', 1, 'solved', 'tok', 'query', 1000, 9000, 2000, 1);
PRAGMA user_version = 2;
`;

/** A file created by version 3 (commit ea77102): the v2 table without `sort_at`, the v3 indexes, verbatim. */
const SCHEMA_V3 = `
CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'missed', 'late')),
  registered INTEGER NOT NULL,
  outcome TEXT,
  code TEXT,
  format TEXT,
  submitted_at INTEGER,
  deadline_at INTEGER,
  received_at INTEGER,
  callbacks INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX tasks_due ON tasks (deadline_at) WHERE state = 'pending';
CREATE INDEX tasks_settled_at ON tasks (state, coalesce(received_at, deadline_at)) WHERE state <> 'pending';
CREATE TABLE counts (one INTEGER PRIMARY KEY CHECK (one = 1), pending INTEGER NOT NULL, delivered INTEGER NOT NULL,
  missed INTEGER NOT NULL, late INTEGER NOT NULL);
INSERT INTO counts VALUES (1, 1, 0, 1, 0);
CREATE TABLE heartbeat (one INTEGER PRIMARY KEY CHECK (one = 1), beats INTEGER NOT NULL);
INSERT INTO heartbeat VALUES (1, 7);
INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks) VALUES
  ('p1', 'pending', 1, 1000, 5000, 0), ('m1', 'missed', 1, 1000, 3000, 0);
INSERT INTO tasks (id, state, registered, outcome, code, format, received_at, callbacks)
  VALUES ('u1', 'delivered', 0, 'error', 'ERROR_CAPTCHA_UNSOLVABLE', 'json', 2500, 2);
PRAGMA user_version = 3;
`;

/** A file created by version 4 (commit 701dcf3): the state CHECK spelled with OR, no solver id columns, verbatim. */
const SCHEMA_V4 = `
CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state = 'pending' OR state = 'delivered' OR state = 'missed' OR state = 'late'),
  registered INTEGER NOT NULL,
  outcome TEXT,
  code TEXT,
  format TEXT,
  submitted_at INTEGER,
  deadline_at INTEGER,
  received_at INTEGER,
  callbacks INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX tasks_due ON tasks (deadline_at) WHERE state = 'pending';
CREATE INDEX tasks_settled_at ON tasks (state, coalesce(received_at, deadline_at)) WHERE state <> 'pending';
CREATE TABLE counts (one INTEGER PRIMARY KEY CHECK (one = 1), pending INTEGER NOT NULL, delivered INTEGER NOT NULL,
  missed INTEGER NOT NULL, late INTEGER NOT NULL);
INSERT INTO counts VALUES (1, 2, 1, 1, 0);
CREATE TABLE heartbeat (one INTEGER PRIMARY KEY CHECK (one = 1), beats INTEGER NOT NULL);
INSERT INTO heartbeat VALUES (1, 3);
INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks) VALUES
  ('p1', 'pending', 1, 1000, 5000, 0), ('p2', 'pending', 1, 1000, 6000, 0), ('m1', 'missed', 1, 1000, 3000, 0);
INSERT INTO tasks (id, state, registered, outcome, code, format, submitted_at, deadline_at, received_at, callbacks)
  VALUES ('d1', 'delivered', 1, 'solved', 'tok', 'query', 1000, 9000, 2000, 1);
INSERT INTO tasks (id, state, registered, outcome, code, format, received_at, callbacks)
  VALUES ('u1', 'delivered', 0, 'failed', 'ERROR_CAPTCHA_UNSOLVABLE', 'json', 2500, 2);
PRAGMA user_version = 4;
`;

/**
 * A file created by version 6 (commit 3a2252e): the solver id, solution and metadata columns, the outbox, verbatim.
 * `d1` is a result recovery polling stored before version 7, marked only inside the solver's metadata.
 */
const SCHEMA_V6 = `
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state = 'pending' OR state = 'delivered' OR state = 'missed' OR state = 'late'),
  registered INTEGER NOT NULL,
  outcome TEXT,
  code TEXT,
  format TEXT,
  submitted_at INTEGER,
  deadline_at INTEGER,
  received_at INTEGER,
  callbacks INTEGER NOT NULL DEFAULT 0,
  solver_task_id TEXT,
  solution TEXT,
  metadata TEXT
) WITHOUT ROWID;
DROP INDEX IF EXISTS tasks_state_sort;
DROP INDEX IF EXISTS tasks_settled;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (deadline_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS tasks_settled_at ON tasks (state, coalesce(received_at, deadline_at)) WHERE state <> 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS tasks_solver ON tasks (solver_task_id) WHERE solver_task_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS counts (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  pending INTEGER NOT NULL,
  delivered INTEGER NOT NULL,
  missed INTEGER NOT NULL,
  late INTEGER NOT NULL
);
INSERT OR IGNORE INTO counts VALUES (1, 0, 0, 0, 0);
CREATE TABLE IF NOT EXISTS heartbeat (one INTEGER PRIMARY KEY CHECK (one = 1), beats INTEGER NOT NULL);
INSERT OR IGNORE INTO heartbeat VALUES (1, 0);

CREATE TABLE IF NOT EXISTS forwards (
  task_id TEXT NOT NULL,
  event TEXT NOT NULL,
  webhook_id TEXT NOT NULL,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  since INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  lease TEXT,
  last_attempt_at INTEGER,
  last_status INTEGER,
  last_error TEXT,
  done_at INTEGER,
  PRIMARY KEY (task_id, event)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS forwards_due ON forwards (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS forwards_created ON forwards (state, created_at);
CREATE TRIGGER IF NOT EXISTS forwards_with_task AFTER DELETE ON tasks BEGIN
  DELETE FROM forwards WHERE task_id = old.id;
END;
UPDATE counts SET pending = 2, delivered = 1 WHERE one = 1;
UPDATE heartbeat SET beats = 5 WHERE one = 1;
INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks, solver_task_id) VALUES
  ('p1', 'pending', 1, 1000, 5000, 0, 's-p1'), ('p2', 'pending', 1, 1000, 6000, 0, NULL);
INSERT INTO tasks (id, state, registered, outcome, code, format, submitted_at, deadline_at, received_at, callbacks,
    solver_task_id, solution, metadata)
  VALUES ('d1', 'delivered', 1, 'solved', 'tok', 'json', 1000, 9000, 2000, 1, 's-d1', '{"token":"tok"}',
    '{"cost":"0.001","recovered":true}');
INSERT INTO forwards (task_id, event, webhook_id, state, created_at, since, attempts, done_at, last_status)
  VALUES ('d1', 'delivered', 'msg_v6', 'delivered', 2000, 2000, 1, 2100, 200);
PRAGMA user_version = 6;
`;

/**
 * A file created by version 7 (commit d6c5947), verbatim: `d7`'s forward is a row, pending a retry after a 503;
 * `m7` is missed with its `missed` forward pending; `p7` is pending.
 */
const SCHEMA_V7 = `
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state = 'pending' OR state = 'delivered' OR state = 'missed' OR state = 'late'),
  registered INTEGER NOT NULL,
  outcome TEXT,
  code TEXT,
  format TEXT,
  submitted_at INTEGER,
  deadline_at INTEGER,
  received_at INTEGER,
  callbacks INTEGER NOT NULL DEFAULT 0,
  solver_task_id TEXT,
  solution TEXT,
  metadata TEXT,
  recovered INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
DROP INDEX IF EXISTS tasks_state_sort;
DROP INDEX IF EXISTS tasks_settled;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (deadline_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS tasks_settled_at ON tasks (state, coalesce(received_at, deadline_at)) WHERE state <> 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS tasks_solver ON tasks (solver_task_id) WHERE solver_task_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS counts (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  pending INTEGER NOT NULL,
  delivered INTEGER NOT NULL,
  missed INTEGER NOT NULL,
  late INTEGER NOT NULL
);
INSERT OR IGNORE INTO counts VALUES (1, 0, 0, 0, 0);
CREATE TABLE IF NOT EXISTS heartbeat (one INTEGER PRIMARY KEY CHECK (one = 1), beats INTEGER NOT NULL);
INSERT OR IGNORE INTO heartbeat VALUES (1, 0);

CREATE TABLE IF NOT EXISTS forwards (
  task_id TEXT NOT NULL,
  event TEXT NOT NULL,
  webhook_id TEXT NOT NULL,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  since INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  lease TEXT,
  last_attempt_at INTEGER,
  last_status INTEGER,
  last_error TEXT,
  done_at INTEGER,
  PRIMARY KEY (task_id, event)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS forwards_due ON forwards (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS forwards_created ON forwards (state, created_at);
CREATE TRIGGER IF NOT EXISTS forwards_with_task AFTER DELETE ON tasks BEGIN
  DELETE FROM forwards WHERE task_id = old.id;
END;
UPDATE counts SET pending = 1, delivered = 1, missed = 1 WHERE one = 1;
INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks) VALUES
  ('p7', 'pending', 1, 1000, 9000, 0), ('m7', 'missed', 1, 1000, 1500, 0);
INSERT INTO tasks (id, state, registered, outcome, code, format, submitted_at, deadline_at, received_at, callbacks)
  VALUES ('d7', 'delivered', 1, 'solved', 'tok', 'json', 1000, 9000, 2000, 1);
INSERT INTO forwards (task_id, event, webhook_id, state, created_at, since, attempts, next_attempt_at, last_status)
  VALUES ('d7', 'delivered', 'msg_v7d', 'pending', 2000, 2000, 1, 3000, 503),
    ('m7', 'missed', 'msg_v7m', 'pending', 1500, 1500, 0, 1500, NULL);
PRAGMA user_version = 7;
`;

/**
 * A file created by version 8 (commit e6fe71b), verbatim: `w8`'s forward waits on its row under the webhook id
 * version 8 stored with it; `p8` is pending.
 */
const SCHEMA_V8 = `
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state = 'pending' OR state = 'delivered' OR state = 'missed' OR state = 'late'),
  registered INTEGER NOT NULL,
  outcome TEXT,
  code TEXT,
  format TEXT,
  submitted_at INTEGER,
  deadline_at INTEGER,
  received_at INTEGER,
  callbacks INTEGER NOT NULL DEFAULT 0,
  solver_task_id TEXT,
  solution TEXT,
  metadata TEXT,
  recovered INTEGER NOT NULL DEFAULT 0,
  forward_at INTEGER,
  forward_id TEXT
) WITHOUT ROWID;
DROP INDEX IF EXISTS tasks_state_sort;
DROP INDEX IF EXISTS tasks_settled;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (deadline_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS tasks_settled_at ON tasks (state, coalesce(received_at, deadline_at)) WHERE state <> 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS tasks_solver ON tasks (solver_task_id) WHERE solver_task_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_forward_due ON tasks (forward_at) WHERE forward_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS counts (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  pending INTEGER NOT NULL,
  delivered INTEGER NOT NULL,
  missed INTEGER NOT NULL,
  late INTEGER NOT NULL,
  unclaimed INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO counts (one, pending, delivered, missed, late) VALUES (1, 0, 0, 0, 0);
CREATE TRIGGER IF NOT EXISTS tasks_unclaimed_deleted AFTER DELETE ON tasks WHEN old.forward_at IS NOT NULL BEGIN
  UPDATE counts SET unclaimed = unclaimed - 1 WHERE one = 1;
END;
CREATE TABLE IF NOT EXISTS heartbeat (one INTEGER PRIMARY KEY CHECK (one = 1), beats INTEGER NOT NULL);
INSERT OR IGNORE INTO heartbeat VALUES (1, 0);
CREATE TABLE IF NOT EXISTS forwards (
  task_id TEXT NOT NULL,
  event TEXT NOT NULL,
  webhook_id TEXT NOT NULL,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  since INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  lease TEXT,
  last_attempt_at INTEGER,
  last_status INTEGER,
  last_error TEXT,
  done_at INTEGER,
  PRIMARY KEY (task_id, event)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS forwards_due ON forwards (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS forwards_created ON forwards (state, created_at);
CREATE TRIGGER IF NOT EXISTS forwards_with_task AFTER DELETE ON tasks BEGIN
  DELETE FROM forwards WHERE task_id = old.id;
END;
UPDATE counts SET pending = 1, delivered = 1, unclaimed = 1 WHERE one = 1;
INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks) VALUES ('p8', 'pending', 1, 1000, 9000, 0);
INSERT INTO tasks (id, state, registered, outcome, code, format, submitted_at, deadline_at, received_at, callbacks,
    forward_at, forward_id)
  VALUES ('w8', 'delivered', 1, 'solved', 'tok', 'json', 1000, 9000, 2000, 1, 2000, 'msg_v8w');
PRAGMA user_version = 8;
`;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ccm-schema-'));
  dirs.push(dir);
  return join(dir, 'tasks.db');
}

const indexes = (db: DatabaseSync) =>
  (
    db
      .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'tasks' AND sql IS NOT NULL")
      .all() as Array<{ name: string }>
  ).map((r) => r.name);

describe('SqliteTaskStore schema', () => {
  it('upgrades a version 2 file in place: the new indexes replace the old ones, every row and count is kept', async () => {
    const path = fileWith(SCHEMA_V2);

    const store = new SqliteTaskStore(path);
    expect(await store.counts()).toEqual({ pending: 2, delivered: 1, missed: 0, late: 0 });
    expect((await store.list('pending', 10)).map((t) => t.id)).toEqual(['p2', 'p1']);
    expect(await store.get('d1')).toMatchObject({ state: 'delivered', code: 'tok', receivedAt: 2000 });
    expect(await store.expireDue(4000, 10)).toEqual(['p2']);
    expect(
      await store.recordCallback({ taskId: 'p1', outcome: 'solved', code: 'c', format: 'query', receivedAt: 4500 }),
    ).toEqual({ kind: 'delivered', id: 'p1', submittedAt: 1000 });
    expect((await store.list('delivered', 10)).map((t) => t.id)).toEqual(['d1', 'p1']);
    expect(await store.purge(2500, 10)).toBe(1); // d1, settled at 2000
    await store.close();

    const db = new DatabaseSync(path);
    expectCurrentSchema(db);
    expect(columns(db)).not.toContain('sort_at');
    db.close();
  });

  it('upgrades a version 3 file: the table is rebuilt with the OR-spelled CHECK, every row, count and index kept', async () => {
    const path = fileWith(SCHEMA_V3);

    const store = new SqliteTaskStore(path);
    expect(await store.counts()).toEqual({ pending: 1, delivered: 0, missed: 1, late: 0 });
    expect(await store.get('u1')).toMatchObject({ registered: false, callbacks: 2, code: 'ERROR_CAPTCHA_UNSOLVABLE' });
    expect(
      await store.recordCallback({ taskId: 'm1', outcome: 'solved', code: 'c', format: 'query', receivedAt: 4000 }),
    ).toEqual({ kind: 'late', id: 'm1', submittedAt: 1000 });
    expect(
      await store.recordCallback({ taskId: 'p1', outcome: 'solved', code: 'c', format: 'query', receivedAt: 4100 }),
    ).toEqual({ kind: 'delivered', id: 'p1', submittedAt: 1000 });
    expect((await store.list('late', 10)).map((t) => t.id)).toEqual(['m1']);
    expect((await store.list('delivered', 10)).map((t) => t.id)).toEqual(['u1', 'p1']);
    await store.close();

    const db = new DatabaseSync(path);
    expectCurrentSchema(db);
    expect(db.prepare('SELECT beats FROM heartbeat').get()).toEqual({ beats: 7 });
    const rootPage = tasksRootPage(db);
    db.close();

    // Opening a current file again must not rebuild it (a rebuilt table gets a new root page) nor lose anything.
    const again = new SqliteTaskStore(path);
    expect(await again.counts()).toEqual({ pending: 0, delivered: 1, missed: 0, late: 1 });
    await again.close();
    const reopened = new DatabaseSync(path);
    expect(tasksRootPage(reopened)).toBe(rootPage);
    reopened.close();
  });
  it('upgrades a version 4 file in place by adding the columns: no rebuild, every row, count and index kept', async () => {
    const path = fileWith(SCHEMA_V4);
    const before = new DatabaseSync(path);
    const rootPage = tasksRootPage(before);
    before.close();

    const store = new SqliteTaskStore(path);
    expect(await store.counts()).toEqual({ pending: 2, delivered: 1, missed: 1, late: 0 });
    expect(await store.get('d1')).toEqual({
      id: 'd1',
      solverTaskId: null,
      state: 'delivered',
      registered: true,
      outcome: 'solved',
      code: 'tok',
      format: 'query',
      solution: null,
      metadata: null,
      recovered: false,
      submittedAt: 1000,
      deadlineAt: 9000,
      receivedAt: 2000,
      callbacks: 1,
    });
    expect(await store.get('u1')).toMatchObject({ registered: false, callbacks: 2, solverTaskId: null });
    // The old rows take the new fields: a solver id attached, a whole result stored, found by either id.
    expect(await store.attachSolverTaskId('p1', 's-p1')).toEqual({ kind: 'attached' });
    expect(
      await store.recordCallback({
        solverTaskId: 's-p1',
        outcome: 'solved',
        code: 'c',
        format: 'json',
        receivedAt: 4000,
        solution: { token: 'c', userAgent: 'UA' },
        metadata: { cost: '0.001' },
      }),
    ).toEqual({ kind: 'delivered', id: 'p1', submittedAt: 1000 });
    expect(await store.get('s-p1')).toMatchObject({ id: 'p1', solution: { token: 'c', userAgent: 'UA' } });
    expect(
      await store.recordCallback({ taskId: 'm1', outcome: 'solved', code: 'c', format: 'query', receivedAt: 4100 }),
    ).toEqual({ kind: 'late', id: 'm1', submittedAt: 1000 });
    expect(await store.expireDue(6000, 10)).toEqual(['p2']);
    expect((await store.list('delivered', 10)).map((t) => t.id)).toEqual(['d1', 'u1', 'p1']);
    expect(await store.counts()).toEqual({ pending: 0, delivered: 2, missed: 1, late: 1 });
    await store.close();

    const db = new DatabaseSync(path);
    expectCurrentSchema(db);
    // ALTER TABLE … ADD COLUMN changes the table in place: a rebuilt table would have a new root page.
    expect(tasksRootPage(db)).toBe(rootPage);
    expect(db.prepare('SELECT beats FROM heartbeat').get()).toEqual({ beats: 3 });
    db.close();
  });

  it('upgrades a version 6 file in place by adding `recovered`: old rows read false, new results store it', async () => {
    const path = fileWith(SCHEMA_V6);
    const before = new DatabaseSync(path);
    const rootPage = tasksRootPage(before);
    before.close();

    const store = new SqliteTaskStore(path);
    expect(await store.counts()).toEqual({ pending: 2, delivered: 1, missed: 0, late: 0 });
    // A result stored before version 7 has no flag: a mark inside the solver's metadata is not taken for one.
    expect(await store.get('d1')).toEqual({
      id: 'd1',
      solverTaskId: 's-d1',
      state: 'delivered',
      registered: true,
      outcome: 'solved',
      code: 'tok',
      format: 'json',
      solution: { token: 'tok' },
      metadata: { cost: '0.001', recovered: true },
      recovered: false,
      submittedAt: 1000,
      deadlineAt: 9000,
      receivedAt: 2000,
      callbacks: 1,
    });
    expect(await store.forwards?.forwardsOf('d1')).toMatchObject([{ event: 'delivered', webhookId: 'msg_v6' }]);
    expect(
      await store.recordCallback({
        solverTaskId: 's-p1',
        outcome: 'solved',
        code: 'c',
        format: 'json',
        receivedAt: 4000,
        recovered: true,
      }),
    ).toEqual({ kind: 'delivered', id: 'p1', submittedAt: 1000 });
    expect(
      await store.recordCallback({ taskId: 'p2', outcome: 'solved', code: 'c2', format: 'query', receivedAt: 4100 }),
    ).toEqual({ kind: 'delivered', id: 'p2', submittedAt: 1000 });
    expect(await store.get('p1')).toMatchObject({ state: 'delivered', recovered: true });
    expect(await store.get('p2')).toMatchObject({ state: 'delivered', recovered: false });
    expect(await store.counts()).toEqual({ pending: 0, delivered: 3, missed: 0, late: 0 });
    await store.close();

    const db = new DatabaseSync(path);
    expectCurrentSchema(db);
    expect(tasksRootPage(db)).toBe(rootPage);
    expect(db.prepare('SELECT beats FROM heartbeat').get()).toEqual({ beats: 5 });
    db.close();

    // Opened again, the file is current: nothing is added twice, the flag is still there.
    const again = new SqliteTaskStore(path);
    expect(await again.get('p1')).toMatchObject({ recovered: true });
    await again.close();
  });

  it('upgrades a version 7 file in place: its forwards rows are kept, new results wait on their task until claimed', async () => {
    const path = fileWith(SCHEMA_V7);
    const before = new DatabaseSync(path);
    const rootPage = tasksRootPage(before);
    before.close();

    const store = new SqliteTaskStore(path);
    const outbox = store.forwards!;
    outbox.enable(['delivered', 'missed', 'late']);
    expect(await outbox.forwardsOf('d7')).toMatchObject([
      { event: 'delivered', webhookId: 'msg_v7d', state: 'pending', attempts: 1, nextAttemptAt: 3000, lastStatus: 503 },
    ]);
    const at = (id: string, receivedAt: number) =>
      store.recordCallback({ taskId: id, outcome: 'solved', code: `c-${id}`, format: 'json', receivedAt });
    expect(await at('p7', 4000)).toEqual({ kind: 'delivered', id: 'p7', submittedAt: 1000 });
    expect(await at('m7', 4500)).toEqual({ kind: 'late', id: 'm7', submittedAt: 1000 });
    // A task with both: the `missed` row from version 7 and its `late` forward, which waits on the task's row.
    const m7 = await outbox.forwardsOf('m7');
    expect(m7).toMatchObject([
      { event: 'late', state: 'pending', createdAt: 4500, attempts: 0, nextAttemptAt: 4500, leased: false },
      { event: 'missed', webhookId: 'msg_v7m', state: 'pending', createdAt: 1500 },
    ]);
    expect(m7[0]!.webhookId).toMatch(/^msg_/);
    expect(await outbox.backlog(100)).toEqual({ pending: 4, oldestCreatedAt: 1500 });
    expect(await outbox.backlog(3)).toMatchObject({ pending: 3 });

    // The ids whose forward waits on their row; the counts row must agree with them at every step.
    const unclaimed = (db: DatabaseSync) => {
      const ids = db.prepare('SELECT id FROM tasks WHERE forward_at IS NOT NULL ORDER BY id').all();
      expect(db.prepare('SELECT unclaimed FROM counts').get()).toEqual({ unclaimed: ids.length });
      return ids;
    };
    const peek = new DatabaseSync(path);
    expect(unclaimed(peek)).toEqual([{ id: 'm7' }, { id: 'p7' }]);
    // Due at 4000: the two rows and p7 (m7's late is not due yet), oldest due first.
    const jobs = await outbox.claimDue(4000, 10, 1000);
    expect(jobs.map((j) => [j.forward.taskId, j.forward.event, j.forward.attempts])).toEqual([
      ['m7', 'missed', 1],
      ['d7', 'delivered', 2],
      ['p7', 'delivered', 1],
    ]);
    expect(jobs[2]).toMatchObject({ forward: { createdAt: 4000, leased: true }, task: { id: 'p7', code: 'c-p7' } });
    expect(unclaimed(peek)).toEqual([{ id: 'm7' }]);
    // Redelivering a forward nobody has claimed yet makes it a row due now, keeping its webhook id.
    expect(await outbox.redeliver('m7', 4100)).toBe(1);
    expect(unclaimed(peek)).toEqual([]);
    expect((await outbox.forwardsOf('m7'))[0]).toEqual({ ...m7[0], since: 4100, nextAttemptAt: 4100 });
    expect(await outbox.backlog(100)).toEqual({ pending: 4, oldestCreatedAt: 1500 });
    // Deleting a task whose forward waits on its row (retention, a merge) takes it off the count.
    expect(await at('u7', 6000)).toEqual({ kind: 'unregistered', id: 'u7' });
    expect(unclaimed(peek)).toEqual([{ id: 'u7' }]);
    expect(await outbox.backlog(100)).toEqual({ pending: 5, oldestCreatedAt: 1500 });
    peek.exec("DELETE FROM tasks WHERE id = 'u7'");
    expect(unclaimed(peek)).toEqual([]);
    expect(await outbox.backlog(100)).toEqual({ pending: 4, oldestCreatedAt: 1500 });
    peek.close();
    await store.close();

    const db = new DatabaseSync(path);
    expectCurrentSchema(db);
    expect(tasksRootPage(db)).toBe(rootPage);
    db.close();
  });

  it("upgrades a version 8 file in place: a waiting forward keeps its stored webhook id, new ones derive theirs from the file's salt", async () => {
    const path = fileWith(SCHEMA_V8);
    const before = new DatabaseSync(path);
    const rootPage = tasksRootPage(before);
    before.close();

    const store = new SqliteTaskStore(path);
    const outbox = store.forwards!;
    outbox.enable(['delivered']);
    expect(await outbox.forwardsOf('w8')).toMatchObject([{ event: 'delivered', webhookId: 'msg_v8w', attempts: 0 }]);
    await store.recordCallback({ taskId: 'p8', outcome: 'solved', code: 'c', format: 'json', receivedAt: 4000 });
    const waiting = (await outbox.forwardsOf('p8'))[0]!;
    expect(waiting).toMatchObject({ event: 'delivered', state: 'pending', createdAt: 4000, attempts: 0 });
    expect(waiting.webhookId).toMatch(/^msg_[A-Za-z0-9_-]{27}$/);
    const peek = new DatabaseSync(path);
    // Version 9 stores no id with the waiting forward.
    expect(peek.prepare("SELECT forward_at, forward_id FROM tasks WHERE id = 'p8'").get()).toEqual({
      forward_at: 4000,
      forward_id: null,
    });
    await store.close();

    // Opened again, the file's salt is the same, so is the waiting forward's id; the claim writes both ids.
    const again = new SqliteTaskStore(path);
    again.forwards!.enable(['delivered']);
    expect((await again.forwards!.forwardsOf('p8'))[0]!.webhookId).toBe(waiting.webhookId);
    const jobs = await again.forwards!.claimDue(5000, 10, 1000);
    expect(jobs.map((j) => [j.forward.taskId, j.forward.webhookId])).toEqual([
      ['w8', 'msg_v8w'],
      ['p8', waiting.webhookId],
    ]);
    expect(peek.prepare('SELECT task_id, webhook_id FROM forwards ORDER BY task_id').all()).toEqual([
      { task_id: 'p8', webhook_id: waiting.webhookId },
      { task_id: 'w8', webhook_id: 'msg_v8w' },
    ]);
    expect(peek.prepare('SELECT unclaimed FROM counts').get()).toEqual({ unclaimed: 0 });
    peek.close();
    await again.close();

    // Another file has another salt: the same task id and event time get another id.
    const other = new SqliteTaskStore(tempFile());
    other.forwards!.enable(['delivered']);
    await other.register(['p8'], 1000, 9000);
    await other.recordCallback({ taskId: 'p8', outcome: 'solved', code: 'c', format: 'json', receivedAt: 4000 });
    const elsewhere = (await other.forwards!.forwardsOf('p8'))[0]!.webhookId;
    expect(elsewhere).toMatch(/^msg_/);
    expect(elsewhere).not.toBe(waiting.webhookId);
    await other.close();

    const db = new DatabaseSync(path);
    expectCurrentSchema(db);
    expect(tasksRootPage(db)).toBe(rootPage);
    db.close();
  });
});

describe('SqliteTaskStore schema versions', () => {
  it('refuses a file written by a newer schema version, naming both versions, and leaves it untouched', () => {
    const path = fileWith(`${SCHEMA_V3} PRAGMA user_version = 99;`);
    expect(() => new SqliteTaskStore(path)).toThrow(/schema version 99, newer than this receiver's 9/);
    const db = new DatabaseSync(path);
    expect(db.prepare('PRAGMA user_version').get()).toEqual({ user_version: 99 });
    db.close();
  });
});

/** A new file written by an older (or newer) version's schema, closed. */
function fileWith(schema: string): string {
  const path = tempFile();
  const db = new DatabaseSync(path);
  db.exec(`PRAGMA journal_mode = WAL; ${schema}`);
  db.close();
  return path;
}

function tasksRootPage(db: DatabaseSync): number {
  return (db.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'tasks'").get() as { rootpage: number }).rootpage;
}

function columns(db: DatabaseSync): string[] {
  return (db.prepare('SELECT name FROM pragma_table_info(?)').all('tasks') as Array<{ name: string }>).map(
    (r) => r.name,
  );
}

/** The tasks table's columns as a new file has them: name, type, NOT NULL, default, in order. */
function newFileColumns(): unknown[] {
  const db = new DatabaseSync(':memory:');
  db.exec(SQLITE_SCHEMA);
  const info = tableInfo(db);
  db.close();
  return info;
}

function tableInfo(db: DatabaseSync): unknown[] {
  return db.prepare('SELECT name, type, "notnull", dflt_value FROM pragma_table_info(\'tasks\')').all();
}

/**
 * Version 9: the store's salt (version 9), the v3 indexes, the unique solver id index and the unclaimed forwards' index, the state CHECK spelled
 * with OR and still enforced, the solver id, solution and metadata columns (version 5), `recovered` (version 7) and
 * the unclaimed forward (version 8) last, solver ids unique, the forwarding outbox (version 6), and exactly the
 * columns a new file has, in its order.
 */
function expectCurrentSchema(db: DatabaseSync): void {
  expect(db.prepare('PRAGMA user_version').get()).toEqual({ user_version: 9 });
  expect(db.prepare('SELECT one, length(salt) AS n FROM store_identity').all()).toEqual([{ one: 1, n: 24 }]);
  expect(tableInfo(db)).toEqual(newFileColumns());
  expect(
    db.prepare("SELECT name FROM sqlite_schema WHERE tbl_name = 'forwards' OR type = 'trigger' ORDER BY name").all(),
  ).toEqual([
    { name: 'forwards' },
    { name: 'forwards_created' },
    { name: 'forwards_due' },
    { name: 'forwards_with_task' },
    { name: 'tasks_unclaimed_deleted' },
  ]);
  expect(db.prepare('SELECT name FROM pragma_table_info(?)').all('counts')).toEqual(
    ['one', 'pending', 'delivered', 'missed', 'late', 'unclaimed'].map((name) => ({ name })),
  );
  expect(indexes(db).sort()).toEqual(['tasks_due', 'tasks_forward_due', 'tasks_settled_at', 'tasks_solver']);
  expect(columns(db).slice(-6)).toEqual([
    'solver_task_id',
    'solution',
    'metadata',
    'recovered',
    'forward_at',
    'forward_id',
  ]);
  db.exec("INSERT INTO tasks (id, state, registered, callbacks, solver_task_id) VALUES ('s1', 'pending', 1, 0, 'dup')");
  expect(() =>
    db.exec(
      "INSERT INTO tasks (id, state, registered, callbacks, solver_task_id) VALUES ('s2', 'pending', 1, 0, 'dup')",
    ),
  ).toThrow(/UNIQUE constraint failed/);
  db.exec("DELETE FROM tasks WHERE id = 's1'");
  const { sql } = db.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'tasks'").get() as {
    sql: string;
  };
  expect(sql).not.toMatch(/state IN/);
  expect(() => db.exec("INSERT INTO tasks (id, state, registered, callbacks) VALUES ('bad', 'lost', 1, 0)")).toThrow(
    /CHECK constraint failed/,
  );
  expect(db.prepare("SELECT count(*) AS n FROM tasks WHERE id = 'bad'").get()).toEqual({ n: 0 });
}
