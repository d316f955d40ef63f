import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applySent, step } from '../src/check/lifecycle.ts';
import { ERROR_RATE_RULE, evaluate, finding } from '../src/check/rules.ts';
import { defaultStatePath, EMPTY_STATE, loadState, StateError, saveState } from '../src/check/state.ts';
import { report } from './support/checkReport.ts';

/* The interval logic of the rates and the once-at-start, once-at-end bookkeeping, step by step. */

const name = ERROR_RATE_RULE.row.name;
const min = ERROR_RATE_RULE.minVolume;
const windowMs = ERROR_RATE_RULE.windowSeconds * 1000;

describe('rates over the interval since the previous check', () => {
  it('an old spike is not judged again: the next interval starts at the previous check', () => {
    const t0 = 1_000_000;
    const first = evaluate(report({ received: 10 * min, refused: 5 * min }), {}, t0);
    expect(first.findings.map((f) => f.alert)).toContain(name);
    const later = evaluate(report({ received: 12 * min, refused: 5 * min }), first.baselines, t0 + 60_000);
    expect(later.findings.map((f) => f.alert)).not.toContain(name);
    expect(later.rates.find((r) => r.alert === name)).toMatchObject({ part: 0, whole: 2 * min, judged: true });
  });

  it('an interval short of the minimum volume stays open until it has it, within the alert’s window', () => {
    const t0 = 1_000_000;
    let b = evaluate(report({ received: 0 }), {}, t0).baselines;
    // Half the volume, all refused: not judged (the alert would not fire either), and the baseline is kept.
    const half = evaluate(report({ received: min / 2, refused: min / 2 }), b, t0 + 60_000);
    expect(half.findings).toEqual([]);
    expect(half.baselines[name]).toEqual(b[name]);
    b = half.baselines;
    const full = evaluate(report({ received: min, refused: min / 2 }), b, t0 + 120_000);
    expect(full.findings.map((f) => f.alert)).toEqual([name]);
    expect(full.findings[0]!.text).toContain('over the last 2 min');
    // Past the window, a short interval is dropped instead of growing for ever.
    const stale = evaluate(report({ received: min / 2 }), b, t0 + windowMs + 1);
    expect(stale.baselines[name]).toMatchObject({ at: t0 + windowMs + 1, whole: min / 2 });
  });

  it('totals below the baseline (a receiver restart) count from zero', () => {
    const t0 = 1_000_000;
    const b = evaluate(report({ received: 50 * min }), {}, t0).baselines;
    const after = evaluate(report({ received: min, refused: min }), b, t0 + 60_000);
    expect(after.findings.map((f) => f.alert)).toEqual([name]);
    expect(after.findings[0]!.text).toContain('since the receiver restarted');
  });
});

describe('notifications once at start and once at the end', () => {
  const f = finding(ERROR_RATE_RULE.row, 0.5, 'ratio', 'error rate 50 %');
  const all = new Set([name]);

  it('fires once, stays quiet while it lasts, resolves once', () => {
    let s = step({}, [f], all, 1, 0);
    expect(s.due.map((d) => d.event)).toEqual(['firing']);
    let alerts = applySent(s.alerts, s.due, 1);
    s = step(alerts, [f], all, 2, 0);
    expect(s.due).toEqual([]);
    alerts = applySent(s.alerts, s.due, 2);
    s = step(alerts, [], all, 3, 0);
    expect(s.due.map((d) => d.event)).toEqual(['resolved']);
    alerts = applySent(s.alerts, s.due, 3);
    expect(alerts).toEqual({});
    expect(step(alerts, [], all, 4, 0).due).toEqual([]);
  });

  it('a message that did not get through is due again; an alert not evaluated is left alone', () => {
    let s = step({}, [f], all, 1, 0);
    let alerts = applySent(s.alerts, [], 1); // the webhook failed
    s = step(alerts, [f], all, 2, 0);
    expect(s.due.map((d) => d.event)).toEqual(['firing']);
    alerts = applySent(s.alerts, s.due, 2);
    // The receiver is unreachable: this alert cannot be judged, so it neither resolves nor repeats.
    s = step(alerts, [], new Set(['CaptchaCallbackEndpointDown']), 3, 1);
    expect(s.due).toEqual([]);
    expect(s.alerts[name]?.firing).toBe(true);
    s = step(alerts, [], all, 4, 0);
    alerts = applySent(s.alerts, [], 4); // the resolve failed
    s = step(alerts, [], all, 5, 0);
    expect(s.due.map((d) => d.event)).toEqual(['resolved']);
    // Firing again before anyone heard it end: no second "firing".
    expect(step(alerts, [f], all, 6, 0).due).toEqual([]);
  });

  it('--repeat reminds once per interval', () => {
    let alerts = applySent(
      step({}, [f], all, 0, 0).alerts,
      [{ event: 'firing', alert: name, finding: f, since: 0 }],
      0,
    );
    expect(step(alerts, [f], all, 999, 1000).due).toEqual([]);
    const s = step(alerts, [f], all, 1000, 1000);
    expect(s.due.map((d) => d.event)).toEqual(['reminder']);
    alerts = applySent(s.alerts, s.due, 1000);
    expect(step(alerts, [f], all, 1500, 1000).due).toEqual([]);
  });
});

describe('the state file', () => {
  it('lives under $STATE_DIRECTORY, $XDG_STATE_HOME or ~/.local/state, one file per URL', () => {
    const url = 'http://127.0.0.1:3000/health/callbacks';
    expect(defaultStatePath(url, { STATE_DIRECTORY: '/var/lib/ccm' })).toMatch(
      /^\/var\/lib\/ccm\/check-[0-9a-f]{16}\.json$/,
    );
    expect(defaultStatePath(url, { XDG_STATE_HOME: '/x' })).toMatch(/^\/x\/captcha-callback-monitor\/check-/);
    expect(defaultStatePath(url, { HOME: '/home/u' })).toMatch(
      /^\/home\/u\/\.local\/state\/captcha-callback-monitor\//,
    );
    expect(defaultStatePath(url, {})).not.toBe(defaultStatePath('http://other:3000/health/callbacks', {}));
  });

  it('round-trips, is private to its owner, and a corrupt file is an error rather than a silent reset', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'check-state-'));
    try {
      const path = join(dir, 'a', 'b.json');
      expect(await loadState(path)).toEqual(EMPTY_STATE);
      const state = { ...EMPTY_STATE, checkedAt: 5, baselines: { x: { at: 5, part: 1, whole: 2 } } };
      await saveState(path, state);
      expect(await loadState(path)).toEqual(state);
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      await writeFile(path, '{not json');
      await expect(loadState(path)).rejects.toBeInstanceOf(StateError);
      expect(await readFile(path, 'utf8')).toBe('{not json');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
