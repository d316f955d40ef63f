import { Worker } from 'node:worker_threads';

// CommonJS, evaluated in the worker: its own connection to the same WAL file, checkpointing on a timer.
const SOURCE = `
const { DatabaseSync } = require('node:sqlite');
const { workerData, parentPort } = require('node:worker_threads');
const db = new DatabaseSync(workerData.path, { timeout: 1000 });
const timer = setInterval(() => {
  try { db.exec('PRAGMA wal_checkpoint(PASSIVE)'); } catch { /* busy or failing disk: the next tick tries again */ }
}, workerData.intervalMs);
parentPort.on('message', () => { clearInterval(timer); db.close(); parentPort.close(); });
`;

export interface Checkpointer {
  stop(): Promise<void>;
}

/**
 * Runs WAL checkpoints on a worker thread. With SQLite's default auto-checkpoint, the commit that crosses 1000 WAL
 * pages copies the WAL into the database inside that request, on the event loop: a multi-millisecond stall for every
 * request queued behind it. The caller turns auto-checkpoint off on its own connection and, should the worker ever
 * fail, `onFailure` lets it turn it back on so the WAL cannot grow without bound.
 */
export function startCheckpointer(path: string, onFailure: (error: unknown) => void, intervalMs = 250): Checkpointer {
  const worker = new Worker(SOURCE, { eval: true, workerData: { path, intervalMs } });
  worker.unref();
  let stopping = false;
  worker.on('error', (error) => onFailure(error));
  worker.on('exit', (code) => {
    if (!stopping) onFailure(new Error(`checkpoint worker exited with code ${code}`));
  });
  return {
    async stop() {
      if (stopping) return;
      stopping = true;
      // Referenced again while stopping, so a caller awaiting close() is not left pending by an emptied event loop.
      worker.ref();
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage('stop');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 1000)))]);
      clearTimeout(timer);
      await worker.terminate();
    },
  };
}
