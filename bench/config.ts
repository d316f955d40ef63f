/**
 * The benchmark's settings: the command line (`bench/run.ts`'s flags), the parameters every suite reads, the peers
 * the throughput suite measures and the environments they run with.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type ForwardBench, forwardEnv, SINK } from './lib/forwarding.ts';
import { ROOT } from './lib/proc.ts';

export const { values: args } = parseArgs({
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

export const QUICK = args.quick === true;
export const PARAMS = {
  connections: 50,
  warmupSeconds: QUICK ? 1 : 3,
  durationSeconds: Number(args.duration ?? (QUICK ? 2 : 6)),
  /**
   * 15: a single round's p99 ratio between two receivers spreads ±25 % on a shared 2-core machine, so 7 rounds' median
   * moved by more than a 10 % target between runs (docs/benchmarks.md).
   */
  rounds: Number(args.rounds ?? (QUICK ? 1 : 15)),
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
export const CALLBACK_PATH = `/callback?id={id}&code=${CODE}`;
export const BENCH_DIR = join(ROOT, 'bench');
/** The receiver as users run it (`npm start`, the Docker image): the built JS, compiled when the bench starts. */
export const CLI = join(ROOT, 'dist/server/cli.js');
export const tmp = mkdtempSync(join(tmpdir(), 'ccm-bench-'));
process.once('exit', () => rmSync(tmp, { recursive: true, force: true }));

export interface PeerDef {
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

export { forwardEnv, SINK };

// LOG_LEVEL info: the CLI announces its ports in its "listening" line; it logs nothing per request.
export const receiverEnv = (store: string): Record<string, string> => ({
  STORE_URL: store,
  DELIVERY_TIMEOUT: '3600',
  LOG_LEVEL: 'info',
});
export const PEERS: PeerDef[] = [
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

export const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

/** What the forwarding parts (bench/lib/forwarding.ts) need from the harness. */
export const forwardBench: ForwardBench = {
  cli: CLI,
  sink: SINK,
  callbackPath: CALLBACK_PATH,
  rate: PARAMS.forwardRate,
  seconds: PARAMS.forwardSeconds,
  drainLimitSeconds: PARAMS.forwardDrainSeconds,
  env: (store, sinkPort) => ({ ...receiverEnv(store), ...forwardEnv(sinkPort) }),
  dbPath: (name) => join(tmp, name),
  log: (msg) => log(msg),
};

export type Params = typeof PARAMS;
