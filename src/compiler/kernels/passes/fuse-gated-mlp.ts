/**
 * Pass `fuse-gated-mlp`: act(x W1^T) * (x W3^T), with both matmuls reading the same x, without bias
 * or residual, and read by nothing else, becomes one `matmul_glu` kernel reading x once (SwiGLU).
 */
import { isBuf, type KKernel, type KStep } from "../kernel-ir.js";
import { producer, fusionPass, type KernelPass } from "./common.js";

function fuse(s: KKernel, out: readonly KStep[], uses: ReadonlyMap<number, number>): KStep[] | undefined {
  if (s.op !== "binary" || s.fn !== "mul" || !isBuf(s.a) || !isBuf(s.b)) return undefined;
  const a = producer(out, s.a.buffer);
  const b = producer(out, s.b.buffer);
  const gate = a?.op === "matmul" && a.act && !(b?.op === "matmul" && b.act) ? a : b?.op === "matmul" && b.act ? b : undefined;
  const up = gate === a ? b : a;
  if (gate?.op !== "matmul" || up?.op !== "matmul" || up.act || gate.residual || up.residual || gate.bias || up.bias) return undefined;
  if (gate.x.buffer !== up.x.buffer || uses.get(gate.out) !== 1 || uses.get(up.out) !== 1) return undefined;
  return [
    ...out.filter((k) => k !== gate && k !== up),
    { kind: "kernel", op: "matmul_glu", x: gate.x, gate: gate.w, up: up.w, act: gate.act!, out: s.out, from: [...gate.from, ...up.from, ...s.from] },
  ];
}

export const fuseGatedMlp: KernelPass = fusionPass("fuse-gated-mlp", fuse);
