/**
 * What the check prints, in the monitoring-plugin convention: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; one line
 * per finding naming the alert, the value and the threshold; or one JSON object with `--json`.
 */
import type { Probe } from './health.ts';
import type { Finding, RateReading } from './rules.ts';

export const EXIT = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;
export type Status = keyof typeof EXIT;

export interface CheckResult {
  readonly status: Status;
  readonly findings: readonly Finding[];
  /** The UNKNOWN reason, or notes such as "/healthz answered HTTP 404, not judged". */
  readonly notes: readonly string[];
  readonly receiver: string;
  readonly checkedAt: number;
  readonly report?: Extract<Probe, { kind: 'report' }>['report'];
  readonly rates: readonly RateReading[];
}

export function statusOf(findings: readonly Finding[]): Status {
  if (findings.some((f) => f.severity === 'critical')) return 'CRITICAL';
  if (findings.length > 0) return 'WARNING';
  return 'OK';
}

/** Text lines: one per finding, or one OK/UNKNOWN line that says what was looked at. */
export function textLines(r: CheckResult): string[] {
  if (r.status === 'UNKNOWN') return [`UNKNOWN ${r.receiver}: ${r.notes.join('; ')}`];
  if (r.findings.length > 0) {
    return r.findings.map((f) => `${f.severity.toUpperCase()} ${f.alert}: ${f.text} (runbook: ${f.runbookUrl})`);
  }
  const parts: string[] = [];
  if (r.report) {
    parts.push(`status ${r.report.status}`, `p95 ${r.report.p95_latency_ms} ms`);
    for (const rate of r.rates) {
      const name = rate.alert.replace(/^CaptchaCallback/, '');
      parts.push(
        rate.judged
          ? `${name} ${rate.part}/${rate.whole}`
          : `${name} not judged (${rate.whole} of the ${rate.minVolume} needed)`,
      );
    }
  }
  parts.push(...r.notes);
  return [`OK ${r.receiver}: ${parts.join(', ')}`];
}

export function jsonResult(r: CheckResult): unknown {
  return {
    status: r.status,
    exit_code: EXIT[r.status],
    receiver: r.receiver,
    checked_at: new Date(r.checkedAt).toISOString(),
    findings: r.findings.map((f) => ({
      alert: f.alert,
      severity: f.severity,
      value: f.value,
      threshold: f.threshold,
      unit: f.unit,
      text: f.text,
      summary: f.summary,
      runbook_url: f.runbookUrl,
    })),
    rates: r.rates.map((x) => ({
      alert: x.alert,
      part: x.part,
      whole: x.whole,
      judged: x.judged,
      min_volume: x.minVolume,
    })),
    notes: r.notes,
    health: r.report ?? null,
  };
}
