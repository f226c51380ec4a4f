/**
 * Byte-pair merging of one pretoken, with the result of transformers' slow tokenizer loop (repeatedly take the
 * lowest-ranked adjacent pair, merge all its non-overlapping occurrences left to right) in O(n log n) rather
 * than O(n · merges): a 100,000-character run of emoji or combining marks is one pretoken.
 *
 * The symbols are a linked list; a heap holds every adjacent pair by (rank, position). Popping the lowest rank
 * and merging each of its still-valid entries in position order is that loop's step: a rank names one pair, a
 * merge never forms the pair being merged again, and an entry whose symbols changed is stale and skipped.
 */

interface Node { sym: string; prev: number; next: number; alive: boolean }
interface Entry { rank: number; left: number; right: number; a: string; b: string }

/** A binary min-heap of entries ordered by rank, then by position (the left node's index). */
class PairHeap {
  private readonly items: Entry[] = [];
  get size(): number { return this.items.length; }
  peek(): Entry { return this.items[0]; }
  private less(x: Entry, y: Entry): boolean { return x.rank < y.rank || (x.rank === y.rank && x.left < y.left); }
  push(e: Entry): void {
    const h = this.items;
    h.push(e);
    for (let i = h.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }
  pop(): Entry {
    const h = this.items;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l], h[m])) m = l;
        if (r < h.length && this.less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

/** Merges `symbols` by the ranks `rankOf` gives adjacent pairs (undefined: never merged). */
export function bpeMerge(symbols: string[], rankOf: (a: string, b: string) => number | undefined): string[] {
  if (symbols.length < 2) return symbols;
  const nodes: Node[] = symbols.map((sym, i) => ({ sym, prev: i - 1, next: i + 1 < symbols.length ? i + 1 : -1, alive: true }));
  const heap = new PairHeap();
  const offer = (left: number): void => {
    const right = nodes[left].next;
    if (right < 0) return;
    const a = nodes[left].sym;
    const b = nodes[right].sym;
    const rank = rankOf(a, b);
    if (rank !== undefined) heap.push({ rank, left, right, a, b });
  };
  for (let i = 0; i + 1 < nodes.length; i++) offer(i);
  while (heap.size > 0) {
    // Every entry of the lowest rank, in position order: the occurrences of one pair, merged left to right
    // before any pair they form (whatever its rank, as the slow loop does).
    const rank = heap.peek().rank;
    const batch: Entry[] = [];
    while (heap.size > 0 && heap.peek().rank === rank) batch.push(heap.pop());
    for (const { left, right, a, b } of batch) {
      const l = nodes[left];
      const r = nodes[right];
      if (!l.alive || !r.alive || l.next !== right || l.sym !== a || r.sym !== b) continue;
      l.sym = a + b;
      l.next = r.next;
      r.alive = false;
      if (r.next >= 0) nodes[r.next].prev = left;
      if (l.prev >= 0) offer(l.prev);
      offer(left);
    }
  }
  const out: string[] = [];
  for (let i = 0; i >= 0; i = nodes[i].next) out.push(nodes[i].sym);
  return out;
}
