/**
 * Chat and webhook messages: Discord (`{content}`), Slack incoming webhooks (`{text}`) or a JSON object for your
 * own endpoint. The webhook URL is a secret (a Discord or Slack URL is all it takes to post): it is only ever
 * passed to fetch, and no error built here contains it.
 */
import type { DueNotification } from './lifecycle.ts';
import { span } from './rules.ts';

export const NOTIFY_FORMATS = ['discord', 'slack', 'json'] as const;
export type NotifyFormat = (typeof NOTIFY_FORMATS)[number];

export interface Notifier {
  readonly url: string;
  readonly format: NotifyFormat;
  readonly timeoutMs: number;
}

/** Discord and Slack webhook hosts imply their format; anything else gets JSON unless told otherwise. */
export function guessFormat(url: string): NotifyFormat {
  const host = new URL(url).hostname;
  if (/(^|\.)discord(app)?\.com$/.test(host)) return 'discord';
  if (host === 'hooks.slack.com') return 'slack';
  return 'json';
}

const LABEL = { firing: 'FIRING', reminder: 'STILL FIRING', resolved: 'RESOLVED' } as const;

/** One line for people: what, how bad, the value against the threshold, since when, where to read on. */
export function messageText(n: DueNotification, receiver: string, now: number): string {
  const f = n.finding;
  const sev = f.severity.toUpperCase();
  const head =
    n.event === 'resolved'
      ? `[RESOLVED] ${f.alert} on ${receiver} (${f.severity}, fired for ${span(now - n.since)})`
      : `[${sev}] ${f.alert} on ${receiver}${n.event === 'reminder' ? ` (still firing, for ${span(now - n.since)})` : ''}`;
  const what = n.event === 'resolved' ? `was: ${f.text}` : f.text;
  return `${head}: ${f.summary}. ${what}. Runbook: ${f.runbookUrl}`;
}

export function messageBody(n: DueNotification, format: NotifyFormat, receiver: string, now: number): unknown {
  const text = messageText(n, receiver, now);
  if (format === 'discord') return { content: text };
  if (format === 'slack') return { text };
  const f = n.finding;
  return {
    event: n.event,
    status: n.event === 'resolved' ? 'resolved' : 'firing',
    label: LABEL[n.event],
    alert: f.alert,
    severity: f.severity,
    value: f.value,
    threshold: f.threshold,
    unit: f.unit,
    summary: f.summary,
    description: f.text,
    runbook_url: f.runbookUrl,
    receiver,
    since: new Date(n.since).toISOString(),
    at: new Date(now).toISOString(),
    text,
  };
}

/** A failed delivery, described without the webhook URL. */
export class NotifyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotifyError';
  }
}

/** Posts one message; resolves on a 2xx, rejects with a NotifyError naming only the status or the error code. */
export async function send(notifier: Notifier, body: unknown): Promise<void> {
  let res: Response;
  try {
    res = await fetch(notifier.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      redirect: 'manual',
      signal: AbortSignal.timeout(notifier.timeoutMs),
    });
    await res.arrayBuffer();
  } catch (error) {
    const e = error as { name?: string; cause?: { code?: unknown } };
    if (e.name === 'TimeoutError')
      throw new NotifyError(`the webhook did not answer within ${notifier.timeoutMs / 1000} s`);
    const code = typeof e.cause?.code === 'string' && /^[A-Z0-9_]+$/.test(e.cause.code) ? ` (${e.cause.code})` : '';
    throw new NotifyError(`could not reach the webhook${code}`);
  }
  if (res.status < 200 || res.status >= 300) throw new NotifyError(`the webhook answered HTTP ${res.status}`);
}
