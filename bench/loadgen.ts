/**
 * The load generator, run as its own process so it never shares an event loop with the server it measures.
 * argv[2] is a JSON LoadSpec; prints one JSON LoadResult line on stdout. Uses autocannon's programmatic API with a
 * `setupRequest` that gives every request a fresh task id (`${idPrefix}${idStart + n}`), so the receiver stores a
 * new row per request instead of counting duplicates.
 */
import { createHistogram } from 'node:perf_hooks';
import autocannon from 'autocannon';

export interface LoadSpec {
  readonly url: string;
  /** Request path; `{id}` is replaced by a unique task id per request. */
  readonly path: string;
  readonly connections: number;
  readonly durationSeconds: number;
  readonly idPrefix?: string;
  readonly idStart?: number;
  /** Requests per second over all connections (a paced load); unset: as fast as the server answers. */
  readonly rate?: number;
  /**
   * With `rate`: spread evenly over each second (bench/lib/evenLoad.ts), instead of autocannon's per-second budget,
   * which sends each second's requests in one burst at full speed.
   */
  readonly even?: boolean;
}

export interface LoadResult {
  readonly rps: number;
  /** Latencies in milliseconds, microsecond resolution. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly meanLatency: number;
  readonly maxLatency: number;
  readonly ok: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly durationSeconds: number;
  /** How many ids setupRequest handed out (the next run's idStart offset). */
  readonly idsUsed: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
if (spec.even && spec.rate !== undefined) {
  const { runEven } = await import('./lib/evenLoad.ts');
  process.stdout.write(`${JSON.stringify(await runEven({ ...spec, rate: spec.rate }))}\n`);
  process.exit(0);
}
const prefix = spec.idPrefix ?? 't';
const start = spec.idStart ?? 0;
let n = 0;
const templated = spec.path.includes('{id}');
const [before, after] = templated ? (spec.path.split('{id}') as [string, string]) : [spec.path, ''];

// autocannon's own percentiles are whole milliseconds; sub-millisecond loopback latencies need microseconds, so
// every response time (a float in ms from hrtime) is also recorded here, in µs.
const latencyUs = createHistogram();
const result = await new Promise<autocannon.Result>((resolve, reject) => {
  const instance = autocannon(
    {
      url: spec.url,
      connections: spec.connections,
      duration: spec.durationSeconds,
      pipelining: 1,
      timeout: 10,
      ...(spec.rate === undefined ? {} : { overallRate: spec.rate }),
      requests: [
        {
          method: 'GET',
          path: spec.path,
          setupRequest: (request) => {
            if (templated) request.path = `${before}${prefix}${start + n++}${after}`;
            return request;
          },
        },
      ],
    },
    (error, res) => (error ? reject(error) : resolve(res)),
  );
  instance.on('response', (_client, _status, _bytes, responseTimeMs) => {
    latencyUs.record(Math.max(1, Math.round(responseTimeMs * 1000)));
  });
});
const ms = (us: number) => Math.round(us) / 1000;

const out: LoadResult = {
  rps: result['2xx'] / result.duration,
  p50: ms(latencyUs.percentile(50)),
  p90: ms(latencyUs.percentile(90)),
  p99: ms(latencyUs.percentile(99)),
  meanLatency: ms(latencyUs.mean),
  maxLatency: ms(latencyUs.max),
  ok: result['2xx'],
  non2xx: result.non2xx,
  errors: result.errors,
  timeouts: result.timeouts,
  durationSeconds: result.duration,
  idsUsed: n,
};
process.stdout.write(`${JSON.stringify(out)}\n`);
