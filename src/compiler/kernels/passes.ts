/**
 * The kernel passes, each a named rewrite of a kernel program, applied in the
 * order of PASSES (`qzoc compile --emit kernels` shows the program after each).
 *
 *   fuse-epilogues      matmul + bias/residual add/activation -> one matmul with an epilogue
 *   fuse-gated-mlp      silu(x W1^T) * (x W3^T) -> one kernel reading x once (SwiGLU)
 *   fuse-lm-head-ce     next_token_ce / distill_ce(x Wout^T, ...) -> one kernel; logits never stored
 *   plan-buffers        liveness-based reuse of temporaries; peak bytes
 */
import type { KArg, KKernel, KProgram, KStep } from "./kernel-ir.js";
import { kernelsOf } from "./kernel-ir.js";

export interface KernelPass {
  name: string;
  run(p: KProgram): KProgram;
}

/** How many kernels (and loop yields, and the program output) read each buffer. */
function useCounts(p: KProgram): Map<number, number> {
  const uses = new Map<number, number>();
  const bump = (b: number) => uses.set(b, (uses.get(b) ?? 0) + 1);
  const walk = (steps: KStep[]) => {
    for (const s of steps) {
      if (s.kind === "kernel") {
        for (const a of s.args) if ("buffer" in a) bump(a.buffer);
      } else {
        for (const c of s.carried) bump(c.yields);
        walk(s.body);
      }
    }
  };
  walk(p.steps);
  bump(p.output);
  return uses;
}

const isBuf = (a: KArg | undefined, b: number): boolean => a !== undefined && "buffer" in a && a.buffer === b;

/**
 * Rewrites each step list (loop bodies too): `f(steps, uses)` returns the new list.
 * A fusion only joins kernels of the same list, where the producer comes first.
 */
function rewrite(p: KProgram, name: string, f: (steps: KStep[], uses: Map<number, number>) => KStep[]): KProgram {
  const uses = useCounts(p);
  const walk = (steps: KStep[]): KStep[] =>
    f(steps, uses).map((s) => (s.kind === "loop" ? { ...s, body: walk(s.body) } : s));
  return { ...p, steps: walk(p.steps), passes: [...p.passes, name] };
}

function producer(steps: KStep[], buffer: number): KKernel | undefined {
  return steps.find((s): s is KKernel => s.kind === "kernel" && s.outputs.includes(buffer));
}

/** matmul followed by `+ r` (residual) and/or an activation, when the matmul's result has no other use. */
const fuseEpilogues: KernelPass = {
  name: "fuse-epilogues",
  run: (p) =>
    rewrite(p, "fuse-epilogues", (steps, uses) => {
      const out: KStep[] = [];
      for (const s of steps) {
        if (s.kind === "kernel" && (s.op === "unary" || s.op === "binary")) {
          // The operand made by a matmul that nothing else reads.
          const src = s.args.find(
            (a) => "buffer" in a && uses.get(a.buffer) === 1 && producer(out, a.buffer)?.op === "matmul",
          ) as { buffer: number } | undefined;
          const mm = src && producer(out, src.buffer);
          if (src && mm && !mm.attrs["act"] && !mm.attrs["residual"]) {
            if (s.op === "unary" && ["silu", "gelu", "relu"].includes(String(s.attrs["fn"]))) {
              mm.attrs["act"] = String(s.attrs["fn"]);
              mm.outputs = s.outputs;
              mm.from.push(...s.from);
              continue;
            }
            const other = s.args.find((a) => !isBuf(a, src.buffer));
            if (s.op === "binary" && s.attrs["fn"] === "add" && s.args.length === 2 && other && "buffer" in other) {
              mm.attrs["residual"] = true;
              mm.args = [...mm.args.slice(0, 2), ...(mm.args.length > 2 ? [mm.args[2]!] : []), other];
              mm.attrs["has_bias"] = mm.args.length === 4;
              mm.outputs = s.outputs;
              mm.from.push(...s.from);
              continue;
            }
          }
        }
        out.push(s);
      }
      return out;
    }),
};

/** silu(x W1^T) * (x W3^T) with both matmuls single-use and reading the same x. */
const fuseGatedMlp: KernelPass = {
  name: "fuse-gated-mlp",
  run: (p) =>
    rewrite(p, "fuse-gated-mlp", (steps, uses) => {
      const out: KStep[] = [];
      for (const s of steps) {
        if (s.kind === "kernel" && s.op === "binary" && s.attrs["fn"] === "mul" && s.args.length === 2) {
          const [a, b] = s.args.map((x) => ("buffer" in x ? producer(out, x.buffer) : undefined));
          const gate = a?.op === "matmul" && a.attrs["act"] && !b?.attrs["act"] ? a : b?.op === "matmul" && b.attrs["act"] ? b : undefined;
          const up = gate === a ? b : a;
          const ok =
            gate && up && up.op === "matmul" && !up.attrs["act"] && !gate.attrs["residual"] && !up.attrs["residual"] &&
            gate.args.length === 2 && up.args.length === 2 && isBuf(gate.args[0], (up.args[0] as { buffer: number }).buffer) &&
            uses.get(gate.outputs[0]!) === 1 && uses.get(up.outputs[0]!) === 1;
          if (ok) {
            out.splice(out.indexOf(gate), 1);
            out.splice(out.indexOf(up), 1);
            out.push({
              kind: "kernel",
              op: "matmul_glu",
              args: [gate.args[0]!, gate.args[1]!, up.args[1]!],
              outputs: s.outputs,
              attrs: { act: String(gate.attrs["act"]) },
              from: [...gate.from, ...up.from, ...s.from],
            });
            continue;
          }
        }
        out.push(s);
      }
      return out;
    }),
};

/**
 * next_token_ce (-> matmul_ce) or distill_ce (-> matmul_distill_ce) over logits that only the loss
 * reads: the logits of a few rows at a time, never stored. The fused kernel's args are the matmul's
 * (x, w) followed by the loss's own args after the logits.
 */
const FUSED_LOSS: Record<string, string> = { next_token_ce: "matmul_ce", distill_ce: "matmul_distill_ce" };

const fuseLmHeadCe: KernelPass = {
  name: "fuse-lm-head-ce",
  run: (p) =>
    rewrite(p, "fuse-lm-head-ce", (steps, uses) => {
      const out: KStep[] = [];
      for (const s of steps) {
        const fused = s.kind === "kernel" ? FUSED_LOSS[s.op] : undefined;
        if (s.kind === "kernel" && fused) {
          const logits = s.args[0]!;
          const mm = "buffer" in logits ? producer(out, logits.buffer) : undefined;
          if (mm && mm.op === "matmul" && !mm.attrs["act"] && !mm.attrs["residual"] && mm.args.length === 2 && uses.get(mm.outputs[0]!) === 1) {
            out.splice(out.indexOf(mm), 1);
            out.push({ kind: "kernel", op: fused, args: [mm.args[0]!, mm.args[1]!, ...s.args.slice(1)], outputs: s.outputs, attrs: {}, from: [...mm.from, ...s.from] });
            continue;
          }
        }
        out.push(s);
      }
      return out;
    }),
};

/**
 * Temporaries whose lifetimes do not overlap share a slot when they have the same
 * dtype and shape. A buffer read inside a loop but made before it stays live for the
 * whole loop; a loop's carried buffers likewise.
 */
const planBuffers: KernelPass = {
  name: "plan-buffers",
  run: (p) => {
    const first = new Map<number, number>();
    const last = new Map<number, number>();
    let clock = 0;
    const touch = (b: number, t: number) => {
      if (!first.has(b)) first.set(b, t);
      last.set(b, Math.max(last.get(b) ?? t, t));
    };
    const walk = (steps: KStep[]): void => {
      for (const s of steps) {
        if (s.kind === "kernel") {
          const t = clock++;
          for (const a of s.args) if ("buffer" in a) touch(a.buffer, t);
          for (const o of s.outputs) touch(o, t);
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
    const order = [...p.buffers].filter((b) => b.role === "temp" && first.has(b.id)).sort((a, b) => first.get(a.id)! - first.get(b.id)!);
    const buffers = p.buffers.map((b) => ({ ...b }));
    for (const b of order) {
      const key = `${b.dtype}[${b.shape.join(",")}]`;
      const slot = slots.findIndex((s) => s.key === key && s.free < first.get(b.id)!);
      const size = `4*${b.shape.length ? b.shape.map((d) => `(${d})`).join("*") : "1"}`;
      const i = slot >= 0 ? slot : slots.push({ key, free: -1, size }) - 1;
      slots[i]!.free = last.get(b.id)!;
      buffers[b.id]!.slot = i;
    }
    return { ...p, buffers, slots: slots.map((s) => s.size), peakBytes: slots.map((s) => s.size).join(" + ") || "0", passes: [...p.passes, "plan-buffers"] };
  },
};

export const PASSES: readonly KernelPass[] = [fuseEpilogues, fuseGatedMlp, fuseLmHeadCe, planBuffers];

/** Runs the pass pipeline (or only the passes named in `only`); `each` sees the program after every pass (for --emit). */
export function runPasses(p: KProgram, each?: (pass: string, p: KProgram) => void, only?: string[]): KProgram {
  let cur = p;
  each?.("lower-to-kernels", cur);
  for (const pass of PASSES) {
    if (only && !only.includes(pass.name)) continue;
    cur = pass.run(cur);
    each?.(pass.name, cur);
  }
  return cur;
}

export { kernelsOf };
