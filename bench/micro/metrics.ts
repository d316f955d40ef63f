/**
 * Micro-benchmark: what the metric calls of one delivered callback cost (ReceiverMetrics: callback, lastReceived,
 * delivered, duration) with a real MeterProvider + Prometheus reader, against the no-op meter
 * (`metrics: false`). In-process, alternating A/B batches; prints ns per callback. `node bench/micro/metrics.ts`
 */
import { createNoopMeter } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { ReceiverMetrics } from '../../packages/koa/src/metrics/instruments.ts';

const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
const provider = new MeterProvider({ readers: [exporter] });
const sources = { secondsSinceLastCallback: () => 0, pendingTasks: () => 0 };
const real = new ReceiverMetrics(provider.getMeter('bench'), sources);
const noop = new ReceiverMetrics(createNoopMeter(), sources);

function oneCallback(m: ReceiverMetrics, i: number): void {
  m.delivered(i & 1 ? 'solved' : 'failed', 12.5);
  m.callback('solved', 'query');
  m.lastReceived(1_700_000_000 + i / 1000);
  m.duration(200, 0.0004);
}

const N = 200_000;
const batch = (m: ReceiverMetrics) => {
  const t = process.hrtime.bigint();
  for (let i = 0; i < N; i++) oneCallback(m, i);
  return Number(process.hrtime.bigint() - t) / N;
};
const r: number[] = [];
const o: number[] = [];
for (let round = 0; round < 12; round++) {
  r.push(batch(real));
  o.push(batch(noop));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
await exporter.collect();
process.stdout.write(
  `${JSON.stringify({ realNsPerCallback: median(r.slice(2)), noopNsPerCallback: median(o.slice(2)) })}\n`,
);
