/**
 * CPU profile of the receiver under callback load: `node bench/profile.ts [--store sqlite|memory]
 * [--entry cli|bench] [--metrics on|off] [--forward off|all|missed] [--rate N] [--seconds N] [--out FILE]`.
 *
 * Starts the receiver (the real CLI by default) with `node --cpu-prof`, registers enough tasks that every callback
 * is a pending → delivered transition, drives it with the same separate-process load generator as `bench/run.ts`,
 * stops it with SIGTERM (the profile is written at exit), then summarises the .cpuprofile: where the busy time goes
 * by component (self time) and by function (self and inclusive), so the cost of each stage of the callback path is
 * visible, and the CPU each of the process's threads used during the load (per callback), so work moved off the
 * event loop (the forward worker, SQLite's and V8's helper threads) is counted too. `--forward all` forwards every
 * result to the bench app sink (bench/servers/forwardSink.ts) as the throughput bench's forwarding peer does;
 * `missed` runs the forwarder with nothing to forward. Writes the summary to --out when given.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { forwardEnv, SINK, sinkCount } from './lib/forwarding.ts';
import { ROOT, registerPool, runLoad, startPeer } from './lib/proc.ts';
import { threadCpuMicros } from './lib/threads.ts';

const { values: args } = parseArgs({
  options: {
    store: { type: 'string', default: 'sqlite' },
    entry: { type: 'string', default: 'cli' },
    metrics: { type: 'string', default: 'on' },
    forward: { type: 'string', default: 'off' },
    sampler: { type: 'string', default: 'on' },
    rate: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
  strict: true,
});

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const seconds = Number(args.seconds);
const rate = args.rate === undefined ? undefined : Number(args.rate);
if (rate !== undefined && !(Number.isInteger(rate) && rate > 0)) throw new Error('--rate must be a positive integer');
const dir = mkdtempSync(join(tmpdir(), 'ccm-prof-'));
const storeUrl = args.store === 'memory' ? 'memory:' : `sqlite:${join(dir, 'prof.db')}`;
const script = args.entry === 'bench' ? join(ROOT, 'bench/servers/receiver.ts') : join(ROOT, 'src/server/cli.ts');

if (!['off', 'all', 'missed'].includes(args.forward ?? '')) throw new Error('--forward must be off, all or missed');
// The sampler's own thread costs about a third of the event loop's CPU: leave it off to compare threads' CPU.
const sampling = args.sampler !== 'off';
const sink = args.forward === 'off' ? undefined : await startPeer({ script: SINK });
const peer = await startPeer({
  script,
  nodeArgs: sampling ? ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=200'] : [],
  env: {
    STORE_URL: storeUrl,
    DELIVERY_TIMEOUT: '3600',
    LOG_LEVEL: 'info',
    BENCH_METRICS: args.metrics ?? 'on',
    ...(sink ? forwardEnv(sink.port) : {}),
    ...(args.forward === 'missed' ? { FORWARD_EVENTS: 'missed' } : {}),
  },
});
const pool = 25_000 * (seconds + 2);
await registerPool(peer, 'p-', 0, pool);
await sleep(300);
// V8 stamps profile samples with CLOCK_MONOTONIC microseconds, the clock process.hrtime reads too: only samples
// taken while the load ran are summarised (start-up and the task registration above are left out).
const loadStartUs = Number(process.hrtime.bigint() / 1000n);
const threadsBefore = threadCpuMicros(peer.pid);
const sinkBefore = sink ? await sinkCount(sink) : 0;
const load = await runLoad({
  url: `http://127.0.0.1:${peer.port}`,
  path: '/callback?id={id}&code=03AGdBq24PBCbwiDRaS_MJ7Z49ta3Jw_9kQH3jD7QhLxv5TXa9LdUHcrL7Kp8hX1fnQmJ8Ps2cY5kxqD0RfKZhT6n',
  // --rate: a steady load, evenly spread (as the forward-latency bench sends it), instead of as fast as answered.
  ...(rate ? { connections: 20, rate, even: true } : { connections: 50 }),
  durationSeconds: seconds,
  idPrefix: 'p-',
  idStart: 0,
});
const loadEndUs = Number(process.hrtime.bigint() / 1000n);
const threadsAfter = threadCpuMicros(peer.pid);
const forwardedDuringLoad = sink ? (await sinkCount(sink)) - sinkBefore : 0;
await peer.stop();
await sink?.stop();
// One profile per thread (CPU.<date>.<time>.<pid>.<thread>.<n>.cpuprofile); thread 0 is the event loop.
const file = readdirSync(dir).find((f) => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(f));
if (sampling && !file) throw new Error(`no main-thread .cpuprofile written in ${dir}: ${readdirSync(dir).join(', ')}`);
const profile: CpuProfile = file
  ? (JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile)
  : { nodes: [], samples: [], timeDeltas: [], startTime: 0, endTime: 0 };
if (!args.keep) rmSync(dir, { recursive: true, force: true });

// ---------------------------------------------------------------------------------------------------------------
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const short = (url: string) =>
  url
    .replace(`file://${ROOT}`, '')
    .replace(/^.*node_modules\//, 'nm:')
    .replace(/^node:/, 'node:');
const key = (f: CallFrame) => `${f.functionName || '(anonymous)'} ${short(f.url)}:${f.lineNumber + 1}`;

/** Which component a frame belongs to. */
function component(f: CallFrame): string {
  const u = f.url;
  if (f.functionName === '(garbage collector)') return 'GC';
  if (f.functionName === '(idle)') return 'idle';
  if (f.functionName === '(program)') return '(program: native, not attributed)';
  if (u.includes('/src/')) return `ours: ${short(u).replace(/^\//, '')}`;
  if (u.includes('node_modules/')) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
    return `dep: ${m?.[1] ?? u}`;
  }
  if (u.startsWith('node:')) {
    if (u.includes('http') || u.includes('net') || u.includes('stream')) return 'node: http/net/streams';
    return 'node: other internals';
  }
  if (u === '') return `native: ${f.functionName}`;
  return short(u);
}

const selfByKey = new Map<string, number>();
const selfByComponent = new Map<string, number>();
const inclusive = new Map<string, number>();
let total = 0;
let idle = 0;
let at = profile.startTime;
for (let i = 0; i < profile.samples.length; i++) {
  at += profile.timeDeltas[i] ?? 0;
  if (at < loadStartUs || at > loadEndUs) continue;
  const dt = (profile.timeDeltas[i] ?? 0) / 1000; // ms
  const node = byId.get(profile.samples[i]!)!;
  total += dt;
  if (node.callFrame.functionName === '(idle)') {
    idle += dt;
    continue;
  }
  const k = key(node.callFrame);
  selfByKey.set(k, (selfByKey.get(k) ?? 0) + dt);
  const c = component(node.callFrame);
  // A native call (e.g. StatementSync.run) is charged to the component of the JS frame that called it.
  const charged = c.startsWith('native:')
    ? `${c} ← ${component(byId.get(parent.get(node.id)!)?.callFrame ?? node.callFrame)}`
    : c;
  selfByComponent.set(charged, (selfByComponent.get(charged) ?? 0) + dt);
  const seen = new Set<string>();
  for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
    const f = byId.get(id)!.callFrame;
    const fk = key(f);
    if (seen.has(fk)) continue;
    seen.add(fk);
    inclusive.set(fk, (inclusive.get(fk) ?? 0) + dt);
  }
}
const busy = total - idle;
const pct = (x: number) => `${((100 * x) / busy).toFixed(1)} %`;
const top = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n);

const commit = (() => {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
})();
const L: string[] = [];
L.push(
  `# CPU profile: receiver (${args.entry}, ${args.store}, metrics ${args.metrics}, forward ${args.forward}) under callback load`,
  '',
  `> Generated by \`node --conditions=ccm-source bench/profile.ts ${process.argv.slice(2).join(' ')}\` at commit ${commit}, ` +
    `${new Date().toISOString()}, Node ${process.version}, ${availableParallelism()} CPUs (shared with other work).`,
  '',
  `Load: ${Math.round(load.rps)} req/s, p50 ${load.p50} ms, p99 ${load.p99} ms over ${seconds} s (` +
    (rate ? `${rate} a second evenly spread, 20 connections` : '50 connections') +
    ', every ' +
    'callback a pending → delivered transition).' +
    (sink ? ` The app sink received ${forwardedDuringLoad} forwards during the load.` : '') +
    (sampling
      ? ` Samples taken while the load ran only: sampled ${(total / 1000).toFixed(1)} s, busy ${(busy / 1000).toFixed(1)} s ` +
        `(${((100 * busy) / total).toFixed(0)} %); shares below are of the event loop's busy time.`
      : ' Sampler off (--sampler off): threads only.'),
  '',
  '## CPU by thread during the load',
  '',
  '| thread | CPU, ms | µs per callback |',
  '| --- | ---: | ---: |',
);
const callbacks = Math.max(1, load.ok + load.non2xx);
let threadTotal = 0;
for (const [name, after] of [...threadsAfter].sort((a, b) => b[1] - a[1])) {
  const used = after - (threadsBefore.get(name) ?? 0);
  threadTotal += used;
  if (used > 0) L.push(`| ${name} | ${(used / 1000).toFixed(0)} | ${(used / callbacks).toFixed(1)} |`);
}
L.push(`| all threads | ${(threadTotal / 1000).toFixed(0)} | ${(threadTotal / callbacks).toFixed(1)} |`, '');
if (sampling) writeSections();
L.push('');
const md = L.join('\n');
process.stdout.write(`${md}\n`);
if (args.out) writeFileSync(args.out, md);

function writeSections(): void {
  // µs per callback next to each share, so two profiles (forwarding on and off, say) compare by cost, not by share.
  const perCallback = (ms: number) => ((1000 * ms) / callbacks).toFixed(1);
  L.push('## Self time by component', '', '| component | share | µs per callback |', '| --- | ---: | ---: |');
  for (const [k, v] of top(selfByComponent, 25))
    L.push(`| ${k.replace(/\|/g, '\\|')} | ${pct(v)} | ${perCallback(v)} |`);
  L.push('', '## Top functions by self time', '', '| function | self | µs per callback |', '| --- | ---: | ---: |');
  for (const [k, v] of top(selfByKey, 30)) L.push(`| \`${k}\` | ${pct(v)} | ${perCallback(v)} |`);
  L.push('', '## Inclusive time of the callback path (ours)', '', '| function | inclusive | µs per callback |');
  L.push('| --- | ---: | ---: |');
  for (const [k, v] of top(new Map([...inclusive].filter(([k]) => / (packages\/koa\/)?src\/| bench\//.test(k))), 40))
    L.push(`| \`${k}\` | ${pct(v)} | ${perCallback(v)} |`);
}
