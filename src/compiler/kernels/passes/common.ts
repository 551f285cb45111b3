/**
 * What the kernel passes share: the pass type, use counts, and a pure rewrite of every step list of
 * a program (loop bodies too). A pass returns a new program; its input is never modified.
 */
import { buffersRead, type KKernel, type KProgram, type KStep } from "../kernel-ir.js";

export interface KernelPass {
  name: string;
  run(p: KProgram): KProgram;
}

/** How many kernels (and loop yields, and the program output) read each buffer. */
export function useCounts(p: KProgram): Map<number, number> {
  const uses = new Map<number, number>();
  const bump = (b: number) => uses.set(b, (uses.get(b) ?? 0) + 1);
  const walk = (steps: readonly KStep[]) => {
    for (const s of steps) {
      if (s.kind === "kernel") buffersRead(s).forEach(bump);
      else {
        s.carried.forEach((c) => bump(c.yields));
        walk(s.body);
      }
    }
  };
  walk(p.steps);
  bump(p.output);
  return uses;
}

/**
 * Rewrites each step list (loop bodies too) with `f(steps, uses)`, which returns a new list. A
 * fusion only joins kernels of the same list, where the producer comes first.
 */
export function rewriteSteps(p: KProgram, name: string, f: (steps: readonly KStep[], uses: ReadonlyMap<number, number>) => KStep[]): KProgram {
  const uses = useCounts(p);
  const walk = (steps: readonly KStep[]): KStep[] => f(steps, uses).map((s) => (s.kind === "loop" ? { ...s, body: walk(s.body) } : s));
  return { ...p, steps: walk(p.steps), passes: [...p.passes, name] };
}

/**
 * A fusion pass: each step list is rebuilt step by step, and `fuse(s, done, uses)` may return the
 * list so far with kernel `s` fused into it (undefined: `s` is appended as it is).
 */
export function fusionPass(
  name: string,
  fuse: (s: KKernel, done: readonly KStep[], uses: ReadonlyMap<number, number>, p: KProgram) => KStep[] | undefined,
): KernelPass {
  return {
    name,
    run: (p) =>
      rewriteSteps(p, name, (steps, uses) => {
        let out: KStep[] = [];
        for (const s of steps) out = (s.kind === "kernel" && fuse(s, out, uses, p)) || [...out, s];
        return out;
      }),
  };
}

/** The kernel of `steps` that writes `buffer`. */
export function producer(steps: readonly KStep[], buffer: number): KKernel | undefined {
  return steps.find((s): s is KKernel => s.kind === "kernel" && s.out === buffer);
}

/** `list` with `old` replaced by `next` (a new array). */
export function replaced<T>(list: readonly T[], old: T, next: T): T[] {
  return list.map((x) => (x === old ? next : x));
}
