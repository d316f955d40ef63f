import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { STALE_AFTER_MS } from '../packages/koa/src/health/healthReport.ts';
import { renderPrometheusRules } from '../scripts/generators/alerting/renderPrometheusRules.ts';
import { ALERT_TABLE } from '../src/alerting/alertTable.ts';
import { durationSeconds, num } from '../src/alerting/promql.ts';
import { runbookUrl } from '../src/alerting/runbook.ts';
import { ALERT_THRESHOLDS, WINDOW } from '../src/alerting/thresholds.ts';
import {
  CHECK_ROWS,
  CHECK_RULES,
  DELIVERY_RULE,
  DOWN_ROW,
  ERROR_RATE_RULE,
  evaluate,
  HANDLER_ERRORS_RULE,
  type RateRule,
  SLOW_RULE,
  STALE_RULE,
} from '../src/check/rules.ts';
import { report } from './support/checkReport.ts';

/*
 * The check and the Prometheus rules share one set of numbers: each check rule holds the alert table's own row
 * (the same object, not a copy), its volume guard and window are the alert table module's constants, the rendered
 * rule file contains exactly those numbers, and the check's edges sit where the thresholds say.
 */

const rendered = parse(renderPrometheusRules()) as { groups: { rules: { alert?: string; expr: string }[] }[] };
const exprOf = (name: string) => {
  const rule = rendered.groups.flatMap((g) => g.rules).find((r) => r.alert === name);
  if (!rule) throw new Error(`no rendered rule ${name}`);
  return rule.expr;
};

describe('the check uses the alert table’s thresholds', () => {
  it('every rule is the alert table’s row itself, and the check covers the table’s non-SLO conditions it can read', () => {
    for (const row of CHECK_ROWS) expect(ALERT_TABLE.find((r) => r.name === row.name)).toBe(row);
    expect(CHECK_ROWS.map((r) => r.name).sort()).toEqual(
      [
        'CaptchaCallbackEndpointDown',
        'CaptchaCallbackEndpointStale',
        'CaptchaCallbackHandlerErrors',
        'CaptchaCallbackHighErrorRate',
        'CaptchaCallbackLowDeliveryRate',
        'CaptchaCallbackSlowResponses',
      ].sort(),
    );
  });

  it('volume guards and windows are the alert table module’s constants, and the rendered rules contain them', () => {
    const guards: [RateRule, number, string][] = [
      [ERROR_RATE_RULE, ALERT_THRESHOLDS.minRequests5m, WINDOW.requests],
      [HANDLER_ERRORS_RULE, ALERT_THRESHOLDS.minRequests5m, WINDOW.requests],
      [DELIVERY_RULE, ALERT_THRESHOLDS.minSettledTasks, WINDOW.delivery],
    ];
    for (const [rule, minVolume, window] of guards) {
      expect(rule.minVolume).toBe(minVolume);
      expect(rule.windowSeconds).toBe(durationSeconds(window));
      const expr = exprOf(rule.row.name);
      expect(expr).toContain(`>= ${num(minVolume)}`);
      expect(expr).toContain(`[${window}]`);
    }
    // The thresholds themselves, as the rendered expressions compare them.
    expect(exprOf(ERROR_RATE_RULE.row.name)).toContain(`) > ${num(ERROR_RATE_RULE.row.threshold)}\n`);
    expect(ERROR_RATE_RULE.row.threshold).toBe(ALERT_THRESHOLDS.errorRatio);
    expect(exprOf(HANDLER_ERRORS_RULE.row.name)).toContain(`) > ${num(HANDLER_ERRORS_RULE.row.threshold)}\n`);
    expect(HANDLER_ERRORS_RULE.row.threshold).toBe(ALERT_THRESHOLDS.handlerErrorRatio);
    expect(exprOf(DELIVERY_RULE.row.name)).toContain(`) < ${num(DELIVERY_RULE.row.threshold)}\n`);
    expect(DELIVERY_RULE.row.threshold).toBe(ALERT_THRESHOLDS.deliveryRatio);
    expect(exprOf(SLOW_RULE.row.name)).toContain(`) > ${num(SLOW_RULE.row.threshold)}\n`);
    expect(SLOW_RULE.row.threshold).toBe(ALERT_THRESHOLDS.latencyP95Seconds);
    expect(exprOf(STALE_RULE.row.name)).toContain(` > ${num(STALE_RULE.row.threshold)}\n`);
    expect(STALE_RULE.row.threshold).toBe(ALERT_THRESHOLDS.staleAfterSeconds);
    // The report's own stale edge is the same number (the check reads the report's status for it).
    expect(STALE_RULE.row.threshold * 1000).toBe(STALE_AFTER_MS);
  });

  it('severities and runbook links are the rows’ own', () => {
    const now = Date.now();
    const bad = report({
      status: 'stale',
      p95_latency_ms: 5000,
      received: 1000,
      refused: 500,
      handlerErrors: 200,
      delivered: 0,
      missed: 100,
    });
    const { findings } = evaluate(bad, {}, now);
    expect(findings.map((f) => f.alert).sort()).toEqual(CHECK_RULES.map((r) => r.row.name).sort());
    for (const f of findings) {
      const row = ALERT_TABLE.find((r) => r.name === f.alert)!;
      expect(f.severity).toBe(row.severity);
      expect(f.threshold).toBe(row.threshold);
      expect(f.runbookUrl).toBe(runbookUrl(row.runbookAnchor));
    }
    expect(DOWN_ROW.severity).toBe('critical');
  });
});

describe('the check’s edges sit at the thresholds', () => {
  const now = Date.now();
  const fires = (r: ReturnType<typeof report>, name: string) =>
    evaluate(r, {}, now).findings.some((f) => f.alert === name);

  it('error rate: above the ratio with the minimum volume fires; at the ratio, or one request short, does not', () => {
    const t = ERROR_RATE_RULE.row.threshold;
    const min = ERROR_RATE_RULE.minVolume;
    const whole = min * 100;
    const name = ERROR_RATE_RULE.row.name;
    expect(fires(report({ received: whole, refused: Math.round(whole * t) + 1 }), name)).toBe(true);
    expect(fires(report({ received: whole, refused: Math.round(whole * t) }), name)).toBe(false);
    expect(fires(report({ received: min, refused: min }), name)).toBe(true);
    expect(fires(report({ received: min - 1, refused: min - 1 }), name)).toBe(false);
    // The result hook's failures are not refused requests (as in the alert and the report's error_rate).
    expect(fires(report({ received: whole, refused: 0, handlerErrors: whole }), name)).toBe(false);
  });

  it('delivery rate: below the ratio with the minimum settled tasks fires; at it, or one task short, does not', () => {
    const t = DELIVERY_RULE.row.threshold;
    const min = DELIVERY_RULE.minVolume;
    const whole = min * 100;
    const name = DELIVERY_RULE.row.name;
    const delivered = Math.round(whole * t);
    expect(fires(report({ delivered: delivered - 1, missed: whole - delivered + 1 }), name)).toBe(true);
    expect(fires(report({ delivered, missed: whole - delivered }), name)).toBe(false);
    expect(fires(report({ delivered: 0, missed: min }), name)).toBe(true);
    expect(fires(report({ delivered: 0, missed: min - 1 }), name)).toBe(false);
  });

  it('handler errors: above the ratio of accepted callbacks with the minimum volume fires', () => {
    const t = HANDLER_ERRORS_RULE.row.threshold;
    const whole = HANDLER_ERRORS_RULE.minVolume * 100;
    const name = HANDLER_ERRORS_RULE.row.name;
    expect(fires(report({ received: whole, handlerErrors: Math.round(whole * t) + 1 }), name)).toBe(true);
    expect(fires(report({ received: whole, handlerErrors: Math.round(whole * t) }), name)).toBe(false);
  });

  it('slow: a p95 above the threshold fires, at it does not; stale follows the report’s status', () => {
    const ms = SLOW_RULE.row.threshold * 1000;
    expect(fires(report({ p95_latency_ms: ms + 1 }), SLOW_RULE.row.name)).toBe(true);
    expect(fires(report({ p95_latency_ms: ms }), SLOW_RULE.row.name)).toBe(false);
    expect(fires(report({ status: 'stale' }), STALE_RULE.row.name)).toBe(true);
    expect(fires(report({ status: 'healthy', seconds_since_last_callback: 10_000 }), STALE_RULE.row.name)).toBe(false);
  });
});
