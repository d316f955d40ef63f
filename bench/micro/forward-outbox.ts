/**
 * What the forwarding outbox adds to a callback's transaction in SQLite: `node bench/micro/forward-outbox.ts`.
 * On the store's own schema (SQLITE_SCHEMA), with PRELOAD pending tasks, each callback's lookup and settling UPDATE
 * run in transactions of GROUP (the group commit), measured as this thread's CPU time per callback:
 *
 * - `off`: forwarding off (no outbox write);
 * - `row`: as schema version 7 did it, one `forwards` row per result (its primary key and two indexes);
 * - `lazy`: as the store does it since version 8: the pending forward as columns of the task's own row, set by the
 *   same UPDATE, with one partial index on them; the `forwards` row is written at the first claim, off the callback
 *   path. (The schema here is the current one, so `row` also pays for the two unused columns.)
 * - `at`: `lazy` without the webhook id on the row (`forward_at` alone, the id drawn at the claim).
 *
 * Env: PRELOAD (300000), CALLBACKS (150000), GROUP (50), ROUNDS (3).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { SQLITE_SCHEMA } from '../../packages/koa/src/delivery/stores/sqliteSchema.ts';

const PRELOAD = Number(process.env.PRELOAD ?? 300_000);
const CALLBACKS = Number(process.env.CALLBACKS ?? 150_000);
const GROUP = Number(process.env.GROUP ?? 50);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const CODE = '03AGdBq24PBCbwiDRaS_MJ7Z49ta3Jw_9kQH3jD7QhLxv5TXa9LdUHcrL7Kp8hX1fnQmJ8Ps2cY5kxqD0RfKZhT6n';
const SETTLE = `UPDATE tasks SET state = ?1, outcome = ?2, code = ?3, format = ?4, received_at = ?5, solution = ?6,
  metadata = ?7, recovered = ?8, callbacks = callbacks + 1`;

type Mode = 'off' | 'row' | 'lazy' | 'at';
let counter = 0;
const webhookId = () => `msg_benchbenchbenchbench${(counter++).toString(36).padStart(6, '0')}`;

function round(mode: Mode): number {
  const dir = mkdtempSync(join(tmpdir(), 'ccm-outbox-'));
  const db = new DatabaseSync(join(dir, 't.db'));
  try {
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
    db.exec(SQLITE_SCHEMA);
    const register = db.prepare(
      `INSERT INTO tasks (id, state, registered, submitted_at, deadline_at, callbacks) VALUES (?, 'pending', 1, ?, ?, 0)`,
    );
    const now = Date.now();
    db.exec('BEGIN');
    for (let i = 0; i < PRELOAD; i++) register.run(`bench-${i}`, now, now + 3_600_000);
    db.exec('COMMIT');
    const lookup = db.prepare('SELECT state, submitted_at, solver_task_id FROM tasks WHERE id = ?');
    lookup.setReturnArrays(true);
    const settle = db.prepare(
      mode === 'lazy'
        ? `${SETTLE}, forward_at = ?5, forward_id = ?10 WHERE id = ?9`
        : mode === 'at'
          ? `${SETTLE}, forward_at = ?5 WHERE id = ?9`
          : `${SETTLE} WHERE id = ?9`,
    );
    const insertForward = db.prepare(
      `INSERT OR IGNORE INTO forwards (task_id, event, webhook_id, state, created_at, since, next_attempt_at)
       VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?4)`,
    );
    const before = process.threadCpuUsage();
    for (let n = 0; n < CALLBACKS; n += GROUP) {
      db.exec('BEGIN IMMEDIATE');
      for (let k = 0; k < GROUP; k++) {
        const id = `bench-${n + k}`;
        const at = Date.now();
        lookup.get(id);
        if (mode === 'lazy') settle.run('delivered', 'solved', CODE, 'query', at, null, null, 0, id, webhookId());
        else settle.run('delivered', 'solved', CODE, 'query', at, null, null, 0, id);
        if (mode === 'row') insertForward.run(id, 'delivered', webhookId(), at);
      }
      db.exec('COMMIT');
    }
    const after = process.threadCpuUsage();
    return (after.user - before.user + after.system - before.system) / CALLBACKS;
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const MODES = ['off', 'row', 'lazy', 'at'] as const;
const results: Record<Mode, number[]> = { off: [], row: [], lazy: [], at: [] };
for (let r = 0; r < ROUNDS; r++) for (const mode of MODES) results[mode].push(round(mode));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
for (const mode of MODES) {
  const m = median(results[mode]);
  const extra = mode === 'off' ? '' : ` (+${(m - median(results.off)).toFixed(2)} µs over off)`;
  console.log(
    `${mode.padEnd(4)} ${m.toFixed(2)} µs CPU per callback${extra}; rounds ${results[mode].map((x) => x.toFixed(2)).join(', ')}`,
  );
}
