/**
 * Throughput: every peer runs as its own child process, measured in interleaved rounds (the order rotates each
 * round, backwards every other round) while the others are SIGSTOPped; callbacks carry fresh task ids, registered
 * ahead of the load on receivers.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { args, CALLBACK_PATH, forwardBench, forwardEnv, log, PARAMS, PEERS, type PeerDef, SINK } from '../config.ts';
import { drainAfterRounds, sinkCount } from '../lib/forwarding.ts';
import { type Peer, registerPool, runLoad, startPeer } from '../lib/proc.ts';
import { median } from '../lib/stats.ts';
import { threadCpuMicros } from '../lib/threads.ts';
import type { PeerSummary, Run } from '../report/types.ts';

export async function throughput(): Promise<PeerSummary[]> {
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
      running.set(def.key, {
        peer,
        def,
        cursor: 0,
        registered: 0,
        lastRps: PARAMS.poolPerSecond,
        forwarded: 0,
        loaded: 0,
      });
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
      const threadsBefore = threadCpuMicros(r.peer.pid);
      const sinkBefore = r.def.forwarding === 'all' && sink ? await sinkCount(sink) : 0;
      const load = await runLoad({
        url: `http://127.0.0.1:${r.peer.port}`,
        path: CALLBACK_PATH,
        connections: PARAMS.connections,
        durationSeconds: seconds,
        idPrefix: `${key}-`,
        idStart: r.cursor,
      });
      const answered = Math.max(1, load.ok + load.non2xx);
      const cpuUsPerRequest = (r.peer.cpuMicros() - cpuBefore) / answered;
      const threadCpuUsPerRequest: Record<string, number> = {};
      for (const [name, after] of threadCpuMicros(r.peer.pid)) {
        threadCpuUsPerRequest[name] = Number(((after - (threadsBefore.get(name) ?? 0)) / answered).toFixed(2));
      }
      if (counted && r.def.forwarding === 'all' && sink) {
        r.forwarded += (await sinkCount(sink)) - sinkBefore;
        r.loaded += seconds;
      }
      r.cursor += load.idsUsed;
      r.lastRps = load.rps;
      return { ...load, cpuUsPerRequest, threadCpuUsPerRequest };
    } finally {
      r.peer.pause();
    }
  };

  const keys = [...running.keys()];
  for (const key of keys) {
    const w = await measure(key, PARAMS.warmupSeconds, false);
    log(`${key}: warm-up ${Math.round(w.rps)} req/s`);
  }
  for (let round = 0; round < PARAMS.rounds; round++) {
    // Rotating alone would keep every peer behind the same predecessor (it inherits that peer's disk writeback and
    // cold caches); odd rounds run the rotation backwards, so each peer follows each of its neighbours in turn.
    const rotated = keys.map((_, i) => keys[(i + round) % keys.length]!);
    const order = round % 2 === 0 ? rotated : rotated.reverse();
    for (const key of order) {
      const result = await measure(key, PARAMS.durationSeconds);
      summaries.get(key)!.runs.push(result);
      log(
        `round ${round + 1}/${PARAMS.rounds} ${key}: ${Math.round(result.rps)} req/s p50 ${result.p50} ms p99 ${result.p99} ms ` +
          `cpu ${result.cpuUsPerRequest.toFixed(1)} µs/req (${Object.entries(result.threadCpuUsPerRequest ?? {})
            .filter(([, us]) => us > 0)
            .map(([name, us]) => `${name} ${us.toFixed(1)}`)
            .join(', ')})` +
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
