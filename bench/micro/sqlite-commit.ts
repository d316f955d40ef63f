/**
 * Micro-benchmark behind the SQLite recommendations in bench/RESULTS.md: what one stored callback costs in
 * SqliteTaskStore's transaction shape (BEGIN IMMEDIATE; SELECT; UPDATE task; UPDATE counts; COMMIT, WAL,
 * synchronous=NORMAL) against variants the store could adopt. Same schema and statements as
 * src/delivery/stores/SqliteTaskStore.ts as of 4934993 (schema v2; copied: this never touches the real store).
 * In-process, fresh database per variant with pending tasks preloaded, variants interleaved over 3 rounds; prints
 * µs per callback (median). `node bench/micro/sqlite-commit.ts`
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHistogram } from 'node:perf_hooks';
import { DatabaseSync } from 'node:sqlite';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'missed', 'late')),
  registered INTEGER NOT NULL, outcome TEXT, code TEXT, format TEXT,
  submitted_at INTEGER, deadline_at INTEGER, received_at INTEGER, callbacks INTEGER NOT NULL DEFAULT 0,
  sort_at INTEGER GENERATED ALWAYS AS (coalesce(deadline_at, received_at)) VIRTUAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_state_sort ON tasks (state, sort_at);
CREATE INDEX IF NOT EXISTS tasks_settled ON tasks (coalesce(received_at, deadline_at)) WHERE state <> 'pending';
CREATE TABLE IF NOT EXISTS counts (one INTEGER PRIMARY KEY CHECK (one = 1), pending INTEGER NOT NULL,
  delivered INTEGER NOT NULL, missed INTEGER NOT NULL, late INTEGER NOT NULL);
INSERT OR IGNORE INTO counts VALUES (1, 0, 0, 0, 0);`;

const CODE = '03AGdBq24PBCbwiDRaS_MJ7Z49ta3Jw_9kQH3jD7QhLxv5TXa9LdUHcrL7Kp8hX1fnQmJ8Ps2cY5kxqD0RfKZhT6n';
const PRELOAD = 200_000;
const CALLBACKS = 40_000;

interface Variant {
  name: string;
  /** Callbacks per transaction. */
  group: number;
  pragmas?: string;
  counts?: boolean;
  begin?: string;
  /** Tasks called back in id order (as increasing solver ids mostly arrive) or scattered. */
  scattered?: boolean;
  /**
   * Replace the (state, sort_at) index by a partial index over pending tasks only (expiry's range scan), leaving
   * `list(state)` for settled states to the retention index: a delivery then deletes one index entry instead of
   * moving it.
   */
  partialIndex?: boolean;
  /** Leave out the retention index (tasks_settled), to show what it adds to every delivery. */
  noRetentionIndex?: boolean;
  /** pending → delivered in one `UPDATE … WHERE id = ? AND state = 'pending' RETURNING submitted_at` (no SELECT). */
  singleStatement?: boolean;
}

interface Sample {
  /** Mean µs per callback. */
  us: number;
  /** Slowest single transaction, ms: a checkpoint inside COMMIT shows up here (and in the receiver's p99). */
  maxTxMs: number;
  p999TxMs: number;
}

function run(v: Variant): Sample {
  const dir = mkdtempSync(join(tmpdir(), 'ccm-sqlite-'));
  const db = new DatabaseSync(join(dir, 't.db'), { timeout: 1000 });
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; ${v.pragmas ?? ''}`);
  const schema = v.noRetentionIndex ? SCHEMA.replace(/^CREATE INDEX IF NOT EXISTS tasks_settled.*$/m, '') : SCHEMA;
  db.exec(
    v.partialIndex
      ? schema.replace(
          'CREATE INDEX IF NOT EXISTS tasks_state_sort ON tasks (state, sort_at);',
          `CREATE INDEX tasks_pending ON tasks (sort_at) WHERE state = 'pending';`,
        )
      : schema,
  );
  const now = Date.now();
  const insert = db.prepare(
    `INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks) VALUES (?, 'pending', 1, ?, ?, 0)
     ON CONFLICT (id) DO NOTHING`,
  );
  db.exec('BEGIN');
  for (let i = 0; i < PRELOAD; i++) insert.run(`t-${i}`, now, now + 3_600_000);
  db.exec(`UPDATE counts SET pending = ${PRELOAD}; COMMIT`);
  db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  const begin = db.prepare(v.begin ?? 'BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const select = db.prepare('SELECT state, submitted_at FROM tasks WHERE id = ?');
  const settle = db.prepare(
    `UPDATE tasks SET state = ?, outcome = ?, code = ?, format = ?, received_at = ?, callbacks = callbacks + 1
     WHERE id = ?`,
  );
  const settlePending = db.prepare(
    `UPDATE tasks SET state = 'delivered', outcome = ?, code = ?, format = ?, received_at = ?,
       callbacks = callbacks + 1 WHERE id = ? AND state = 'pending' RETURNING submitted_at`,
  );
  const addCounts = db.prepare(
    'UPDATE counts SET pending = pending + ?, delivered = delivered + ?, missed = missed + ?, late = late + ? WHERE one = 1',
  );
  // Tasks arrive in an order unrelated to the id order, as real callbacks do.
  const order = Array.from({ length: CALLBACKS }, (_, i) => (v.scattered ? (i * 7919) % PRELOAD : i));
  const tx = createHistogram();
  const t = process.hrtime.bigint();
  for (let i = 0; i < CALLBACKS; i += v.group) {
    const t0 = process.hrtime.bigint();
    begin.run();
    let delivered = 0;
    for (let j = i; j < Math.min(CALLBACKS, i + v.group); j++) {
      const id = `t-${order[j]}`;
      if (v.singleStatement) {
        // The common case in one statement; a real store falls back to the SELECT path when no row comes back.
        if (settlePending.get('solved', CODE, 'query', Date.now(), id)) delivered++;
        continue;
      }
      const row = select.get(id) as { state: string } | undefined;
      if (row?.state === 'pending') {
        settle.run('delivered', 'solved', CODE, 'query', Date.now(), id);
        delivered++;
      }
    }
    if (v.counts !== false) addCounts.run(-delivered, delivered, 0, 0);
    commit.run();
    tx.record(Math.max(1, Number(process.hrtime.bigint() - t0)));
  }
  const us = Number(process.hrtime.bigint() - t) / 1000 / CALLBACKS;
  db.close();
  rmSync(dir, { recursive: true, force: true });
  return { us, maxTxMs: tx.max / 1e6, p999TxMs: tx.percentile(99.9) / 1e6 };
}

const NO_AUTO = 'PRAGMA wal_autocheckpoint = 0;';
const variants: Variant[] = [
  { name: 'as today: one BEGIN IMMEDIATE … COMMIT per callback', group: 1 },
  { name: 'as today, callbacks in scattered id order', group: 1, scattered: true },
  {
    name: 'no checkpoint on the request path (wal_autocheckpoint=0; checkpoint elsewhere)',
    group: 1,
    pragmas: NO_AUTO,
  },
  {
    name: 'synchronous=OFF (NOT durable; shows what the checkpoint fsyncs cost)',
    group: 1,
    pragmas: 'PRAGMA synchronous = OFF;',
  },
  { name: 'without the counts-row UPDATE (one page less per commit)', group: 1, counts: false },
  { name: 'partial index (pending only) instead of (state, sort_at)', group: 1, partialIndex: true },
  { name: 'without the retention index tasks_settled', group: 1, noRetentionIndex: true },
  { name: 'one UPDATE … RETURNING instead of SELECT + UPDATE', group: 1, singleStatement: true },
  { name: 'group commit: 16 callbacks per transaction', group: 16 },
  { name: 'group commit 16 + no checkpoint on the request path', group: 16, pragmas: NO_AUTO },
  {
    name: 'group commit 16 + no checkpoint on the request path, scattered ids',
    group: 16,
    pragmas: NO_AUTO,
    scattered: true,
  },
  {
    name: 'group commit 16 + no checkpoint on the request path + partial index + one UPDATE … RETURNING',
    group: 16,
    pragmas: NO_AUTO,
    partialIndex: true,
    singleStatement: true,
  },
  {
    name: 'group commit 16 + no checkpoint on the request path + partial index',
    group: 16,
    pragmas: NO_AUTO,
    partialIndex: true,
  },
];
// Interleaved rounds, so noise from other work on the machine (and its disk) hits every variant alike.
const samples = variants.map(() => [] as Sample[]);
for (let round = 0; round < 3; round++) {
  for (const [i, v] of variants.entries()) samples[i]!.push(run(v));
}
const results = variants.map((v, i) => {
  const mid = <K extends keyof Sample>(k: K) => samples[i]!.map((x) => x[k]).sort((a, b) => a - b)[1]!;
  const r = { variant: v.name, usPerCallback: mid('us'), p999TxMs: mid('p999TxMs'), maxTxMs: mid('maxTxMs') };
  process.stderr.write(
    `${v.name}: ${r.usPerCallback.toFixed(1)} µs/callback, slowest transaction ${r.maxTxMs.toFixed(1)} ms ` +
      `(p99.9 ${r.p999TxMs.toFixed(2)} ms)\n`,
  );
  return r;
});
process.stdout.write(`${JSON.stringify(results)}\n`);
