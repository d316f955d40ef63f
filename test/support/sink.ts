import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { SinkRecord } from './appSink.ts';
import { SOURCE_CONDITION } from './server.ts';

const SINK = fileURLToPath(new URL('./appSink.ts', import.meta.url));

export interface RunningSink {
  readonly port: number;
  readonly url: string;
  readonly process: ChildProcess;
  /** Every request recorded so far, by every sink process that wrote to this log (restarts included). */
  records(): SinkRecord[];
  /** SIGKILL and wait: the app is down (connections refused) until `startSink` runs again on the same port. */
  kill(): Promise<void>;
}

/** Starts test/support/appSink.ts as its own process; resolves once it listens. */
export function startSink(options: { log: string; rules?: object; port?: number }): Promise<RunningSink> {
  const child = spawn(process.execPath, [SOURCE_CONDITION, SINK], {
    env: {
      PATH: process.env.PATH ?? '',
      SINK_LOG: options.log,
      SINK_PORT: String(options.port ?? 0),
      SINK_RULES: JSON.stringify(options.rules ?? {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sink did not start:\n${output}`));
    }, 15_000);
    child.stderr?.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stdout?.on('data', (c: Buffer) => {
      output += c.toString();
      const m = /\{"listening":(\d+)\}/.exec(output);
      if (!m) return;
      clearTimeout(timer);
      const port = Number(m[1]);
      resolve({
        port,
        url: `http://127.0.0.1:${port}/hook`,
        process: child,
        records: () =>
          existsSync(options.log)
            ? readFileSync(options.log, 'utf8')
                .split('\n')
                .filter((l) => l !== '')
                .map((l) => JSON.parse(l) as SinkRecord)
            : [],
        async kill() {
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.kill('SIGKILL');
          await exited;
        },
      });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sink exited with ${code}:\n${output}`));
    });
  });
}
