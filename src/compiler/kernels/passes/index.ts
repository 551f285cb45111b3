/**
 * The kernel passes, each a named rewrite of a kernel program, in the order a pipeline runs them
 * (`qzoc compile --emit kernels` shows the program after each):
 *
 *   fuse-epilogues      matmul + residual add / activation -> one matmul with an epilogue
 *   fuse-gated-mlp      act(x W1^T) * (x W3^T) -> one kernel reading x once (SwiGLU)
 *   fuse-lm-head-ce     next_token_ce / distill_ce(x Wout^T, ...) -> one kernel; logits never stored
 *   plan-buffers        liveness-based reuse of temporaries; peak bytes
 *
 * Both targets run the `fused` pipeline; the `unfused` one is the benchmarks' baseline (no fusion).
 */
import type { KProgram } from "../kernel-ir.js";
import type { KernelPass } from "./common.js";
import { fuseEpilogues } from "./fuse-epilogues.js";
import { fuseGatedMlp } from "./fuse-gated-mlp.js";
import { fuseLmHeadCe } from "./fuse-lm-head-ce.js";
import { planBuffers } from "./plan-buffers.js";

export type { KernelPass } from "./common.js";
export { fuseEpilogues, fuseGatedMlp, fuseLmHeadCe, planBuffers };

export const PIPELINES = {
  fused: [fuseEpilogues, fuseGatedMlp, fuseLmHeadCe, planBuffers],
  unfused: [planBuffers],
} as const satisfies Record<string, readonly KernelPass[]>;

export type PipelineName = keyof typeof PIPELINES;

/** Runs a pipeline; `each` sees the program after lowering and after every pass (for --emit). */
export function runPasses(p: KProgram, pipeline: PipelineName = "fused", each?: (pass: string, p: KProgram) => void): KProgram {
  let cur = p;
  each?.("lower-to-kernels", cur);
  for (const pass of PIPELINES[pipeline]) {
    cur = pass.run(cur);
    each?.(pass.name, cur);
  }
  return cur;
}
