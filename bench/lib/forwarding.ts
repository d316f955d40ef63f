/**
 * The benchmark's forwarding parts (bench/run.ts calls them): the forward latency at a steady rate, and what the
 * forwarding peer of the throughput rounds left for afterwards (forwards sent during the saturating rounds, the
 * backlog they left, and how long it took to catch up).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { type Peer, registerPool, runLoad, startPeer } from './proc.ts';

/** The bench app sink that forwarding peers post to. */
export const SINK = fileURLToPath(new URL('../servers/forwardSink.ts', import.meta.url));
/** A fixed, valid Standard Webhooks secret for the bench (32 bytes). */
const BENCH_SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
/** A receiver's environment to forward every result to the sink listening on `sinkPort`. */
export const forwardEnv = (sinkPort: number): Record<string, string> => ({
  FORWARD_URL: `http://127.0.0.1:${sinkPort}/hook`,
  FORWARD_SECRET: BENCH_SECRET,
});

/** What the forwarding parts need from bench/run.ts. */
export interface ForwardBench {
  readonly cli: string;
  readonly sink: string;
  readonly callbackPath: string;
  readonly rate: number;
  readonly seconds: number;
  /** Longest wait for a forwarding peer's backlog to drain after the throughput rounds, s. */
  readonly drainLimitSeconds: number;
  /** The receiver's environment for one store URL, forwarding to the sink on `sinkPort`. */
  readonly env: (store: string, sinkPort: number) => Record<string, string>;
  readonly dbPath: (name: string) => string;
  readonly log: (msg: string) => void;
}

export interface ForwardLatencyRun {
  error?: string;
  /** `even`: spread over each second; `bursts`: autocannon's per-second budget, one full-speed burst a second. */
  spacing?: 'even' | 'bursts';
  /** Callbacks acknowledged, forwards the app received (all of them, after the load stopped). */
  acknowledged?: number;
  forwarded?: number;
  /** Receipt → app, ms (whole milliseconds: the payload's precision). */
  p50?: number;
  p90?: number;
  p99?: number;
  max?: number;
  /** Acknowledged callbacks that were repeats of an id (no new result, so no forward), per the receiver. */
  duplicates?: number;
  /** The callbacks' own latency under that load, ms. */
  callbackP50?: number;
  callbackP99?: number;
}

export interface ForwardLatencySummary extends ForwardLatencyRun {
  rate?: number;
  seconds?: number;
  /** The same load as one burst a second (autocannon's overallRate): what the callbacks-first pace does with it. */
  bursts?: ForwardLatencyRun;
}

/** The forwarding peer of the throughput rounds, after them. */
export interface ForwardDrain {
  /** Forwards the app received while the peer was under load (all rounds), and per second of load. */
  duringLoad: number;
  perSecondOfLoad: number;
  /** Results still to forward when the rounds ended (the peer's stored results less what the app had received). */
  pendingAfter: number;
  /** How long forwarding took to catch up with no callbacks arriving, s; undefined if it did not within the limit. */
  drainSeconds?: number;
  /** Forwards per second while catching up. */
  drainRate: number;
  /** Forwards the app received in all, and the results the peer stored (every one must arrive). */
  forwarded: number;
  results: number;
}

const metric = (text: string, name: string) =>
  Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
async function metricsOf(peer: Peer): Promise<string> {
  return (await fetch(`http://127.0.0.1:${peer.managementPort}/metrics`)).text();
}
export async function sinkCount(sink: Peer): Promise<number> {
  return ((await (await fetch(`http://127.0.0.1:${sink.port}/stats`)).json()) as { count: number }).count;
}

/**
 * After the throughput rounds: resumes the forwarding peer with no load and waits (up to the limit) for its outbox
 * to empty, timing the catch-up. `duringLoad` is counted by the caller around each measured round; `results` is the
 * peer's stored results (tasks delivered), each of which makes one forward.
 */
export async function drainAfterRounds(
  b: ForwardBench,
  peer: Peer,
  sink: Peer,
  counts: { readonly duringLoad: number; readonly loadSeconds: number; readonly results: number },
): Promise<ForwardDrain> {
  const { duringLoad, loadSeconds, results } = counts;
  peer.resume();
  const before = await sinkCount(sink);
  const started = performance.now();
  let drainSeconds: number | undefined;
  while ((performance.now() - started) / 1000 < b.drainLimitSeconds) {
    // The backlog gauge refreshes every second; the app's own count says when every result has arrived.
    if (metric(await metricsOf(peer), 'captcha_forward_backlog') === 0) {
      drainSeconds = (performance.now() - started) / 1000;
      break;
    }
    await sleep(250);
  }
  const forwarded = await sinkCount(sink);
  const elapsed = (performance.now() - started) / 1000;
  const drained = forwarded - before;
  b.log(
    `forwarding peer: ${duringLoad} forwards during ${loadSeconds} s of load, ${drained} more in ` +
      `${elapsed.toFixed(1)} s after it${drainSeconds === undefined ? ' (not drained within the limit)' : ''}`,
  );
  return {
    duringLoad,
    perSecondOfLoad: duringLoad / Math.max(1, loadSeconds),
    pendingAfter: results - before,
    ...(drainSeconds === undefined ? {} : { drainSeconds }),
    drainRate: drained / Math.max(0.001, elapsed),
    forwarded,
    results,
  };
}

/**
 * Forward latency at a steady rate: the receiver CLI (SQLite, forwarding on) takes `rate` callbacks a second from a
 * paced load generator while it forwards each result to the bench app sink, which measures receipt → arrival. Once
 * evenly spread (the figure asked for), then as autocannon paces (one burst a second).
 */
export async function forwardLatency(b: ForwardBench): Promise<ForwardLatencySummary> {
  const even = await latencyRun(b, 'even');
  const bursts = await latencyRun(b, 'bursts');
  return { rate: b.rate, seconds: b.seconds, ...even, bursts };
}

async function latencyRun(b: ForwardBench, spacing: 'even' | 'bursts'): Promise<ForwardLatencyRun> {
  const out: ForwardLatencyRun = { spacing };
  let sink: Peer | undefined;
  let rx: Peer | undefined;
  try {
    sink = await startPeer({ script: b.sink });
    rx = await startPeer({ script: b.cli, env: b.env(`sqlite:${b.dbPath(`fwd-latency-${spacing}.db`)}`, sink.port) });
    await registerPool(rx, 'fl-', 0, b.rate * (b.seconds + 3) + 1000);
    const load = (idStart: number, seconds: number) =>
      runLoad({
        url: `http://127.0.0.1:${rx!.port}`,
        path: b.callbackPath,
        connections: 20,
        durationSeconds: seconds,
        idPrefix: 'fl-',
        idStart,
        rate: b.rate,
        even: spacing === 'even',
      });
    // Warm-up at the same rate; every warm-up forward settled before the histogram starts afresh.
    await load(0, 2);
    for (let i = 0; i < 100; i++) {
      await sleep(200);
      if (i >= 6 && metric(await metricsOf(rx), 'captcha_forward_backlog') === 0) break;
    }
    const sinkUrl = `http://127.0.0.1:${sink.port}`;
    await fetch(`${sinkUrl}/reset`, { method: 'POST' });
    const duplicatesBefore = metric(await metricsOf(rx), 'captcha_callback_duplicates_total') || 0;
    const run = await load(b.rate * 3, b.seconds);
    // A repeated id (autocannon reuses one now and then under a paced rate) is acknowledged as a duplicate and makes
    // no forward.
    const duplicates = (metric(await metricsOf(rx), 'captcha_callback_duplicates_total') || 0) - duplicatesBefore;
    for (let i = 0; i < 300 && (await sinkCount(sink)) < run.ok - duplicates; i++) await sleep(100);
    const stats = (await (await fetch(`${sinkUrl}/stats`)).json()) as Record<
      'count' | 'p50' | 'p90' | 'p99' | 'max',
      number
    >;
    Object.assign(out, {
      duplicates,
      acknowledged: run.ok,
      forwarded: stats.count,
      p50: stats.p50,
      p90: stats.p90,
      p99: stats.p99,
      max: stats.max,
      callbackP50: run.p50,
      callbackP99: run.p99,
    });
    b.log(
      `forward latency at ${b.rate}/s (${spacing}): p50 ${stats.p50} ms p99 ${stats.p99} ms (${stats.count} of ${run.ok})`,
    );
  } catch (error) {
    out.error = (error as Error).message.slice(0, 300);
  } finally {
    await rx?.stop();
    await sink?.stop();
  }
  return out;
}

const fx = (n: number | undefined, digits = 2) => (n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(digits));
const n0 = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? 'n/a' : Math.round(n).toLocaleString('en'));

/** The report's forward latency section. */
export function forwardLatencyMarkdown(f: ForwardLatencySummary): string[] {
  const L = [
    '',
    `## Forward latency at a steady ${f.rate?.toLocaleString('en')} callbacks/s (SQLite, forwarding on)`,
    '',
  ];
  if (f.error) return [...L, `Not available: ${f.error}`, ''];
  L.push(
    'The receiver CLI forwards every result to a local app (bench/servers/forwardSink.ts, answers 204) while a load ' +
      `generator sends ${f.rate} callbacks a second for ${f.seconds} s: evenly spread (bench/lib/evenLoad.ts, open ` +
      "loop, 20 sockets), the steady load asked for; and as autocannon's `overallRate` paces (20 connections): each " +
      "second's callbacks in one burst at full speed, during which the forwarder yields to the callbacks. Latency is the " +
      "callback's receipt at the receiver (the payload's `received_at`) to the forward's arrival at the app, whole " +
      'milliseconds, same clock.',
    '',
    '| load | callbacks acknowledged | repeated ids (no forward) | forwards received | p50 ms | p90 ms | p99 ms | max ms | callback p50 ms | callback p99 ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const [label, x] of [
    ['steady (evenly spread)', f],
    ['one burst a second (autocannon)', f.bursts],
  ] as const) {
    if (!x) continue;
    if (x.error) L.push(`| ${label} | not available: ${x.error.replace(/\|/g, '\\|')} | | | | | | | | |`);
    else
      L.push(
        `| ${label} | ${n0(x.acknowledged)} | ${n0(x.duplicates)} | ${n0(x.forwarded)} | ${fx(x.p50, 0)} | ${fx(x.p90, 0)} | ${fx(x.p99, 0)} | ${fx(x.max, 0)} | ${fx(x.callbackP50, 3)} | ${fx(x.callbackP99, 3)} |`,
      );
  }
  return L;
}

/** The throughput table's note for a forwarding peer. */
export function drainNote(d: ForwardDrain): string {
  const caught =
    d.drainSeconds === undefined
      ? 'not caught up within the wait'
      : `caught up in ${fx(d.drainSeconds, 1)} s after the rounds (${n0(d.drainRate)}/s, no load)`;
  return (
    `forwards during the saturating rounds: ${n0(d.duringLoad)} (${n0(d.perSecondOfLoad)}/s, the rest waited in the ` +
    `outbox); ${n0(d.pendingAfter)} pending after them, ${caught}; the app received ${n0(d.forwarded)} forwards for ` +
    `${n0(d.results)} results`
  );
}
