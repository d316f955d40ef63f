/** [time, sequence, id]: the sequence keeps equal times in insertion order and identifies the live entry. */
export type TimeEntry = [number, number, string];
const before = (a: TimeEntry, b: TimeEntry) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

/** A binary min-heap of times: expiry, retention and the outbox's due queue take their oldest entries, never scan. */
export class TimeHeap {
  readonly #items: TimeEntry[] = [];
  get size(): number {
    return this.#items.length;
  }
  peek(): TimeEntry | undefined {
    return this.#items[0];
  }
  push(item: TimeEntry): void {
    const a = this.#items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(a[i]!, a[p]!)) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop(): TimeEntry | undefined {
    const a = this.#items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l]!, a[m]!)) m = l;
        if (r < a.length && before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}
