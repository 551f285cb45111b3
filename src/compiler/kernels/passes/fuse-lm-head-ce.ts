/**
 * Pass `fuse-lm-head-ce`: next_token_ce (-> matmul_ce) or distill_ce (-> matmul_distill_ce) over
 * logits that a plain matmul makes and only the loss reads: one kernel computes a few rows of
 * logits at a time and reduces them; the [B, T, V] logits are never stored.
 */
import type { KKernel, KStep } from "../kernel-ir.js";
import { producer, fusionPass, type KernelPass } from "./common.js";

function fuse(s: KKernel, out: readonly KStep[], uses: ReadonlyMap<number, number>): KStep[] | undefined {
  if (s.op !== "next_token_ce" && s.op !== "distill_ce") return undefined;
  const mm = producer(out, s.logits.buffer);
  if (mm?.op !== "matmul" || mm.act || mm.residual || mm.bias || uses.get(mm.out) !== 1) return undefined;
  const rest = out.filter((k) => k !== mm);
  const from = [...mm.from, ...s.from];
  if (s.op === "next_token_ce") return [...rest, { kind: "kernel", op: "matmul_ce", x: mm.x, w: mm.w, tokens: s.tokens, mask: s.mask, out: s.out, from }];
  return [...rest, { kind: "kernel", op: "matmul_distill_ce", x: mm.x, w: mm.w, ids: s.ids, probs: s.probs, mask: s.mask, out: s.out, from }];
}

export const fuseLmHeadCe: KernelPass = fusionPass("fuse-lm-head-ce", fuse);
