/**
 * What one stored callback costs inside SqliteTaskStore itself (group commit as the server drives it): preloads
 * pending tasks, then records callbacks in bursts of GROUP (one event-loop turn each, so one transaction each),
 * and prints µs of wall time per callback (in-process, nothing else running). `node bench/micro/store-callbacks.ts`
 * Two ways a callback names its task, measured in turn: by the app's id (a `/callback/<id>` path) and by the
 * solver's id only (a query `id`, as 2Captcha-compatible solvers send it, for tasks registered under that id).
 * Env: PRELOAD (300000), CALLBACKS (60000), GROUP (20), ROUNDS (3).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteTaskStore } from '../../packages/koa/src/delivery/stores/SqliteTaskStore.ts';
import type { CallbackResult } from '../../packages/koa/src/delivery/TaskStore.ts';

const PRELOAD = Number(process.env.PRELOAD ?? 300_000);
const CALLBACKS = Number(process.env.CALLBACKS ?? 60_000);
const GROUP = Number(process.env.GROUP ?? 20);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const CODE = '03AGdBq24PBCbwiDRaS_MJ7Z49ta3Jw_9kQH3jD7QhLxv5TXa9LdUHcrL7Kp8hX1fnQmJ8Ps2cY5kxqD0RfKZhT6n';

type By = 'app id' | 'solver id';

async function round(by: By): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'ccm-store-'));
  const store = new SqliteTaskStore(join(dir, 't.db'));
  const now = Date.now();
  for (let i = 0; i < PRELOAD; i += 10_000) {
    const ids = Array.from({ length: Math.min(10_000, PRELOAD - i) }, (_, j) => `bench-${i + j}`);
    await store.register(ids, now, now + 3_600_000);
  }
  const started = performance.now();
  for (let n = 0; n < CALLBACKS; n += GROUP) {
    const burst: Promise<unknown>[] = [];
    for (let k = 0; k < GROUP; k++) {
      const id = `bench-${n + k}`;
      const callback: CallbackResult =
        by === 'app id'
          ? { taskId: id, outcome: 'solved', code: CODE, format: 'query', receivedAt: now }
          : { solverTaskId: id, outcome: 'solved', code: CODE, format: 'query', receivedAt: now };
      burst.push(store.recordCallback(callback));
    }
    await Promise.all(burst);
  }
  const us = ((performance.now() - started) * 1000) / CALLBACKS;
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  return us;
}

for (const by of ['app id', 'solver id'] as const) {
  const results: number[] = [];
  for (let r = 0; r < ROUNDS; r++) results.push(await round(by));
  results.sort((a, b) => a - b);
  console.log(
    `SqliteTaskStore.recordCallback by ${by}, bursts of ${GROUP}: ${results[results.length >> 1]!.toFixed(2)} µs/callback (median of ${ROUNDS}: ${results.map((x) => x.toFixed(2)).join(', ')})`,
  );
}
