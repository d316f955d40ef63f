import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { announcedPorts, stopChild } from '../../scripts/lib/childProcess.ts';
import type { LoadResult, LoadSpec } from '../loadgen.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Every child this process started; none may outlive it (an orphaned server would skew the next run). */
const children = new Set<ChildProcess>();
function killChildren(): void {
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    c.kill('SIGCONT');
    c.kill('SIGKILL');
  }
}
process.once('exit', killChildren);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    killChildren();
    process.exit(130);
  });
}
function track<C extends ChildProcess>(child: C): C {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
const LOADGEN = fileURLToPath(new URL('../loadgen.ts', import.meta.url));

export interface Peer {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly managementPort: number | undefined;
  readonly info: Record<string, unknown>;
  logs(): string;
  /** SIGSTOP / SIGCONT: a peer not being measured must not take CPU from the one that is (sweepers, GC). */
  pause(): void;
  resume(): void;
  /** Resident set and its peak, from /proc (bytes). */
  memory(): { rss: number; peak: number };
  /** CPU time (user + system) the process has used so far, in microseconds (clock-tick resolution). */
  cpuMicros(): number;
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly script: string;
  readonly env?: Record<string, string>;
  readonly nodeArgs?: readonly string[];
  readonly timeoutMs?: number;
}

/**
 * Starts one server as its own child process and resolves once it says where it listens: either a bench server's
 * `{"ready":true,"port":…}` line or the receiver CLI's `"msg":"listening"` log line.
 */
export function startPeer(options: StartOptions): Promise<Peer> {
  const child = track(
    spawn(process.execPath, [...sourceCondition(options.script), ...(options.nodeArgs ?? []), options.script], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOST: '127.0.0.1',
        MANAGEMENT_HOST: '127.0.0.1',
        PORT: '0',
        MANAGEMENT_PORT: '0',
        LOG_LEVEL: 'warn',
        ...options.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let output = '';
  let ready = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise<Peer>((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${options.script} ${why}:\n${output.slice(-2000)}`));
    };
    const timer = setTimeout(() => fail('did not become ready in time'), options.timeoutMs ?? 30_000);
    child.once('exit', (code, signal) => {
      if (!ready) fail(`exited (${code ?? signal}) before it was ready`);
    });
    child.stderr?.on('data', (c: Buffer) => {
      output += c.toString('utf8');
    });
    child.stdout?.on('data', (c: Buffer) => {
      output += c.toString('utf8');
      if (ready) return;
      for (const line of output.split('\n')) {
        const announced = announcedPorts(line);
        if (!announced) continue;
        const { port, managementPort, info: parsed } = announced;
        ready = true;
        clearTimeout(timer);
        const pid = child.pid!;
        resolve({
          child,
          pid,
          port,
          managementPort,
          info: parsed,
          logs: () => output,
          pause: () => void child.kill('SIGSTOP'),
          resume: () => void child.kill('SIGCONT'),
          memory: () => procMemory(pid),
          cpuMicros: () => procCpuMicros(pid),
          async stop() {
            await stopChild(child, exited);
          },
        });
        return;
      }
    });
  });
}

export function procMemory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process from /proc/<pid>/stat (or of one thread, given its stat file), in microseconds. */
export function procCpuMicros(pid: number, statFile = `/proc/${pid}/stat`): number {
  const stat = readFileSync(statFile, 'utf8');
  // Fields after the parenthesised command name (which may contain spaces); utime and stime are fields 14 and 15.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(rest[11]) + Number(rest[12])) * 1e6) / CLK_TCK;
}

/**
 * A TypeScript child loads the workspace packages from their sources (the `ccm-source` export condition); a compiled
 * one (dist/, as `npm start` runs it) loads their compiled dist/.
 */
function sourceCondition(script: string): string[] {
  return script.endsWith('.ts') ? ['--conditions=ccm-source'] : [];
}

/** Spawns a bench child that prints one JSON line (its last) and exits 0; resolves to that line parsed. */
function jsonChild<T>(args: string[], env: NodeJS.ProcessEnv | undefined, label: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = track(spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString('utf8');
    });
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString('utf8');
    });
    child.once('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{')) return reject(new Error(`${label} failed (${code}): ${err}${out}`));
      resolve(JSON.parse(line) as T);
    });
  });
}

/** Runs the load generator as a separate process and resolves to its result. */
export function runLoad(spec: LoadSpec): Promise<LoadResult> {
  return jsonChild<LoadResult>([LOADGEN, JSON.stringify(spec)], undefined, 'load generator');
}

/** Runs a one-shot bench child that prints one JSON line and exits. */
export function runJsonChild<T>(script: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<T> {
  return jsonChild<T>(
    [...sourceCondition(script), ...nodeArgs, script],
    { PATH: process.env.PATH ?? '', ...env },
    script,
  );
}

/** Registers ids `${prefix}${from}` … `${prefix}${to - 1}` through `POST /tasks`, 10,000 per request. */
export async function registerPool(peer: Peer, prefix: string, from: number, to: number): Promise<void> {
  const base = `http://127.0.0.1:${peer.managementPort}`;
  for (let i = from; i < to; i += 10_000) {
    const ids: string[] = [];
    for (let j = i; j < Math.min(to, i + 10_000); j++) ids.push(`${prefix}${j}`);
    const res = await fetch(`${base}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(ids),
    });
    if (res.status !== 201) throw new Error(`POST /tasks answered ${res.status}: ${await res.text()}`);
  }
}
