/**
 * Scale: two receivers on SQLite, one with few pending tasks and one with many (registered through `POST /tasks`),
 * have `/metrics` and `/health/callbacks` timed alternately; and their RSS.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CALLBACK_PATH, CLI, log, PARAMS, receiverEnv, tmp } from '../config.ts';
import { type Peer, registerPool, runLoad, startPeer } from '../lib/proc.ts';
import { median } from '../lib/stats.ts';
import { mb } from '../report/format.ts';
import type { Run, ScaleSummary } from '../report/types.ts';

export async function scale(): Promise<ScaleSummary> {
  const out: ScaleSummary = { small: PARAMS.scaleSmall, large: PARAMS.scaleLarge };
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
    small = (await start(PARAMS.scaleSmall, 'scale-small.db')).peer;
    small.pause();
    log(`scale: registering ${PARAMS.scaleLarge} pending tasks through POST /tasks…`);
    const registered = await start(PARAMS.scaleLarge, 'scale-large.db');
    large = registered.peer;
    out.registerMs = Math.round(registered.ms);
    log(`scale: ${PARAMS.scaleLarge} pending after ${out.registerMs} ms`);
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
          durationSeconds: PARAMS.scaleSeconds,
        });
        const cpuUsPerRequest = (peer.cpuMicros() - cpuBefore) / Math.max(1, load.ok + load.non2xx);
        return { ...load, cpuUsPerRequest };
      } finally {
        peer.pause();
      }
    };
    const acc: Record<string, Run[]> = { ms: [], ml: [], hs: [], hl: [] };
    for (let round = 0; round < PARAMS.scaleRounds; round++) {
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
