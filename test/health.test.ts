import { describe, expect, it } from 'vitest';
import { DeliveryTracker } from '../packages/koa/src/delivery/DeliveryTracker.ts';
import { MemoryTaskStore } from '../packages/koa/src/delivery/stores/MemoryTaskStore.ts';
import { CallbackStats } from '../packages/koa/src/health/CallbackStats.ts';
import { healthReport } from '../packages/koa/src/health/healthReport.ts';
import { LatencyWindow } from '../packages/koa/src/health/LatencyWindow.ts';

const MIN = 60_000;

/** A tracker and stats on a clock the test moves by hand. */
function setup() {
  let now = 1_000_000;
  const clock = () => now;
  const stats = new CallbackStats(clock);
  const tracker = new DeliveryTracker({ store: new MemoryTaskStore(), deliveryTimeoutSeconds: 600, now: clock });
  const callback = async (id: string) => {
    await tracker.recordCallback({ taskId: id, outcome: 'solved', code: 'x', format: 'query', receivedAt: now });
    stats.request(3);
    stats.accepted(now);
  };
  return {
    stats,
    tracker,
    callback,
    advance: (ms: number) => {
      now += ms;
    },
    report: () => healthReport(stats, tracker, now),
  };
}

describe('/health/callbacks status', () => {
  it('is idle with nothing expected and no traffic, even for hours (a quiet pipeline is not an outage)', () => {
    const h = setup();
    expect(h.report().status).toBe('idle');
    h.advance(6 * 60 * MIN);
    expect(h.report()).toMatchObject({ status: 'idle', seconds_since_last_callback: -1, total_received: 0 });
  });

  it('is healthy while callbacks arrive, idle again 5 minutes after the last one when nothing is pending', async () => {
    const h = setup();
    await h.callback('a');
    expect(h.report().status).toBe('healthy');
    h.advance(5 * MIN - 1);
    expect(h.report().status).toBe('healthy');
    h.advance(1);
    expect(h.report().status).toBe('idle');
  });

  it('turns stale only after 5 minutes of expected-but-absent callbacks, counted from the first submission', async () => {
    const h = setup();
    await h.callback('old');
    h.advance(30 * MIN);
    await h.tracker.trackSubmitted('t1');
    // The last callback is 30 minutes old, but the task was only just submitted: not stale yet.
    expect(h.report().status).toBe('healthy');
    h.advance(5 * MIN - 1);
    expect(h.report().status).toBe('healthy');
    h.advance(1);
    expect(h.report().status).toBe('stale');
    await h.callback('t1');
    expect(h.report().status).toBe('healthy');
  });

  it('reports the seed keys and the delivery block from aggregates', async () => {
    const h = setup();
    await h.tracker.trackSubmitted(['d1', 'd2', 'd3']);
    await h.callback('d1');
    h.stats.error('invalid_request');
    h.advance(11 * MIN);
    await h.tracker.sweep();
    const r = h.report();
    expect(Object.keys(r)).toEqual([
      'status',
      'total_received',
      'total_errors',
      'error_rate',
      'avg_latency_ms',
      'p95_latency_ms',
      'seconds_since_last_callback',
      'error_breakdown',
      'delivery',
    ]);
    expect(r).toMatchObject({ total_received: 1, total_errors: 1, error_rate: 1, seconds_since_last_callback: 660 });
    expect(r.error_breakdown.invalid_request).toBe(1);
    expect(r.delivery).toEqual({
      delivered: 1,
      recovered: 0,
      missed: 2,
      pending: 0,
      late: 0,
      delivery_rate: 0.3333,
      missed_task_ids: ['d2', 'd3'],
    });
  });

  it('counts a late task as missed, as the metrics and the LowDeliveryRate alert do, and lists its id', async () => {
    const h = setup();
    await h.tracker.trackSubmitted(['on-time', 'late-1']);
    await h.callback('on-time');
    h.advance(11 * MIN);
    await h.tracker.sweep();
    await h.callback('late-1');
    expect(h.report().delivery).toEqual({
      delivered: 1,
      recovered: 0,
      missed: 1,
      pending: 0,
      late: 1,
      delivery_rate: 0.5,
      missed_task_ids: ['late-1'],
    });
  });

  it('honours a per-task deadline: the short one is missed, the default one stays pending', async () => {
    const h = setup();
    await h.tracker.trackSubmitted([{ id: 'short', timeoutSeconds: 30 }, 'default']);
    h.advance(30_000);
    await h.tracker.sweep();
    expect(h.report().delivery).toMatchObject({ missed: 1, pending: 1, missed_task_ids: ['short'] });
    expect((await h.tracker.get('short'))?.deadlineAt).toBe((await h.tracker.get('short'))!.submittedAt! + 30_000);
  });

  it('keeps at most 10 missed task ids', async () => {
    const h = setup();
    await h.tracker.trackSubmitted(Array.from({ length: 25 }, (_, i) => `m${i}`));
    h.advance(11 * MIN);
    await h.tracker.sweep();
    expect(h.report().delivery.missed_task_ids).toHaveLength(10);
    expect(h.report().delivery.missed).toBe(25);
  });
});

describe('LatencyWindow', () => {
  it('computes average and p95 within one bucket (25 %) of the exact value', () => {
    const w = new LatencyWindow(60_000, () => 0);
    for (let i = 1; i <= 1000; i++) w.record(i / 10);
    expect(w.averageMs()).toBeCloseTo(50.05, 5);
    const p95 = w.quantileMs(0.95);
    expect(p95).toBeGreaterThanOrEqual(95);
    expect(p95).toBeLessThanOrEqual(95 * 1.25);
  });

  it('forgets samples older than two windows', () => {
    let now = 0;
    const w = new LatencyWindow(1000, () => now);
    w.record(500);
    now = 1500;
    expect(w.count).toBe(1);
    now = 2600;
    w.record(1);
    expect(w.count).toBe(1);
    expect(w.quantileMs(0.95)).toBeLessThan(2);
  });
});
