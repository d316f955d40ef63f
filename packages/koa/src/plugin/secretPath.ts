import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Compares a path segment with the callback secret in constant time. Both sides are hashed first so that neither
 * the secret's length nor a common prefix changes the time taken.
 */
export function secretMatcher(secret: string): (candidate: string) => boolean {
  const expected = createHash('sha256').update(secret).digest();
  return (candidate) => timingSafeEqual(createHash('sha256').update(candidate).digest(), expected);
}
