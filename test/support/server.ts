import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { HealthReport } from '../../packages/koa/src/index.ts';
import { announcedPorts, stopChild } from '../../scripts/lib/childProcess.ts';

/** Node resolves the workspace packages to their TypeScript sources with this condition (see vitest.config.ts). */
export const SOURCE_CONDITION = '--conditions=ccm-source';
export const CLI = fileURLToPath(new URL('../../src/server/cli.ts', import.meta.url));

/**
 * The environment `startServer` gives the CLI beside PATH, unless `env` says otherwise: loopback listeners on
 * ephemeral ports, the memory store, the default log level. `runCli` callers that start the server spread it in.
 */
export const SERVE_ENV: Readonly<Record<string, string>> = {
  HOST: '127.0.0.1',
  MANAGEMENT_HOST: '127.0.0.1',
  PORT: '0',
  MANAGEMENT_PORT: '0',
  STORE_URL: 'memory:',
  LOG_LEVEL: 'info',
};

export interface NodeOptions {
  /** The child's whole environment; unset: this process's. */
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly uid?: number;
  readonly gid?: number;
  /** Default 'ignore'; 'pipe' to write to `child.stdin`. */
  readonly stdin?: 'ignore' | 'pipe';
}

/** What a process wrote and how it ended. */
export interface ProcessRun {
  /** The exit code; null when a signal ended it. */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout and stderr as they came, interleaved. */
  readonly output: string;
}

export interface NodeProcess {
  readonly child: ChildProcess;
  /** What it wrote so far. */
  stdout(): string;
  stderr(): string;
  /** stdout and stderr so far, interleaved as they came. */
  output(): string;
  /** Resolves once it has exited and both pipes are drained ('close', not 'exit', which can come first). */
  readonly done: Promise<ProcessRun>;
}

/** Starts `node --conditions=ccm-source …args` with stdout and stderr piped and collected. */
export function startNode(args: readonly string[], options: NodeOptions = {}): NodeProcess {
  const child = spawn(process.execPath, [SOURCE_CONDITION, ...args], {
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.gid ?? options.uid }),
    stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let output = '';
  child.stdout?.on('data', (c: Buffer) => {
    const text = c.toString('utf8');
    stdout += text;
    output += text;
  });
  child.stderr?.on('data', (c: Buffer) => {
    const text = c.toString('utf8');
    stderr += text;
    output += text;
  });
  const done = new Promise<ProcessRun>((resolve) =>
    child.once('close', (code) => resolve({ code, stdout, stderr, output })),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, output: () => output, done };
}

/** Runs `node --conditions=ccm-source …args` to completion; rejects, output attached, when it outlasts `timeoutMs`. */
export async function runNode(
  args: readonly string[],
  options: NodeOptions & { timeoutMs?: number } = {},
): Promise<ProcessRun> {
  const { timeoutMs = 60_000, ...rest } = options;
  const run = startNode(args, rest);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    run.child.kill('SIGKILL');
  }, timeoutMs);
  const result = await run.done;
  clearTimeout(timer);
  if (timedOut) throw new Error(`node ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${result.output}`);
  return result;
}

/** The CLI's environment: PATH, then `env` (nothing else of this process's). */
const cliEnv = (env: Readonly<Record<string, string>>) => ({ PATH: process.env.PATH ?? '', ...env });

/** Starts the real CLI (`node src/server/cli.ts …args`) with PATH and `env` as its whole environment. */
export function startCli(args: readonly string[], env: Readonly<Record<string, string>> = {}): NodeProcess {
  return startNode([CLI, ...args], { env: cliEnv(env) });
}

/**
 * Runs the real CLI (`node src/server/cli.ts …args`) to completion, with PATH and `env` as its whole environment;
 * rejects when it outlasts `timeoutMs` (default 60 s).
 */
export function runCli(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
  options: { timeoutMs?: number; uid?: number; gid?: number } = {},
): Promise<ProcessRun> {
  return runNode([CLI, ...args], { ...options, env: cliEnv(env) });
}

export interface RunningServer {
  readonly process: ChildProcess;
  readonly publicUrl: string;
  readonly managementUrl: string;
  readonly publicPort: number;
  readonly managementPort: number;
  /** Everything the process wrote to stdout and stderr so far. */
  logs(): string;
  /** SIGTERM, then waits for exit (SIGKILL after 15 s). Resolves to the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL, then waits for exit. */
  kill(): Promise<void>;
}

/**
 * Starts the real CLI (`node src/server/cli.ts`) as a child process on ephemeral loopback ports unless `env` says
 * otherwise, and resolves once its "listening" log line names the bound ports.
 */
export function startServer(env: Record<string, string> = {}, timeoutMs = 15_000): Promise<RunningServer> {
  const run = startCli([], { ...SERVE_ENV, ...env });
  const child = run.child;
  const exited = run.done.then((r) => r.code);
  return new Promise<RunningServer>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start within ${timeoutMs} ms:\n${run.output()}`));
    }, timeoutMs);
    const onData = () => {
      for (const line of run.output().split('\n')) {
        const announced = announcedPorts(line);
        if (announced?.info.msg !== 'listening' || announced.managementPort === undefined) continue;
        const { port: publicPort, managementPort } = announced;
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        const host = env.HOST ?? '127.0.0.1';
        const mhost = env.MANAGEMENT_HOST ?? '127.0.0.1';
        resolve({
          process: child,
          publicPort,
          managementPort,
          publicUrl: `http://${host}:${publicPort}`,
          managementUrl: `http://${mhost}:${managementPort}`,
          logs: run.output,
          async stop() {
            if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
            await stopChild(child, exited);
            return exited;
          },
          async kill() {
            if (child.exitCode !== null || child.signalCode !== null) return;
            child.kill('SIGKILL');
            await exited;
          },
        });
        return;
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${run.output()}`));
    });
  });
}

/** Reads `/metrics` from a running server. */
export async function scrape(server: Pick<RunningServer, 'managementUrl'>): Promise<string> {
  const res = await fetch(`${server.managementUrl}/metrics`);
  return res.text();
}

/** Reads `/health/callbacks` from a running server. */
export async function health(server: Pick<RunningServer, 'publicUrl'>): Promise<HealthReport> {
  const res = await fetch(`${server.publicUrl}/health/callbacks`);
  return (await res.json()) as HealthReport;
}

/** Parses Prometheus text into `series → value` (series = name plus its label set, as written). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    out.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return out;
}
