import { MemoryTaskStore } from './stores/MemoryTaskStore.ts';
import { RedisTaskStore } from './stores/RedisTaskStore.ts';
import { SqliteTaskStore } from './stores/SqliteTaskStore.ts';
import type { TaskStore } from './TaskStore.ts';

const USAGE = 'use memory:, sqlite:<path>, sqlite::memory: or redis://host:port/db';

/**
 * Opens the store a `STORE_URL` names: `memory:`, `sqlite:<path>` / `sqlite::memory:`, `redis://host:port/db`
 * (also `rediss://` for TLS, credentials as `redis://user:password@host`, and `?prefix=` for the key prefix).
 * Throws with a message naming the URL's problem; the server reports it against `STORE_URL`. A Redis that cannot be
 * reached within a couple of seconds is an error too: starting a receiver that can store nothing helps no one.
 */
export async function createStore(url: string): Promise<TaskStore> {
  if (url === 'memory:') return new MemoryTaskStore();
  if (url.startsWith('sqlite:')) return new SqliteTaskStore(sqlitePath(url.slice('sqlite:'.length)));
  if (url.startsWith('redis://') || url.startsWith('rediss://')) {
    const { connectUrl, keyPrefix } = redisTarget(url);
    return RedisTaskStore.open(connectUrl, keyPrefix === undefined ? {} : { keyPrefix });
  }
  throw new Error(`unsupported store URL scheme in "${redact(url)}" (${USAGE})`);
}

function sqlitePath(rest: string): string {
  if (rest === ':memory:') return rest;
  // `sqlite:///abs/file.db` (URL style) means the absolute path; `sqlite://x` would read as a host, so refuse it.
  if (rest.startsWith('//')) {
    if (rest.startsWith('///')) return rest.slice(2);
    throw new Error(`"sqlite:${rest}" names a host; write sqlite:<path> or sqlite:///absolute/path`);
  }
  if (rest === '') throw new Error(`"sqlite:" needs a file path (${USAGE})`);
  return rest;
}

function redisTarget(url: string): { connectUrl: string; keyPrefix: string | undefined } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`"${redact(url)}" is not a valid URL (${USAGE})`);
  }
  if (parsed.hostname === '') throw new Error(`"${redact(url)}" has no host (${USAGE})`);
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) {
    throw new Error(`"${redact(url)}": the path must be a database number, e.g. redis://localhost:6379/0`);
  }
  const keyPrefix = parsed.searchParams.get('prefix') ?? undefined;
  if (keyPrefix === '') throw new Error(`"${redact(url)}": prefix must not be empty`);
  // ioredis turns every query parameter into a client option: pass on only what it should see.
  parsed.searchParams.delete('prefix');
  return { connectUrl: parsed.toString(), keyPrefix };
}

/** Error messages end up in logs: never echo a password. */
function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//[credentials]@');
}
