/**
 * When to tell: one message when an alert starts, one when it ends, reminders only with `--repeat`. A message
 * that could not be delivered stays due and is tried again at the next check; the state says what was told.
 */
import type { Finding } from './rules.ts';
import type { AlertRecord } from './state.ts';

export type NotificationEvent = 'firing' | 'reminder' | 'resolved';

export interface DueNotification {
  readonly event: NotificationEvent;
  readonly alert: string;
  /** For firing and reminders the current finding; for resolved the last one seen while it fired. */
  readonly finding: Finding;
  readonly since: number;
}

export interface Step {
  /** Records as they are before anything is sent; `applySent` moves them on for each message that got through. */
  readonly alerts: Record<string, AlertRecord>;
  readonly due: DueNotification[];
}

/**
 * Moves the alert records on by one check. `evaluated` names the alerts this check could judge: the others (all
 * but endpoint-down while the receiver cannot be read) keep their records untouched, neither resolved nor repeated.
 */
export function step(
  previous: Readonly<Record<string, AlertRecord>>,
  findings: readonly Finding[],
  evaluated: ReadonlySet<string>,
  now: number,
  repeatMs: number,
): Step {
  const alerts: Record<string, AlertRecord> = { ...previous };
  const due: DueNotification[] = [];
  const current = new Map(findings.map((f) => [f.alert, f]));
  for (const [alert, f] of current) {
    const rec = alerts[alert];
    // Still firing as far as anyone was told (a resolve that never went out): keep its start and say nothing new.
    const since = rec ? rec.since : now;
    const next: AlertRecord = {
      severity: f.severity,
      since,
      firing: true,
      last: f,
      notified: rec?.notified ?? false,
      notifiedAt: rec?.notifiedAt ?? null,
    };
    alerts[alert] = next;
    if (!next.notified) due.push({ event: 'firing', alert, finding: f, since });
    else if (repeatMs > 0 && next.notifiedAt !== null && now - next.notifiedAt >= repeatMs) {
      due.push({ event: 'reminder', alert, finding: f, since });
    }
  }
  for (const [alert, rec] of Object.entries(previous)) {
    if (current.has(alert) || !evaluated.has(alert)) continue;
    if (!rec.notified) {
      delete alerts[alert];
      continue;
    }
    alerts[alert] = { ...rec, firing: false };
    due.push({ event: 'resolved', alert, finding: rec.last, since: rec.since });
  }
  return { alerts, due };
}

/** The records after `sent` got through: firing and reminders mark the alert told, resolved forgets it. */
export function applySent(
  alerts: Readonly<Record<string, AlertRecord>>,
  sent: readonly DueNotification[],
  now: number,
): Record<string, AlertRecord> {
  const out = { ...alerts };
  for (const n of sent) {
    const rec = out[n.alert];
    if (!rec) continue;
    if (n.event === 'resolved') delete out[n.alert];
    else out[n.alert] = { ...rec, notified: true, notifiedAt: now };
  }
  return out;
}

/** Without a webhook nothing is told: an ended alert is simply forgotten. */
export function withoutNotifier(alerts: Readonly<Record<string, AlertRecord>>): Record<string, AlertRecord> {
  return Object.fromEntries(Object.entries(alerts).filter(([, r]) => r.firing));
}
