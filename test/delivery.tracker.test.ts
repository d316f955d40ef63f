import { describe, expect, it } from 'vitest';
import { DeliveryTracker } from '../packages/koa/src/delivery/DeliveryTracker.ts';
import { MemoryTaskStore } from '../packages/koa/src/delivery/stores/MemoryTaskStore.ts';

describe('DeliveryTracker.trackSubmitted', () => {
  it('registers a large list in chunks, yielding to the event loop between them, and counts each id once', async () => {
    const store = new MemoryTaskStore();
    const calls: number[] = [];
    const register = store.register.bind(store);
    store.register = (ids, submittedAt, deadlineAt) => {
      calls.push(ids.length);
      return register(ids, submittedAt, deadlineAt);
    };
    const tracker = new DeliveryTracker({ store });
    await tracker.trackSubmitted(['a5', 'a6']);
    const ids = Array.from({ length: 2500 }, (_, i) => `a${i}`);
    let ranBetween = false;
    setImmediate(() => {
      ranBetween = true;
    });
    const added = await tracker.trackSubmitted(ids);
    expect(ranBetween).toBe(true);
    expect(calls).toEqual([2, 1000, 1000, 500]);
    expect(added).toHaveLength(2498);
    expect(new Set(added).size).toBe(2498);
    expect(tracker.counts.pending).toBe(2500);
    expect((await store.counts()).pending).toBe(2500);
  });
});
