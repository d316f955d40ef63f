import { Redis } from 'ioredis';
import { redisTarget, sqlitePath } from '../server/createStore.ts';
import { MemoryRecoveryQueue, type RecoveryQueue } from './RecoveryQueue.ts';
import { RedisRecoveryQueue } from './RedisRecoveryQueue.ts';
import { SqliteRecoveryQueue } from './SqliteRecoveryQueue.ts';

/**
 * The recovery queue beside the store a `STORE_URL` names: `memory:` and `sqlite::memory:` (one process, nothing
 * to share) an in-process queue; `sqlite:<path>` a `recovery_queue` table in the same file on its own connection;
 * `redis://…` keys under the store's prefix on its own connection, so every instance on that Redis shares it. Call
 * after createStore (which has validated the URL and, for SQLite, created the file in WAL mode).
 */
export async function createRecoveryQueue(storeUrl: string): Promise<RecoveryQueue> {
  if (storeUrl === 'memory:') return new MemoryRecoveryQueue();
  if (storeUrl.startsWith('sqlite:')) {
    const path = sqlitePath(storeUrl.slice('sqlite:'.length));
    return path === ':memory:' ? new MemoryRecoveryQueue() : new SqliteRecoveryQueue(path);
  }
  if (storeUrl.startsWith('redis://') || storeUrl.startsWith('rediss://')) {
    const { connectUrl, keyPrefix } = redisTarget(storeUrl);
    const redis = new Redis(connectUrl, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 1000,
      connectTimeout: 2000,
      retryStrategy: (attempt) => Math.min(100 * attempt, 1000),
    });
    // Failures surface as rejected calls (the poller logs them); without a listener ioredis prints each reconnect.
    redis.on('error', () => {});
    try {
      await redis.connect();
      // As the store does: ioredis only reports a failed SELECT as an event and carries on in database 0.
      const db = redis.options.db ?? 0;
      if (db !== 0) await redis.select(db);
    } catch (error) {
      redis.disconnect();
      throw error;
    }
    return new RedisRecoveryQueue(redis, { prefix: keyPrefix ?? 'ccm:', ownsConnection: true });
  }
  throw new Error('unsupported STORE_URL for the recovery queue');
}
