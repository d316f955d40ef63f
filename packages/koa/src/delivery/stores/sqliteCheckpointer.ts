import { Worker } from 'node:worker_threads';

// CommonJS, evaluated in the worker: its own connection to the same WAL file, checkpointing on a timer.
const SOURCE = `
const { DatabaseSync } = require('node:sqlite');
const { workerData, parentPort } = require('node:worker_threads');
const { openSync, closeSync, fdatasyncSync } = require('node:fs');
const db = new DatabaseSync(workerData.path, { timeout: 1000 });
const dbFile = openSync(workerData.path, 'r');
const passive = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
let holding = false;
const timer = setInterval(() => {
  if (holding) return;
  try {
    const { log } = passive.get();
    if (log >= workerData.rewindFrames) {
      // What the writer waits for is the last pass: the pages that arrived during the one before it, plus the fsync
      // of the database file that SQLite does only when a pass reaches the end of the log, i.e. never under steady
      // writes until then. So: flush the database file here first, then a few passes in a row (each copies what
      // arrived during the one before) to shrink the rest.
      try { fdatasyncSync(dbFile); } catch { /* it only shortens the hold */ }
      for (let i = 0; i < 4; i++) {
        const started = performance.now();
        passive.get();
        if (performance.now() - started < 1) break;
      }
      holding = true;
      parentPort.postMessage('hold');
    }
  } catch { /* busy or failing disk: the next tick tries again */ }
}, workerData.intervalMs);
parentPort.on('message', (message) => {
  if (message === 'held') {
    // No commit can land now, so this pass copies the last frames and the writer's next commit rewinds the log.
    try { passive.get(); } catch { /* the next tick tries again */ }
    holding = false;
    parentPort.postMessage('release');
    return;
  }
  clearInterval(timer);
  db.close();
  closeSync(dbFile);
  parentPort.close();
});
`;

/** 64 MiB of 4 KiB pages. */
export const DEFAULT_REWIND_FRAMES = 16_384;

export interface Checkpointer {
  stop(): Promise<void>;
}

export interface CheckpointerOptions {
  /** How often the worker checkpoints, ms. Default 250. */
  readonly intervalMs?: number;
  /** WAL frames (pages) past which the log is rewound (see `startCheckpointer`). Default 16384: 64 MiB of 4 KiB pages. */
  readonly rewindFrames?: number;
  /** Longest the writer is held back for a rewind, ms, should the worker not answer. Default 100. */
  readonly maxHoldMs?: number;
}

export interface CheckpointerHooks {
  /** The worker failed: the caller turns auto-checkpoint back on so the WAL cannot grow without bound. */
  readonly onFailure: (error: unknown) => void;
  /** Stop committing until `resume`: synchronous, and called between two commits (never inside one). */
  readonly pause: () => void;
  readonly resume: () => void;
}

/**
 * Runs WAL checkpoints on a worker thread. With SQLite's default auto-checkpoint, the commit that crosses 1000 WAL
 * pages copies the WAL into the database inside that request, on the event loop: a multi-millisecond stall for every
 * request queued behind it, so the caller turns auto-checkpoint off on its own connection.
 *
 * A passive checkpoint never blocks the writer, but SQLite rewinds the log to its start only when a commit finds it
 * fully copied; under steady traffic a commit always lands while a pass runs, so the log (and the file) would grow
 * for as long as the traffic lasts. Past `rewindFrames` the worker therefore asks the writer to hold its commits,
 * runs one more pass (after a few back-to-back passes, only what arrived during the last: well under a
 * millisecond of copying) and releases it; callbacks that
 * arrive meanwhile wait in the group-commit batch, and the event loop never blocks.
 */
export function startCheckpointer(
  path: string,
  hooks: CheckpointerHooks,
  options: CheckpointerOptions = {},
): Checkpointer {
  const intervalMs = positiveInteger('intervalMs', options.intervalMs ?? 250);
  const rewindFrames = positiveInteger('rewindFrames', options.rewindFrames ?? DEFAULT_REWIND_FRAMES);
  const maxHoldMs = positiveInteger('maxHoldMs', options.maxHoldMs ?? 100);
  const worker = new Worker(SOURCE, { eval: true, workerData: { path, intervalMs, rewindFrames } });
  worker.unref();
  let stopping = false;
  let holdTimer: NodeJS.Timeout | undefined;
  const release = () => {
    if (holdTimer === undefined) return;
    clearTimeout(holdTimer);
    holdTimer = undefined;
    hooks.resume();
  };
  worker.on('message', (message) => {
    if (message === 'release') release();
    else if (message === 'hold' && !stopping && holdTimer === undefined) {
      hooks.pause();
      holdTimer = setTimeout(release, maxHoldMs);
      worker.postMessage('held');
    }
  });
  worker.on('error', (error) => {
    release();
    hooks.onFailure(error);
  });
  worker.on('exit', (code) => {
    release();
    if (!stopping) hooks.onFailure(new Error(`checkpoint worker exited with code ${code}`));
  });
  return {
    async stop() {
      if (stopping) return;
      stopping = true;
      release();
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

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(`checkpoint.${name} must be a positive integer, got ${value}`);
  }
  return value;
}
