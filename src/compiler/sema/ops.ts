/**
 * The operations a graph may call: their arguments, attributes, typing rules
 * and lowering to a kernel op. Adding an op means adding an entry here, its
 * semantics in the interpreter and one emitter per code-generation target;
 * the parser knows nothing of op names.
 */
import type { AttrValue, DType } from "../ir/ir.js";
import { Sym } from "../ir/symbolic.js";
import type { KBuf, KOp, KOperand, KScalar, KWeight } from "../kernels/kernel-ir.js";

/** A value's type while checking: dtype or format name, and symbolic shape. */
export interface CType {
  elem: { kind: "dtype"; dtype: DType } | { kind: "quant"; format: string };
  shape: Sym[];
}

export type ArgKind = "float" | "int" | "weight";

export interface AttrSpec {
  type: "int" | "float" | "bool" | "enum";
  values?: readonly string[];
  default?: AttrValue;
  /** The smallest value allowed (numbers; non-finite values are always refused). */
  min?: number;
  minExclusive?: boolean;
}

export interface InferCtx {
  /** Reports a type error at argument `arg` (or at the call when undefined) and stops. */
  fail(message: string, arg?: number): never;
  /** True when the two dimensions are provably equal. */
  same(a: Sym, b: Sym): boolean;
  /** False when, with the config defaults, b does not divide a. */
  divides(a: Sym, b: Sym): boolean;
  show(d: Sym): string;
  /** The value of an integer attribute, as a dimension. */
  dim(attr: string): Sym;
  attrs: Record<string, AttrValue>;
}

/** What lowering an IR node to a kernel op can ask of the node (kernels/lower.ts implements it). */
export interface LowerArgs {
  /** Input i, which must be a computed value. */
  buf(i: number): KBuf;
  /** Input i, which must be a parameter. */
  weight(i: number): KWeight;
  /** Input i: a computed value or a parameter. */
  operand(i: number): KOperand;
  /** Input i when the node has it. */
  optional(i: number): KOperand | undefined;
  /** Input i: a computed value or a compile-time constant. */
  valueOrScalar(i: number): KBuf | KScalar;
  /** An attribute that is a compile-time integer, number, flag or name. */
  int(attr: string): number;
  num(attr: string): number;
  bool(attr: string): boolean;
  str<T extends string>(attr: string): T;
}

/** An op's lowering: the kernel op that computes one IR node. */
export type Lowering = (a: LowerArgs) => KOp;

export interface OpSpec {
  args: { name: string; kind: ArgKind; optional?: boolean }[];
  attrs: Record<string, AttrSpec>;
  infer(ctx: InferCtx, args: CType[]): CType;
  kernel: Lowering;
  doc: string;
}

const f32 = (shape: Sym[]): CType => ({ elem: { kind: "dtype", dtype: "f32" }, shape });
const i32 = (shape: Sym[]): CType => ({ elem: { kind: "dtype", dtype: "i32" }, shape });
const last = (t: CType): Sym => t.shape[t.shape.length - 1]!;

function rank(ctx: InferCtx, t: CType, min: number, arg: number, what: string): void {
  if (t.shape.length < min) ctx.fail(`${what} needs at least ${min} dimensions, found ${t.shape.length}`, arg);
}

function rankIs(ctx: InferCtx, t: CType, n: number, arg: number, what: string): void {
  if (t.shape.length !== n) ctx.fail(`${what} must have ${n} dimension${n === 1 ? "" : "s"}, found ${t.shape.length}`, arg);
}

function sameShape(ctx: InferCtx, a: CType, b: CType, arg: number, what: string): void {
  const ok = a.shape.length === b.shape.length && a.shape.every((d, i) => ctx.same(d, b.shape[i]!));
  if (!ok) ctx.fail(`${what}: shapes [${a.shape.map(ctx.show).join(", ")}] and [${b.shape.map(ctx.show).join(", ")}] differ`, arg);
}

function dimIs(ctx: InferCtx, got: Sym, want: Sym, arg: number, what: string): void {
  if (!ctx.same(got, want)) ctx.fail(`${what} is ${ctx.show(got)}, expected ${ctx.show(want)}`, arg);
}

/** The patch grid (h, w) of an image tensor [B, C, h*p, w*p] for the op's `patch` attribute. */
function grid(ctx: InferCtx, x: CType, arg: number, what: string): [Sym, Sym] {
  rankIs(ctx, x, 4, arg, what);
  const p = ctx.dim("patch");
  for (const i of [2, 3]) if (!ctx.divides(x.shape[i]!, p)) ctx.fail(`dimension ${i} (${ctx.show(x.shape[i]!)}) is not a multiple of patch = ${ctx.show(p)}`, arg);
  return [x.shape[2]!.div(p), x.shape[3]!.div(p)];
}

const unary = (doc: string, kernel: Lowering): OpSpec => ({ args: [{ name: "x", kind: "float" }], attrs: {}, infer: (_c, [x]) => f32(x!.shape), kernel, doc });

export const OPS: Record<string, OpSpec> = {
  embedding: {
    doc: "embedding(table[V, D], ids[...]) -> f32[..., D]: rows of a float or quantized table",
    args: [{ name: "table", kind: "weight" }, { name: "ids", kind: "int" }],
    attrs: {},
    kernel: (a) => ({ op: "embedding", table: a.weight(0), ids: a.buf(1) }),
    infer: (ctx, [table, ids]) => {
      rankIs(ctx, table!, 2, 0, "an embedding table");
      return f32([...ids!.shape, last(table!)]);
    },
  },
  linear: {
    doc: "linear(x[..., K], w[N, K], bias[N]?) -> f32[..., N] = x w^T + bias",
    args: [{ name: "x", kind: "float" }, { name: "w", kind: "weight" }, { name: "bias", kind: "float", optional: true }],
    attrs: {},
    kernel: (a) => ({ op: "matmul", x: a.buf(0), w: a.weight(1), ...(a.optional(2) ? { bias: a.optional(2)! } : {}) }),
    infer: (ctx, [x, w, bias]) => {
      rank(ctx, x!, 1, 0, "linear's input");
      rankIs(ctx, w!, 2, 1, "a linear weight");
      dimIs(ctx, last(x!), w!.shape[1]!, 0, "the input's last dimension");
      if (bias) {
        rankIs(ctx, bias, 1, 2, "a bias");
        dimIs(ctx, bias.shape[0]!, w!.shape[0]!, 2, "the bias length");
      }
      return f32([...x!.shape.slice(0, -1), w!.shape[0]!]);
    },
  },
  rmsnorm: {
    doc: "rmsnorm(x[..., D], w[G], eps) = x / sqrt(mean(x^2) + eps) * w over each group of G = len(w) values (G = D: the whole row; G = head_dim: per head)",
    args: [{ name: "x", kind: "float" }, { name: "w", kind: "float" }],
    attrs: { eps: { type: "float", default: 1e-5, min: 0 } },
    kernel: (a) => ({ op: "rmsnorm", x: a.buf(0), w: a.operand(1), eps: a.num("eps") }),
    infer: (ctx, [x, w]) => {
      rank(ctx, x!, 1, 0, "rmsnorm's input");
      rankIs(ctx, w!, 1, 1, "a norm weight");
      if (!ctx.same(w!.shape[0]!, last(x!)) && !ctx.divides(last(x!), w!.shape[0]!)) {
        ctx.fail(`the norm weight's length ${ctx.show(w!.shape[0]!)} does not divide the last dimension ${ctx.show(last(x!))}`, 1);
      }
      return f32(x!.shape);
    },
  },
  layernorm: {
    doc: "layernorm(x[..., D], w[D]?, b[D]?, eps) = (x - mean) / sqrt(var + eps) * w + b (biased variance; without w and b, no affine part)",
    args: [{ name: "x", kind: "float" }, { name: "w", kind: "float", optional: true }, { name: "b", kind: "float", optional: true }],
    attrs: { eps: { type: "float", default: 1e-5, min: 0 } },
    kernel: (a) => ({ op: "layernorm", x: a.buf(0), ...(a.optional(1) ? { w: a.optional(1)! } : {}), ...(a.optional(2) ? { b: a.optional(2)! } : {}), eps: a.num("eps") }),
    infer: (ctx, [x, w, b]) => {
      rank(ctx, x!, 1, 0, "layernorm's input");
      if (w && !b) ctx.fail("a weight needs a bias too: layernorm(x, w, b) or layernorm(x)", 1);
      for (const [i, t] of [[1, w], [2, b]] as const) {
        if (!t) continue;
        rankIs(ctx, t, 1, i, "a norm weight");
        dimIs(ctx, t.shape[0]!, last(x!), i, "the norm weight's length");
      }
      return f32(x!.shape);
    },
  },
  rope: {
    doc: "rope(x[B, T, H*hd], heads, theta, style) rotates each head's pairs by position; style interleaved (llama2.c, GGUF) or rotate_half (Hugging Face)",
    args: [{ name: "x", kind: "float" }],
    attrs: {
      heads: { type: "int", min: 1 },
      theta: { type: "float", default: 10000, min: 0, minExclusive: true },
      style: { type: "enum", values: ["interleaved", "rotate_half"], default: "interleaved" },
    },
    kernel: (a) => ({ op: "rope", x: a.buf(0), heads: a.int("heads"), theta: a.num("theta"), style: a.str("style") }),
    infer: (ctx, [x]) => {
      rankIs(ctx, x!, 3, 0, "rope's input [B, T, heads*head_dim]");
      if (!ctx.divides(last(x!), ctx.dim("heads"))) {
        ctx.fail(`the last dimension ${ctx.show(last(x!))} is not a multiple of heads = ${ctx.show(ctx.dim("heads"))}`, 0);
      }
      return f32(x!.shape);
    },
  },
  attention: {
    doc: "attention(q[B, T, H*hd], k[B, S, KH*hd], v[B, S, KH*hd], heads, kv_heads, causal) -> f32[B, T, H*hd], softmax(q k^T / sqrt(hd)) v with grouped-query heads (causal: S = T)",
    args: [{ name: "q", kind: "float" }, { name: "k", kind: "float" }, { name: "v", kind: "float" }],
    attrs: { heads: { type: "int", min: 1 }, kv_heads: { type: "int", min: 1 }, causal: { type: "bool", default: true } },
    kernel: (a) => ({ op: "attention", q: a.buf(0), k: a.buf(1), v: a.buf(2), heads: a.int("heads"), kvHeads: a.int("kv_heads"), causal: a.bool("causal") }),
    infer: (ctx, [q, k, v]) => {
      rankIs(ctx, q!, 3, 0, "attention's q [B, T, heads*head_dim]");
      rankIs(ctx, k!, 3, 1, "attention's k");
      rankIs(ctx, v!, 3, 2, "attention's v");
      if (!ctx.divides(last(q!), ctx.dim("heads"))) {
        ctx.fail(`q's last dimension ${ctx.show(last(q!))} is not a multiple of heads = ${ctx.show(ctx.dim("heads"))}`, 0);
      }
      const hd = last(q!).div(ctx.dim("heads"));
      const kvWidth = ctx.dim("kv_heads").mul(hd);
      dimIs(ctx, last(k!), kvWidth, 1, "k's last dimension (kv_heads * head_dim)");
      dimIs(ctx, last(v!), kvWidth, 2, "v's last dimension (kv_heads * head_dim)");
      for (const [i, t] of [[1, k!], [2, v!]] as const) dimIs(ctx, t.shape[0]!, q!.shape[0]!, i, "the batch dimension");
      dimIs(ctx, v!.shape[1]!, k!.shape[1]!, 2, "v's sequence dimension (that of k)");
      if (ctx.attrs["causal"] !== false) dimIs(ctx, k!.shape[1]!, q!.shape[1]!, 1, "k's sequence dimension (causal attention: that of q)");
      const h = ctx.attrs["heads"];
      const kh = ctx.attrs["kv_heads"];
      if (typeof h === "number" && typeof kh === "number" && h % kh !== 0) {
        ctx.fail(`heads = ${h} is not a multiple of kv_heads = ${kh}`);
      }
      return f32(q!.shape);
    },
  },
  silu: unary("silu(x) = x * sigmoid(x)", (a) => ({ op: "unary", fn: "silu", x: a.buf(0) })),
  gelu: unary("gelu(x) = x * Phi(x) (the erf form)", (a) => ({ op: "unary", fn: "gelu", x: a.buf(0) })),
  gelu_tanh: unary("gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (the tanh approximation)", (a) => ({ op: "unary", fn: "gelu_tanh", x: a.buf(0) })),
  relu: unary("relu(x) = max(x, 0)", (a) => ({ op: "unary", fn: "relu", x: a.buf(0) })),
  softmax: unary("softmax(x) along the last dimension", (a) => ({ op: "softmax", x: a.buf(0) })),
  positions: {
    doc: "positions(tokens[B, T], offset) -> i32[B, T] = t + offset (learned position tables)",
    args: [{ name: "tokens", kind: "int" }],
    attrs: { offset: { type: "int", default: 0, min: 0 } },
    kernel: (a) => ({ op: "positions", tokens: a.buf(0), offset: a.int("offset") }),
    infer: (ctx, [t]) => {
      rankIs(ctx, t!, 2, 0, "positions' input [B, T]");
      return i32(t!.shape);
    },
  },
  unsqueeze: {
    doc: "unsqueeze(x, axis, count = 1): x with count dimensions of size 1 inserted before dimension axis (the same values)",
    args: [{ name: "x", kind: "float" }],
    attrs: { axis: { type: "int", min: 0 }, count: { type: "int", default: 1, min: 1 } },
    kernel: (a) => ({ op: "copy", x: a.buf(0) }),
    infer: (ctx, [x]) => {
      const axis = ctx.attrs["axis"] as number;
      if (axis > x!.shape.length) ctx.fail(`axis ${axis} is past the last dimension (the input has ${x!.shape.length})`);
      const ones = Array.from({ length: ctx.attrs["count"] as number }, () => Sym.int(1));
      return f32([...x!.shape.slice(0, axis), ...ones, ...x!.shape.slice(axis)]);
    },
  },
  chunk: {
    doc: "chunk(x[..., parts*D], parts, index) -> f32[..., D]: the index-th of parts equal pieces of the last dimension",
    args: [{ name: "x", kind: "float" }],
    attrs: { parts: { type: "int", min: 1 }, index: { type: "int", min: 0 } },
    kernel: (a) => ({ op: "chunk", x: a.buf(0), parts: a.int("parts"), index: a.int("index") }),
    infer: (ctx, [x]) => {
      rank(ctx, x!, 1, 0, "chunk's input");
      const parts = ctx.dim("parts");
      if (!ctx.divides(last(x!), parts)) ctx.fail(`the last dimension ${ctx.show(last(x!))} is not a multiple of parts = ${ctx.show(parts)}`, 0);
      if ((ctx.attrs["index"] as number) >= (ctx.attrs["parts"] as number)) ctx.fail(`index ${String(ctx.attrs["index"])} is not below parts = ${String(ctx.attrs["parts"])}`);
      return f32([...x!.shape.slice(0, -1), last(x!).div(parts)]);
    },
  },
  concat: {
    doc: "concat(a, b, axis = 1): a then b along dimension axis; the other dimensions agree",
    args: [{ name: "a", kind: "float" }, { name: "b", kind: "float" }],
    attrs: { axis: { type: "int", default: 1, min: 0 } },
    kernel: (a) => ({ op: "concat", a: a.buf(0), b: a.buf(1), axis: a.int("axis") }),
    infer: (ctx, [x, y]) => {
      const axis = ctx.attrs["axis"] as number;
      if (axis >= x!.shape.length) ctx.fail(`axis ${axis} is past the last dimension (the inputs have ${x!.shape.length})`);
      rankIs(ctx, y!, x!.shape.length, 1, "concat's second input");
      x!.shape.forEach((d, i) => i !== axis && dimIs(ctx, y!.shape[i]!, d, 1, `dimension ${i}`));
      return f32(x!.shape.map((d, i) => (i === axis ? d.add(y!.shape[i]!) : d)));
    },
  },
  patchify: {
    doc: "patchify(x[B, C, h*p, w*p], patch = p) -> f32[B, h*w, C*p*p]: non-overlapping p x p patches, row-major over the grid, each as (channel, dy, dx) (a stride-p convolution's input)",
    args: [{ name: "x", kind: "float" }],
    attrs: { patch: { type: "int", min: 1 } },
    kernel: (a) => ({ op: "patchify", x: a.buf(0), patch: a.int("patch") }),
    infer: (ctx, [x]) => {
      const [h, w] = grid(ctx, x!, 0, "patchify's input [B, C, H, W]");
      const p = ctx.dim("patch");
      return f32([x!.shape[0]!, h.mul(w), x!.shape[1]!.mul(p).mul(p)]);
    },
  },
  unpatchify: {
    doc: "unpatchify(y[B, h*w, p*p*C], like[B, C', h*p, w*p], patch = p) -> f32[B, C, h*p, w*p]: the inverse layout of a patch grid, each token as (dy, dx, channel) (diffusers' unpatchify)",
    args: [{ name: "y", kind: "float" }, { name: "like", kind: "float" }],
    attrs: { patch: { type: "int", min: 1 } },
    kernel: (a) => ({ op: "unpatchify", y: a.buf(0), like: a.buf(1), patch: a.int("patch") }),
    infer: (ctx, [y, like]) => {
      rankIs(ctx, y!, 3, 0, "unpatchify's tokens [B, h*w, p*p*C]");
      const [h, w] = grid(ctx, like!, 1, "unpatchify's like [B, C, H, W]");
      const p = ctx.dim("patch");
      dimIs(ctx, y!.shape[0]!, like!.shape[0]!, 0, "the batch dimension");
      dimIs(ctx, y!.shape[1]!, h.mul(w), 0, "the number of tokens");
      if (!ctx.divides(last(y!), p.mul(p))) ctx.fail(`the token width ${ctx.show(last(y!))} is not a multiple of patch^2`, 0);
      return f32([y!.shape[0]!, last(y!).div(p.mul(p)), like!.shape[2]!, like!.shape[3]!]);
    },
  },
  pos_crop: {
    doc: "pos_crop(table[1, M*M, D], like[B, C, h*p, w*p], patch = p, grid = M) -> f32[h*w, D]: the centred h x w window of an M x M position table, row-major (SD3's cropped 2D sin-cos table)",
    args: [{ name: "table", kind: "float" }, { name: "like", kind: "float" }],
    attrs: { patch: { type: "int", min: 1 }, grid: { type: "int", min: 1 } },
    kernel: (a) => ({ op: "pos_crop", table: a.operand(0), like: a.buf(1), patch: a.int("patch"), grid: a.int("grid") }),
    infer: (ctx, [table, like]) => {
      const [h, w] = grid(ctx, like!, 1, "pos_crop's like [B, C, H, W]");
      const m = ctx.dim("grid");
      if (table!.shape.length !== 2 && table!.shape.length !== 3) ctx.fail("a position table is [M*M, D] or [1, M*M, D]", 0);
      if (table!.shape.length === 3) dimIs(ctx, table!.shape[0]!, Sym.int(1), 0, "the table's first dimension");
      dimIs(ctx, table!.shape[table!.shape.length - 2]!, m.mul(m), 0, "the table's rows (grid^2)");
      return f32([h.mul(w), last(table!)]);
    },
  },
  timestep_embedding: {
    doc:
      "timestep_embedding(t[B], dim, flip_sin_to_cos, shift, max_period) -> f32[B, dim]: f_k = exp(-ln(max_period) k / (dim/2 - shift)), " +
      "k < dim/2, and [sin(t f), cos(t f)] ([cos, sin] when flipped), f and t f rounded to float32 as diffusers computes them",
    args: [{ name: "t", kind: "float" }],
    attrs: {
      dim: { type: "int", min: 2 },
      flip_sin_to_cos: { type: "bool", default: true },
      shift: { type: "float", default: 0 },
      max_period: { type: "float", default: 10000, min: 0, minExclusive: true },
    },
    kernel: (a) => ({ op: "timestep_embedding", t: a.buf(0), dim: a.int("dim"), flip: a.bool("flip_sin_to_cos"), shift: a.num("shift"), maxPeriod: a.num("max_period") }),
    infer: (ctx, [t]) => {
      rankIs(ctx, t!, 1, 0, "timesteps [B]");
      if ((ctx.attrs["dim"] as number) % 2 !== 0) ctx.fail(`dim = ${String(ctx.attrs["dim"])} is odd`);
      return f32([t!.shape[0]!, ctx.dim("dim")]);
    },
  },
  next_token_ce: {
    doc: "next_token_ce(logits[B, T, V], tokens[B, T], mask[B, T]) -> f32[]: mean over masked positions t+1 of -log softmax(logits[t])[tokens[t+1]]",
    args: [{ name: "logits", kind: "float" }, { name: "tokens", kind: "int" }, { name: "mask", kind: "float" }],
    attrs: {},
    kernel: (a) => ({ op: "next_token_ce", logits: a.buf(0), tokens: a.buf(1), mask: a.buf(2) }),
    infer: (ctx, [logits, tokens, mask]) => {
      rankIs(ctx, logits!, 3, 0, "logits [B, T, V]");
      rankIs(ctx, tokens!, 2, 1, "tokens [B, T]");
      dimIs(ctx, tokens!.shape[0]!, logits!.shape[0]!, 1, "the batch dimension");
      dimIs(ctx, tokens!.shape[1]!, logits!.shape[1]!, 1, "the sequence dimension");
      sameShape(ctx, mask!, tokens!, 2, "mask and tokens");
      return f32([]);
    },
  },
  distill_ce: {
    doc:
      "distill_ce(logits[B, T, V], ids[B, T, K], probs[B, T, K], mask[B, T]) -> f32[]: mean over masked positions t+1 of the " +
      "cross-entropy from a teacher's top-K next-token distribution at t (ids, probs, and one bucket for the rest) to softmax(logits[t])",
    args: [
      { name: "logits", kind: "float" }, { name: "ids", kind: "int" }, { name: "probs", kind: "float" }, { name: "mask", kind: "float" },
    ],
    attrs: {},
    kernel: (a) => ({ op: "distill_ce", logits: a.buf(0), ids: a.buf(1), probs: a.buf(2), mask: a.buf(3) }),
    infer: (ctx, [logits, ids, probs, mask]) => {
      rankIs(ctx, logits!, 3, 0, "logits [B, T, V]");
      rankIs(ctx, ids!, 3, 1, "teacher ids [B, T, K]");
      dimIs(ctx, ids!.shape[0]!, logits!.shape[0]!, 1, "the batch dimension");
      dimIs(ctx, ids!.shape[1]!, logits!.shape[1]!, 1, "the sequence dimension");
      sameShape(ctx, probs!, ids!, 2, "teacher probs and ids");
      rankIs(ctx, mask!, 2, 3, "mask [B, T]");
      dimIs(ctx, mask!.shape[0]!, logits!.shape[0]!, 3, "the batch dimension");
      dimIs(ctx, mask!.shape[1]!, logits!.shape[1]!, 3, "the sequence dimension");
      return f32([]);
    },
  },
  candidate_ce: {
    doc: "candidate_ce(logits[E*C, T, V], tokens[E*C, T], mask[E*C, T], label[E], candidates = C) -> f32[]: MeZO classification loss",
    args: [
      { name: "logits", kind: "float" }, { name: "tokens", kind: "int" }, { name: "mask", kind: "float" },
      { name: "label", kind: "int" },
    ],
    attrs: { candidates: { type: "int", min: 1 } },
    kernel: (a) => ({ op: "candidate_ce", logits: a.buf(0), tokens: a.buf(1), mask: a.buf(2), label: a.buf(3), candidates: a.int("candidates") }),
    infer: (ctx, [logits, tokens, mask, label]) => {
      rankIs(ctx, logits!, 3, 0, "logits [E*C, T, V]");
      rankIs(ctx, tokens!, 2, 1, "tokens [E*C, T]");
      sameShape(ctx, mask!, tokens!, 2, "mask and tokens");
      rankIs(ctx, label!, 1, 3, "labels [E]");
      dimIs(ctx, tokens!.shape[0]!, logits!.shape[0]!, 1, "the batch dimension");
      dimIs(ctx, logits!.shape[0]!, label!.shape[0]!.mul(ctx.dim("candidates")), 0, "the number of sequences");
      return f32([]);
    },
  },
  mse: {
    doc: "mse(pred, target) -> f32[]: mean squared error",
    args: [{ name: "pred", kind: "float" }, { name: "target", kind: "float" }],
    attrs: {},
    kernel: (a) => ({ op: "mse", pred: a.buf(0), target: a.buf(1) }),
    infer: (ctx, [a, b]) => {
      sameShape(ctx, a!, b!, 1, "mse's operands");
      return f32([]);
    },
  },
};

/** Elementwise binary operators of the graph language and their IR op names. */
export const BINARY_OPS: Record<string, "add" | "sub" | "mul" | "div"> = { "+": "add", "-": "sub", "*": "mul", "/": "div" };

/** The lowering of the IR ops that operators make (`a + b`, `-x`): elementwise kernels. */
export const OPERATOR_KERNELS: Record<"add" | "sub" | "mul" | "div" | "neg", Lowering> = {
  add: (a) => ({ op: "binary", fn: "add", a: a.valueOrScalar(0), b: a.valueOrScalar(1) }),
  sub: (a) => ({ op: "binary", fn: "sub", a: a.valueOrScalar(0), b: a.valueOrScalar(1) }),
  mul: (a) => ({ op: "binary", fn: "mul", a: a.valueOrScalar(0), b: a.valueOrScalar(1) }),
  div: (a) => ({ op: "binary", fn: "div", a: a.valueOrScalar(0), b: a.valueOrScalar(1) }),
  neg: (a) => ({ op: "unary", fn: "neg", x: a.buf(0) }),
};
