import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireBinary } from './binaries.ts';
import { freePort, waitFor } from './ports.ts';

export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>/0` */
  readonly url: string;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its working directory. */
  stop(): Promise<void>;
  /**
   * Stops the server and starts a new one on the same port. By default nothing is persisted (`--save ''`, no AOF),
   * so the new server is empty: what a client sees after an outage of a cache-like Redis. With `{ appendOnly: true }`
   * the new server reloads the append-only file and has everything it acknowledged.
   */
  restart(): Promise<void>;
  /**
   * Stops the server but keeps the port and directory for a later `resume()`: an outage of unknown length. The data
   * survives into `resume()` only with `{ appendOnly: true }`.
   */
  kill(): Promise<void>;
  /** Starts the server again after `kill()`. */
  resume(): Promise<void>;
  /** SIGSTOP: the server keeps its connections open but answers nothing, like a hung host. */
  pause(): void;
  /** SIGCONT after `pause()`. */
  unpause(): void;
}

export interface RedisOptions {
  /**
   * Run with `appendonly yes` and `appendfsync always` (every write is fsynced before Redis answers), so data
   * survives `kill()` + `resume()` and `restart()`, as a durably configured production Redis would. Default false.
   */
  readonly appendOnly?: boolean;
}

/**
 * Starts a throwaway `redis-server` on a free loopback port and resolves once it answers PING. A missing binary
 * throws (the test fails; it never skips). Always `stop()` it in `afterAll`.
 */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const bin = requireBinary('redis-server');
  let port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ccm-redis-'));
  let child: ChildProcess | undefined;
  let output = '';

  const launch = async () => {
    output = '';
    const persistence = options.appendOnly
      ? ['--appendonly', 'yes', '--appendfsync', 'always']
      : ['--appendonly', 'no'];
    const args = ['--save', '', ...persistence, '--port', String(port), '--bind', '127.0.0.1', '--dir', dir];
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-4000);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    let exited = false;
    proc.once('exit', () => {
      exited = true;
    });
    try {
      // waitFor treats a throwing check as "not yet", so an exit ends the wait by answering true.
      await waitFor(async () => exited || (await sendPing(port)) === '+PONG', 10_000, `redis-server on port ${port}`);
      if (exited) throw new Error('exited');
    } catch (error) {
      proc.kill('SIGKILL');
      throw new Error(`redis-server did not start: ${(error as Error).message}\n${output}`);
    }
  };

  const halt = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    proc.kill('SIGCONT'); // a paused server only acts on SIGTERM once it runs again
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };

  // A port found free can be taken before redis-server binds it (a parallel test's outgoing connection may draw it):
  // then start again on another. Restarts (restart()) keep the port the first launch bound.
  for (let attempt = 1; ; attempt++) {
    try {
      await launch();
      break;
    } catch (error) {
      if (attempt >= 5 || !/already in use/i.test(output)) throw error;
      port = await freePort();
    }
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    async stop() {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await halt();
      await launch();
    },
    kill: halt,
    resume: launch,
    pause() {
      child?.kill('SIGSTOP');
    },
    unpause() {
      child?.kill('SIGCONT');
    },
  };
}

/** One PING over a raw socket, so the helper does not depend on the client under test. */
function sendPing(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let reply = '';
    socket.setTimeout(1000, () => socket.destroy(new Error('timeout')));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) {
        socket.end();
        resolve(reply.trim());
      }
    });
    socket.on('error', reject);
  });
}
