/**
 * Helpers for the hostile-input tests (test/hostile.*.test.ts): raw-socket and keep-alive HTTP clients that never
 * throw (every outcome becomes data), a bounded-concurrency pool, the metric-series bound derived from the contract,
 * task API helpers and process sampling. Loopback only.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { Agent, type ClientRequest, type IncomingMessage, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import {
  CALLBACK_STATUS_CODES,
  CONTRACT,
  ERROR_TYPES,
  FAILURE_REASONS,
  FORMATS,
  FORWARD_OUTCOMES,
  type InstrumentSpec,
  LABEL,
  OUTCOMES,
  PROM,
  SOLVER_ENDPOINTS,
  SOLVER_REQUEST_OUTCOMES,
} from '../../packages/koa/src/metrics/contract.ts';
import type { RunningServer } from './server.ts';

export const LOOPBACK = '127.0.0.1';

/** What one exchange ended with: a status, or the reason there was none. */
export interface Exchange {
  readonly status: number | null;
  /** Error code (ECONNRESET, EPIPE, …), `closed` (closed without a response) or `timeout`. */
  readonly error?: string;
  /** Response body (only read by `httpExchange`, cut at 64 KiB). */
  readonly body?: string;
  /** True when the request went out on a kept-alive socket that had served a request before. */
  readonly reused?: boolean;
}

/**
 * Writes `data` on a fresh connection and resolves with the status line of the first response, then destroys the
 * socket. Never rejects. Does not half-close (an HTTP server may abort a request whose client sent FIN).
 */
export function rawExchange(port: number, data: Buffer | readonly Buffer[], timeoutMs = 10_000): Promise<Exchange> {
  return new Promise((resolve) => {
    let done = false;
    let head = '';
    const socket: Socket = connect({ host: LOOPBACK, port });
    const finish = (result: Exchange) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ status: null, error: 'timeout' }), timeoutMs);
    socket.on('connect', () => {
      for (const chunk of Array.isArray(data) ? data : [data]) socket.write(chunk);
    });
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      if (m) finish({ status: Number(m[1]) });
      else if (head.length > 64 || (head.length >= 8 && !head.startsWith('HTTP/1.'))) {
        finish({ status: null, error: `not HTTP: ${JSON.stringify(head.slice(0, 32))}` });
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => finish({ status: null, error: error.code ?? error.message }));
    socket.on('close', () => finish({ status: null, error: 'closed' }));
  });
}

/** A raw connection `watchedSocket` opened, and what the server did with it so far. */
export interface WatchedSocket {
  readonly socket: Socket;
  /** Date.now() when it was opened. */
  readonly openedAt: number;
  /** The client's port, once connected. */
  localPort?: number;
  /** Status line of whatever the server answered, once read (reading sockets only). */
  status?: number;
  /** Error code (ECONNRESET, EPIPE, …) or message. */
  error?: string;
  /** Date.now() when it closed (reading sockets only). */
  closedAt?: number;
}

/**
 * Opens a loopback connection that writes `head` once connected and records what comes of it. Never throws. With
 * `read: false` it is paused before any data arrives and never reads (so it sees neither an answer nor the close).
 */
export function watchedSocket(port: number, head: string | Buffer, { read = true } = {}): WatchedSocket {
  const socket = connect({ host: LOOPBACK, port });
  if (!read) socket.pause();
  const conn: WatchedSocket = { socket, openedAt: Date.now() };
  socket.on('connect', () => {
    conn.localPort = socket.localPort;
    socket.write(head);
  });
  socket.on('error', (e: NodeJS.ErrnoException) => {
    conn.error = e.code ?? e.message;
  });
  if (!read) return conn;
  let text = '';
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1');
    const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
    if (m && conn.status === undefined) conn.status = Number(m[1]);
  });
  socket.on('close', () => {
    conn.closedAt = Date.now();
  });
  return conn;
}

export interface HttpCase {
  readonly method: string;
  /** Request target as sent; characters U+0080-U+00FF go out as single (latin1) bytes, i.e. invalid UTF-8. */
  readonly path: string;
  readonly headers?: Record<string, string | number>;
  readonly body?: Buffer;
}

/**
 * One request through `agent` (keep-alive). Resolves with the status as soon as the response head arrives (a later
 * socket error, as when the server closes after a 413 while the upload is still going, does not matter then). A reset
 * on a reused keep-alive socket before any response is retried once, as Node's docs advise for that race.
 */
export async function httpExchange(
  agent: Agent,
  port: number,
  c: HttpCase,
  options: { readBody?: boolean; timeoutMs?: number } = {},
): Promise<Exchange> {
  const first = await httpOnce(agent, port, c, options);
  if (first.status === null && first.reused && (first.error === 'ECONNRESET' || first.error === 'EPIPE')) {
    return httpOnce(agent, port, c, options);
  }
  return first;
}

function httpOnce(
  agent: Agent,
  port: number,
  c: HttpCase,
  { readBody = false, timeoutMs = 15_000 }: { readBody?: boolean; timeoutMs?: number },
): Promise<Exchange> {
  return new Promise((resolve) => {
    let done = false;
    let reused = false;
    let req: ClientRequest | undefined;
    const finish = (result: Exchange) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ ...result, reused });
    };
    const timer = setTimeout(() => {
      req?.destroy();
      finish({ status: null, error: 'timeout' });
    }, timeoutMs);
    const onResponse = (res: IncomingMessage) => {
      const status = res.statusCode ?? null;
      if (!readBody) {
        res.resume();
        res.on('error', () => {});
        finish({ status });
        return;
      }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => {
        if (body.length < 65_536) body += s;
      });
      res.on('end', () => finish({ status, body }));
      res.on('error', () => finish({ status, body }));
    };
    try {
      req = request(
        { agent, host: LOOPBACK, port, method: c.method, path: c.path, headers: c.headers ?? {} },
        onResponse,
      );
    } catch (error) {
      // node:http refused to send it (an invalid method, path or header): a generator bug, reported as data.
      finish({ status: null, error: `client refused: ${(error as Error).message}` });
      return;
    }
    const sent = req;
    sent.on('socket', () => {
      reused = sent.reusedSocket;
    });
    sent.on('error', (error: NodeJS.ErrnoException) => finish({ status: null, error: error.code ?? error.message }));
    if (c.body !== undefined) sent.end(c.body);
    else sent.end();
  });
}

/** Runs `fn` over `items` with at most `concurrency` in flight; results in input order. */
export async function pool<T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

/** The closed value set of each label the contract uses, as Prometheus shows them. */
export const LABEL_VALUES: Readonly<Record<string, readonly string[]>> = {
  [LABEL.outcome]: OUTCOMES,
  [LABEL.format]: FORMATS,
  [LABEL.errorType]: ERROR_TYPES,
  [LABEL.statusCode]: CALLBACK_STATUS_CODES.map(String),
  [LABEL.reason]: FAILURE_REASONS,
};

/**
 * Labels whose closed set depends on the instrument: `outcome` of solver requests and of forwards has sets of its own.
 * `solver` takes the configured solver names, a bounded set of configuration: the servers these checks run against
 * configure none, so no solver series may appear there.
 */
const INSTRUMENT_LABEL_VALUES: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>> = {
  [PROM.solverRequestsTotal]: { [LABEL.outcome]: SOLVER_REQUEST_OUTCOMES, [LABEL.endpoint]: SOLVER_ENDPOINTS },
  captcha_solver_request_duration: { [LABEL.endpoint]: SOLVER_ENDPOINTS },
  [PROM.forwardAttemptsTotal]: { [LABEL.outcome]: FORWARD_OUTCOMES },
  captcha_forward_duration: { [LABEL.outcome]: FORWARD_OUTCOMES },
};
const CONFIGURED_SOLVERS: readonly string[] = [];

/** The closed value set of one label of one instrument. */
export function labelValuesOf(spec: InstrumentSpec, label: string): readonly string[] | undefined {
  if (label === LABEL.solver) return CONFIGURED_SOLVERS;
  return INSTRUMENT_LABEL_VALUES[spec.prom]?.[label] ?? LABEL_VALUES[label];
}

/** Series one instrument can ever have: the product of its labels' closed sets, × (buckets + `+Inf` + sum + count). */
export function seriesBoundOf(spec: InstrumentSpec): number {
  let combos = 1;
  for (const label of spec.labels) {
    const values = labelValuesOf(spec, label);
    if (!values) throw new Error(`label ${label} of ${spec.prom} has no closed value set in the contract`);
    combos *= values.length;
  }
  return spec.kind === 'histogram' ? combos * ((spec.buckets?.length ?? 0) + 3) : combos;
}

/** Upper bound on `captcha_*` series, computed from the contract's closed attribute sets. */
export function contractSeriesBound(): number {
  return CONTRACT.reduce((sum, spec) => sum + seriesBoundOf(spec), 0);
}

/**
 * Checks the `captcha_*` series on a /metrics page against the contract: every series belongs to a contract
 * instrument, carries only its labels, and every label value is in the closed set. Returns the problems found and the
 * number of `captcha_*` series.
 */
export function checkSeries(metricsText: string): { count: number; problems: string[] } {
  const problems: string[] = [];
  let count = 0;
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/;
  for (const raw of metricsText.split('\n')) {
    if (raw === '' || raw.startsWith('#') || !raw.startsWith('captcha_')) continue;
    count++;
    const m = line.exec(raw);
    if (!m) {
      problems.push(`unparsable series line: ${raw.slice(0, 200)}`);
      continue;
    }
    const name = m[1]!;
    const spec = CONTRACT.find((s) =>
      s.kind === 'histogram'
        ? [`${s.prom}_bucket`, `${s.prom}_sum`, `${s.prom}_count`].includes(name)
        : s.prom === name,
    );
    if (!spec) {
      problems.push(`series outside the contract: ${name}`);
      continue;
    }
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)];
    for (const [, key, value] of labels) {
      if (key === 'le' && name.endsWith('_bucket')) continue;
      if (!spec.labels.includes(key!)) problems.push(`${name} carries label ${key} outside the contract`);
      else if (!labelValuesOf(spec, key!)?.includes(value!))
        problems.push(`${name}{${key}="${value}"} is outside the set`);
    }
  }
  return { count, problems };
}

/** Sums every series of a metric name on a parsed /metrics map, optionally only those whose labels include `match`. */
export function sumSeries(metrics: Map<string, number>, name: string, match = ''): number {
  let sum = 0;
  for (const [series, value] of metrics) {
    const base = series.split('{')[0];
    if (base === name && series.includes(match)) sum += value;
  }
  return sum;
}

export interface TaskJson {
  id: string;
  state: string;
  registered: boolean;
  outcome: string | null;
  code: string | null;
  format: string | null;
  submitted_at: string | null;
  deadline_at: string | null;
  received_at: string | null;
  callbacks: number;
}

const auth = (token?: string): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});

/** Registers tasks with `POST /tasks` on the management port. */
export async function registerTasks(server: RunningServer, ids: readonly string[], token?: string): Promise<void> {
  const res = await fetch(`${server.managementUrl}/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth(token) },
    body: JSON.stringify(ids.map((id) => ({ id }))),
  });
  if (res.status !== 201) throw new Error(`POST /tasks answered ${res.status}: ${await res.text()}`);
}

/** Reads one task with `GET /tasks/:id` through `agent`; undefined on 404. */
export async function getTask(
  agent: Agent,
  server: RunningServer,
  id: string,
  token?: string,
): Promise<TaskJson | undefined> {
  const r = await httpExchange(
    agent,
    server.managementPort,
    { method: 'GET', path: `/tasks/${encodeURIComponent(id)}`, headers: auth(token) },
    { readBody: true },
  );
  if (r.status === 404) return undefined;
  if (r.status !== 200 || r.body === undefined) throw new Error(`GET /tasks/${id}: ${r.status ?? r.error}`);
  return JSON.parse(r.body) as TaskJson;
}

/** Resident set size of a process in KiB, from /proc/<pid>/status (Linux). */
export function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/** Open file descriptors of a process (Linux), or -1 when it cannot be read. */
export function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

/** The soft limit on open files for this process (Linux), from /proc/self/limits. */
export function fdLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]);
}

/** Nearest-rank percentile of a sample. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** A keep-alive agent for loopback test traffic. */
export function keepAliveAgent(maxSockets = 32): Agent {
  return new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
}

/** Counts occurrences into a plain object (for printing). */
export function tally<T>(items: Iterable<T>, key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) {
    const k = key(item);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** TCP states from /proc/net/tcp (Linux), by name. */
const TCP_STATES: Record<string, string> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
};

/**
 * States of the loopback client sockets connected to `serverPort`, by the client's local port. Lets a test see that the
 * server closed a connection (client side in CLOSE_WAIT, or gone after a reset) without reading from it.
 */
export function clientSocketStates(serverPort: number): Map<number, string> {
  const out = new Map<number, string>();
  const remote = `0100007F:${serverPort.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 4 || cols[2] !== remote) continue;
    const local = cols[1]!.split(':')[1]!;
    out.set(Number.parseInt(local, 16), TCP_STATES[cols[3]!] ?? cols[3]!);
  }
  return out;
}

/**
 * The client ports of the loopback connections to `serverPort` that process `pid` still holds a descriptor for,
 * read on the server's side: its socket inodes (/proc/<pid>/fd) matched against the server-side rows of /proc/net/tcp.
 * A connection the server has destroyed is not in the set, whatever the client does (an orphaned socket the kernel
 * still keeps in FIN-WAIT-2 has inode 0, so it does not count as held).
 */
export function serverHeldConnections(pid: number, serverPort: number): Set<number> {
  const inodes = new Set<string>();
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return new Set();
  }
  for (const name of names) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${name}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed while listing
    }
  }
  const local = `0100007F:${serverPort.toString(16).toUpperCase().padStart(4, '0')}`;
  const held = new Set<number>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 10 || cols[1] !== local || cols[3] === '0A') continue;
    if (inodes.has(cols[9]!)) held.add(Number.parseInt(cols[2]!.split(':')[1]!, 16));
  }
  return held;
}

/** One callback a load generator sent, and what came of it. */
export interface SentCallback {
  readonly id: string;
  readonly code: string;
  readonly status: number | null;
  readonly error?: string;
  /** True when it went out on a kept-alive socket that had served a request before. */
  readonly reused?: boolean;
  /** performance.now() when the request was handed to the socket, and when its outcome was known. */
  readonly sentAt: number;
  readonly doneAt: number;
}

/**
 * Sends valid GET callbacks with unique ids (`<prefix>-<n>`) and distinctive codes from `concurrency` workers until
 * `until()` is true, each worker pausing `pauseMs` between requests. Never throws.
 */
export async function callbackLoad(
  port: number,
  options: { prefix: string; concurrency: number; until: () => boolean; agent: Agent; pauseMs?: number },
): Promise<SentCallback[]> {
  const sent: SentCallback[] = [];
  let n = 0;
  const worker = async () => {
    while (!options.until()) {
      const id = `${options.prefix}-${n++}`;
      const code = `solution-${id}-${Math.random().toString(36).slice(2, 10)}`;
      const sentAt = performance.now();
      const r = await httpExchange(options.agent, port, { method: 'GET', path: `/callback?id=${id}&code=${code}` });
      sent.push({
        id,
        code,
        status: r.status,
        ...(r.error ? { error: r.error } : {}),
        ...(r.reused === undefined ? {} : { reused: r.reused }),
        sentAt,
        doneAt: performance.now(),
      });
      if (options.pauseMs) await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return sent;
}
