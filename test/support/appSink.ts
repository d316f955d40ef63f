/**
 * The app side of forwarding, as a separate process: an HTTP endpoint that records every request it gets (headers,
 * raw body, arrival time, the status it answered) as one JSON line appended to a file BEFORE it answers, so the record
 * survives the sink being killed and restarted on the same port ("down for a while").
 *
 * Behaviour per task id, from SINK_RULES (JSON): `fail` (answer 500 to the first N attempts; `retryAfter` adds that
 * header to a task's failed answers), `slow` (wait this many ms before answering), `gone` (always 410). Run:
 *   SINK_PORT=0 SINK_LOG=/tmp/x.jsonl SINK_RULES='{"fail":{"t1":2},"gone":["t9"]}' node test/support/appSink.ts
 * It prints `{"listening":<port>}` once bound.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';

interface Rules {
  readonly fail?: Record<string, number>;
  /** Per task id: the Retry-After value sent with its failed answers. */
  readonly retryAfter?: Record<string, string>;
  readonly slow?: Record<string, number>;
  readonly gone?: string[];
  /** Answer every request slowly by this many ms. */
  readonly slowAll?: number;
}

export interface SinkRecord {
  readonly at: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly taskId: string | null;
  readonly status: number;
  readonly pid: number;
}

const log = process.env.SINK_LOG ?? '';
const rules = JSON.parse(process.env.SINK_RULES ?? '{}') as Rules;
const seen = new Map<string, number>();
// Attempts already answered before a restart still count towards `fail`.
if (log && existsSync(log)) {
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    if (!line) continue;
    const r = JSON.parse(line) as SinkRecord;
    if (r.taskId) seen.set(r.taskId, (seen.get(r.taskId) ?? 0) + 1);
  }
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    let taskId: string | null = null;
    try {
      taskId = (JSON.parse(body) as { data?: { id?: string } }).data?.id ?? null;
    } catch {
      // recorded with no task id
    }
    const n = taskId === null ? 0 : (seen.get(taskId) ?? 0) + 1;
    if (taskId !== null) seen.set(taskId, n);
    let status = 200;
    const headers: Record<string, string> = {};
    if (taskId !== null && rules.gone?.includes(taskId)) status = 410;
    else if (taskId !== null && n <= (rules.fail?.[taskId] ?? 0)) {
      status = 500;
      const after = rules.retryAfter?.[taskId];
      if (after) headers['retry-after'] = after;
    }
    const record: SinkRecord = {
      at: Date.now(),
      headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])),
      body,
      taskId,
      status,
      pid: process.pid,
    };
    if (log) appendFileSync(log, `${JSON.stringify(record)}\n`);
    const delay = (taskId === null ? 0 : (rules.slow?.[taskId] ?? 0)) || (rules.slowAll ?? 0);
    setTimeout(() => {
      res.writeHead(status, { 'content-type': 'text/plain', ...headers });
      res.end(status === 200 ? 'ok' : 'no');
    }, delay);
  });
});
server.keepAliveTimeout = 1000;
server.listen(Number(process.env.SINK_PORT ?? 0), '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ listening: typeof address === 'object' && address ? address.port : 0 })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
