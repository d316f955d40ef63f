/**
 * Bench app sink for forwarding: answers every POST 204 and records, per forward, the time from the receiver's
 * receipt of the callback (`data.received_at` in the payload, ms precision) to this request's arrival: the forward
 * latency as the app sees it (it includes the receiver's commit before the 200, so it slightly overstates
 * "acknowledged → received"). Both processes read the same clock. `GET /stats` → {count, p50, p90, p99, max} in ms;
 * `POST /reset` starts over. No signature check: the tests verify signatures; this measures time only.
 */
import { createServer } from 'node:http';
import { createHistogram } from 'node:perf_hooks';
import { announce, exitOnSignal } from '../lib/announce.ts';

let latency = createHistogram();
let count = 0;
const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    const body = JSON.stringify({
      count,
      p50: count ? latency.percentile(50) : null,
      p90: count ? latency.percentile(90) : null,
      p99: count ? latency.percentile(99) : null,
      max: count ? latency.max : null,
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
    return;
  }
  if (req.url === '/reset') {
    latency = createHistogram();
    count = 0;
    res.writeHead(204);
    res.end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const arrived = Date.now();
    try {
      const received = Date.parse(
        (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { data: { received_at: string } }).data.received_at,
      );
      // The histogram takes integers ≥ 1: whole milliseconds (the payload's precision), 0 ms recorded as 1.
      latency.record(Math.max(1, arrived - received));
      count++;
    } catch {
      // not a forward
    }
    res.writeHead(204);
    res.end();
  });
});
server.keepAliveTimeout = 10_000;
exitOnSignal();
server.listen(0, '127.0.0.1', () => announce({ port: (server.address() as { port: number }).port }));
