import { randomBytes } from 'node:crypto';

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
