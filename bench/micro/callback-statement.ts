/**
 * A/B of the statement shape that applies one delivered callback, on SqliteTaskStore's own schema: SELECT then
 * UPDATE (the store before 2026-12-01), one UPDATE … RETURNING, and the same returning an array row (the store
 * now). 200,000 pending tasks, transactions of 24 callbacks as group commit forms them under load, a PASSIVE
 * checkpoint every 200 transactions, variants interleaved over 4 rounds; prints CPU µs (user + system) per callback.
 * `node bench/micro/callback-statement.ts`
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { SQLITE_SCHEMA } from '../../src/delivery/stores/SqliteTaskStore.ts';

const CODE = '03AGdBq24PBCbwiDRaS_MJ7Z49ta3Jw_9kQH3jD7QhLxv5TXa9LdUHcrL7Kp8hX1fnQmJ8Ps2cY5kxqD0RfKZhT6n';
const N = 40000,
  G = 24,
  PRE = 200000;
const dirs: string[] = [];
process.once('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'ccm-stmt-'));
  dirs.push(dir);
  const db = new DatabaseSync(join(dir, 't.db'));
  db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; ${SQLITE_SCHEMA}`);
  const ins = db.prepare(
    `INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks) VALUES (?, 'pending', 1, 1, 99999999, 0)`,
  );
  db.exec('BEGIN');
  for (let i = 0; i < PRE; i++) ins.run(`receiver-sqlite-${100000 + i}`);
  db.exec('COMMIT');
  db.exec('PRAGMA wal_checkpoint(TRUNCATE); PRAGMA wal_autocheckpoint=0');
  return db;
}
const variants: Record<string, (db: DatabaseSync) => (id: string, at: number) => void> = {
  selectUpdate(db) {
    const sel = db.prepare('SELECT state, submitted_at FROM tasks WHERE id = ?');
    const upd = db.prepare(
      'UPDATE tasks SET state = ?, outcome = ?, code = ?, format = ?, received_at = ?, callbacks = callbacks + 1 WHERE id = ?',
    );
    return (id, at) => {
      const r = sel.get(id) as { state: string };
      if (r.state === 'pending') upd.run('delivered', 'solved', CODE, 'query', at, id);
    };
  },
  updateReturning(db) {
    const upd = db.prepare(
      `UPDATE tasks SET state = 'delivered', outcome = ?, code = ?, format = ?, received_at = ?, callbacks = callbacks + 1 WHERE id = ? AND state = 'pending' RETURNING submitted_at`,
    );
    return (id, at) => {
      upd.get('solved', CODE, 'query', at, id);
    };
  },
  updateReturningArrays(db) {
    const upd = db.prepare(
      `UPDATE tasks SET state = 'delivered', outcome = ?, code = ?, format = ?, received_at = ?, callbacks = callbacks + 1 WHERE id = ? AND state = 'pending' RETURNING submitted_at`,
    );
    upd.setReturnArrays(true);
    return (id, at) => {
      upd.get('solved', CODE, 'query', at, id);
    };
  },
};
const res: Record<string, number[]> = {};
for (let round = 0; round < 4; round++) {
  for (const [name, make] of Object.entries(variants)) {
    const db = setup();
    const f = make(db);
    const b = db.prepare('BEGIN IMMEDIATE'),
      c = db.prepare('COMMIT'),
      cnt = db.prepare('UPDATE counts SET pending = pending - ?, delivered = delivered + ? WHERE one = 1');
    const t0 = process.cpuUsage();
    for (let n = 0; n < N; ) {
      b.run();
      for (let k = 0; k < G; k++, n++) f(`receiver-sqlite-${100000 + n}`, n);
      cnt.run(G, G);
      c.run();
      if (n % 4800 === 0) db.exec('PRAGMA wal_checkpoint(PASSIVE)');
    }
    const u = process.cpuUsage(t0);
    res[name] ??= [];
    res[name].push((u.user + u.system) / N);
    db.close();
  }
}
for (const [k, v] of Object.entries(res))
  console.log(
    k.padEnd(24),
    v.map((x) => x.toFixed(2)).join(' '),
    'median',
    [...v].sort((a, b) => a - b)[v.length >> 1]!.toFixed(2),
    'µs CPU/callback',
  );
