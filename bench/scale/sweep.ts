/**
 * Sweeper stall check, in its own process: registers BENCH_SWEEP_TASKS tasks whose deadline has already passed in
 * the store named by STORE_URL (in bulk, through the store directly; not measured), then runs one
 * DeliveryTracker.sweep() with full metrics and reports the longest event-loop stall while it expired them all,
 * from `monitorEventLoopDelay` (and, as a cross-check, the longest gap between 1 ms interval ticks).
 * Prints one JSON line.
 */
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { monitorInternals } from '@captcha-callback-monitor/koa/internal';
import { CallbackMonitor } from '../../packages/koa/src/plugin/CallbackMonitor.ts';
import { createStore } from '../../src/server/createStore.ts';
import { startTelemetry } from '../../src/server/telemetry.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const tasks = Number(process.env.BENCH_SWEEP_TASKS ?? 100_000);
const store = await createStore(process.env.STORE_URL ?? 'memory:');
const telemetry = startTelemetry(pkg.version);
const monitor = new CallbackMonitor({ store, meter: telemetry.meter });

// Warm the code paths once with nothing due.
await monitorInternals(monitor).tracker.sweep();

const now = Date.now();
const chunk = 10_000;
let largestRegisterMs = 0;
for (let i = 0; i < tasks; i += chunk) {
  const ids: string[] = [];
  for (let j = i; j < Math.min(tasks, i + chunk); j++) ids.push(`sweep-${j}`);
  const t = performance.now();
  await store.register(ids, now - 600_000, now - 1_000);
  largestRegisterMs = Math.max(largestRegisterMs, performance.now() - t);
}
await sleep(50);

const delay = monitorEventLoopDelay({ resolution: 1 });
let last = performance.now();
let maxGap = 0;
const ticker = setInterval(() => {
  const t = performance.now();
  maxGap = Math.max(maxGap, t - last);
  last = t;
}, 1);
await sleep(20);
delay.enable();
maxGap = 0;
last = performance.now();

const started = performance.now();
await monitorInternals(monitor).tracker.sweep();
const sweepMs = performance.now() - started;

await sleep(20);
delay.disable();
clearInterval(ticker);

const counts = monitorInternals(monitor).tracker.counts;
await monitor.close();
await store.close();
await telemetry.shutdown();
process.stdout.write(
  `${JSON.stringify({
    tasks,
    moved: counts.missed,
    pendingLeft: counts.pending,
    sweepMs,
    maxStallMs: delay.max / 1e6,
    p99StallMs: delay.percentile(99) / 1e6,
    maxTickGapMs: Math.max(0, maxGap - 1),
    largestRegisterMs,
  })}\n`,
);
process.exit(0);
