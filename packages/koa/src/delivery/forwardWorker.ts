/**
 * The forward worker thread's entry (started by forwardThread.ts, never imported): sends the forwards the main thread
 * hands it over the HTTP sender and answers with how each attempt ended. It touches no store: claims and settlements
 * stay on the main thread, with the store's own connection.
 */
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { AttemptResult } from './forwardHttp.ts';
import { HttpSender } from './forwardHttp.ts';
import type { ToMain, ToWorker, WorkerInit } from './forwardThread.ts';

const init = workerData as WorkerInit;
if (!parentPort) throw new Error('forwardWorker.ts runs as a worker thread only');
const port = parentPort;

// On Linux a nice value belongs to a thread, and setpriority(2) with pid 0 changes the calling thread only: this one,
// not the receiver's event loop. Elsewhere it would lower the whole process, so it is left alone there.
let niceness: number | null = null;
if (process.platform === 'linux' && init.niceness !== undefined) {
  try {
    setPriority(init.niceness);
    niceness = getPriority();
  } catch {
    niceness = null;
  }
}

const sender = new HttpSender(init.http);
let results: Array<[number, AttemptResult]> = [];
let flushScheduled = false;

/** Answers of one event-loop turn go back in one message. */
function answer(id: number, result: AttemptResult): void {
  results.push([id, result]);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(() => {
    flushScheduled = false;
    const done = results;
    results = [];
    port.postMessage({ kind: 'done', results: done } satisfies ToMain);
  });
}

port.on('message', (message: ToWorker) => {
  if (message.kind === 'send') {
    for (const [id, webhookId, body] of message.jobs) void sender.send(webhookId, body).then((r) => answer(id, r));
  } else if (message.kind === 'stop') {
    // Attempts in flight end within their timeout; their answers go out before the thread says it is done.
    void sender.close().then(() =>
      setImmediate(() => {
        port.postMessage({ kind: 'stopped' } satisfies ToMain);
        port.close();
      }),
    );
  } else if (message.kind === 'crash') {
    // Tests only: an uncaught error, exactly what a bug in this thread would do.
    setImmediate(() => {
      throw new Error('forward worker: crash requested');
    });
  }
});

port.postMessage({ kind: 'ready', niceness } satisfies ToMain);
