import { randomBytes } from 'node:crypto';

/**
 * A new forward's webhook id: `msg_` and 16 random bytes in base64url. Written once with the outbox row, it is the
 * `webhook-id` of every attempt and replay of that forward, so the app can deduplicate; a task id alone would not do,
 * since an id can be registered again after retention deleted it.
 */
export function newWebhookId(): string {
  return `msg_${randomBytes(16).toString('base64url')}`;
}
