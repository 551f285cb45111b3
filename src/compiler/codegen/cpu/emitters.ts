/**
 * The CPU target's kernels: one emitter per kernel op (the C-family ones shared with CUDA, the
 * matmuls, losses and embeddings its own), each rendering a macro of templates/cpu/kernels.njk.
 * A weight operand is read one dequantized, perturbed row at a time by its format's reader.
 */
import { paramLayers, paramOf, paramShape } from "../../ir/queries.js";
import type { KParam, KWeight } from "../../kernels/kernel-ir.js";
import { C_EMITTERS, type EntryContext, type Emitters } from "../c/entry.js";
import type { WeightSlot } from "../weight-slots.js";

export interface CpuContext extends EntryContext {
  /** The unfused baseline: every matmul dequantizes its whole weight before multiplying. */
  unfused: boolean;
}

/** What kernels.njk's weightRow macro needs to read one row of a weight operand. */
interface WeightView {
  reader: string;
  codes: string;
  scales: string;
  mins: string;
  zeros: string;
  books: string;
  data: string;
  cols: number;
  t: string;
  trainable: string;
  tMin: string;
  trainableMin: string;
}

/** The trainable tensor number t of a parameter's layer, as C, and whether it is trainable at all. */
function tensorOf(c: EntryContext, kp: KParam, field: "scale" | "min"): { t: string; on: string } {
  const layers = paramLayers(paramOf(c.m, kp.param), c.ints);
  const first = c.a.manifest.trainables.find((t) => t.param === kp.param && t.field === field && t.layer === layers[0]);
  if (!first) return { t: "0", on: "false" };
  return { t: kp.index === undefined ? `${first.t}` : `${first.t} + (uint32_t)((${c.dim(kp.index)}) - ${layers[0] ?? 0})`, on: "true" };
}

function weight(c: CpuContext, w: KWeight): WeightView {
  const param = paramOf(c.m, w.param.param);
  const slot = (part: WeightSlot["part"], type: string) => c.slotPtr(w.param, part, type);
  const reader = c.a.readers.get(param.name);
  if (!reader) {
    const [, cols] = paramShape(c.m, param) as [number, number];
    return { reader: "", codes: "", scales: "", mins: "", zeros: "", books: "", data: slot("data", "float"), cols, t: "0", trainable: "false", tMin: "0", trainableMin: "false" };
  }
  const sc = tensorOf(c, w.param, "scale");
  const mn = tensorOf(c, w.param, "min");
  return {
    reader: `gen::${reader.name}`, codes: slot("codes", "uint8_t"), scales: slot("scales", "float"), mins: slot("mins", "float"), zeros: slot("zeros", "float"), books: slot("books", "float"),
    data: "", cols: reader.cols, t: sc.t, trainable: sc.on, tMin: mn.t, trainableMin: mn.on,
  };
}

export const CPU_EMITTERS: Emitters<CpuContext> = {
  ...C_EMITTERS,
  matmul: (k, c) => {
    const xs = c.shapeOf(k.x);
    return c.target.render("matmul", {
      unfused: c.unfused, comment: c.comment(k), M: c.lead(xs), K: c.lastDim(xs), N: c.dim(c.shapeOf(k.w)[0]!), x: c.buf(k.x), y: c.bufVar(k.out),
      w: weight(c, k.w), bias: k.bias ? c.vector(k.bias, "a bias") : "", residual: k.residual ? c.buf(k.residual) : "", act: k.act ?? "",
    });
  },
  matmul_glu: (k, c) => {
    const xs = c.shapeOf(k.x);
    return c.target.render("matmul_glu", {
      comment: c.comment(k), M: c.lead(xs), K: c.lastDim(xs), N: c.dim(c.shapeOf(k.gate)[0]!), x: c.buf(k.x), y: c.bufVar(k.out),
      wGate: weight(c, k.gate), wUp: weight(c, k.up), act: k.act,
    });
  },
  matmul_ce: (k, c) => {
    const xs = c.shapeOf(k.x);
    const ts = c.shapeOf(k.tokens);
    return c.target.render("matmul_ce", {
      comment: c.comment(k), B: c.dim(ts[0]!), T: c.dim(ts[1]!), K: c.lastDim(xs), N: c.dim(c.shapeOf(k.w)[0]!), x: c.buf(k.x), w: weight(c, k.w),
      tokens: c.buf(k.tokens), mask: c.buf(k.mask), out: c.bufVar(k.out),
    });
  },
  matmul_distill_ce: (k, c) => {
    const xs = c.shapeOf(k.x);
    const is = c.shapeOf(k.ids);
    return c.target.render("matmul_distill_ce", {
      comment: c.comment(k), B: c.dim(is[0]!), T: c.dim(is[1]!), Kt: c.dim(is[2]!), K: c.lastDim(xs), N: c.dim(c.shapeOf(k.w)[0]!), x: c.buf(k.x),
      w: weight(c, k.w), ids: c.buf(k.ids), probs: c.buf(k.probs), mask: c.buf(k.mask), out: c.bufVar(k.out),
    });
  },
  distill_ce: (k, c) => {
    const ls = c.shapeOf(k.logits);
    return c.target.render("distill_ce", {
      comment: c.comment(k), B: c.dim(ls[0]!), T: c.dim(ls[1]!), N: c.lastDim(ls), Kt: c.lastDim(c.shapeOf(k.ids)), logits: c.buf(k.logits),
      ids: c.buf(k.ids), probs: c.buf(k.probs), mask: c.buf(k.mask), out: c.bufVar(k.out),
    });
  },
  next_token_ce: (k, c) => {
    const ls = c.shapeOf(k.logits);
    return c.target.render("next_token_ce", {
      comment: c.comment(k), B: c.dim(ls[0]!), T: c.dim(ls[1]!), N: c.lastDim(ls), logits: c.buf(k.logits), tokens: c.buf(k.tokens),
      mask: c.buf(k.mask), out: c.bufVar(k.out),
    });
  },
  embedding: (k, c) => {
    const ts = c.shapeOf(k.table);
    const ids = c.shapeOf(k.ids);
    return c.target.render("embedding", {
      comment: c.comment(k), M: ids.map((d) => `(${c.dim(d)})`).join(" * ") || "1", K: c.dim(ts[1]!), N: c.dim(ts[0]!), ids: c.buf(k.ids),
      y: c.bufVar(k.out), w: weight(c, k.table),
    });
  },
  softmax: null,
  candidate_ce: null,
  mse: (k, c) =>
    c.target.render("mse", {
      comment: c.comment(k), E: c.elems(c.p.buffers[k.pred.buffer]!), pred: c.buf(k.pred), target: c.buf(k.target), out: c.bufVar(k.out),
    }),
};
