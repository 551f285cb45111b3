/**
 * The CUDA target's kernels: one emitter per kernel op (the C-family ones shared with the CPU, the
 * matmuls, losses and embeddings its own), each rendering a macro of templates/cuda/kernels.njk.
 * A weight operand is a reader type (cuda/reader.ts) plus device pointers; fused losses take
 * scratch buffers from the graph's workspace, numbered after the planned slots and the I/O buffers.
 */
import { paramOf, paramShape } from "../../ir/queries.js";
import type { Activation, KWeight } from "../../kernels/kernel-ir.js";
import { C_EMITTERS, type EntryContext, type Emitters } from "../c/entry.js";
import type { WeightSlot } from "../weight-slots.js";

export interface CudaContext extends EntryContext {
  unfused: boolean;
  /** Reserves n workspace buffers for a kernel's scratch; returns the first index. */
  takeScratch(n: number): number;
}

interface WeightView {
  R: string;
  codes: string;
  scales: string;
  mins: string;
  zeros: string;
  books: string;
}

function weight(c: CudaContext, w: KWeight): WeightView {
  const param = paramOf(c.m, w.param.param);
  const ptr = (part: WeightSlot["part"], type: string) => c.slotPtr(w.param, part, type);
  const reader = c.a.readers.get(param.name);
  if (!reader) {
    const [rows, cols] = paramShape(c.m, param) as [number, number];
    return { R: `qzo::RdF32<${rows}, ${cols}>`, codes: ptr("data", "uint8_t"), scales: "nullptr", mins: "nullptr", zeros: "nullptr", books: "nullptr" };
  }
  return { R: `gen::${reader.name}`, codes: ptr("codes", "uint8_t"), scales: ptr("scales", "float"), mins: ptr("mins", "float"), zeros: ptr("zeros", "float"), books: ptr("books", "float") };
}

const actCode = (a: Activation | undefined) => (a ? { silu: 1, gelu: 2, relu: 3 }[a] : 0);

export const CUDA_EMITTERS: Emitters<CudaContext> = {
  ...C_EMITTERS,
  matmul: (k, c) => {
    const xs = c.shapeOf(k.x);
    return c.target.render("matmul", {
      unfused: c.unfused, comment: c.comment(k), M: c.lead(xs), K: c.lastDim(xs), N: c.dim(c.shapeOf(k.w)[0]!), x: c.buf(k.x), y: c.bufVar(k.out),
      w: weight(c, k.w), bias: k.bias ? c.vector(k.bias, "a bias") : "nullptr", hasBias: String(Boolean(k.bias)),
      residual: k.residual ? c.buf(k.residual) : "nullptr", hasRes: String(Boolean(k.residual)), act: actCode(k.act), scratch: c.unfused ? c.takeScratch(1) : 0,
    });
  },
  matmul_glu: (k, c) => {
    const xs = c.shapeOf(k.x);
    return c.target.render("matmul_glu", {
      comment: c.comment(k), M: c.lead(xs), K: c.lastDim(xs), x: c.buf(k.x), y: c.bufVar(k.out), wGate: weight(c, k.gate), wUp: weight(c, k.up), act: actCode(k.act),
    });
  },
  matmul_ce: (k, c) => {
    const xs = c.shapeOf(k.x);
    const ts = c.shapeOf(k.tokens);
    return c.target.render("matmul_ce", {
      comment: c.comment(k), B: c.dim(ts[0]!), T: c.dim(ts[1]!), K: c.lastDim(xs), x: c.buf(k.x), w: weight(c, k.w), tokens: c.buf(k.tokens),
      mask: c.buf(k.mask), out: c.bufVar(k.out), scratch: c.takeScratch(5),
    });
  },
  matmul_distill_ce: (k, c) => {
    const xs = c.shapeOf(k.x);
    const is = c.shapeOf(k.ids);
    return c.target.render("matmul_distill_ce", {
      comment: c.comment(k), B: c.dim(is[0]!), T: c.dim(is[1]!), Kt: c.dim(is[2]!), K: c.lastDim(xs), x: c.buf(k.x), w: weight(c, k.w),
      ids: c.buf(k.ids), probs: c.buf(k.probs), mask: c.buf(k.mask), out: c.bufVar(k.out), scratch: c.takeScratch(3),
    });
  },
  distill_ce: (k, c) => {
    const ls = c.shapeOf(k.logits);
    return c.target.render("distill_ce", {
      comment: c.comment(k), B: c.dim(ls[0]!), T: c.dim(ls[1]!), N: c.lastDim(ls), Kt: c.lastDim(c.shapeOf(k.ids)), logits: c.buf(k.logits),
      ids: c.buf(k.ids), probs: c.buf(k.probs), mask: c.buf(k.mask), out: c.bufVar(k.out), scratch: c.takeScratch(2),
    });
  },
  next_token_ce: (k, c) => {
    const ls = c.shapeOf(k.logits);
    return c.target.render("next_token_ce", {
      comment: c.comment(k), B: c.dim(ls[0]!), T: c.dim(ls[1]!), N: c.lastDim(ls), logits: c.buf(k.logits), tokens: c.buf(k.tokens),
      mask: c.buf(k.mask), out: c.bufVar(k.out), scratch: c.takeScratch(2),
    });
  },
  embedding: (k, c) => {
    const ts = c.shapeOf(k.table);
    const ids = c.shapeOf(k.ids);
    return c.target.render("embedding", {
      comment: c.comment(k), M: ids.map((d) => `(${c.dim(d)})`).join(" * ") || "1", K: c.dim(ts[1]!), ids: c.buf(k.ids), y: c.bufVar(k.out), w: weight(c, k.table),
    });
  },
  softmax: null,
  candidate_ce: null,
  mse: (k, c) =>
    c.target.render("mse", {
      comment: c.comment(k), E: c.elems(c.p.buffers[k.pred.buffer]!), pred: c.buf(k.pred), target: c.buf(k.target), out: c.bufVar(k.out), scratch: c.takeScratch(1),
    }),
};
