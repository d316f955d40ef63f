/**
 * Peer: a faithful re-implementation of the seed tutorial's Express 5 callback handler (the handler this project
 * replaces: an in-memory metrics object and a health endpoint, as the tutorial wrote it). It stores nothing (`storeResult` is the user's no-op), keeps its metrics in memory, and its
 * health endpoint copies and sorts the last 1,000 latencies on every call. Benchmark peer only: not product code.
 */
import { createServer } from 'node:http';
import express from 'express';
import { announce, exitOnSignal } from '../lib/announce.ts';

interface SeedMetrics {
  totalReceived: number;
  totalErrors: number;
  errorsByType: Record<string, number>;
  latencies: number[];
  lastCallbackTime: number | null;
}

const metrics: SeedMetrics = {
  totalReceived: 0,
  totalErrors: 0,
  errorsByType: {},
  latencies: [],
  lastCallbackTime: null,
};

/** The user's storage hook; a no-op in the tutorial's benchmark setting. */
function storeResult(_id: unknown, _code: unknown): void {}

/** The tutorial's delivery tracker: in memory, and every stats call scans all submitted tasks (O(n)). */
class SeedDeliveryTracker {
  readonly submittedTasks = new Map<string, number>();
  readonly deliveredTasks = new Set<string>();
  submit(id: string): void {
    this.submittedTasks.set(id, Date.now());
  }
  deliver(id: string): void {
    this.deliveredTasks.add(id);
  }
  stats() {
    const now = Date.now();
    const missed: string[] = [];
    for (const [id, at] of this.submittedTasks) {
      if (!this.deliveredTasks.has(id) && now - at > 300_000) missed.push(id);
    }
    const submitted = this.submittedTasks.size;
    return {
      submitted,
      delivered: this.deliveredTasks.size,
      missed: missed.length,
      deliveryRate: submitted === 0 ? 1 : this.deliveredTasks.size / submitted,
      missedTaskIds: missed.slice(0, 10),
    };
  }
}
const tracker = new SeedDeliveryTracker();

const app = express();

app.get('/callback', (req, res) => {
  const start = Date.now();
  const id = req.query.id;
  const code = req.query.code;
  try {
    storeResult(id, code);
  } catch (error) {
    metrics.totalErrors++;
    const type = error instanceof Error ? error.constructor.name : typeof error;
    metrics.errorsByType[type] = (metrics.errorsByType[type] ?? 0) + 1;
  }
  const latencyMs = Date.now() - start;
  metrics.latencies.push(latencyMs);
  if (metrics.latencies.length > 1000) metrics.latencies.shift();
  metrics.totalReceived++;
  metrics.lastCallbackTime = Date.now();
  res.sendStatus(200);
});

app.get('/health/callbacks', (_req, res) => {
  const sorted = [...metrics.latencies].sort((a, b) => a - b);
  const n = sorted.length;
  const avgLatencyMs = n === 0 ? 0 : sorted.reduce((s, x) => s + x, 0) / n;
  const p95LatencyMs = n === 0 ? 0 : (sorted[Math.floor(n * 0.95)] ?? sorted[n - 1]!);
  const secondsSinceLastCallback =
    metrics.lastCallbackTime === null ? -1 : (Date.now() - metrics.lastCallbackTime) / 1000;
  const healthy = secondsSinceLastCallback < 300;
  res.status(healthy ? 200 : 503).json({
    status: healthy ? 'healthy' : 'stale',
    totalReceived: metrics.totalReceived,
    totalErrors: metrics.totalErrors,
    errorRate: metrics.totalReceived === 0 ? 0 : metrics.totalErrors / metrics.totalReceived,
    avgLatencyMs,
    p95LatencyMs,
    secondsSinceLastCallback,
    errorBreakdown: metrics.errorsByType,
  });
});

app.post('/tasks/:id', (req, res) => {
  tracker.submit(req.params.id);
  res.sendStatus(201);
});
app.get('/delivery/stats', (_req, res) => {
  res.json(tracker.stats());
});

const server = createServer(app);
exitOnSignal();
server.listen(0, '127.0.0.1', () => announce({ port: (server.address() as { port: number }).port }));
