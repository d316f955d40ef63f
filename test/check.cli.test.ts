import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { burst, runCheckCli, startSink } from './support/check.ts';
import { freePort, waitFor } from './support/ports.ts';
import { type RunningServer, startCli, startServer } from './support/server.ts';

/*
 * The check command against the real receiver (the CLI as a child process) with a loopback webhook sink: exit codes,
 * lines, notifications once at start and once at the end, the webhook URL kept out of every output, the watch loop.
 */

let server: RunningServer;
let dir: string;
let stateN = 0;
const health = () => `${server.publicUrl}/health/callbacks`;
const freshState = () => join(dir, `state-${++stateN}.json`);

/** 100 accepted callbacks and 10 refused ones (no task id: 400 invalid_request): 9 % of 110 requests refused. */
async function errorBurst(tag: string) {
  const statuses = await burst(110, (i) =>
    i % 11 === 10 ? `${server.publicUrl}/callback?code=x` : `${server.publicUrl}/callback?id=${tag}-${i}&code=ok`,
  );
  expect(statuses.filter((s) => s === 400)).toHaveLength(10);
  expect(statuses.filter((s) => s === 200)).toHaveLength(100);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'check-cli-'));
  server = await startServer();
});

afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Run after each test, newest first: what the test started. */
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A webhook sink (support/check.ts startSink), closed after the test. */
async function sinkForTest(path?: string) {
  const sink = await startSink(path);
  cleanups.push(() => sink.close());
  return sink;
}

describe('check against the real receiver', () => {
  it('an idle receiver is OK (exit 0), in text and in JSON', async () => {
    const state = freshState();
    const text = await runCheckCli(['--url', health(), '--state', state]);
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^OK 127\.0\.0\.1:\d+: status idle/);
    const json = await runCheckCli(['--url', health(), '--state', state, '--json']);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { status: string; exit_code: number; findings: unknown[] };
    expect(parsed).toMatchObject({ status: 'OK', exit_code: 0, findings: [] });
  });

  for (const format of ['discord', 'slack', 'json'] as const) {
    it(`a refused-request burst is CRITICAL once, then OK with one resolved message (${format})`, async () => {
      const sink = await sinkForTest();
      const state = freshState();
      const hook = join(dir, `hook-${format}`);
      await writeFile(hook, `${sink.url}\n`);
      const args = ['--url', health(), '--state', state, '--notify-file', hook, '--notify-format', format];
      // The baseline, taken without the webhook: this receiver's earlier bursts (other formats) are before the
      // interval, and a first check judges the totals since the receiver started.
      expect([0, 2]).toContain((await runCheckCli(['--url', health(), '--state', state])).code);
      await errorBurst(format);

      const bad = await runCheckCli(args);
      expect(bad.code).toBe(2);
      const line = bad.stdout.trim();
      expect(line).toMatch(/^CRITICAL CaptchaCallbackHighErrorRate: error rate 9\.09 % > 5 % \(10 of 110 requests/);
      expect(sink.messages).toHaveLength(1);
      const fired = sink.messages[0]!;
      expect(fired.headers['content-type']).toBe('application/json');
      const textOf = (body: unknown) =>
        format === 'discord'
          ? (body as { content: string }).content
          : format === 'slack'
            ? (body as { text: string }).text
            : (body as { text: string }).text;
      if (format === 'discord') expect(Object.keys(fired.body as object)).toEqual(['content']);
      if (format === 'slack') expect(Object.keys(fired.body as object)).toEqual(['text']);
      if (format === 'json') {
        expect(fired.body).toMatchObject({
          event: 'firing',
          status: 'firing',
          alert: 'CaptchaCallbackHighErrorRate',
          severity: 'critical',
          threshold: 0.05,
          unit: 'ratio',
          runbook_url: expect.stringMatching(/runbook\.md#captchacallbackhigherrorrate$/),
        });
        expect((fired.body as { value: number }).value).toBeCloseTo(10 / 110, 6);
      }
      const firedText = textOf(fired.body);
      expect(firedText).toMatch(/^\[CRITICAL\] CaptchaCallbackHighErrorRate on 127\.0\.0\.1:\d+: /);
      expect(firedText).toContain('9.09 % > 5 %');
      expect(firedText).toContain('runbook.md#captchacallbackhigherrorrate');

      // No new errors: OK, and exactly one "resolved" message; a further check says nothing more.
      const good = await runCheckCli(args);
      expect(good.code).toBe(0);
      expect(good.stdout).toMatch(/^OK /);
      expect(sink.messages).toHaveLength(2);
      const resolvedText = textOf(sink.messages[1]!.body);
      expect(resolvedText).toMatch(/^\[RESOLVED\] CaptchaCallbackHighErrorRate on /);
      if (format === 'json') expect(sink.messages[1]!.body).toMatchObject({ event: 'resolved', status: 'resolved' });
      expect((await runCheckCli(args)).code).toBe(0);
      expect(sink.messages).toHaveLength(2);
    });
  }

  it('an error spike since start-up is judged on the first check and forgotten at the next', async () => {
    // A receiver of its own, so its lifetime totals are this test's burst only.
    const own = await startServer();
    cleanups.push(() => own.stop());
    const url = `${own.publicUrl}/health/callbacks`;
    await burst(110, (i) => (i < 20 ? `${own.publicUrl}/callback` : `${own.publicUrl}/callback?id=s-${i}&code=ok`));
    const state = freshState();
    const first = await runCheckCli(['--url', url, '--state', state]);
    expect(first.code).toBe(2);
    expect(first.stdout).toContain('since the receiver started');
    const second = await runCheckCli(['--url', url, '--state', state]);
    expect(second.code).toBe(0);
  });

  it('an unreachable receiver is CRITICAL, notified once; --repeat reminds while it lasts', async () => {
    const sink = await sinkForTest();
    const closed = `http://127.0.0.1:${await freePort()}/health/callbacks`;
    const state = freshState();
    const args = ['--url', closed, '--state', state, '--timeout', '5'];
    const env = { CHECK_NOTIFY_URL: sink.url };
    const down = await runCheckCli(args, env);
    expect(down.code).toBe(2);
    expect(down.stdout).toMatch(/^CRITICAL CaptchaCallbackEndpointDown: health endpoint unreachable \(ECONNREFUSED\)/);
    expect(sink.messages).toHaveLength(1);
    expect(sink.messages[0]!.body).toMatchObject({ alert: 'CaptchaCallbackEndpointDown', event: 'firing' });
    // Still down: no second message without --repeat …
    expect((await runCheckCli(args, env)).code).toBe(2);
    expect(sink.messages).toHaveLength(1);
    // … and a reminder once the repeat interval has passed since the last message.
    await new Promise((r) => setTimeout(r, 1100));
    expect((await runCheckCli([...args, '--repeat', '1s'], env)).code).toBe(2);
    expect(sink.messages).toHaveLength(2);
    expect(sink.messages[1]!.body).toMatchObject({ alert: 'CaptchaCallbackEndpointDown', event: 'reminder' });
  });

  it('a URL that serves no health report is UNKNOWN (exit 3); so are bad options', async () => {
    const notReport = await runCheckCli(['--url', `${server.publicUrl}/nothing-here`, '--state', freshState()]);
    expect(notReport.code).toBe(3);
    expect(notReport.stdout).toMatch(/^UNKNOWN .*HTTP 404 without a health report/);
    const bad = await runCheckCli(['--watch', 'soon']);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain('--watch: "soon" is not a duration');
    const help = await runCheckCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: captcha-callback-monitor check/);
  });
});

describe('the webhook URL stays secret', () => {
  const SECRET = 'tok3n-QWERTY-do-not-print';

  it('appears in no output, error or state file, from --notify, --notify-file or the environment, when it fails', async () => {
    const sink = await sinkForTest(`/api/webhooks/12345/${SECRET}`);
    sink.status = 500;
    const unreachable = `http://127.0.0.1:${await freePort()}/api/webhooks/12345/${SECRET}`;
    const hook = join(dir, 'secret-hook');
    const closed = `http://127.0.0.1:${await freePort()}/health/callbacks`;
    const outputs: string[] = [];
    const states: string[] = [];
    for (const [i, target] of [sink.url, unreachable].entries()) {
      await writeFile(hook, target);
      const variants: [string[], Record<string, string>][] = [
        [['--notify-file', hook], {}],
        [[], { CHECK_NOTIFY_URL: target }],
        [['--notify', target], {}],
      ];
      for (const [j, [flags, env]] of variants.entries()) {
        const state = join(dir, `secret-${i}-${j}.json`);
        for (const json of [false, true]) {
          const run = await runCheckCli(
            ['--url', closed, '--state', state, ...flags, ...(json ? ['--json'] : [])],
            env,
          );
          expect(run.code).toBe(2);
          // The failure is reported, without the URL.
          expect(run.stderr).toMatch(
            /firing message for CaptchaCallbackEndpointDown not sent: (the webhook answered HTTP 500|could not reach the webhook)/,
          );
          outputs.push(run.stdout, run.stderr);
        }
        states.push(await readFile(state, 'utf8'));
      }
    }
    // A webhook URL that is not a URL is refused without echoing it either.
    const malformed = await runCheckCli(['--url', closed, '--state', freshState()], {
      CHECK_NOTIFY_URL: `ftp://x/${SECRET}`,
    });
    expect(malformed.code).toBe(3);
    expect(malformed.stderr).toContain('the webhook URL from CHECK_NOTIFY_URL must be an http(s) URL');
    outputs.push(malformed.stdout, malformed.stderr);
    // The 500 sink really was asked (every failed message is retried at the next check).
    expect(sink.messages.length).toBe(6);
    for (const text of [...outputs, ...states]) {
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain('/api/webhooks/');
    }
  });
});

describe('--watch', () => {
  it('checks in a loop and stops cleanly on SIGTERM, also in the middle of a long wait', async () => {
    const state = freshState();
    // A baseline first, so the loop's checks judge only the (quiet) interval since.
    await runCheckCli(['--url', health(), '--state', state]);
    const watch = startCli(['check', '--url', health(), '--state', state, '--watch', '1s']);
    await waitFor(
      () =>
        watch
          .stdout()
          .split('\n')
          .filter((l) => / OK /.test(l)).length >= 2,
      30_000,
      'two checks',
    );
    expect(watch.stdout().split('\n')[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z OK 127\.0\.0\.1:\d+: status/);
    watch.child.kill('SIGTERM');
    const stopped = await watch.done;
    expect(stopped.code).toBe(0);
    expect(stopped.stderr).toContain('SIGTERM, stopping after the current check');
    expect(stopped.stderr).toContain('stopped');

    // An hour-long wait is cut short by SIGTERM: the process is gone long before the next check.
    const long = startCli(['check', '--url', health(), '--state', state, '--watch', '1h']);
    await waitFor(() => long.stdout().includes(' OK '), 30_000, 'the first check');
    const t0 = Date.now();
    long.child.kill('SIGTERM');
    expect((await long.done).code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(60_000);
  });
});
