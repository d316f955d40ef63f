/**
 * A steady load: `rate` requests a second spread evenly over each second (the due count is worked out every
 * millisecond from the elapsed time), open loop, over a keep-alive pool of `connections` sockets. autocannon's
 * `overallRate` is a per-second budget instead: each connection sends as fast as it is answered until its share of
 * the second is used up, so "1,000 a second" arrives as one burst at full speed at the start of every second.
 */
import { Agent, get } from 'node:http';
import { createHistogram } from 'node:perf_hooks';
import type { LoadResult, LoadSpec } from '../loadgen.ts';

export async function runEven(spec: LoadSpec & { readonly rate: number }): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: spec.connections });
  const latencyUs = createHistogram();
  const prefix = spec.idPrefix ?? 't';
  const start = spec.idStart ?? 0;
  const [before, after] = spec.path.includes('{id}') ? (spec.path.split('{id}') as [string, string]) : [spec.path, ''];
  let sent = 0;
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  let outstanding = 0;
  let drained: () => void = () => {};
  const one = () => {
    const path = `${before}${prefix}${start + sent}${after}`;
    sent++;
    outstanding++;
    const at = performance.now();
    const done = (status: number) => {
      if (status >= 200 && status < 300) {
        ok++;
        latencyUs.record(Math.max(1, Math.round((performance.now() - at) * 1000)));
      } else if (status > 0) non2xx++;
      else errors++;
      if (--outstanding === 0) drained();
    };
    get(`${spec.url}${path}`, { agent }, (res) => {
      res.resume();
      res.once('end', () => done(res.statusCode ?? 0));
    }).once('error', () => done(0));
  };
  const began = performance.now();
  const seconds = spec.durationSeconds;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = (performance.now() - began) / 1000;
      const due = Math.floor(Math.min(elapsed, seconds) * spec.rate) - sent;
      for (let i = 0; i < due; i++) one();
      if (elapsed >= seconds) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  if (outstanding > 0) await new Promise<void>((resolve) => (drained = resolve));
  agent.destroy();
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    rps: ok / seconds,
    p50: ms(latencyUs.percentile(50)),
    p90: ms(latencyUs.percentile(90)),
    p99: ms(latencyUs.percentile(99)),
    meanLatency: ms(latencyUs.mean),
    maxLatency: ms(latencyUs.max),
    ok,
    non2xx,
    errors,
    timeouts: 0,
    durationSeconds: seconds,
    idsUsed: sent,
  };
}
