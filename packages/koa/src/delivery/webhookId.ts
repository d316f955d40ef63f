import { createHash, randomBytes } from 'node:crypto';

/** This process's random part: 12 bytes, drawn once, so ids from different processes never collide. */
const PROCESS_PART = randomBytes(12).toString('base64url');
let counter = 0;

/**
 * A new forward's webhook id: `msg_`, this process's random part and a counter (unique across processes and restarts
 * without a random draw per callback, a measurable share of the CPU under load in `npm run bench`). Written once with the outbox row, it
 * is the `webhook-id` of every attempt and replay of that forward, so the app can deduplicate; a task id alone would
 * not do, since an id can be registered again after retention deleted it.
 */
export function newWebhookId(): string {
  return `msg_${PROCESS_PART}${(counter++).toString(36).padStart(6, '0')}`;
}

/**
 * The webhook id of a forward that waits on its task's row in a SQLite store (schema version 9): derived, not stored,
 * so a callback's write carries no id. The store's salt keeps two stores' ids apart; the event time tells a task id
 * registered again after retention from its earlier self. The claim writes it into the forward's row, where every
 * attempt and replay reads it, as with newWebhookId.
 */
export function waitingWebhookId(salt: string, taskId: string, eventAt: number): string {
  const digest = createHash('sha256').update(`${salt}\n${eventAt}\n${taskId}`).digest('base64url');
  return `msg_${digest.slice(0, 27)}`;
}
