/**
 * A/B of the statements that apply one delivered callback, on SqliteTaskStore's schema: the shapes the store has
 * used (2026-11-23: SELECT then UPDATE with objects; 2026-12-01 morning: one UPDATE … RETURNING with an array row;
 * since: an array SELECT then a plain UPDATE) with version 3's state CHECK (`IN (…)`, verbatim below) and with the
 * current one (the same CHECK spelled with OR), both on the current table otherwise (version 5: solver id, solution
 * and metadata columns, the solver id index). The store's shape is measured twice: a callback by the app's id (one
 * primary-key SELECT) and one by the solver's id only (one SELECT trying the solver id index, then the primary key),
 * both writing the solution and metadata columns. 200,000 pending tasks, transactions of 24 callbacks as group commit
 * forms them under load, a PASSIVE checkpoint every 200 transactions, variants interleaved over 4 rounds; prints CPU
 * µs (user + system) per callback. `node bench/micro/callback-statement.ts`
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { SQLITE_SCHEMA } from '../../packages/koa/src/delivery/stores/SqliteTaskStore.ts';

const CODE = '03AGdBq24PBCbwiDRaS_MJ7Z49ta3Jw_9kQH3jD7QhLxv5TXa9LdUHcrL7Kp8hX1fnQmJ8Ps2cY5kxqD0RfKZhT6n';
const N = 48_000; // a multiple of G
const G = 24;
const PRE = 200_000;
/** Version 3's CHECK, swapped into the current table for the "v3" variants. */
const V3_CHECK = "CHECK (state IN ('pending', 'delivered', 'missed', 'late'))";
const CURRENT_CHECK = /CHECK \(state = 'pending'[^)]*\)/;
if (!CURRENT_CHECK.test(SQLITE_SCHEMA)) throw new Error('the state CHECK changed: update this benchmark');
const SCHEMAS = { v3: SQLITE_SCHEMA.replace(CURRENT_CHECK, V3_CHECK), current: SQLITE_SCHEMA };

const dirs: string[] = [];
process.once('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function setup(schema: string) {
  const dir = mkdtempSync(join(tmpdir(), 'ccm-stmt-'));
  dirs.push(dir);
  const db = new DatabaseSync(join(dir, 't.db'));
  db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; ${schema}`);
  const ins = db.prepare(
    `INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks) VALUES (?, 'pending', 1, 1, ?, 0)`,
  );
  db.exec('BEGIN');
  for (let i = 0; i < PRE; i++) ins.run(`receiver-sqlite-${100000 + i}`, 1_000_000 + i);
  db.exec('COMMIT');
  db.exec('PRAGMA wal_checkpoint(TRUNCATE); PRAGMA wal_autocheckpoint=0');
  return db;
}
const SET = 'outcome = ?, code = ?, format = ?, received_at = ?, callbacks = callbacks + 1';
type Shape = (db: DatabaseSync) => (id: string, at: number) => void;
const selectUpdateObjects: Shape = (db) => {
  const sel = db.prepare('SELECT state, submitted_at FROM tasks WHERE id = ?');
  const upd = db.prepare(`UPDATE tasks SET state = ?, ${SET} WHERE id = ?`);
  return (id, at) => {
    const r = sel.get(id) as { state: string };
    if (r.state === 'pending') upd.run('delivered', 'solved', CODE, 'query', at, id);
  };
};
const updateReturningArrays: Shape = (db) => {
  const upd = db.prepare(
    `UPDATE tasks SET state = 'delivered', ${SET} WHERE id = ? AND state = 'pending' RETURNING submitted_at`,
  );
  upd.setReturnArrays(true);
  return (id, at) => {
    upd.get('solved', CODE, 'query', at, id);
  };
};
const selectArraysThenUpdate: Shape = (db) => {
  const sel = db.prepare('SELECT state, submitted_at FROM tasks WHERE id = ?');
  sel.setReturnArrays(true);
  const upd = db.prepare(`UPDATE tasks SET state = ?, ${SET} WHERE id = ?`);
  return (id, at) => {
    const r = sel.get(id) as unknown as [string, number];
    if (r[0] === 'pending') upd.run('delivered', 'solved', CODE, 'query', at, id);
  };
};
/** What the store runs now (SqliteTaskStore#applyCallback), for a callback without solution or metadata. */
const storeByAppId: Shape = (db) => {
  const sel = db.prepare('SELECT state, submitted_at, solver_task_id FROM tasks WHERE id = ?');
  sel.setReturnArrays(true);
  const upd = db.prepare(`UPDATE tasks SET state = ?, ${SET}, solution = ?, metadata = ? WHERE id = ?`);
  return (id, at) => {
    const r = sel.get(id) as unknown as [string, number, string | null];
    if (r[0] === 'pending') upd.run('delivered', 'solved', CODE, 'query', at, null, null, id);
  };
};
const storeBySolverId: Shape = (db) => {
  const sel = db.prepare(
    `SELECT id, state, submitted_at, solver_task_id FROM tasks WHERE solver_task_id = ?1
     UNION ALL SELECT id, state, submitted_at, solver_task_id FROM tasks WHERE id = ?1 LIMIT 1`,
  );
  sel.setReturnArrays(true);
  const upd = db.prepare(`UPDATE tasks SET state = ?, ${SET}, solution = ?, metadata = ? WHERE id = ?`);
  return (id, at) => {
    const r = sel.get(id) as unknown as [string, string, number, string | null];
    if (r[1] === 'pending') upd.run('delivered', 'solved', CODE, 'query', at, null, null, r[0]);
  };
};
const variants: Record<string, [schema: string, shape: Shape]> = {
  'v3 SELECT+UPDATE (11-23)': [SCHEMAS.v3, selectUpdateObjects],
  'v3 UPDATE RETURNING (12-01)': [SCHEMAS.v3, updateReturningArrays],
  'now UPDATE RETURNING': [SCHEMAS.current, updateReturningArrays],
  'now SELECT+UPDATE (v4 store)': [SCHEMAS.current, selectArraysThenUpdate],
  'now store, by app id': [SCHEMAS.current, storeByAppId],
  'now store, by solver id': [SCHEMAS.current, storeBySolverId],
};
const res: Record<string, number[]> = {};
for (let round = 0; round < 4; round++) {
  for (const [name, [schema, shape]] of Object.entries(variants)) {
    const db = setup(schema);
    const apply = shape(db);
    const b = db.prepare('BEGIN IMMEDIATE');
    const c = db.prepare('COMMIT');
    const cnt = db.prepare('UPDATE counts SET pending = pending - ?, delivered = delivered + ? WHERE one = 1');
    const t0 = process.cpuUsage();
    for (let n = 0; n < N; ) {
      b.run();
      for (let k = 0; k < G; k++, n++) apply(`receiver-sqlite-${100000 + n}`, n);
      cnt.run(G, G);
      c.run();
      if (n % 4800 === 0) db.exec('PRAGMA wal_checkpoint(PASSIVE)');
    }
    const u = process.cpuUsage(t0);
    const { n } = db.prepare("SELECT count(*) AS n FROM tasks WHERE state = 'delivered'").get() as { n: number };
    if (n !== N) throw new Error(`${name}: ${n} of ${N} delivered`);
    res[name] ??= [];
    res[name].push((u.user + u.system) / N);
    db.close();
  }
}
for (const [k, v] of Object.entries(res))
  console.log(
    k.padEnd(30),
    v.map((x) => x.toFixed(2)).join(' '),
    'median',
    [...v].sort((a, b) => a - b)[v.length >> 1]!.toFixed(2),
    'µs CPU/callback',
  );
