/** Sweeper: the longest event-loop stall while DeliveryTracker.sweep() expires many overdue tasks at once. */
import { join } from 'node:path';
import { BENCH_DIR, log, PARAMS, tmp } from '../config.ts';
import { runJsonChild } from '../lib/proc.ts';
import type { SweepSummary } from '../report/types.ts';

export async function sweep(): Promise<SweepSummary> {
  const out: SweepSummary = { runs: [] };
  const script = join(BENCH_DIR, 'scale/sweep.ts');
  try {
    for (let i = 0; i < PARAMS.sweepRepeats; i++) {
      const r = await runJsonChild<SweepSummary['runs'][number]>(script, {
        STORE_URL: `sqlite:${join(tmp, `sweep-${i}.db`)}`,
        BENCH_SWEEP_TASKS: String(PARAMS.sweepTasks),
      });
      out.runs.push(r);
      log(
        `sweep ${i + 1}: ${r.moved} expired in ${Math.round(r.sweepMs)} ms, longest stall ${r.maxStallMs.toFixed(1)} ms`,
      );
    }
    const m = await runJsonChild<{ maxStallMs: number; sweepMs: number }>(script, {
      STORE_URL: 'memory:',
      BENCH_SWEEP_TASKS: String(PARAMS.sweepTasks),
    });
    out.memoryRun = { maxStallMs: m.maxStallMs, sweepMs: m.sweepMs };
  } catch (error) {
    out.error = (error as Error).message.split('\n').slice(0, 6).join(' ').slice(0, 400);
    log(`sweep: NOT AVAILABLE: ${out.error}`);
  }
  return out;
}
