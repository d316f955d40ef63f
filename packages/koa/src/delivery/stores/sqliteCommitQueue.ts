import type { DatabaseSync } from 'node:sqlite';
import type { CallbackResult, CallbackTransition } from '../TaskStore.ts';
import {
  type Checkpointer,
  type CheckpointerOptions,
  DEFAULT_REWIND_FRAMES,
  startCheckpointer,
} from './sqliteCheckpointer.ts';

/** Runs `fn` in one write transaction, labelled `op` in its error; throws StoreUnavailableError. */
export type WriteTransaction = <T>(op: string, fn: () => T) => T;

/**
 * When the store's writes commit. Group commit: every callback that arrives in the same event-loop turn is applied
 * in ONE transaction, and each caller's promise resolves only after that COMMIT, so a result is still durable before
 * its 200. A commit (the WAL append and the lock round trip) costs far more than applying one row; sharing it is what
 * lets the receiver keep up with the solvers at full load. Callbacks for the same id in one batch apply in arrival
 * order, exactly as they would one transaction each. If the transaction fails, every callback in it is refused (none
 * acknowledged).
 *
 * WAL holds: while the checkpointer rewinds the log, nothing commits. Callbacks keep queueing in the batch and other
 * writes wait their turn; both run on resume.
 */
export class SqliteCommitQueue {
  readonly #write: WriteTransaction;
  /** Applies a batch of callbacks inside the caller's transaction: one transition per callback, in order. */
  readonly #applyBatch: (results: readonly CallbackResult[]) => CallbackTransition[];
  #flushScheduled = false;
  /** The checkpointer is rewinding the WAL: callbacks queue instead of committing (see sqliteCheckpointer.ts). */
  #paused = false;
  /** Other writes (register, expireDue, purge, ping) that arrived during a hold; run on resume, after the batch. */
  #heldWrites: Array<() => void> = [];
  #closing = false;
  /** Callbacks waiting for the next group commit. */
  #batch: Array<{
    readonly result: CallbackResult;
    readonly resolve: (t: CallbackTransition) => void;
    readonly reject: (e: unknown) => void;
  }> = [];

  constructor(write: WriteTransaction, applyBatch: (results: readonly CallbackResult[]) => CallbackTransition[]) {
    this.#write = write;
    this.#applyBatch = applyBatch;
  }

  /** Queues a callback for the next group commit; settles once that commit has succeeded or failed. */
  addCallback(result: CallbackResult): Promise<CallbackTransition> {
    return new Promise((resolve, reject) => {
      this.#batch.push({ result, resolve, reject });
      this.#scheduleFlush();
    });
  }

  /** Every write waits out a hold: any commit during it would leave the log unrewound. */
  writeWhenResumed<T>(op: string, fn: () => T): Promise<T> {
    if (!this.#paused || this.#closing) {
      try {
        return Promise.resolve(this.#write(op, fn));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return new Promise<T>((resolve, reject) => {
      this.#heldWrites.push(() => {
        try {
          resolve(this.#write(op, fn));
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  /** Holds every commit until `resume`. */
  pause(): void {
    this.#paused = true;
  }

  /**
   * The checkpointer has rewound the log (or given up): commit what queued meanwhile, callbacks first and right away,
   * so a sweep that waited cannot expire a task whose callback arrived before its deadline.
   */
  resume(): void {
    this.#paused = false;
    if (this.#batch.length > 0) this.#flushBatch();
    for (const run of this.#heldWrites.splice(0)) run();
  }

  /**
   * Before close: callbacks already queued get their commit (or their error) before the connection goes, even
   * mid-rewind; so do held writes, and every later write runs at once (and finds the store closed).
   */
  drain(): void {
    this.#closing = true;
    if (this.#batch.length > 0) this.#flushBatch();
    for (const run of this.#heldWrites.splice(0)) run();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#paused || this.#batch.length === 0) return;
    this.#flushScheduled = true;
    setImmediate(this.#flushBatch);
  }

  readonly #flushBatch = (): void => {
    this.#flushScheduled = false;
    // Held for a WAL rewind: the batch keeps growing and is committed on resume.
    if ((this.#paused && !this.#closing) || this.#batch.length === 0) return;
    const batch = this.#batch;
    this.#batch = [];
    let transitions: CallbackTransition[];
    try {
      transitions = this.#write('recordCallback', () => this.#applyBatch(batch.map((item) => item.result)));
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    for (const [i, item] of batch.entries()) item.resolve(transitions[i]!);
  };
}

/**
 * WAL checkpoints for a file store, on the worker thread, holding `queue` while the log is rewound. If the worker
 * fails, SQLite's own auto-checkpoint is turned back on (unless the store has closed) so the WAL cannot grow without
 * bound. Invalid checkpoint options close `db` before the error is thrown: nothing may keep the file open.
 */
export function startWalCheckpoints(
  db: DatabaseSync,
  path: string,
  queue: SqliteCommitQueue,
  isClosed: () => boolean,
  options: CheckpointerOptions | undefined,
): Checkpointer {
  // The checkpointer rewinds the log at `rewindFrames`, so the file is reused from its start at about that size.
  // journal_size_limit cuts it back after a rewind only beyond twice that (after a burst of registrations, say):
  // the first commit after a rewind does the cut, and freeing tens of MB of page cache there stalls the loop.
  const { page_size: pageSize } = db.prepare('PRAGMA page_size').get() as { page_size: number };
  // A WAL file is a 32-byte header, then frames of a 24-byte header and one page.
  const limit = 32 + 2 * (pageSize + 24) * (options?.rewindFrames ?? DEFAULT_REWIND_FRAMES);
  db.exec(`PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = ${Math.min(limit, 2 ** 40)};`);
  try {
    return startCheckpointer(
      path,
      {
        onFailure: () => {
          queue.resume();
          if (!isClosed()) db.exec('PRAGMA wal_autocheckpoint = 1000;');
        },
        pause: () => queue.pause(),
        resume: () => queue.resume(),
      },
      options,
    );
  } catch (error) {
    db.close();
    throw error;
  }
}
