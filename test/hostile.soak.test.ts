/**
 * Hostile conditions, part 3: a bounded soak. Mixed good and bad traffic at a steady rate against the real server
 * with its default store (SQLite in a temporary directory) and a short delivery deadline, so the sweeper, late and
 * missed tasks are exercised too. Samples the server's RSS (/proc/<pid>/status VmRSS) and reports its growth after
 * warm-up; checks every acknowledged callback is stored (GET /tasks/:id), the accounting adds up, and the p95 handling
 * latency from /health/callbacks stays under the healthy 500 ms.
 *
 * SOAK_SECONDS (default 60) sets the duration; SOAK_RATE (default 150) the requests per second.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  getTask,
  type HttpCase,
  httpExchange,
  keepAliveAgent,
  openFds,
  pool,
  rawExchange,
  registerTasks,
  rssKiB,
  tally,
} from './support/hostile.ts';
import { type RunningServer, startServer } from './support/server.ts';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const RATE = Number(process.env.SOAK_RATE ?? 150);
const WARMUP_SECONDS = Math.max(10, Math.round(SECONDS * 0.25));
const DELIVERY_TIMEOUT_S = 5;
const MAX_IN_FLIGHT = 64;
/** Generous: everything the soak stores in SQLite lives on disk; the heap must not grow with traffic. */
const RSS_GROWTH_BOUND_MIB = 64;
const HEALTHY_P95_MS = 500;

interface Ack {
  readonly id: string;
  readonly code: string;
}

type Planned = { kind: string; http?: HttpCase; raw?: Buffer; good?: Ack; duplicateOf?: Ack };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe(`soak: ${SECONDS} s of mixed traffic at ${RATE} req/s`, () => {
  let dir: string;
  let server: RunningServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ccm-hostile-soak-'));
    server = await startServer({
      STORE_URL: `sqlite:${join(dir, 'callbacks.db')}`,
      DELIVERY_TIMEOUT: String(DELIVERY_TIMEOUT_S),
    });
  });
  afterAll(async () => {
    await server?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it(
    'keeps memory flat after warm-up, stores every acknowledged callback, keeps p95 under 500 ms',
    async () => {
      const pid = server.process.pid!;
      const agent = keepAliveAgent(MAX_IN_FLIGHT);
      const port = server.publicPort;
      let serial = 0;
      let registeredSerial = 0;
      /** Registered, not yet called back: the next good callbacks take ids from here (some are left to be missed). */
      const waiting: string[] = [];
      /** Registered and left alone until the deadline passed: called back late. */
      const forLate: Array<{ id: string; dueAt: number }> = [];
      const acked: Ack[] = [];
      const firstAck = new Map<string, Ack>();
      const registered: string[] = [];

      const good = (id: string): Planned => {
        const code = `soak-solution-${id}-${serial}`;
        const format = serial % 4;
        const ack = { id, code };
        const http: HttpCase =
          format === 0
            ? { method: 'GET', path: `/callback?id=${id}&code=${code}` }
            : format === 1
              ? {
                  method: 'POST',
                  path: '/callback',
                  headers: { 'content-type': 'application/x-www-form-urlencoded' },
                  body: Buffer.from(`id=${id}&code=${code}`),
                }
              : format === 2
                ? { method: 'GET', path: `/callback?captcha_id=${id}&status=1&code=${code}` }
                : {
                    method: 'POST',
                    path: `/callback/${id}`,
                    headers: { 'content-type': 'application/json' },
                    body: Buffer.from(
                      JSON.stringify({ errorId: 0, status: 'ready', solution: { gRecaptchaResponse: code } }),
                    ),
                  };
        return { kind: `good:${['query', 'form', 'ucaptcha', 'json'][format]}`, http, good: ack };
      };
      const BAD: Array<() => Planned> = [
        () => ({ kind: 'bad:missing-code', http: { method: 'GET', path: `/callback?id=soak-bad-${serial}` } }),
        () => ({ kind: 'bad:repeated-id', http: { method: 'GET', path: '/callback?id=a&id=b&code=c' } }),
        () => ({ kind: 'bad:method', http: { method: 'PUT', path: '/callback?id=a&code=c' } }),
        () => ({
          kind: 'bad:media-type',
          http: {
            method: 'POST',
            path: '/callback',
            headers: { 'content-type': 'text/plain' },
            body: Buffer.from('id=a&code=c'),
          },
        }),
        () => ({
          kind: 'bad:json',
          http: {
            method: 'POST',
            path: '/callback/x1',
            headers: { 'content-type': 'application/json' },
            body: Buffer.from('{"solution":'),
          },
        }),
        () => ({ kind: 'bad:path', http: { method: 'GET', path: '/callback/a/b?code=c' } }),
        () => ({ kind: 'bad:outside', http: { method: 'GET', path: serial % 2 ? '/metrics' : '/wp-login.php' } }),
        () => ({ kind: 'bad:garbage', raw: Buffer.from(`\u0000${serial}\r\n\r\n`) }),
        () =>
          Math.floor(serial / 20) % 4 === 0
            ? {
                kind: 'bad:oversize-body',
                http: {
                  method: 'POST',
                  path: '/callback',
                  headers: { 'content-type': 'application/x-www-form-urlencoded' },
                  body: Buffer.alloc(70_000, 0x61),
                },
              }
            : { kind: 'bad:long-query', http: { method: 'GET', path: `/callback?id=a&code=${'q'.repeat(9000)}` } },
        () => ({ kind: 'health', http: { method: 'GET', path: '/health/callbacks' } }),
      ];

      /** 60 % good (registered on time, late, unregistered, duplicates), 40 % bad. */
      const plan = (now: number): Planned => {
        serial++;
        const r = serial % 20;
        if (r < 12) {
          const late = forLate[0];
          if (r === 0 && late && late.dueAt <= now) {
            forLate.shift();
            return { ...good(late.id), kind: 'good:late' };
          }
          if (r === 1 && acked.length > 0) {
            const first = firstAck.get(acked[(serial * 7919) % acked.length]!.id)!;
            return { ...good(first.id), kind: 'good:duplicate', duplicateOf: first };
          }
          // Registered tasks first; an unregistered id when none is waiting (stored all the same).
          const id = r % 3 === 0 || waiting.length === 0 ? `soak-unreg-${serial}` : waiting.shift()!;
          return good(id);
        }
        // Rotate through every bad kind: 8 bad slots per 20 requests, 10 kinds.
        return BAD[(r - 12 + Math.floor(serial / 20) * 8) % BAD.length]!();
      };

      const results: Array<{ kind: string; status: number | null; error?: string }> = [];
      const rss: Array<{ t: number; kib: number }> = [];
      const health: Array<{ t: number; p95: number; status: string }> = [];
      const fdsStart = openFds(pid);
      const started = performance.now();
      const elapsed = () => (performance.now() - started) / 1000;
      let inFlight = 0;
      let skipped = 0;

      const send = async (p: Planned) => {
        inFlight++;
        try {
          const r = p.raw
            ? await rawExchange(port, p.raw, 10_000)
            : await httpExchange(agent, port, p.http!, { timeoutMs: 10_000 });
          results.push({ kind: p.kind, status: r.status, ...(r.error ? { error: r.error } : {}) });
          if (p.good && r.status === 200) {
            if (!firstAck.has(p.good.id)) {
              firstAck.set(p.good.id, p.good);
              acked.push(p.good);
            }
          }
        } finally {
          inFlight--;
        }
      };

      // Registration: a batch of 10 tasks every second: 6 are called back soon, 2 after their deadline (late), and 2
      // never (missed).
      const registrar = (async () => {
        while (elapsed() < SECONDS) {
          const batch = Array.from({ length: 10 }, () => `soak-reg-${registeredSerial++}`);
          await registerTasks(server, batch);
          registered.push(...batch);
          const dueAt = performance.now() + (DELIVERY_TIMEOUT_S + 2) * 1000;
          forLate.push({ id: batch[0]!, dueAt }, { id: batch[1]!, dueAt });
          waiting.push(...batch.slice(4));
          await sleep(1000);
        }
      })();

      // Samplers: RSS every second, /health/callbacks every 2 s.
      const sampler = setInterval(() => {
        try {
          rss.push({ t: elapsed(), kib: rssKiB(pid) });
        } catch {
          // the process is gone; asserted below
        }
      }, 1000);
      const healthSampler = (async () => {
        while (elapsed() < SECONDS) {
          const r = await httpExchange(agent, port, { method: 'GET', path: '/health/callbacks' }, { readBody: true });
          if (r.status !== null && r.body) {
            const h = JSON.parse(r.body) as { p95_latency_ms: number; status: string };
            health.push({ t: elapsed(), p95: h.p95_latency_ms, status: h.status });
          }
          await sleep(2000);
        }
      })();

      // The steady schedule: every 20 ms, RATE/50 requests (fractions carried over), unless MAX_IN_FLIGHT are open.
      const pending = new Set<Promise<void>>();
      let credit = 0;
      while (elapsed() < SECONDS) {
        credit += RATE / 50;
        while (credit >= 1) {
          credit--;
          if (inFlight >= MAX_IN_FLIGHT) {
            skipped++;
            continue;
          }
          const p = send(plan(performance.now()));
          pending.add(p);
          void p.finally(() => pending.delete(p));
        }
        await sleep(20);
      }
      await Promise.all(pending);
      await registrar;
      await healthSampler;
      clearInterval(sampler);
      const duration = elapsed();

      // Audit: every acknowledged callback is stored with the code of its first acknowledgement.
      const audit = keepAliveAgent(16);
      const problems = (
        await pool(acked, 16, async (a) => {
          const task = await getTask(audit, server, a.id);
          return task?.code === a.code
            ? undefined
            : `${a.id}: expected ${a.code}, got ${task ? `${task.state}/${task.code}` : 'nothing'}`;
        })
      ).filter((x): x is string => x !== undefined);
      const finalHealth = JSON.parse(
        (await httpExchange(audit, port, { method: 'GET', path: '/health/callbacks' }, { readBody: true })).body ??
          '{}',
      ) as {
        p95_latency_ms: number;
        status: string;
        delivery: { delivered: number; missed: number; pending: number; late: number };
      };
      audit.destroy();
      agent.destroy();

      const warm = rss.filter((s) => s.t >= WARMUP_SECONDS);
      const atWarm = warm[0]?.kib ?? Number.NaN;
      const peak = Math.max(...warm.map((s) => s.kib));
      const last = warm.at(-1)?.kib ?? Number.NaN;
      const growthMiB = (peak - atWarm) / 1024;
      const mib = (k: number) => (k / 1024).toFixed(1);
      const byStatus = tally(results, (r) => String(r.status ?? r.error));
      const d = finalHealth.delivery;
      console.log(
        `[hostile.soak] ${results.length} requests in ${duration.toFixed(0)} s (${(results.length / duration).toFixed(0)} req/s, ` +
          `${skipped} skipped at ${MAX_IN_FLIGHT} in flight): ${JSON.stringify(byStatus)}\n` +
          `  by kind: ${JSON.stringify(tally(results, (r) => r.kind.split(':')[0]!))}; acknowledged callbacks ${acked.length}, ` +
          `registered ${registered.length}\n` +
          `  RSS MiB: start ${mib(rss[0]?.kib ?? 0)}, after ${WARMUP_SECONDS} s warm-up ${mib(atWarm)}, peak ${mib(peak)}, ` +
          `end ${mib(last)} (growth after warm-up +${growthMiB.toFixed(1)} MiB, bound ${RSS_GROWTH_BOUND_MIB})\n` +
          `  server fds ${fdsStart} → ${openFds(pid)}; /health/callbacks p95 max ${Math.max(...health.map((h) => h.p95))} ms, ` +
          `final ${finalHealth.p95_latency_ms} ms, status ${finalHealth.status}; delivery ${JSON.stringify(d)}`,
      );

      expect(server.process.exitCode).toBeNull();
      // Only designed answers; no connection errors.
      for (const s of Object.keys(byStatus)) expect([200, 400, 404, 405, 413, 414, 415]).toContain(Number(s));
      expect(results.filter((r) => r.kind.startsWith('good') && r.status !== 200)).toEqual([]);
      // Nothing acknowledged is missing or altered (duplicates kept the first result).
      expect(problems).toEqual([]);
      // The accounting adds up: every registered task is delivered, missed (late ones included: they missed their
      // deadline, as the metrics count them) or pending, and all four states occurred.
      expect(d.delivered + d.missed + d.pending).toBe(registered.length);
      expect(d.delivered).toBeGreaterThan(0);
      expect(d.late).toBeGreaterThan(0);
      expect(d.missed).toBeGreaterThan(d.late);
      // Latency and memory.
      expect(health.length).toBeGreaterThan(0);
      expect(health.filter((h) => h.p95 >= HEALTHY_P95_MS)).toEqual([]);
      expect(finalHealth.p95_latency_ms).toBeLessThan(HEALTHY_P95_MS);
      expect(growthMiB).toBeLessThan(RSS_GROWTH_BOUND_MIB);
      expect(openFds(pid)).toBeLessThanOrEqual(fdsStart + 2 * MAX_IN_FLIGHT);
      expect(server.logs()).not.toMatch(/"level":(50|60)/);
    },
    (SECONDS + 120) * 1000,
  );
});
