import { afterEach, describe, expect, it } from 'vitest';
import { FAILURE_REASONS, failureReason, PROM } from '../packages/koa/src/metrics/contract.ts';
import { ReceiverMetrics } from '../packages/koa/src/metrics/instruments.ts';
import { prometheusMeter } from './support/receiver.ts';

/*
 * The failure-reason counter on a real MeterProvider read by the server's own Prometheus reader (no scope labels,
 * target_info elsewhere), as text: exactly the lines Prometheus scrapes.
 */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

function setUp() {
  const meter = prometheusMeter();
  cleanups.push(meter.close);
  const metrics = new ReceiverMetrics(meter.provider.getMeter('test'), {
    secondsSinceLastCallback: () => 0,
    pendingTasks: () => 0,
  });
  /** The failure counter's block: its HELP/UNIT/TYPE header and every series line, in exposition order. */
  const failureLines = async () =>
    (await meter.scrape()).split('\n').filter((l) => l.includes(PROM.callbackFailuresTotal));
  return { metrics, failureLines };
}

/** Written out by hand, not derived from FAILURE_REASONS, so a change to the set must change this test too. */
const EXPECTED_REASONS = [
  'ERROR_CAPTCHA_UNSOLVABLE',
  'ERROR_ZERO_BALANCE',
  'ERROR_NO_SLOT_AVAILABLE',
  'ERROR_PROXY_CONNECT_REFUSED',
  'ERROR_PROXY_CONNECT_TIMEOUT',
  'ERROR_PROXY_READ_TIMEOUT',
  'ERROR_PROXY_BANNED',
  'ERROR_PROXY_TRANSPARENT',
  'ERROR_BAD_PROXY',
  'ERROR_PROXY_CONNECTION_FAILED',
  'ERROR_WRONG_USER_KEY',
  'ERROR_KEY_DOES_NOT_EXIST',
  'ERROR_KEY_DENIED_ACCESS',
  'ERROR_IP_NOT_ALLOWED',
  'ERROR_WRONG_CAPTCHA_ID',
  'ERROR_NO_SUCH_CAPCHA_ID',
  'other',
];

const HEADER = [
  '# HELP captcha_callback_failures_total Accepted callbacks that report a failed task, by solver error code (a closed set; any other code is other).',
  '# UNIT captcha_callback_failures_total {callback}',
  '# TYPE captcha_callback_failures_total counter',
];

describe('failureReason', () => {
  it('keeps every documented code verbatim and maps anything else to other', () => {
    expect([...FAILURE_REASONS]).toEqual(EXPECTED_REASONS);
    expect(FAILURE_REASONS.length).toBeLessThanOrEqual(20);
    for (const code of EXPECTED_REASONS) expect(failureReason(code)).toBe(code);
    for (const code of [
      '',
      'error_zero_balance', // case-sensitive: the solvers send the constants in upper case
      ' ERROR_ZERO_BALANCE',
      'ERROR_ZERO_BALANCE\n',
      'ERROR_ZERO_BALANCE_X',
      'ERROR_TASK_TIMEOUT', // documented (CapSolver) but needs no action of its own
      'ERROR_CAPTCHA_UNSOLVABLE|ERROR_ZERO_BALANCE',
      'OK|03AGdBq25SxXT',
      '__proto__',
      'constructor',
      'toString',
      'x'.repeat(10_000),
    ]) {
      expect(failureReason(code), JSON.stringify(code.slice(0, 40))).toBe('other');
    }
  });
});

describe('ReceiverMetrics.failure', () => {
  it('reports every reason at 0 from start-up, before any failure', async () => {
    const t = setUp();
    expect(await t.failureLines()).toEqual([
      ...HEADER,
      ...EXPECTED_REASONS.map((r) => `captcha_callback_failures_total{reason="${r}"} 0`),
    ]);
  });

  it('counts each reason on its own series', async () => {
    const t = setUp();
    t.metrics.failure(failureReason('ERROR_ZERO_BALANCE'));
    t.metrics.failure(failureReason('ERROR_ZERO_BALANCE'));
    t.metrics.failure(failureReason('ERROR_CAPTCHA_UNSOLVABLE'));
    t.metrics.failure(failureReason('ERROR_SOMETHING_NEW'));
    t.metrics.failure(failureReason(''));
    const counts: Record<string, number> = { ERROR_ZERO_BALANCE: 2, ERROR_CAPTCHA_UNSOLVABLE: 1, other: 2 };
    expect(await t.failureLines()).toEqual([
      ...HEADER,
      ...EXPECTED_REASONS.map((r) => `captcha_callback_failures_total{reason="${r}"} ${counts[r] ?? 0}`),
    ]);
  });

  it('ignores a reason outside the set instead of opening a new series', async () => {
    const t = setUp();
    // A caller that bypasses failureReason (e.g. from plain JavaScript) cannot grow the series set.
    t.metrics.failure('ERROR_MADE_UP' as never);
    const lines = await t.failureLines();
    expect(lines).toHaveLength(HEADER.length + EXPECTED_REASONS.length);
    expect(lines.join('\n')).not.toContain('ERROR_MADE_UP');
    expect(lines.filter((l) => !l.startsWith('#')).every((l) => l.endsWith(' 0'))).toBe(true);
  });
});
