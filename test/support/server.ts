import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Node resolves the workspace packages to their TypeScript sources with this condition (see vitest.config.ts). */
export const SOURCE_CONDITION = '--conditions=ccm-source';
export const CLI = fileURLToPath(new URL('../../src/server/cli.ts', import.meta.url));

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
  const child = spawn(process.execPath, [SOURCE_CONDITION, CLI], {
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      MANAGEMENT_HOST: '127.0.0.1',
      PORT: '0',
      MANAGEMENT_PORT: '0',
      STORE_URL: 'memory:',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise<RunningServer>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      for (const line of output.split('\n')) {
        if (!line.includes('"msg":"listening"')) continue;
        const parsed = JSON.parse(line) as { public: { port: number }; management: { port: number } };
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        child.stdout?.on('data', (c: Buffer) => {
          output += c.toString('utf8');
        });
        const host = env.HOST ?? '127.0.0.1';
        const mhost = env.MANAGEMENT_HOST ?? '127.0.0.1';
        resolve({
          process: child,
          publicPort: parsed.public.port,
          managementPort: parsed.management.port,
          publicUrl: `http://${host}:${parsed.public.port}`,
          managementUrl: `http://${mhost}:${parsed.management.port}`,
          logs: () => output,
          async stop() {
            if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
            child.kill('SIGTERM');
            const force = setTimeout(() => child.kill('SIGKILL'), 15_000);
            const code = await exited;
            clearTimeout(force);
            return code;
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
    child.stderr?.on('data', (c: Buffer) => {
      output += c.toString('utf8');
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${output}`));
    });
  });
}

/** Reads `/metrics` from a running server. */
export async function scrape(server: Pick<RunningServer, 'managementUrl'>): Promise<string> {
  const res = await fetch(`${server.managementUrl}/metrics`);
  return res.text();
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
