import type { DatabaseSync } from 'node:sqlite';

/** Bump with a migration when the schema changes. */
const SCHEMA_VERSION = 9;

/*
 * One row per task. The state CHECK spells its four values out with OR on purpose: SQLite evaluates `state IN (…)`
 * with a list by building a temporary b-tree every time the constraint runs, which made the CHECK a fifth of the
 * cost of a delivery (version 3 and older; opening such a file rebuilds the table once, see migrate).
 *
 * Version 5 added the last three columns: the solver's task id, and the solver's whole `solution` object and its
 * other fields as JSON text (null when the callback had none). They come last because a version 4 file gets them by
 * `ALTER TABLE … ADD COLUMN`, which appends; a new file must have the same column order as an upgraded one.
 *
 * Version 7 added `recovered` (1 when the stored result was fetched from the solver's API by recovery polling rather
 * than delivered by its callback), last for the same reason; NOT NULL DEFAULT 0 lets `ADD COLUMN` give every existing
 * row 0 without rewriting it.
 *
 * Version 8 added `forward_at` and `forward_id`: a result's forward while no worker has claimed it yet (its event
 * time and webhook id; the event is the task's state, delivered or late). The UPDATE that settles the task sets them,
 * so a callback with forwarding on writes its own row and one entry of `tasks_forward_due` instead of a row of the
 * outbox with its two indexes; the first claim moves them into a `forwards` row (sqliteForwardOutbox.ts).
 *
 * Version 9 writes `forward_id` no more: a waiting forward's webhook id is derived from the store's salt (the
 * `store_identity` table), its task id and its event time (webhookId.ts), which leaves the callback's UPDATE a string
 * shorter. A version 8 file's waiting forwards keep the ids they were given; the column stays so that new and upgraded
 * files have the same columns.
 */
const TASKS_TABLE = `tasks (
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
) WITHOUT ROWID`;

/** The columns of a task's record, in table order (all but version 8's unclaimed forward). */
export const TASK_COLUMNS =
  'id, state, registered, outcome, code, format, submitted_at, deadline_at, received_at, callbacks, ' +
  'solver_task_id, solution, metadata, recovered';

/*
 * Version 6: the forwarding outbox, one row per task and event, written in the transaction of the transition that
 * makes it (only while forwarding is enabled, so a receiver without FORWARD_URL writes nothing more per callback).
 * Since version 8 a callback's result waits on its task's row (`forward_at`, `forward_id`) until the first claim
 * writes its row here; a `missed` forward and a merged result are written here at once.
 *
 * - `forwards_due` (pending only, by next attempt time) serves the worker's bounded claim. A claim moves the row's
 *   next attempt time to its lease's end, so a lease that runs out makes the row due again: no separate lease index.
 * - `forwards_created` (state, event time) serves bulk replay by time range and the oldest pending forward.
 * - The trigger deletes a task's forwards with it: retention, and an unregistered record merged into its task.
 */
const FORWARDS_SCHEMA = `
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
END;`;

/*
 * Two partial indexes, chosen so that a delivery (the hot path) touches as few pages as possible:
 *
 * - `tasks_due` covers pending tasks only, by deadline. It serves `expireDue` (a bounded range scan of its oldest
 *   end) and `list('pending')`. A delivery deletes one entry from it.
 * - `tasks_settled_at` covers settled tasks (delivered, missed, late, and stored callbacks nobody registered), by
 *   state and settling time: the callback's receipt, or the deadline for a missed task, which has no receipt. It
 *   serves `list()` of a settled state and retention (`purge`), both bounded range scans. A delivery adds one entry
 *   at its newest end, which every delivery of a burst shares.
 *
 * - `tasks_solver` (version 5) maps a solver task id to its row and makes it unique across tasks. Partial: most
 *   tasks have none (or get one only with their callback), and a NULL entry would cost a delivery an index write.
 *   A callback that carries the app's id never reads it unless that id is unknown.
 * - `tasks_forward_due` (version 8) covers the unclaimed forwards only, by event time: the claim's range scan. A
 *   callback with forwarding on adds one entry at its newest end; the claim deletes it.
 *
 * Up to version 2 one (state, deadline) index served both, so a delivery also inserted an entry at its deadline's
 * place among the delivered (a page of its own per callback), and a third index served retention.
 *
 * `store_identity` (version 9) holds the store's salt, drawn once when the table is created: waiting forwards' webhook
 * ids derived from it differ between stores, and stay the same across restarts.
 *
 * `counts` is one row updated inside the same transaction as every transition, so `counts()` is a single-row read
 * however many tasks there are, and can never drift from the rows it summarises. Its `unclaimed` (version 8) counts
 * the tasks whose forward waits on their row: added by each group commit, taken off by the claim that writes the
 * forward's row, and by the trigger when such a task is deleted, so the forwarder's backlog gauge reads one row
 * instead of counting up to its cap in the index every second.
 */
const INDEXES_AND_AGGREGATES = `
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
CREATE TABLE IF NOT EXISTS store_identity (one INTEGER PRIMARY KEY CHECK (one = 1), salt TEXT NOT NULL);
INSERT OR IGNORE INTO store_identity VALUES (1, lower(hex(randomblob(12))));
${FORWARDS_SCHEMA}
`;

/** The whole schema of a new file (also used by the statement micro-benchmark). */
export const SQLITE_SCHEMA = `CREATE TABLE IF NOT EXISTS ${TASKS_TABLE};${INDEXES_AND_AGGREGATES}`;

/** The settling time, exactly as `tasks_settled_at` indexes it (queries must repeat the expression to use it). */
export const SETTLED_AT = 'coalesce(received_at, deadline_at)';

/**
 * Creates the schema in a new file, or brings an older file to this version, in one transaction. It takes the write
 * lock, so two processes opening a new file at once cannot interleave.
 */
export function createOrMigrateSchema(db: DatabaseSync): void {
  db.exec('BEGIN IMMEDIATE');
  migrate(db);
  db.exec(`${SQLITE_SCHEMA} PRAGMA user_version = ${SCHEMA_VERSION}; COMMIT;`);
}

/**
 * Brings an older file's `tasks` table to this version's definition, inside the caller's transaction. Versions 4 to 7
 * only lack columns (version 4: version 5's three; versions 4 to 6: version 7's `recovered`; all: version 8's two),
 * which `ALTER TABLE … ADD COLUMN` appends in place, in the order a new file has them (no row is rewritten). A CHECK
 * constraint cannot be altered in place, so a file from version 3 or older is copied into a new table once (about a
 * second per million tasks), taking the columns the old table has; version 2's virtual `sort_at` column stays behind.
 * The indexes are created afterwards by the schema itself.
 */
function migrate(db: DatabaseSync): void {
  const { user_version: version } = db.prepare('PRAGMA user_version').get() as { user_version: number };
  // Written by a newer receiver: its schema may mean things this code would silently get wrong.
  if (version > SCHEMA_VERSION) {
    throw new Error(`the file has schema version ${version}, newer than this receiver's ${SCHEMA_VERSION}`);
  }
  const exists = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'tasks'").get();
  // Version 8 lacks only `store_identity`, which the schema creates (CREATE … IF NOT EXISTS) after this.
  if (!exists || version >= 8) return;
  // The counts row of an older file lacks version 8's column (a file without the table gets it from the schema).
  if (db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'counts'").get()) {
    db.exec('ALTER TABLE counts ADD COLUMN unclaimed INTEGER NOT NULL DEFAULT 0');
  }
  // Version 5 also lacks the outbox, which the schema creates (CREATE … IF NOT EXISTS) after this.
  if (version >= 4) {
    if (version === 4) {
      db.exec(`
        ALTER TABLE tasks ADD COLUMN solver_task_id TEXT;
        ALTER TABLE tasks ADD COLUMN solution TEXT;
        ALTER TABLE tasks ADD COLUMN metadata TEXT;
      `);
    }
    if (version <= 6) db.exec('ALTER TABLE tasks ADD COLUMN recovered INTEGER NOT NULL DEFAULT 0');
    db.exec('ALTER TABLE tasks ADD COLUMN forward_at INTEGER; ALTER TABLE tasks ADD COLUMN forward_id TEXT;');
    return;
  }
  // table_info lists stored columns only, so a generated column (version 2's sort_at) is never copied.
  const old = new Set(
    (db.prepare("SELECT name FROM pragma_table_info('tasks')").all() as Array<{ name: string }>).map((c) => c.name),
  );
  const copied = TASK_COLUMNS.split(', ')
    .filter((c) => old.has(c))
    .join(', ');
  db.exec(`
    CREATE TABLE tasks_next ${TASKS_TABLE.slice('tasks '.length)};
    INSERT INTO tasks_next (${copied}) SELECT ${copied} FROM tasks;
    DROP TABLE tasks;
    ALTER TABLE tasks_next RENAME TO tasks;
  `);
}
