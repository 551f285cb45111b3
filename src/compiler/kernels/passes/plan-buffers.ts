/**
 * Pass `plan-buffers`: temporaries whose lifetimes do not overlap share a slot when they have the
 * same dtype and shape. A buffer read inside a loop but made before it stays live for the whole
 * loop; a loop's carried buffers likewise. The program gets each slot's byte size and their sum
 * (the peak temporary bytes, symbolic).
 */
import { buffersRead, type KStep } from "../kernel-ir.js";
import type { KernelPass } from "./common.js";

export const planBuffers: KernelPass = {
  name: "plan-buffers",
  run: (p) => {
    const first = new Map<number, number>();
    const last = new Map<number, number>();
    let clock = 0;
    const touch = (b: number, t: number) => {
      if (!first.has(b)) first.set(b, t);
      last.set(b, Math.max(last.get(b) ?? t, t));
    };
    const walk = (steps: readonly KStep[]): void => {
      for (const s of steps) {
        if (s.kind === "kernel") {
          const t = clock++;
          buffersRead(s).forEach((b) => touch(b, t));
          touch(s.out, t);
        } else {
          const start = clock;
          walk(s.body);
          const end = clock++;
          // Everything the body touches that was made outside it, and the carried values, live across the loop.
          for (const [b, f] of first) if (f < start && (last.get(b) ?? 0) >= start) touch(b, end);
          for (const c of s.carried) {
            touch(c.buffer, start);
            touch(c.buffer, end);
            touch(c.yields, end);
          }
        }
      }
    };
    walk(p.steps);
    touch(p.output, clock);
    const slots: { key: string; free: number; size: string }[] = [];
    const order = p.buffers.filter((b) => b.role === "temp" && first.has(b.id)).sort((a, b) => first.get(a.id)! - first.get(b.id)!);
    const slotOf = new Map<number, number>();
    for (const b of order) {
      const key = `${b.dtype}[${b.shape.join(",")}]`;
      const slot = slots.findIndex((s) => s.key === key && s.free < first.get(b.id)!);
      const size = `4*${b.shape.length ? b.shape.map((d) => `(${d})`).join("*") : "1"}`;
      const i = slot >= 0 ? slot : slots.push({ key, free: -1, size }) - 1;
      slots[i]!.free = last.get(b.id)!;
      slotOf.set(b.id, i);
    }
    const buffers = p.buffers.map((b) => (slotOf.has(b.id) ? { ...b, slot: slotOf.get(b.id)! } : b));
    const sizes = slots.map((s) => s.size);
    return { ...p, buffers, slots: sizes, peakBytes: sizes.join(" + ") || "0", passes: [...p.passes, "plan-buffers"] };
  },
};
