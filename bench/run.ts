/**
 * `npm run bench` (`node bench/run.ts [--quick] [--out FILE] [--json FILE] [--only a,b] [--no-scale] [--rounds N]
 * [--duration S]`); `--report FILE` renders a report saved with `--json` again without running anything.
 *
 * Throughput: every peer runs as its own child process on loopback, side by side in one run; the load generator
 * (autocannon, programmatic API) is a separate process too, and every request carries a fresh task id. Peers are
 * measured in interleaved rounds (the order rotates each round) and only the peer under load runs: the others are
 * SIGSTOPped, so an idle receiver's sweeper never steals CPU from a neighbour. Numbers are medians over rounds and
 * every comparison is a ratio within this run: absolute numbers on a shared 2-core machine mean little.
 *
 * Scale: two receivers on SQLite, one with 10 pending tasks and one with 1,000,000 (registered through
 * `POST /tasks`), have `/metrics` and `/health/callbacks` timed alternately; RSS at 1 M pending; and the longest event-loop
 * stall while DeliveryTracker.sweep() expires 100,000 overdue tasks.
 *
 * Full mode writes bench/RESULTS.md (or --out). --quick runs seconds per peer with small scale numbers and applies
 * no thresholds (the test suite runs it so the harness never rots); it writes files only when told to.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import {
  drainAfterRounds,
  drainNote,
  type ForwardBench,
  type ForwardDrain,
  type ForwardLatencySummary,
  forwardLatency,
  forwardLatencyMarkdown,
  sinkCount,
} from './lib/forwarding.ts';
import { type Peer, ROOT, registerPool, runJsonChild, runLoad, startPeer } from './lib/proc.ts';
import type { LoadResult } from './loadgen.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    json: { type: 'string' },
    only: { type: 'string' },
    'no-scale': { type: 'boolean', default: false },
    'no-forward-latency': { type: 'boolean', default: false },
    report: { type: 'string' },
    rounds: { type: 'string' },
    duration: { type: 'string' },
  },
  strict: true,
});

const QUICK = args.quick === true;
const P = {
  connections: 50,
  warmupSeconds: QUICK ? 1 : 3,
  durationSeconds: Number(args.duration ?? (QUICK ? 2 : 6)),
  rounds: Number(args.rounds ?? (QUICK ? 1 : 7)),
  /** Registered ids per second of load before a receiver's first run (later runs use the last measured rate). */
  poolPerSecond: 60_000,
  scaleSmall: 10,
  scaleLarge: QUICK ? 20_000 : 1_000_000,
  scaleSeconds: QUICK ? 1 : 4,
  scaleRounds: QUICK ? 1 : 8,
  sweepTasks: QUICK ? 10_000 : 100_000,
  sweepRepeats: QUICK ? 1 : 3,
  /** Forward latency: a steady load of this many callbacks per second, for this long. */
  forwardRate: 1000,
  forwardSeconds: QUICK ? 2 : 30,
  /** The longest wait for the forwarding peer to catch up after the throughput rounds. */
  forwardDrainSeconds: QUICK ? 120 : 900,
};
const CODE = '03AGdBq24PBCbwiDRaS_MJ7Z49ta3Jw_9kQH3jD7QhLxv5TXa9LdUHcrL7Kp8hX1fnQmJ8Ps2cY5kxqD0RfKZhT6n';
const CALLBACK_PATH = `/callback?id={id}&code=${CODE}`;
const BENCH_DIR = join(ROOT, 'bench');
/** The receiver as users run it (`npm start`, the Docker image): the built JS, compiled when the bench starts. */
const CLI = join(ROOT, 'dist/server/cli.js');
const tmp = mkdtempSync(join(tmpdir(), 'ccm-bench-'));
process.once('exit', () => rmSync(tmp, { recursive: true, force: true }));

interface PeerDef {
  readonly key: string;
  readonly label: string;
  readonly script: string;
  readonly env?: Record<string, string>;
  /** Receivers: register a pool of task ids first, so callbacks are pending → delivered transitions. */
  readonly tracked?: boolean;
  /**
   * Forwarding on (FORWARD_URL to the bench app sink, bench/servers/forwardSink.ts): every result, or missed deadlines
   * only (none happen in the bench: the forwarder runs, but no callback writes a forward).
   */
  readonly forwarding?: 'all' | 'missed-only';
}

/** A fixed, valid Standard Webhooks secret for the bench (32 bytes). */
const BENCH_SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
const SINK = join(BENCH_DIR, 'servers/forwardSink.ts');
const forwardEnv = (sinkPort: number): Record<string, string> => ({
  FORWARD_URL: `http://127.0.0.1:${sinkPort}/hook`,
  FORWARD_SECRET: BENCH_SECRET,
});

// LOG_LEVEL info: the CLI announces its ports in its "listening" line; it logs nothing per request.
const receiverEnv = (store: string): Record<string, string> => ({
  STORE_URL: store,
  DELIVERY_TIMEOUT: '3600',
  LOG_LEVEL: 'info',
});
const PEERS: PeerDef[] = [
  { key: 'raw', label: 'raw node:http (200 OK)', script: join(BENCH_DIR, 'servers/raw.ts') },
  { key: 'koa', label: 'bare Koa 3 + @koa/router', script: join(BENCH_DIR, 'servers/koa.ts') },
  { key: 'seed', label: 'seed tutorial handler (Express 5)', script: join(BENCH_DIR, 'servers/seed.ts') },
  {
    key: 'receiver-memory',
    label: 'receiver CLI, memory store',
    script: CLI,
    env: receiverEnv('memory:'),
    tracked: true,
  },
  {
    key: 'receiver-sqlite',
    label: 'receiver CLI, SQLite file',
    script: CLI,
    env: receiverEnv(`sqlite:${join(tmp, 'cli.db')}`),
    tracked: true,
  },
  {
    key: 'receiver-sqlite-forward',
    label: 'receiver CLI, SQLite file, forwarding on (FORWARD_URL to a local app)',
    script: CLI,
    env: receiverEnv(`sqlite:${join(tmp, 'fwd.db')}`),
    tracked: true,
    forwarding: 'all',
  },
  {
    // Isolates the outbox row from the forwarder: the forwarder runs (worker thread, pace, kicks), but a callback's
    // transition (delivered) writes no forward, since only missed deadlines are forwarded and none pass here.
    key: 'receiver-sqlite-forward-missed',
    label:
      'receiver CLI, SQLite file, forwarding on for `missed` only (the forwarder runs; no outbox row per callback)',
    script: CLI,
    env: { ...receiverEnv(`sqlite:${join(tmp, 'fwd-missed.db')}`), FORWARD_EVENTS: 'missed' },
    tracked: true,
    forwarding: 'missed-only',
  },
  {
    key: 'sqlite-metrics-on',
    label: 'bench entry, SQLite, metrics on',
    script: join(BENCH_DIR, 'servers/receiver.ts'),
    env: { ...receiverEnv(`sqlite:${join(tmp, 'on.db')}`), BENCH_METRICS: 'on' },
    tracked: true,
  },
  {
    key: 'sqlite-metrics-off',
    label: 'bench entry, SQLite, metrics off (no-op meter, no SDK)',
    script: join(BENCH_DIR, 'servers/receiver.ts'),
    env: { ...receiverEnv(`sqlite:${join(tmp, 'off.db')}`), BENCH_METRICS: 'off' },
    tracked: true,
  },
];

const forwardBench: ForwardBench = {
  cli: CLI,
  sink: SINK,
  callbackPath: CALLBACK_PATH,
  rate: P.forwardRate,
  seconds: P.forwardSeconds,
  drainLimitSeconds: P.forwardDrainSeconds,
  env: (store, sinkPort) => ({ ...receiverEnv(store), ...forwardEnv(sinkPort) }),
  dbPath: (name) => join(tmp, name),
  log: (msg) => log(msg),
};

/** One measured run: the load generator's numbers plus the server's CPU time per request it answered. */
export interface Run extends LoadResult {
  /** Server process user + system CPU per answered request, µs: robust against CPU stolen by other work. */
  cpuUsPerRequest: number;
}

export interface PeerSummary {
  key: string;
  label: string;
  error?: string;
  runs: Run[];
  cpuUs?: number;
  rps?: number;
  rpsMin?: number;
  rpsMax?: number;
  p50?: number;
  p99?: number;
  non2xx?: number;
  errors?: number;
  delivery?: { delivered: number; pending: number; total_received: number };
  /** Forwarding peers: forwards during the rounds, the backlog they left and the catch-up after them. */
  forwarding?: ForwardDrain;
}

/** One endpoint on one instance: latency at one connection, and server CPU per request (the cost proper). */
export interface EndpointCost {
  p50: number;
  mean: number;
  rps: number;
  cpuUs: number;
}

export interface ScaleSummary {
  error?: string;
  small?: number;
  large?: number;
  /** How long registering the large instance's tasks through POST /tasks took. */
  registerMs?: number;
  metricsSmall?: EndpointCost;
  metricsLarge?: EndpointCost;
  healthSmall?: EndpointCost;
  healthLarge?: EndpointCost;
  /** RSS in steady state: after registration, 1 s of callbacks, one scrape and one health read. */
  rssLargeSteady?: number;
  rssSmallSteady?: number;
  /** RSS after the endpoint latency runs (thousands of scrapes a second, which grow V8's heap). */
  rssLarge?: number;
  rssPeakLarge?: number;
  rssSmall?: number;
}

export interface SweepSummary {
  error?: string;
  runs: Array<{
    tasks: number;
    moved: number;
    sweepMs: number;
    maxStallMs: number;
    p99StallMs: number;
    maxTickGapMs: number;
    largestRegisterMs: number;
  }>;
  memoryRun?: { maxStallMs: number; sweepMs: number };
}

export interface BenchReport {
  quick: boolean;
  params: typeof P;
  machine: { nproc: number; cpu: string; node: string; date: string; command: string };
  peers: PeerSummary[];
  scale: ScaleSummary;
  sweep: SweepSummary;
  forward?: ForwardLatencySummary;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

async function throughput(): Promise<PeerSummary[]> {
  const only = args.only?.split(',');
  const defs = only ? PEERS.filter((p) => only.includes(p.key)) : PEERS;
  const summaries = new Map<string, PeerSummary>();
  const running = new Map<
    string,
    { peer: Peer; def: PeerDef; cursor: number; registered: number; lastRps: number; forwarded: number; loaded: number }
  >();
  // The app a forwarding peer hands results to: idle (no requests) while the other peers are measured.
  const sink = defs.some((d) => d.forwarding) ? await startPeer({ script: SINK }) : undefined;
  for (const def of defs) {
    const summary: PeerSummary = { key: def.key, label: def.label, runs: [] };
    summaries.set(def.key, summary);
    try {
      const env = { ...def.env, ...(def.forwarding && sink ? forwardEnv(sink.port) : {}) };
      const peer = await startPeer({ script: def.script, env });
      peer.pause();
      running.set(def.key, { peer, def, cursor: 0, registered: 0, lastRps: P.poolPerSecond, forwarded: 0, loaded: 0 });
      log(`${def.key}: started (pid ${peer.pid})`);
    } catch (error) {
      summary.error = (error as Error).message.split('\n').slice(0, 6).join(' ').slice(0, 400);
      log(`${def.key}: NOT AVAILABLE: ${summary.error}`);
    }
  }

  const measure = async (key: string, seconds: number, counted = true): Promise<Run> => {
    const r = running.get(key)!;
    r.peer.resume();
    if (r.def.tracked) {
      // Keep registered-but-unused ids ahead of the load (twice what the last run's rate needs), so callbacks are
      // pending → delivered transitions, without piling millions of extra rows into the store.
      const want = r.cursor + Math.ceil(Math.max(r.lastRps, 5_000) * seconds * 2) + 5_000;
      if (want > r.registered) {
        await registerPool(r.peer, `${key}-`, r.registered, want);
        r.registered = want;
      }
    }
    await sleep(200);
    try {
      const cpuBefore = r.peer.cpuMicros();
      const sinkBefore = r.def.forwarding === 'all' && sink ? await sinkCount(sink) : 0;
      const load = await runLoad({
        url: `http://127.0.0.1:${r.peer.port}`,
        path: CALLBACK_PATH,
        connections: P.connections,
        durationSeconds: seconds,
        idPrefix: `${key}-`,
        idStart: r.cursor,
      });
      const cpuUsPerRequest = (r.peer.cpuMicros() - cpuBefore) / Math.max(1, load.ok + load.non2xx);
      if (counted && r.def.forwarding === 'all' && sink) {
        r.forwarded += (await sinkCount(sink)) - sinkBefore;
        r.loaded += seconds;
      }
      r.cursor += load.idsUsed;
      r.lastRps = load.rps;
      return { ...load, cpuUsPerRequest };
    } finally {
      r.peer.pause();
    }
  };

  const keys = [...running.keys()];
  for (const key of keys) {
    const w = await measure(key, P.warmupSeconds, false);
    log(`${key}: warm-up ${Math.round(w.rps)} req/s`);
  }
  for (let round = 0; round < P.rounds; round++) {
    const order = keys.map((_, i) => keys[(i + round) % keys.length]!);
    for (const key of order) {
      const result = await measure(key, P.durationSeconds);
      summaries.get(key)!.runs.push(result);
      log(
        `round ${round + 1}/${P.rounds} ${key}: ${Math.round(result.rps)} req/s p50 ${result.p50} ms p99 ${result.p99} ms ` +
          `cpu ${result.cpuUsPerRequest.toFixed(1)} µs/req` +
          (result.non2xx || result.errors ? ` (non-2xx ${result.non2xx}, errors ${result.errors})` : ''),
      );
    }
  }

  for (const [key, r] of running) {
    const s = summaries.get(key)!;
    const rps = s.runs.map((x) => x.rps);
    s.rps = median(rps);
    s.rpsMin = Math.min(...rps);
    s.rpsMax = Math.max(...rps);
    s.p50 = median(s.runs.map((x) => x.p50));
    s.p99 = median(s.runs.map((x) => x.p99));
    s.cpuUs = median(s.runs.map((x) => x.cpuUsPerRequest));
    s.non2xx = s.runs.reduce((a, x) => a + x.non2xx, 0);
    s.errors = s.runs.reduce((a, x) => a + x.errors + x.timeouts, 0);
    if (r.def.tracked) {
      r.peer.resume();
      const health = (await (await fetch(`http://127.0.0.1:${r.peer.port}/health/callbacks`)).json()) as {
        total_received: number;
        delivery: { delivered: number; pending: number };
      };
      s.delivery = {
        delivered: health.delivery.delivered,
        pending: health.delivery.pending,
        total_received: health.total_received,
      };
      if (r.def.forwarding === 'all' && sink) {
        s.forwarding = await drainAfterRounds(forwardBench, r.peer, sink, {
          duringLoad: r.forwarded,
          loadSeconds: r.loaded,
          results: health.delivery.delivered,
        });
      }
    }
    await r.peer.stop();
  }
  await sink?.stop();
  return defs.map((d) => summaries.get(d.key)!);
}

async function scale(): Promise<ScaleSummary> {
  const out: ScaleSummary = { small: P.scaleSmall, large: P.scaleLarge };
  // The real CLI, its tasks registered through its own API (POST /tasks, 10,000 ids a request), as an app would.
  const start = async (n: number, file: string) => {
    const peer = await startPeer({ script: CLI, env: receiverEnv(`sqlite:${join(tmp, file)}`) });
    const started = performance.now();
    await registerPool(peer, 'scale-', 0, n);
    return { peer, ms: performance.now() - started };
  };
  let small: Peer | undefined;
  let large: Peer | undefined;
  try {
    small = (await start(P.scaleSmall, 'scale-small.db')).peer;
    small.pause();
    log(`scale: registering ${P.scaleLarge} pending tasks through POST /tasks…`);
    const registered = await start(P.scaleLarge, 'scale-large.db');
    large = registered.peer;
    out.registerMs = Math.round(registered.ms);
    log(`scale: ${P.scaleLarge} pending after ${out.registerMs} ms`);
    large.pause();
    // Some delivered callbacks in both, so the histograms and counters have series to render.
    for (const peer of [small, large]) {
      peer.resume();
      await runLoad({
        url: `http://127.0.0.1:${peer.port}`,
        path: CALLBACK_PATH,
        connections: 4,
        durationSeconds: 1,
        idPrefix: 'scale-',
        idStart: 0,
      });
      peer.pause();
    }
    // Steady state, as a receiver runs between scrapes: one scrape and one health read each, a second to settle.
    for (const peer of [small, large]) {
      peer.resume();
      await fetch(`http://127.0.0.1:${peer.managementPort}/metrics`).then((r) => r.text());
      await fetch(`http://127.0.0.1:${peer.port}/health/callbacks`).then((r) => r.text());
    }
    await sleep(1000);
    out.rssLargeSteady = large.memory().rss;
    out.rssSmallSteady = small.memory().rss;
    small.pause();
    large.pause();
    const time = async (peer: Peer, port: number, path: string) => {
      peer.resume();
      await sleep(200);
      try {
        const cpuBefore = peer.cpuMicros();
        const load = await runLoad({
          url: `http://127.0.0.1:${port}`,
          path,
          connections: 1,
          durationSeconds: P.scaleSeconds,
        });
        const cpuUsPerRequest = (peer.cpuMicros() - cpuBefore) / Math.max(1, load.ok + load.non2xx);
        return { ...load, cpuUsPerRequest };
      } finally {
        peer.pause();
      }
    };
    const acc: Record<string, Run[]> = { ms: [], ml: [], hs: [], hl: [] };
    for (let round = 0; round < P.scaleRounds; round++) {
      const pairs: Array<[string, Peer]> =
        round % 2 === 0
          ? [
              ['s', small],
              ['l', large],
            ]
          : [
              ['l', large],
              ['s', small],
            ];
      for (const [tag, peer] of pairs) {
        acc[`m${tag}`]!.push(await time(peer, peer.managementPort!, '/metrics'));
        acc[`h${tag}`]!.push(await time(peer, peer.port, '/health/callbacks'));
      }
    }
    const agg = (rs: Run[]) => ({
      cpuUs: median(rs.map((r) => r.cpuUsPerRequest)),
      p50: median(rs.map((r) => r.p50)),
      mean: median(rs.map((r) => r.meanLatency)),
      rps: median(rs.map((r) => r.rps)),
    });
    out.metricsSmall = agg(acc.ms!);
    out.metricsLarge = agg(acc.ml!);
    out.healthSmall = agg(acc.hs!);
    out.healthLarge = agg(acc.hl!);
    for (const r of Object.values(acc).flat()) {
      if (r.non2xx || r.errors)
        throw new Error(`scale endpoint answered non-2xx ${r.non2xx}, errors ${r.errors}: ${JSON.stringify(acc)}`);
    }
    large.resume();
    await sleep(1500); // a couple of sweeps and a GC opportunity with nothing happening
    const mem = large.memory();
    out.rssLarge = mem.rss;
    out.rssPeakLarge = mem.peak;
    small.resume();
    out.rssSmall = small.memory().rss;
    log(`scale: /metrics p50 ${out.metricsSmall.p50} → ${out.metricsLarge.p50} ms; RSS ${mb(mem.rss)} MB`);
  } catch (error) {
    out.error = (error as Error).message.split('\n').slice(0, 6).join(' ').slice(0, 400);
    log(`scale: NOT AVAILABLE: ${out.error}`);
  } finally {
    await small?.stop();
    await large?.stop();
  }
  return out;
}

async function sweep(): Promise<SweepSummary> {
  const out: SweepSummary = { runs: [] };
  const script = join(BENCH_DIR, 'scale/sweep.ts');
  try {
    for (let i = 0; i < P.sweepRepeats; i++) {
      const r = await runJsonChild<SweepSummary['runs'][number]>(script, {
        STORE_URL: `sqlite:${join(tmp, `sweep-${i}.db`)}`,
        BENCH_SWEEP_TASKS: String(P.sweepTasks),
      });
      out.runs.push(r);
      log(
        `sweep ${i + 1}: ${r.moved} expired in ${Math.round(r.sweepMs)} ms, longest stall ${r.maxStallMs.toFixed(1)} ms`,
      );
    }
    const m = await runJsonChild<{ maxStallMs: number; sweepMs: number }>(script, {
      STORE_URL: 'memory:',
      BENCH_SWEEP_TASKS: String(P.sweepTasks),
    });
    out.memoryRun = { maxStallMs: m.maxStallMs, sweepMs: m.sweepMs };
  } catch (error) {
    out.error = (error as Error).message.split('\n').slice(0, 6).join(' ').slice(0, 400);
    log(`sweep: NOT AVAILABLE: ${out.error}`);
  }
  return out;
}

function machine(): BenchReport['machine'] {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpu;
  } catch {}
  let nproc = cpus().length;
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {}
  const argv = process.argv.slice(2).join(' ');
  const command =
    process.env.npm_lifecycle_event === 'bench'
      ? `npm run bench${argv ? ` -- ${argv}` : ''}`
      : `node bench/run.ts${argv ? ` ${argv}` : ''}`;
  return { nproc, cpu, node: process.version, date: new Date().toISOString(), command };
}

// ---------------------------------------------------------------------------------------------------------------
// Report

const mb = (bytes: number | undefined) => (bytes === undefined ? 'n/a' : (bytes / 1024 / 1024).toFixed(0));
const fx = (x: number | undefined, digits = 2) => (x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits));
/**
 * Median over rounds of a per-round ratio f(a)/f(b): both runs of a round are minutes apart at most, so drift in
 * what else the machine is doing cancels better than in a ratio of medians.
 */
function paired(a: PeerSummary | undefined, b: PeerSummary | undefined, f: (r: Run) => number): number | undefined {
  if (!a || !b || a.error || b.error) return undefined;
  const n = Math.min(a.runs.length, b.runs.length);
  if (n === 0) return undefined;
  const q: number[] = [];
  for (let i = 0; i < n; i++) q.push(f(a.runs[i]!) / f(b.runs[i]!));
  return median(q);
}
function pairedRange(a: PeerSummary | undefined, b: PeerSummary | undefined, f: (r: Run) => number): string {
  if (!a || !b || a.error || b.error) return '';
  const n = Math.min(a.runs.length, b.runs.length);
  const q: number[] = [];
  for (let i = 0; i < n; i++) q.push(f(a.runs[i]!) / f(b.runs[i]!));
  return n > 1 ? `${fx(Math.min(...q))}–${fx(Math.max(...q))}` : '';
}
const rps = (x: Run) => x.rps;
const p99of = (x: Run) => x.p99;
const cpu = (x: Run) => x.cpuUsPerRequest;
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
  if (!a || !b || a.error || b.error) return undefined;
  const n = Math.min(a.runs.length, b.runs.length);
  if (n < 2) return undefined;
  const rounds = Array.from({ length: n }, (_, i) => i).sort((i, j) => cpu(b.runs[i]!) - cpu(b.runs[j]!));
  return median(rounds.slice(0, Math.ceil(n / 2)).map((i) => f(a.runs[i]!) / f(b.runs[i]!)));
}
const quietNote = (q: number | undefined) =>
  q === undefined ? '' : `; ${fx(q)}× in the quieter half of the rounds (the seed's lowest CPU per request)`;

const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || b === 0 ? undefined : a / b;

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
        : `${fx(tput)}× (rounds ${pairedRange(rx, seed, rps)}${quietNote(pairedQuiet(rx, seed, rps))}; CPU per request ${fx(paired(rx, seed, cpu))}× the seed's)`,
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
        : `${fx(p99)}× (rounds ${pairedRange(rx, seed, p99of)}${quietNote(pairedQuiet(rx, seed, p99of))}; medians ${fx(rx?.p99, 3)} ms vs ${fx(seed?.p99, 3)} ms)`,
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
        : `${fx(fwdTput)}× (rounds ${pairedRange(fwd, rx, rps)}; CPU per callback ${fx(paired(fwd, rx, cpu))}×, forwards included${noRowNote(rps)})`,
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
        : `${fx(fwdP99)}× (rounds ${pairedRange(fwd, rx, p99of)}; medians ${fx(fwd?.p99, 3)} ms vs ${fx(rx?.p99, 3)} ms${noRowNote(p99of)})`,
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

export function markdown(r: BenchReport): string {
  const koa = r.peers.find((p) => p.key === 'koa');
  const seed = r.peers.find((p) => p.key === 'seed');
  const L: string[] = [];
  L.push('# Benchmark results', '');
  L.push(
    r.quick
      ? '> QUICK MODE: seconds per peer and small scale numbers; no threshold applies to these numbers.'
      : '> Generated by `bench/run.ts` from one real run; the prose sections at the end are written by hand.',
    '',
  );
  L.push('| | |', '| --- | --- |');
  L.push(
    `| machine | ${r.machine.nproc} cores (\`nproc\`), ${r.machine.cpu} (/proc/cpuinfo), shared with other work |`,
  );
  L.push(`| Node | ${r.machine.node} |`);
  L.push(`| date | ${r.machine.date} |`);
  L.push(`| command | \`${r.machine.command}\` |`);
  L.push(
    `| load | autocannon 9 (programmatic, own process), ${r.params.connections} connections, pipelining 1, ` +
      `${r.params.rounds} interleaved rounds × ${r.params.durationSeconds} s per peer after a ${r.params.warmupSeconds} s warm-up; ` +
      'a fresh task id per request; peers not under load are SIGSTOPped; latency in ms with µs resolution; ' +
      'req/s, p50, p99 and CPU are medians over rounds, every × column is the median over rounds of the ratio within ' +
      "the round; CPU µs/req is the server process's user + system time (all threads) per answered request |",
    '',
  );
  L.push('## Targets', '');
  L.push('| target | measured | goal | met |', '| --- | --- | --- | --- |');
  for (const t of targets(r)) {
    const met = t.met === undefined ? 'not measured' : t.met ? 'yes' : `**no** (${t.miss})`;
    L.push(`| ${t.name} | ${t.measured} | ${t.target} | ${met} |`);
  }
  L.push('', '## Callback throughput and latency (GET /callback?id=<unique>&code=<token>)', '');
  L.push(
    '| peer | req/s (median) | req/s range | p50 ms | p99 ms | CPU µs/req | × Koa req/s | × seed req/s | p99 × seed | CPU × seed | notes |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  );
  for (const p of r.peers) {
    if (p.error) {
      L.push(`| ${p.label} | not available | | | | | | | | | ${p.error.replace(/\|/g, '\\|').slice(0, 200)} |`);
      continue;
    }
    const notes: string[] = [];
    if (p.non2xx || p.errors) notes.push(`non-2xx ${p.non2xx}, errors ${p.errors}`);
    if (p.delivery) {
      notes.push(
        `${p.delivery.delivered.toLocaleString('en')} of ${p.delivery.total_received.toLocaleString('en')} callbacks were pending → delivered`,
      );
    }
    if (p.forwarding) notes.push(drainNote(p.forwarding));
    L.push(
      `| ${p.label} | ${fx(p.rps, 0)} | ${fx(p.rpsMin, 0)}–${fx(p.rpsMax, 0)} | ${fx(p.p50, 3)} | ${fx(p.p99, 3)} | ` +
        `${fx(p.cpuUs, 1)} | ${fx(paired(p, koa, rps))} | ${fx(paired(p, seed, rps))} | ${fx(paired(p, seed, p99of))} | ` +
        `${fx(paired(p, seed, cpu))} | ${notes.join('; ')} |`,
    );
  }
  const s = r.scale;
  L.push('', `## Scale: ${s.small} vs ${s.large?.toLocaleString('en')} pending tasks in SQLite`, '');
  if (s.error) L.push(`Not available: ${s.error}`, '');
  else {
    L.push(
      `The receiver CLI (built JS), its tasks registered through \`POST /tasks\` with 10,000 ids a request (${s.large?.toLocaleString('en')} in ${fx((s.registerMs ?? 0) / 1000, 1)} s). ` +
        `One connection, ${r.params.scaleSeconds} s per endpoint per instance, ${r.params.scaleRounds} alternating rounds, medians.`,
      '',
      `| endpoint | CPU µs/req at ${s.small} | CPU µs/req at ${s.large?.toLocaleString('en')} | ratio | p50 ms at ${s.small} | p50 ms at ${s.large?.toLocaleString('en')} | ratio | mean ms at ${s.small} | mean ms at ${s.large?.toLocaleString('en')} |`,
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const [name, a, b] of [
      ['/metrics (management port)', s.metricsSmall, s.metricsLarge],
      ['/health/callbacks', s.healthSmall, s.healthLarge],
    ] as const) {
      L.push(
        `| ${name} | ${fx(a?.cpuUs, 1)} | ${fx(b?.cpuUs, 1)} | ${fx(ratio(b?.cpuUs, a?.cpuUs))}× | ${fx(a?.p50, 3)} | ` +
          `${fx(b?.p50, 3)} | ${fx(ratio(b?.p50, a?.p50))}× | ${fx(a?.mean, 3)} | ${fx(b?.mean, 3)} |`,
      );
    }
    L.push(
      '',
      `RSS (VmRSS) in steady state (after registration, 1 s of callbacks, one scrape, one health read): ` +
        `${mb(s.rssLargeSteady)} MB with ${s.large?.toLocaleString('en')} pending, ${mb(s.rssSmallSteady)} MB with ${s.small}. ` +
        `After the latency runs above (thousands of scrapes a second for ${r.params.scaleRounds * r.params.scaleSeconds * 2} s, ` +
        `which grow V8's heap whatever the task count): ${mb(s.rssLarge)} MB with ${s.large?.toLocaleString('en')} pending, ` +
        `${mb(s.rssSmall)} MB with ${s.small}; peak (VmHWM, includes the registration) ${mb(s.rssPeakLarge)} MB.`,
    );
  }
  L.push(
    '',
    `## Sweeper: expiring ${r.params.sweepTasks.toLocaleString('en')} overdue tasks at once (SQLite, full metrics)`,
    '',
  );
  if (r.sweep.error) L.push(`Not available: ${r.sweep.error}`, '');
  else {
    L.push(
      '| run | expired | sweep took ms | longest stall ms (monitorEventLoopDelay max) | p99 stall ms | longest 1 ms-tick gap ms |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
    );
    r.sweep.runs.forEach((x, i) => {
      L.push(
        `| ${i + 1} | ${x.moved.toLocaleString('en')} | ${fx(x.sweepMs, 0)} | ${fx(x.maxStallMs, 1)} | ${fx(x.p99StallMs, 1)} | ${fx(x.maxTickGapMs, 1)} |`,
      );
    });
    const reg = r.sweep.runs.length ? Math.max(...r.sweep.runs.map((x) => x.largestRegisterMs)) : undefined;
    L.push('');
    if (reg !== undefined)
      L.push(
        `One \`store.register\` of 10,000 ids (the most one \`POST /tasks\` accepts) took up to ${fx(reg, 1)} ms, all on the event loop.`,
      );
    if (r.sweep.memoryRun)
      L.push(
        `For comparison, the memory store: sweep ${fx(r.sweep.memoryRun.sweepMs, 0)} ms, longest stall ${fx(r.sweep.memoryRun.maxStallMs, 1)} ms.`,
      );
  }
  if (r.forward) L.push(...forwardLatencyMarkdown(r.forward));
  L.push('');
  return L.join('\n');
}

async function measure(): Promise<BenchReport> {
  // The CLI peers run dist/, as `npm start` does: compile it from the current sources first.
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  for (const project of ['packages/koa/tsconfig.build.json', 'tsconfig.build.json']) {
    execFileSync(process.execPath, [tsc, '-p', join(ROOT, project)], { stdio: 'inherit' });
  }
  const report: BenchReport = {
    quick: QUICK,
    params: P,
    machine: machine(),
    peers: [],
    scale: {},
    sweep: { runs: [] },
  };
  try {
    report.peers = await throughput();
    if (!args['no-forward-latency']) report.forward = await forwardLatency(forwardBench);
    if (!args['no-scale']) {
      report.scale = await scale();
      report.sweep = await sweep();
    } else {
      report.scale = { small: P.scaleSmall, large: P.scaleLarge, error: 'skipped (--no-scale)' };
      report.sweep = { runs: [], error: 'skipped (--no-scale)' };
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return report;
}

async function main(): Promise<void> {
  // --report FILE: render a report saved with --json again (after a change to the report itself), running nothing.
  const report: BenchReport = args.report
    ? (JSON.parse(readFileSync(args.report, 'utf8')) as BenchReport)
    : await measure();
  const md = markdown(report);
  process.stdout.write(`\n${md}\n`);
  const out = args.out ?? (QUICK ? undefined : join(BENCH_DIR, 'RESULTS.md'));
  if (out) {
    // Keep the hand-written analysis below the generated part when regenerating.
    let tail = '';
    try {
      const previous = readFileSync(out, 'utf8');
      const at = previous.indexOf('\n## Analysis');
      if (at >= 0) tail = previous.slice(at);
    } catch {}
    writeFileSync(out, md + tail);
    log(`wrote ${out}`);
  }
  if (args.json && !args.report) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
}

await main();
