/**
 * Pass `fuse-epilogues`: a matmul followed by an activation (silu, gelu, relu) or by the addition of
 * a residual of the same shape (not one that broadcasts) computed before the matmul, when nothing
 * else reads the matmul's result, becomes one matmul with that epilogue.
 */
import { isBuf, operandsOf, type Activation, type KBuf, type KKernel, type KKernelOf, type KProgram, type KStep } from "../kernel-ir.js";
import { producer, replaced, fusionPass, type KernelPass } from "./common.js";

const ACTIVATIONS: readonly string[] = ["silu", "gelu", "relu"] satisfies Activation[];

/**
 * The first operand of `s` that a matmul makes and only `s` reads, with that matmul, when the matmul
 * has no epilogue yet.
 */
function soleMatmul(s: KKernel, out: readonly KStep[], uses: ReadonlyMap<number, number>): { mine: KBuf; mm: KKernelOf<"matmul"> } | undefined {
  for (const { value } of operandsOf(s)) {
    if (!isBuf(value) || uses.get(value.buffer) !== 1) continue;
    const mm = producer(out, value.buffer);
    if (mm?.op !== "matmul") continue;
    return !mm.act && !mm.residual ? { mine: value, mm } : undefined;
  }
  return undefined;
}

function fuse(s: KKernel, out: readonly KStep[], uses: ReadonlyMap<number, number>, p: KProgram): KStep[] | undefined {
  const found = s.op === "unary" || s.op === "binary" ? soleMatmul(s, out, uses) : undefined;
  if (!found) return undefined;
  const { mine, mm } = found;
  if (s.op === "unary" && ACTIVATIONS.includes(s.fn)) {
    return replaced(out, mm, { ...mm, act: s.fn as Activation, out: s.out, from: [...mm.from, ...s.from] });
  }
  if (s.op === "binary" && s.fn === "add" && isBuf(s.a) && isBuf(s.b)) {
    const other = s.a === mine ? s.b : s.a;
    const shape = (b: number) => p.buffers[b]!.shape.join(",");
    if (shape(other.buffer) !== shape(s.out)) return undefined;
    // The fused matmul runs where the matmul ran, so the residual must exist by then.
    const made = producer(out, other.buffer);
    if (made && out.indexOf(made) > out.indexOf(mm)) return undefined;
    return replaced(out, mm, { ...mm, residual: other, out: s.out, from: [...mm.from, ...s.from] });
  }
  return undefined;
}

export const fuseEpilogues: KernelPass = fusionPass("fuse-epilogues", fuse);
