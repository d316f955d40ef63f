/**
 * Hostile conditions, part 5: the store fails under load, and SIGTERM arrives under load, on the real server with its
 * default store (SQLite, a file in a temporary directory).
 *
 * How the write failure is made real, as root: file permissions do not stop root, a size-limited tmpfs needs mount
 * rights CI may not have, and deleting or replacing the database file does not stop a process that holds it open
 * (its writes go to the unlinked inode and succeed). What binds root too is RLIMIT_FSIZE: with the server's soft
 * file-size limit set to 0 (`prlimit --pid <server> --fsize=0:`), the kernel fails every write(2) the server makes
 * to a regular file with EFBIG (Node ignores SIGXFSZ), so SQLite's WAL append fails on COMMIT exactly as it would on
 * a full disk or an I/O error. Reads keep working. Raising the soft limit again (`--fsize=unlimited:`) ends the fault.
 * Only the server process is limited; its logs go to a pipe, which the limit does not touch.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import { requireBinary } from './support/binaries.ts';
import {
  callbackLoad,
  getTask,
  keepAliveAgent,
  LOOPBACK,
  registerTasks,
  type SentCallback,
  sumSeries,
  tally,
  type WatchedSocket,
  watchedSocket,
} from './support/hostile.ts';
import { waitFor } from './support/ports.ts';
import { parseMetrics, type RunningServer, scrape, startServer } from './support/server.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dirs: string[] = [];
const servers: RunningServer[] = [];

function tempDb(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ccm-hostile-faults-'));
  dirs.push(dir);
  return join(dir, 'callbacks.db');
}

async function start(env: Record<string, string>): Promise<RunningServer> {
  const server = await startServer(env);
  servers.push(server);
  return server;
}

afterAll(async () => {
  for (const s of servers) await s.kill();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Checks every id against the store: acknowledged ⇒ stored with its code; stored ⇒ acknowledged. */
async function audit(server: RunningServer, sent: readonly SentCallback[]) {
  const agent = keepAliveAgent(8);
  const lost: string[] = [];
  const storedUnacked: string[] = [];
  for (const s of sent) {
    const task = await getTask(agent, server, s.id);
    const stored = task?.code === s.code;
    if (s.status === 200 && !stored) lost.push(`${s.id} (${task ? `stored as ${task.state}/${task.code}` : 'absent'})`);
    if (s.status !== 200 && stored) storedUnacked.push(`${s.id} (${s.status ?? s.error})`);
  }
  agent.destroy();
  return { lost, storedUnacked };
}

function errorCount(metrics: Map<string, number>, type: string): number {
  return metrics.get(`${PROM.callbackErrorsTotal}{error_type="${type}"}`) ?? 0;
}

describe('the store refuses writes under load (RLIMIT_FSIZE on the server process)', () => {
  const prlimit = requireBinary('prlimit');

  it('answers 503 (never 200) while writes fail, /healthz says 503, counts store_unavailable, loses nothing, recovers', async () => {
    const db = tempDb();
    const server = await start({ STORE_URL: `sqlite:${db}` });
    const pid = server.process.pid!;
    const limit = (soft: string) => execFileSync(prlimit, ['--pid', String(pid), `--fsize=${soft}:`]);
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });

    // Registered tasks, so the fault also hits pending → delivered transitions, not only unregistered inserts.
    const registered = Array.from({ length: 300 }, (_, i) => `fault-${i}`);
    await registerTasks(server, registered);
    const before = parseMetrics(await scrape(server));

    // Steady traffic throughout: 8 workers, healthy → fault → healthy.
    let running = true;
    const load = callbackLoad(server.publicPort, {
      prefix: 'fault',
      concurrency: 8,
      until: () => !running,
      agent,
      pauseMs: 5,
    });
    await sleep(1500);
    const faultStart = performance.now();
    limit('0');
    // While the fault lasts: /healthz must turn 503 (the ping commits a heartbeat row).
    await waitFor(async () => (await fetch(`${server.publicUrl}/healthz`)).status === 503, 10_000, '/healthz 503');
    const healthzDuringFault = (await fetch(`${server.publicUrl}/healthz`)).status;
    await sleep(2000);
    const faultEnd = performance.now();
    limit('unlimited');
    await waitFor(
      async () => (await fetch(`${server.publicUrl}/healthz`)).status === 200,
      10_000,
      '/healthz 200 again',
    );
    const recoveredAt = performance.now();
    await sleep(1500);
    running = false;
    const sent = await load;
    agent.destroy();

    const after = parseMetrics(await scrape(server));
    const byStatus = tally(sent, (s) => String(s.status ?? s.error));
    const inFault = sent.filter((s) => s.sentAt > faultStart + 50 && s.doneAt < faultEnd);
    const afterFault = sent.filter((s) => s.sentAt > recoveredAt);
    const unavailable = sent.filter((s) => s.status === 503).length;
    const storeErrors = errorCount(after, 'store_unavailable') - errorCount(before, 'store_unavailable');
    console.log(
      `[hostile.faults] store fault under load: ${sent.length} callbacks, ${JSON.stringify(byStatus)}; ` +
        `${inFault.length} sent inside the fault window: ${JSON.stringify(tally(inFault, (s) => String(s.status ?? s.error)))}; ` +
        `store_unavailable +${storeErrors}; /healthz during fault ${healthzDuringFault}`,
    );

    // Only 200 and 503, never a connection error; inside the fault window only 503; after it only 200.
    expect(Object.keys(byStatus).sort()).toEqual(['200', '503']);
    expect(inFault.length).toBeGreaterThan(20);
    expect(inFault.filter((s) => s.status !== 503)).toEqual([]);
    expect(afterFault.length).toBeGreaterThan(20);
    expect(afterFault.filter((s) => s.status !== 200)).toEqual([]);
    expect(healthzDuringFault).toBe(503);
    // Every refusal was counted as store_unavailable (the /healthz probes are not callbacks and are not counted).
    expect(storeErrors).toBe(unavailable);
    expect(after.get(`${PROM.callbackDurationCount}{http_response_status_code="503"}`) ?? 0).toBe(unavailable);
    expect(sumSeries(after, PROM.callbacksTotal) - sumSeries(before, PROM.callbacksTotal)).toBe(
      sent.filter((s) => s.status === 200).length,
    );

    // Nothing acknowledged was lost; nothing refused was stored — now, and after a restart on the same file.
    const live = await audit(server, sent);
    expect(live).toEqual({ lost: [], storedUnacked: [] });
    expect(await server.stop()).toBe(0);
    const again = await start({ STORE_URL: `sqlite:${db}` });
    expect(await audit(again, sent)).toEqual({ lost: [], storedUnacked: [] });
    // The registered tasks whose callbacks were refused are still pending (not delivered, not lost).
    const probe = keepAliveAgent(2);
    const refusedRegistered = sent.find((s) => s.status === 503 && registered.includes(s.id));
    if (refusedRegistered) expect((await getTask(probe, again, refusedRegistered.id))?.state).toBe('pending');
    probe.destroy();
    await again.stop();
  }, 90_000);
});

type SlowPost = WatchedSocket & { readonly id: string; readonly code: string; finish(): void };

/** A form POST whose headers and first half of the body are sent now; `finish()` sends the rest. */
function slowPost(port: number, id: string): SlowPost {
  const code = `inflight-solution-${id}`;
  const body = `id=${id}&code=${code}`;
  const half = Math.floor(body.length / 2);
  const post = watchedSocket(
    port,
    `POST /callback HTTP/1.1\r\nHost: ${LOOPBACK}\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
      `Content-Length: ${body.length}\r\n\r\n${body.slice(0, half)}`,
  );
  return Object.assign(post, { id, code, finish: () => post.socket.write(body.slice(half)) });
}

describe('SIGTERM under load', () => {
  it('finishes in-flight callbacks, acknowledges nothing it did not store, and exits 0', async () => {
    const db = tempDb();
    const server = await start({ STORE_URL: `sqlite:${db}`, SHUTDOWN_TIMEOUT_MS: '10000' });
    // Fresh connections, as solvers make them; plus keep-alive traffic.
    const fresh = new Agent({ keepAlive: false, maxSockets: 16 });
    const kept = new Agent({ keepAlive: true, maxSockets: 4 });
    let running = true;
    const loads = [
      callbackLoad(server.publicPort, { prefix: 'term-fresh', concurrency: 12, until: () => !running, agent: fresh }),
      callbackLoad(server.publicPort, { prefix: 'term-kept', concurrency: 4, until: () => !running, agent: kept }),
    ];
    await sleep(1500);

    // Twenty requests certainly in flight: headers and half the body are in, the handler is reading the body.
    const inflight = Array.from({ length: 20 }, (_, i) => slowPost(server.publicPort, `term-inflight-${i}`));
    await sleep(300);
    const signalAt = performance.now();
    const exitCode = server.stop(); // SIGTERM, then wait for the exit
    await sleep(300);
    for (const p of inflight) p.finish();
    // Keep the load going past the signal until the listener is gone, then stop it.
    await sleep(1000);
    running = false;
    const sent = (await Promise.all(loads)).flat();
    const code = await exitCode;
    const exitedAfterMs = performance.now() - signalAt;
    await waitFor(
      () => inflight.every((p) => p.closedAt !== undefined || p.status !== undefined),
      5000,
      'in-flight answers',
    );
    fresh.destroy();
    kept.destroy();

    const before = sent.filter((s) => s.sentAt < signalAt);
    const afterSignal = sent.filter((s) => s.sentAt >= signalAt);
    const describe = (list: readonly SentCallback[]) => JSON.stringify(tally(list, (s) => String(s.status ?? s.error)));
    // Requests written before the signal that got no answer: how long before the signal each went out, and on which
    // kind of connection (a fresh one still in the accept queue, or an idle keep-alive one being closed).
    const unanswered = before
      .filter((s) => s.status === null)
      .map(
        (s) =>
          `${s.id.startsWith('term-kept') ? 'keep-alive' : 'fresh'} ${s.error} ${(signalAt - s.sentAt).toFixed(1)} ms before`,
      );
    console.log(
      `[hostile.faults] SIGTERM under load: exit ${code} after ${exitedAfterMs.toFixed(0)} ms; ` +
        `in-flight slow POSTs ${JSON.stringify(tally(inflight, (p) => String(p.status ?? p.error ?? 'none')))}; ` +
        `${before.length} sent before the signal ${describe(before)}, ${afterSignal.length} after ${describe(afterSignal)}` +
        (unanswered.length > 0 ? `\n  unanswered, sent before the signal: ${unanswered.join('; ')}` : ''),
    );

    expect(code).toBe(0);
    // Requests the server was already handling got their 200, after the signal.
    expect(inflight.map((p) => p.status ?? p.error ?? 'no answer')).toEqual(inflight.map(() => 200));
    // Whatever completed before the signal was answered 200 (nothing refused or reset while the server was up).
    expect(sent.filter((s) => s.doneAt < signalAt && s.status !== 200)).toEqual([]);
    // No request that had been on the wire for a second when the signal came was cut. (Requests written in the last
    // moments before it can still sit unread in the accept queue or arrive on a keep-alive connection as it is
    // closed as idle: the server never read them, cannot answer them and does not store them. The audit below
    // proves that: nothing stored went unacknowledged.)
    expect(before.filter((s) => s.status === null && signalAt - s.sentAt > 1000)).toEqual([]);
    // After the signal a request either completes (200) or never reaches a handler (refused/reset before being
    // read, which the server cannot answer and does not store): never any other status.
    expect(sent.filter((s) => s.status !== null && s.status !== 200)).toEqual([]);

    // Restart on the same file: every 200 is there with its code, and nothing is stored that was not acknowledged
    // (a stored-but-unanswered callback would be a request cut while in flight).
    const again = await start({ STORE_URL: `sqlite:${db}` });
    const all = [
      ...sent,
      ...inflight.map(
        (p): SentCallback => ({
          id: p.id,
          code: p.code,
          status: p.status ?? null,
          ...(p.error ? { error: p.error } : {}),
          sentAt: 0,
          doneAt: 0,
        }),
      ),
    ];
    expect(await audit(again, all)).toEqual({ lost: [], storedUnacked: [] });
    await again.stop();
  }, 90_000);
});
