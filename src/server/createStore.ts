import { lookup } from 'node:dns/promises';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { dirname, resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import type { TaskStore } from '@captcha-callback-monitor/koa/internal';
import { MemoryTaskStore, RedisTaskStore, SqliteTaskStore } from '@captcha-callback-monitor/koa/internal';
import { redactUrlCredentials } from './redact.ts';

const USAGE = 'use memory:, sqlite:<path>, sqlite::memory: or redis://host:port/db';

/**
 * Opens the store a `STORE_URL` names: `memory:`, `sqlite:<path>` / `sqlite::memory:`, `redis://host:port/db`
 * (also `rediss://` for TLS, credentials as `redis://user:password@host`, and `?prefix=` for the key prefix).
 * Throws with a message naming the URL's problem; the server reports it against `STORE_URL`. A Redis that cannot be
 * reached within a couple of seconds is an error too: starting a receiver that can store nothing helps no one.
 */
export async function createStore(url: string): Promise<TaskStore> {
  if (url === 'memory:') return new MemoryTaskStore();
  if (url.startsWith('sqlite:')) {
    const path = sqlitePath(url.slice('sqlite:'.length));
    try {
      return new SqliteTaskStore(path);
    } catch (error) {
      throw new StoreOpenError(sqliteOpenProblem(path, error));
    }
  }
  if (url.startsWith('redis://') || url.startsWith('rediss://')) {
    const { connectUrl, keyPrefix } = redisTarget(url);
    try {
      return await RedisTaskStore.open(connectUrl, keyPrefix === undefined ? {} : { keyPrefix });
    } catch (error) {
      throw new StoreOpenError(await redisOpenProblem(connectUrl, error));
    }
  }
  throw new Error(`unsupported store URL scheme in "${redactUrlCredentials(url)}" (${USAGE})`);
}

/** A store that could not be opened, with a one-line message naming where and why (never a password). */
export class StoreOpenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreOpenError';
  }
}

const oneLine = (text: string) => text.replace(/\s*\n\s*/g, '; ');

function whoAmI(): string {
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  return uid === undefined ? 'this user' : `uid ${uid}, gid ${gid}`;
}

/** What went wrong opening a SQLite file: the absolute path, the OS reason (checked directly) and the process's uid. */
function sqliteOpenProblem(path: string, error: unknown): string {
  const abs = resolve(path);
  const err = error as NodeJS.ErrnoException & { errstr?: string };
  const dir = dirname(abs);
  const owner = (p: string) => {
    try {
      const st = statSync(p);
      return `owned by uid ${st.uid}, mode ${(st.mode & 0o777).toString(8).padStart(3, '0')}`;
    } catch {
      return 'not readable';
    }
  };
  // SQLite says only "unable to open database file": find the OS reason by asking for the access it needs.
  let reason =
    err.code && err.syscall
      ? `${err.code}: ${err.syscall === 'mkdir' ? 'cannot create the directory' : err.syscall} ${err.path ?? dir}`
      : undefined;
  if (reason === undefined) {
    const target = existsSync(abs) ? abs : dir;
    try {
      accessSync(target, target === abs ? constants.R_OK | constants.W_OK : constants.W_OK | constants.X_OK);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'error';
      reason = `${code}: ${target === abs ? 'the file' : 'the directory'} ${target} is not writable by this process`;
    }
  }
  const detail = reason ?? oneLine(err.message ?? String(error));
  const hint =
    reason !== undefined && /EACCES|EPERM/.test(reason)
      ? `; ${nearestDir(dir)} is ${owner(nearestDir(dir))} (a bind-mounted data directory must be writable by the receiver's uid, 1000 in the image)`
      : reason !== undefined && /EROFS/.test(reason)
        ? '; the file system is read-only'
        : '';
  return `cannot open SQLite database ${abs}: ${detail} (running as ${whoAmI()})${hint}`;
}

/** `dir` or its nearest ancestor that exists (the one whose permissions matter). */
function nearestDir(dir: string): string {
  let d = dir;
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  return d;
}

/**
 * Why Redis could not be reached, found by asking step by step (the client itself only says "Connection is closed"):
 * the host name, the TCP connection, then AUTH, PING and SELECT. Runs only after opening failed.
 */
async function redisOpenProblem(connectUrl: string, error: unknown): Promise<string> {
  const url = new URL(connectUrl);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 6379);
  const where = `Redis at ${host}:${port}`;
  try {
    await lookup(host);
  } catch (e) {
    return `cannot reach ${where}: unknown host "${host}" (${(e as NodeJS.ErrnoException).code ?? 'DNS lookup failed'})`;
  }
  let socket: Socket;
  try {
    socket = await openSocket(host, port, url.protocol === 'rediss:', 2000);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    const why =
      code === 'ECONNREFUSED'
        ? 'connection refused (nothing listens on that port)'
        : code === 'ETIMEDOUT'
          ? 'no answer within 2 s (a firewall, or the wrong host)'
          : code;
    return `cannot reach ${where}: ${why}`;
  }
  try {
    const user = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    if (password !== '') {
      const reply = await command(socket, user === '' ? ['AUTH', password] : ['AUTH', user, password]);
      if (reply.startsWith('-')) return `cannot use ${where}: authentication failed (${redisError(reply)})`;
    }
    const pong = await command(socket, ['PING']);
    if (pong.startsWith('-NOAUTH') || pong.startsWith('-NOPERM')) {
      return `cannot use ${where}: authentication required (${redisError(pong)}); put the password in STORE_URL, redis://:password@host:port/db`;
    }
    if (pong.startsWith('-')) return `cannot use ${where}: ${redisError(pong)}`;
    const db = url.pathname.replace(/^\//, '');
    if (db !== '' && db !== '0') {
      const selected = await command(socket, ['SELECT', db]);
      if (selected.startsWith('-')) return `cannot use ${where}: database ${db}: ${redisError(selected)}`;
    }
  } catch (e) {
    return `cannot use ${where}: ${(e as Error).message}`;
  } finally {
    socket.destroy();
  }
  // Everything answered when asked again: report what the store saw.
  return `cannot use ${where}: ${oneLine((error as Error).message ?? String(error))}`;
}

function openSocket(host: string, port: number, tls: boolean, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tls ? tlsConnect({ host, port, servername: host }) : netConnect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    socket.once(tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Sends one RESP command and resolves with the first reply line (`+OK`, `-ERR …`, …). */
function command(socket: Socket, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => done(new Error('no reply within 2 s')), 2000);
    const onData = (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const end = text.indexOf('\r\n');
      if (end >= 0) done(undefined, text.slice(0, end));
    };
    const onClose = () => done(new Error('the server closed the connection'));
    function done(error?: Error, line?: string) {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
      if (error) reject(error);
      else resolve(line ?? '');
    }
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
    socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  });
}

/** A Redis error reply without the leading `-`, cut short (Redis never echoes the password in it). */
function redisError(reply: string): string {
  return reply.slice(1, 200);
}

export function sqlitePath(rest: string): string {
  if (rest === ':memory:') return rest;
  // `sqlite:///abs/file.db` (URL style) means the absolute path; `sqlite://x` would read as a host, so refuse it.
  if (rest.startsWith('//')) {
    if (rest.startsWith('///')) return rest.slice(2);
    throw new Error(`"sqlite:${rest}" names a host; write sqlite:<path> or sqlite:///absolute/path`);
  }
  if (rest === '') throw new Error(`"sqlite:" needs a file path (${USAGE})`);
  return rest;
}

export function redisTarget(url: string): { connectUrl: string; keyPrefix: string | undefined } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`"${redactUrlCredentials(url)}" is not a valid URL (${USAGE})`);
  }
  if (parsed.hostname === '') throw new Error(`"${redactUrlCredentials(url)}" has no host (${USAGE})`);
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) {
    throw new Error(
      `"${redactUrlCredentials(url)}": the path must be a database number, e.g. redis://localhost:6379/0`,
    );
  }
  const keyPrefix = parsed.searchParams.get('prefix') ?? undefined;
  if (keyPrefix === '') throw new Error(`"${redactUrlCredentials(url)}": prefix must not be empty`);
  // ioredis turns every query parameter into a client option: pass on only what it should see.
  parsed.searchParams.delete('prefix');
  return { connectUrl: parsed.toString(), keyPrefix };
}
