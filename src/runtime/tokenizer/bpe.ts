/**
 * The merge loop shared by every tokenizer here: repeatedly merge the adjacent pair of
 * symbols with the highest priority, the leftmost one on ties, until no pair merges.
 * That is exactly llama2.c run.c's O(n²) loop (which scans pairs left to right and keeps
 * the first strictly better one), SentencePiece's and llama.cpp's agenda, and Hugging
 * Face's BPE merge queue (priority = -rank), done with a heap and a linked list so long
 * texts stay fast.
 */

export interface Sym {
  /** Text used to form merged pieces. */
  text: string;
  /** Vocabulary id, or -1 for a character the vocabulary lacks. */
  id: number;
  /** Position of the symbol's first character: orders ties, left first. */
  readonly start: number;
  prev: Sym | null;
  next: Sym | null;
  alive: boolean;
  version: number;
}

export interface Merge {
  id: number;
  text: string;
  priority: number;
}

/** What merging `a` and `b` gives, or undefined if they do not merge. */
export type PairRule = (a: Sym, b: Sym) => Merge | undefined;

interface Candidate {
  left: Sym;
  right: Sym;
  leftVersion: number;
  rightVersion: number;
  merge: Merge;
}

function better(x: Candidate, y: Candidate): boolean {
  if (x.merge.priority !== y.merge.priority) return x.merge.priority > y.merge.priority;
  return x.left.start < y.left.start;
}

class Heap {
  private readonly a: Candidate[] = [];
  get size(): number {
    return this.a.length;
  }
  push(c: Candidate): void {
    const a = this.a;
    a.push(c);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!better(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): Candidate {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && better(a[l]!, a[m]!)) m = l;
        if (r < a.length && better(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

export function makeSymbols(items: readonly { text: string; id: number }[]): Sym[] {
  const syms: Sym[] = items.map((it, i) => ({ text: it.text, id: it.id, start: i, prev: null, next: null, alive: true, version: 0 }));
  for (let i = 0; i < syms.length; i++) {
    syms[i]!.prev = i > 0 ? syms[i - 1]! : null;
    syms[i]!.next = i + 1 < syms.length ? syms[i + 1]! : null;
  }
  return syms;
}

/** Runs the merges; returns the surviving symbols in order. */
export function mergeAll(syms: Sym[], rule: PairRule): Sym[] {
  if (syms.length === 0) return [];
  const heap = new Heap();
  const consider = (left: Sym | null, right: Sym | null): void => {
    if (left === null || right === null) return;
    const merge = rule(left, right);
    if (merge !== undefined) heap.push({ left, right, leftVersion: left.version, rightVersion: right.version, merge });
  };
  for (let s: Sym | null = syms[0]!; s !== null; s = s.next) consider(s, s.next);
  while (heap.size > 0) {
    const c = heap.pop();
    const { left, right } = c;
    if (!left.alive || !right.alive || left.next !== right) continue;
    if (left.version !== c.leftVersion || right.version !== c.rightVersion) continue;
    left.text = c.merge.text;
    left.id = c.merge.id;
    left.version++;
    right.alive = false;
    left.next = right.next;
    if (right.next !== null) right.next.prev = left;
    consider(left.prev, left);
    consider(left, left.next);
  }
  const out: Sym[] = [];
  for (let s: Sym | null = syms[0]!; s !== null; s = s.next) out.push(s);
  return out;
}
