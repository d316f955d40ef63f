/** The targets the benchmark is judged by: each measured value, its goal, and whether it was met. */

import { median } from '../lib/stats.ts';
import { cpu, fx, mb, p99of, paired, pairedInterval, pairedRange, ratio, roundRatios, rps } from './format.ts';
import type { BenchReport, PeerSummary, Run } from './types.ts';

/**
 * The same per-round ratio over only the quieter half of the rounds: those in which `b` cost the least CPU per
 * request. Other work on a shared machine slows the seed's framework code more than the receiver's system calls, so
 * this is the figure least flattered by noise.
 */
function pairedQuiet(
  a: PeerSummary | undefined,
  b: PeerSummary | undefined,
  f: (r: Run) => number,
): number | undefined {
  const q = roundRatios(a, b, f);
  if (q.length < 2 || !b) return undefined;
  // Rounds in order of b's CPU per request; the quieter half's ratios.
  const rounds = q.map((_, i) => i).sort((i, j) => cpu(b.runs[i]!) - cpu(b.runs[j]!));
  return median(rounds.slice(0, Math.ceil(q.length / 2)).map((i) => q[i]!));
}
/** `; 96 % interval of the median a–b` (see pairedInterval), or nothing with too few rounds. */
function intervalNote(a: PeerSummary | undefined, b: PeerSummary | undefined, f: (r: Run) => number): string {
  const i = pairedInterval(a, b, f);
  return i ? `; ${i}` : '';
}
const quietNote = (q: number | undefined) =>
  q === undefined ? '' : `; ${fx(q)}× in the quieter half of the rounds (the seed's lowest CPU per request)`;

/** The event loop's own CPU per request (the thread that bounds a receiver's throughput), when the run recorded it. */
const loopCpu = (r: Run) => r.threadCpuUsPerRequest?.MainThread ?? Number.NaN;
function loopNote(a: PeerSummary | undefined, b: PeerSummary | undefined): string {
  const x = paired(a, b, loopCpu);
  return x === undefined || Number.isNaN(x) ? '' : `, the event loop's alone ${fx(x)}×`;
}

export interface Target {
  name: string;
  measured: string;
  target: string;
  met: boolean | undefined;
  miss?: string;
}

export function targets(r: BenchReport): Target[] {
  const peer = (k: string) => r.peers.find((p) => p.key === k);
  const seed = peer('seed');
  const rx = peer('receiver-sqlite');
  const on = peer('sqlite-metrics-on');
  const off = peer('sqlite-metrics-off');
  const out: Target[] = [];
  const tput = paired(rx, seed, rps);
  out.push({
    name: 'receiver (CLI, SQLite, tracking, metrics) throughput vs seed handler',
    measured:
      tput === undefined
        ? 'not measured'
        : `${fx(tput)}× (rounds ${pairedRange(rx, seed, rps)}${intervalNote(rx, seed, rps)}${quietNote(pairedQuiet(rx, seed, rps))}; CPU per request ${fx(paired(rx, seed, cpu))}× the seed's)`,
    target: '≥ 1.00×',
    met: tput === undefined ? undefined : tput >= 1,
    ...(tput !== undefined && tput < 1 ? { miss: `${fx((1 - tput) * 100, 0)} % short` } : {}),
  });
  const p99 = paired(rx, seed, p99of);
  out.push({
    name: 'receiver (CLI, SQLite, tracking, metrics) p99 vs seed handler',
    measured:
      p99 === undefined
        ? 'not measured'
        : `${fx(p99)}× (rounds ${pairedRange(rx, seed, p99of)}${intervalNote(rx, seed, p99of)}${quietNote(pairedQuiet(rx, seed, p99of))}; medians ${fx(rx?.p99, 3)} ms vs ${fx(seed?.p99, 3)} ms)`,
    target: '≤ 1.00×',
    met: p99 === undefined ? undefined : p99 <= 1,
    ...(p99 !== undefined && p99 > 1 ? { miss: `${fx((p99 - 1) * 100, 0)} % higher` } : {}),
  });
  const fwd = peer('receiver-sqlite-forward');
  const fwdTput = paired(fwd, rx, rps);
  // The same, less the outbox row each callback writes: what the forwarder itself costs.
  const noRow = peer('receiver-sqlite-forward-missed');
  const noRowNote = (of: (r: Run) => number) => {
    const x = paired(noRow, rx, of);
    return x === undefined ? '' : `; forwarder running but no outbox row per callback (\`missed\` only): ${fx(x)}×`;
  };
  out.push({
    name: 'forwarding on vs off (CLI, SQLite, tracking, metrics): callback throughput',
    measured:
      fwdTput === undefined
        ? 'not measured'
        : `${fx(fwdTput)}× (rounds ${pairedRange(fwd, rx, rps)}${intervalNote(fwd, rx, rps)}; CPU per callback ${fx(paired(fwd, rx, cpu))}×, forwards included${loopNote(fwd, rx)}${noRowNote(rps)})`,
    target: '≥ 0.90×',
    met: fwdTput === undefined ? undefined : fwdTput >= 0.9,
    ...(fwdTput !== undefined && fwdTput < 0.9 ? { miss: `${fx((0.9 - fwdTput) * 100, 0)} points short` } : {}),
  });
  const fwdP99 = paired(fwd, rx, p99of);
  out.push({
    name: 'forwarding on vs off (CLI, SQLite, tracking, metrics): callback p99',
    measured:
      fwdP99 === undefined
        ? 'not measured'
        : `${fx(fwdP99)}× (rounds ${pairedRange(fwd, rx, p99of)}${intervalNote(fwd, rx, p99of)}; medians ${fx(fwd?.p99, 3)} ms vs ${fx(rx?.p99, 3)} ms${noRowNote(p99of)})`,
    target: '≤ 1.10×',
    met: fwdP99 === undefined ? undefined : fwdP99 <= 1.1,
    ...(fwdP99 !== undefined && fwdP99 > 1.1 ? { miss: `${fx((fwdP99 - 1.1) * 100, 0)} points over` } : {}),
  });
  // Cost = extra server CPU per request with metrics on (robust against CPU taken by other work on the machine);
  // the throughput loss is shown beside it (noisier on a shared machine, same quantity while the server is the
  // bottleneck).
  const cpuRatio = paired(on, off, cpu);
  const cost = cpuRatio === undefined ? undefined : cpuRatio - 1;
  const tputOn = paired(on, off, rps);
  out.push({
    name: 'metrics cost (metrics on vs off, same bench entry, SQLite): extra CPU per request',
    measured:
      cost === undefined
        ? 'not measured'
        : `${fx(cost * 100, 1)} % CPU (rounds ${pairedRange(on, off, cpu)}×); throughput loss ${fx((1 - (tputOn ?? 1)) * 100, 1)} % (rounds ${pairedRange(on, off, rps)}×)`,
    target: '≤ 10 %',
    met: cost === undefined ? undefined : cost <= 0.1,
    ...(cost !== undefined && cost > 0.1 ? { miss: `${fx((cost - 0.1) * 100, 1)} points over` } : {}),
  });
  const s = r.scale;
  for (const [name, a, b] of [
    ['/metrics', s.metricsLarge, s.metricsSmall],
    ['/health/callbacks', s.healthLarge, s.healthSmall],
  ] as const) {
    // Cost = server CPU per request (what the endpoint costs the process, robust against where the scheduler puts
    // the one-connection client); the p50 latency ratio is shown beside it.
    const q = ratio(a?.cpuUs, b?.cpuUs);
    const l = ratio(a?.p50, b?.p50);
    out.push({
      name: `${name} cost at ${s.large?.toLocaleString('en')} pending vs at ${s.small} (server CPU per request)`,
      measured:
        q === undefined
          ? 'not measured'
          : `${fx(q)}× (${fx(a?.cpuUs, 1)} µs vs ${fx(b?.cpuUs, 1)} µs); p50 latency ${fx(l)}× (${fx(a?.p50, 3)} ms vs ${fx(b?.p50, 3)} ms)`,
      target: '≤ 1.20×',
      met: q === undefined ? undefined : q <= 1.2,
      ...(q !== undefined && q > 1.2 ? { miss: `${fx((q - 1.2) * 100, 0)} points over` } : {}),
    });
  }
  const rss = s.rssLargeSteady;
  const limit = 200 * 1024 * 1024;
  out.push({
    name: `RSS at ${s.large?.toLocaleString('en')} pending (SQLite), steady state`,
    measured:
      rss === undefined
        ? 'not measured'
        : `${mb(rss)} MB (${mb(s.rssSmallSteady)} MB at ${s.small}); after the endpoint load runs ${mb(s.rssLarge)} MB (${mb(s.rssSmall)} MB at ${s.small})`,
    target: '≤ 200 MB',
    met: rss === undefined ? undefined : rss <= limit,
    ...(rss !== undefined && rss > limit ? { miss: `${mb(rss - limit)} MB over` } : {}),
  });
  const stall = r.sweep.runs.length ? Math.max(...r.sweep.runs.map((x) => x.maxStallMs)) : undefined;
  out.push({
    name: `longest event-loop stall while the sweeper expires ${r.params.sweepTasks.toLocaleString('en')} tasks (SQLite)`,
    measured: stall === undefined ? 'not measured' : `${fx(stall, 1)} ms (worst of ${r.sweep.runs.length})`,
    target: '≤ 20 ms',
    met: stall === undefined ? undefined : stall <= 20,
    ...(stall !== undefined && stall > 20 ? { miss: `${fx(stall - 20, 1)} ms over` } : {}),
  });
  return out;
}
