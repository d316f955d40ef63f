/**
 * Start-up: the secure default for the management listener, the warning when it is exposed without a token, the
 * bounds shown by --help and the README, and start-up errors that name their cause in one line on stderr with a
 * non-zero exit. Every error comes from a real cause: a closed port, an unknown host, a Redis with a password, a
 * directory a non-root user cannot write, a port another listener holds.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configBounds, exposureWarnings, isLoopback, loadConfig } from '../src/server/config.ts';
import { freePort } from './support/ports.ts';
import { type RedisServer, startRedis } from './support/redis.ts';
import { runCli, SERVE_ENV, startServer } from './support/server.ts';

const ROOT = resolve(import.meta.dirname, '..');
const TOKEN = 'tok-0123456789abcdef-secret';

/** Runs the CLI on loopback until it exits; resolves to its exit code and output. */
const runServe = (env: Record<string, string>, options: { uid?: number; gid?: number } = {}) =>
  runCli([], { ...SERVE_ENV, ...env }, { ...options, timeoutMs: 20_000 });

/** The one line a failed start must print: exactly one non-empty stderr line, prefixed with the program name. */
function oneLine(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^captcha-callback-monitor: /);
  return lines[0]!;
}

function listenOn(port: number, host = '127.0.0.1'): Promise<Server> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(port, host, () => ok(srv));
  });
}

/** Sends one RESP command on a fresh connection; resolves with the first reply line. */
function redisCommand(port: number, args: readonly string[]): Promise<string> {
  return new Promise((ok, fail) => {
    const socket = connect({ host: '127.0.0.1', port });
    let text = '';
    socket.on('data', (c: Buffer) => {
      text += c.toString();
      const end = text.indexOf('\r\n');
      if (end >= 0) {
        socket.destroy();
        ok(text.slice(0, end));
      }
    });
    socket.on('error', fail);
    socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  });
}

/** A connection attempt: 'connected', or the error code. */
function tryConnect(host: string, port: number): Promise<string> {
  return new Promise((ok) => {
    const socket = connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      ok('timeout');
    }, 2000);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      ok('connected');
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      ok(e.code ?? e.message);
    });
  });
}

describe('secure default: the management listener binds loopback unless configured', () => {
  it('defaults MANAGEMENT_HOST to 127.0.0.1 (the public HOST stays 0.0.0.0: solvers must reach it)', () => {
    expect(loadConfig({})).toMatchObject({ MANAGEMENT_HOST: '127.0.0.1', HOST: '0.0.0.0' });
  });

  it('a receiver started without MANAGEMENT_HOST serves /metrics on loopback only, and warns about nothing', async () => {
    // An empty value counts as unset, so this runs with the default.
    const server = await startServer({ MANAGEMENT_HOST: '' });
    try {
      const listening = server
        .logs()
        .split('\n')
        .find((l) => l.includes('"msg":"listening"'));
      expect(JSON.parse(listening!).management.address).toBe('127.0.0.1');
      expect((await fetch(`http://127.0.0.1:${server.managementPort}/metrics`)).status).toBe(200);
      // From another address of this machine, if it has one, the port is closed.
      const other = Object.values(networkInterfaces())
        .flat()
        .find((a) => a && a.family === 'IPv4' && !a.internal);
      if (other) expect(await tryConnect(other.address, server.managementPort)).toBe('ECONNREFUSED');
    } finally {
      await server.stop();
    }
    expect(server.logs()).not.toContain('"level":40');
  });

  it('a non-loopback MANAGEMENT_HOST without API_TOKEN logs one warning naming the variable; with a token, none', async () => {
    // The warning comes before the "listening" line startServer waits for; the logs are read after a clean exit.
    const exposed = await startServer({ MANAGEMENT_HOST: '0.0.0.0' });
    await exposed.stop();
    const logs = exposed.logs();
    const warnings = logs
      .split('\n')
      .filter((l) => l.includes('"level":40'))
      .map((l) => JSON.parse(l) as { variable: string; msg: string });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ variable: 'MANAGEMENT_HOST' });
    expect(warnings[0]!.msg).toContain('MANAGEMENT_HOST=0.0.0.0');
    expect(warnings[0]!.msg).toContain('API_TOKEN');
    expect(warnings[0]!.msg).toMatch(/port \d+/);
    expect(warnings[0]!.msg).not.toContain('port 0 ');

    const guarded = await startServer({ MANAGEMENT_HOST: '0.0.0.0', API_TOKEN: TOKEN });
    await guarded.stop();
    const guardedLogs = guarded.logs();
    expect(guardedLogs).not.toContain('"level":40');
    expect(guardedLogs).not.toContain(TOKEN);
  });

  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['localhost', true],
    ['::1', true],
    ['[::1]', true],
    ['0.0.0.0', false],
    ['::', false],
    ['10.0.0.5', false],
    ['128.0.0.1', false],
  ])('isLoopback(%s) is %s', (host, loopback) => {
    expect(isLoopback(host)).toBe(loopback);
    expect(exposureWarnings(loadConfig({ MANAGEMENT_HOST: host })).length).toBe(loopback ? 0 : 1);
  });
});

describe('bounds in --help and the README configuration table', () => {
  const expected: Record<string, string> = {
    PORT: '0-65535 (integer)',
    MANAGEMENT_PORT: '0-65535 (integer)',
    DELIVERY_TIMEOUT: '1-604800',
    RETENTION: '≥ 60',
    API_TOKEN: '16-256 characters; A-Z a-z 0-9 _ ~ . -',
    CALLBACK_SECRET: '16-256 characters; A-Z a-z 0-9 _ ~ . -',
    HEADERS_TIMEOUT_MS: '≥ 1 (integer); ≤ REQUEST_TIMEOUT_MS',
    LOG_LEVEL: 'one of fatal, error, warn, info, debug, trace, silent',
  };

  it('are read from the schema and match what validation enforces', () => {
    for (const [name, bounds] of Object.entries(expected)) {
      expect(configBounds(name as never), name).toBe(bounds);
    }
    // The edges: the bound itself passes, one step past it is refused.
    expect(loadConfig({ RETENTION: '60' }).RETENTION).toBe(60);
    expect(() => loadConfig({ RETENTION: '59' })).toThrow(/RETENTION/);
    expect(() => loadConfig({ API_TOKEN: 'a'.repeat(15) })).toThrow(/API_TOKEN/);
    expect(loadConfig({ API_TOKEN: 'a'.repeat(16) }).API_TOKEN).toHaveLength(16);
  });

  it('--help shows each bound beside its variable', async () => {
    const help = (await runCli(['--help'])).stdout;
    for (const [name, bounds] of Object.entries(expected)) {
      const line = help.split('\n').find((l) => l.trimStart().startsWith(`${name} `));
      expect(line, name).toContain(`[${bounds}]`);
    }
  });

  it('the README table has a bounds column with the same text', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    for (const [name, bounds] of Object.entries(expected)) {
      expect(readme, name).toMatch(
        new RegExp(`^\\| \`${name}\` \\| [^|]+ \\| ${bounds.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\|`, 'm'),
      );
    }
  });
});

describe('start-up errors name their cause in one line on stderr, with a non-zero exit', () => {
  let redis: RedisServer;
  const PASSWORD = 'redis-pass-0123456789';
  beforeAll(async () => {
    redis = await startRedis();
    expect(await redisCommand(redis.port, ['CONFIG', 'SET', 'requirepass', PASSWORD])).toBe('+OK');
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('Redis on a closed port: host, port and "connection refused"', async () => {
    const port = await freePort();
    const r = await runServe({ STORE_URL: `redis://127.0.0.1:${port}/0` });
    expect(r.code).not.toBe(0);
    const line = oneLine(r.stderr);
    expect(line).toContain('STORE_URL');
    expect(line).toContain(`127.0.0.1:${port}`);
    expect(line).toContain('connection refused');
  });

  it('Redis on an unknown host: the host name and "unknown host"', async () => {
    // .invalid never resolves (RFC 2606).
    const r = await runServe({ STORE_URL: 'redis://no-such-redis.invalid:6379/0' });
    expect(r.code).not.toBe(0);
    const line = oneLine(r.stderr);
    expect(line).toContain('no-such-redis.invalid');
    expect(line).toContain('unknown host');
  });

  it('Redis with a password: "authentication required" without one, "authentication failed" with a wrong one; the password is never shown', async () => {
    const none = await runServe({ STORE_URL: `redis://127.0.0.1:${redis.port}/0` });
    expect(none.code).not.toBe(0);
    expect(oneLine(none.stderr)).toContain('authentication required');

    const wrong = await runServe({ STORE_URL: `redis://:wrong-password-xyz@127.0.0.1:${redis.port}/0` });
    expect(wrong.code).not.toBe(0);
    const line = oneLine(wrong.stderr);
    expect(line).toContain(`127.0.0.1:${redis.port}`);
    expect(line).toContain('authentication failed');
    expect(line).not.toContain('wrong-password-xyz');

    // The right one starts (the diagnosis above runs only when opening fails).
    const server = await startServer({ STORE_URL: `redis://:${PASSWORD}@127.0.0.1:${redis.port}/0` });
    await server.stop();
    expect(server.logs()).not.toContain(PASSWORD);
  });

  it('Redis database out of range: refused at start-up with the database number, never written to database 0', async () => {
    const r = await runServe({ STORE_URL: `redis://:${PASSWORD}@127.0.0.1:${redis.port}/99` });
    expect(r.code).not.toBe(0);
    const line = oneLine(r.stderr);
    expect(line).toContain(`127.0.0.1:${redis.port}`);
    expect(line).toContain('database 99');
    expect(line).not.toContain(PASSWORD);
  });

  it.skipIf(process.getuid?.() !== 0)(
    'SQLite in a directory the user cannot write: the path, the OS reason and the uid (run as nobody, uid 65534)',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ccm-ro-'));
      chmodSync(dir, 0o755); // owned by root: nobody may enter but not write
      try {
        for (const file of [join(dir, 'callbacks.db'), join(dir, 'sub', 'callbacks.db')]) {
          const r = await runServe({ STORE_URL: `sqlite:${file}` }, { uid: 65534, gid: 65534 });
          expect(r.code, r.stderr).not.toBe(0);
          const line = oneLine(r.stderr);
          expect(line).toContain(file);
          expect(line).toContain('EACCES');
          expect(line).toContain('uid 65534');
          expect(line).toContain(`${dir} is owned by uid 0`);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it('a port another listener holds: the variable and the port, for PORT and for MANAGEMENT_PORT', async () => {
    const port = await freePort();
    const holder = await listenOn(port);
    try {
      const pub = await runServe({ STORE_URL: 'memory:', PORT: String(port) });
      expect(pub.code).not.toBe(0);
      const pubLine = oneLine(pub.stderr);
      expect(pubLine).toContain(`PORT=${port}`);
      expect(pubLine).not.toContain('MANAGEMENT_PORT');
      expect(pubLine).toContain('already in use');

      const mgmt = await runServe({
        STORE_URL: 'memory:',
        MANAGEMENT_PORT: String(port),
        MANAGEMENT_HOST: '127.0.0.1',
      });
      expect(mgmt.code).not.toBe(0);
      const mgmtLine = oneLine(mgmt.stderr);
      expect(mgmtLine).toContain(`MANAGEMENT_PORT=${port}`);
      expect(mgmtLine).toContain('already in use');
    } finally {
      holder.close();
    }
  });
});
