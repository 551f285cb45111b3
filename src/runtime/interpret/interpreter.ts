/**
 * The REFERENCE INTERPRETER: evaluates a checked graph of a ModuleIR on concrete tensors. It is the
 * oracle every generated CPU/CUDA kernel is tested against, so it is written to be obviously correct,
 * not fast: plain typed-array loops, float64 intermediates.
 *
 * ================================================================== NUMERICS CONTRACT
 * Values. Float values are float32 tensors, integer values int32 tensors, row-major. Every intermediate
 * of an op is computed in IEEE float64 and each output element is rounded to float32 once, when it is
 * stored (round to nearest even). All reductions (dot products, norms, softmax sums, losses) accumulate
 * in float64, sequentially in index order. Backends are compared against this within a tolerance.
 *
 * Weights. A float parameter is used as given. A quantized parameter (UnpackedTensor, see
 * src/runtime/quant/types.ts) is dequantized to
 *     w[r, c] = float32( s'[i] * values[r*cols + c] + (m'[i] ?? 0) ),   i = scaleIndex(format, cols, r, c)
 * (product and sum in float64, one rounding), where s' and m' are the scales and mins, perturbed if
 * trainable (below). The given weights are never modified.
 *
 * Perturbation (one SPSA evaluation). For trainable tensor number t (manifest order, trainableTensors)
 * covering (param, layer, field), element i of that tensor (flat row-major index into the scale tensor
 * for "scale", into the mins for "min", into the float parameter for "weight") is used as
 *     absolute:  x' = float32( x + sign * eps * z_i )
 *     relative:  x' = float32( x + sign * eps * |x| * z_i )
 * with z_i = zAt(seedLo, seedHi, t, i, dist) (src/runtime/rng/direction.ts) and x the float32 value,
 * for the tensors in the direction (tensorInDirection(seedLo, t, period); all of them at period 1);
 * the others are used as they are.
 *
 * Shapes. The graph's free dimension names (B, T, E, n_cand, ...) are bound from the input shapes:
 * plain single-name dimensions first, then composite ones (E*n_cand) are checked, or solved for their
 * one unknown name when it occurs nowhere else; config names take the module's config values. Every
 * input and every node output is checked against its declared symbolic shape. Loops `for l in a..b`
 * run l = a, a+1, ..., b-1.
 *
 * Ops (x[..., D] means "over the last dimension"):
 *  embedding(table[V,D], ids)   rows of the (dequantized, perturbed) table; an id outside [0, V) is a
 *                               QzoError naming the id and V.
 *  linear(x[...,K], w[N,K], b?) y[..., n] = sum_k x[..., k] w[n, k] (+ b[n]).
 *  rmsnorm(x, w, eps)           y = x * (1 / sqrt(sum(x^2)/G + eps)) * w   (llama2.c) over each group of
 *                               G = len(w) values of the last dimension (G = D, or one head).
 *  layernorm(x, w, b, eps)      mean = sum(x)/D, var = sum((x-mean)^2)/D (biased, two passes),
 *                               y = (x - mean) * (1 / sqrt(var + eps)) * w + b (without w, b: no affine part).
 *  rope(x[B,T,H*hd], heads, theta, style)
 *                               position p = t (0-based) for every batch row; for j in 0..hd/2-1:
 *                               freq = theta^(-2j/hd), angle = p * freq (float64, Math.pow/cos/sin),
 *                               (a, b) -> (a cos - b sin, a sin + b cos) with, within each head,
 *                               interleaved: a = x[2j], b = x[2j+1]   (llama2.c, GGUF)
 *                               rotate_half: a = x[j],  b = x[j+hd/2] (Hugging Face).
 *  attention(q[B,T,.], k[B,S,.], v[B,S,.], heads, kv_heads, causal)
 *                               hd = q_width / heads; query head h reads kv head floor(h / (heads/kv_heads));
 *                               s_j = (q_t . k_j) / sqrt(hd) over keys j (causal: j <= t); softmax with max
 *                               subtraction, p_j = exp(s_j - max) / sum; out_t = sum_j p_j v_j. Scores and
 *                               weights stay float64; only out is rounded.
 *  silu(x) = x / (1 + exp(-x));  relu(x) = x > 0 ? x : 0 (so NaN -> 0, like fmaxf(x, 0));
 *  gelu(x) = 0.5 x (1 + erf(x / sqrt 2)), erf to ~1e-15 (ops.ts);
 *  softmax(x) over the last dimension, max subtracted;
 *  gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));
 *  add/sub/mul/div elementwise with NumPy broadcasting (shapes aligned from the last dimension,
 *                               each pair equal or 1; a scalar [] broadcasts); neg(x) = -x;
 *  unsqueeze(x, axis, count)    the same values with size-1 dimensions inserted;
 *  chunk(x, parts, index)       the index-th of parts equal pieces of the last dimension;
 *  concat(a, b, axis)           a then b along axis;
 *  patchify(x[B,C,h*p,w*p], p)  [B, h*w, C*p*p], token r*w + c, vector (channel, dy, dx);
 *  unpatchify(y, like, p)       the inverse grid layout, token vector (dy, dx, channel) (diffusers);
 *  pos_crop(table, like, p, M)  the centred (H/p) x (W/p) window of an M x M table (top = (M-h)/2, floor);
 *  timestep_embedding(t, dim, flip_sin_to_cos, shift, max_period)
 *                               f_k and t*f_k rounded to float32 as diffusers computes them (ops.ts),
 *                               then sin and cos in float64, [cos, sin] when flipped.
 *  const: the attribute value rounded to float32, shape [].
 *  positions(tokens[B,T], offset)[b, t] = t + offset (i32).
 *  next_token_ce(logits[B,T,V], tokens[B,T], mask[B,T])
 *                               mask[b,t] (t >= 1) weights token t as the target predicted at t-1:
 *                               loss = sum_{b, t>=1} mask[b,t] * -log softmax(logits[b,t-1])[tokens[b,t]]
 *                                      / sum_{b, t>=1} mask[b,t];
 *                               mask[b,0] is ignored; positions with mask 0 are not read; log softmax is
 *                               l[y] - max - log(sum exp(l - max)); an all-zero mask or a target outside
 *                               [0, V) is a QzoError.
 *  distill_ce(logits[B,T,V], ids[B,T,K], probs[B,T,K], mask[B,T])
 *                               the teacher's top-K distribution at [b,t-1] (of token t) against softmax(logits[b,t-1]):
 *                               K buckets plus one for the rest of the vocabulary, in float64 (ops.ts distillCe);
 *                               weighted by mask[b,t] (t >= 1) and normalised like next_token_ce.
 *  candidate_ce(logits[E*C,T,V], tokens, mask, label[E], candidates = C)
 *                               sequence n = e*C + k scores
 *                               score[n] = sum_{t>=1} mask[n,t] log softmax(logits[n,t-1])[tokens[n,t]] / sum_{t>=1} mask[n,t]
 *                               (the mean over its masked tokens; a sequence with none is a QzoError);
 *                               loss = mean_e ( logsumexp_k score[e*C+k] - score[e*C+label[e]] ).
 *  mse(a, b) = sum (a-b)^2 / numel.
 * Losses return an f32 scalar (shape []).
 * ==================================================================
 */
import { trainableManifest, type TrainableEntry } from "../../compiler/ir/trainables.js";
import type { BlockIR, GraphIR, ModuleIR, NodeIR, ParamIR } from "../../compiler/ir/ir.js";
import { configInts, paramOf } from "../../compiler/ir/queries.js";
import { QzoError } from "../../util/errors.js";
import { fillZ, tensorInDirection, type ZDistribution } from "../rng/direction.js";
import { scaleIndex, type UnpackedTensor } from "../quant/types.js";
import { evalIntExpr, isPlainName, namesIn, solveIntExpr, tryEvalIntExpr } from "../../compiler/ir/int-expr.js";
import * as K from "./ops.js";
import { numel, type Tensor } from "./ops.js";

export type { Tensor } from "./ops.js";

export type ParamValue =
  | { kind: "float"; shape: number[]; data: Float32Array }
  | { kind: "quant"; tensor: UnpackedTensor };

export interface WeightSource {
  /** The value of a parameter; `layer` is the concrete loop index for array parameters. */
  get(param: string, layer: number | undefined): ParamValue;
}

export interface Perturbation {
  seedLo: number;
  seedHi: number;
  sign: 1 | -1;
  eps: number;
  epsMode: "absolute" | "relative";
  dist: ZDistribution;
  /** Tensor period (default 1, every tensor): the direction moves one in every `period` trainable tensors (rng/direction.ts). */
  period?: number;
}

export type TrainableTensor = TrainableEntry;

/**
 * Where another implementation rounds what the interpreter computes exactly, so that its results
 * can be compared with ours under an error model (the llama.cpp interop tests do). Each hook
 * replaces the exact value by the other implementation's rounded one.
 */
export interface RoundingModel {
  /** The input of a linear whose weight is stored as `storage` (a format name, or f32/f16/bf16). */
  linearInput?(x: Tensor, storage: string): Tensor;
  /** The whole attention op, computed with the other implementation's roundings. */
  attention?(q: Tensor, k: Tensor, v: Tensor, heads: number, kvHeads: number, causal: boolean): Tensor;
}

/**
 * THE manifest order of trainable tensors: for each entry of m.train.trainable in order, for an array
 * parameter each layer from..to-1 in increasing order; t = 0, 1, 2, ...
 */
export function trainableTensors(m: ModuleIR): TrainableTensor[] {
  return trainableManifest(m);
}

function shapeText(s: readonly (number | string)[]): string {
  return `[${s.join(", ")}]`;
}

/** Binds the graph's dimension names from its inputs and checks every input's shape. */
function bindDims(m: ModuleIR, g: GraphIR, inputs: Record<string, Tensor>): Map<string, number> {
  const env = configInts(m);
  const names = new Set<string>();
  const items: { input: string; k: number; expr: string; size: number }[] = [];
  for (const id of g.inputs) {
    const v = g.values[id]!;
    const name = v.name ?? `%${id}`;
    names.add(name);
    const t = inputs[name];
    if (!t) throw new QzoError(`${g.name}: missing input '${name}' (expected ${v.type.elem.kind === "dtype" ? v.type.elem.dtype : v.type.elem.format}${shapeText(v.type.shape)})`);
    const isInt = v.type.elem.kind === "dtype" && !["f32", "f16", "bf16"].includes(v.type.elem.dtype);
    if (isInt && !(t.data instanceof Int32Array)) throw new QzoError(`${g.name}: input '${name}' is an integer tensor: pass an Int32Array`);
    if (!isInt && !(t.data instanceof Float32Array)) throw new QzoError(`${g.name}: input '${name}' is a float tensor: pass a Float32Array`);
    if (t.shape.length !== v.type.shape.length) {
      throw new QzoError(`${g.name}: input '${name}' has shape ${shapeText(t.shape)}, expected ${v.type.shape.length} dimensions ${shapeText(v.type.shape)}`);
    }
    if (t.shape.some((d) => !Number.isInteger(d) || d < 0)) throw new QzoError(`${g.name}: input '${name}' has a bad shape ${shapeText(t.shape)}`);
    if (numel(t.shape) !== t.data.length) {
      throw new QzoError(`${g.name}: input '${name}' has shape ${shapeText(t.shape)} (${numel(t.shape)} elements) but ${t.data.length} data elements`);
    }
    v.type.shape.forEach((expr, k) => items.push({ input: name, k, expr, size: t.shape[k]! }));
  }
  for (const key of Object.keys(inputs)) {
    if (!names.has(key)) throw new QzoError(`${g.name}: unknown input '${key}' (inputs: ${[...names].join(", ")})`);
  }
  const mismatch = (it: (typeof items)[number], want: number): QzoError =>
    new QzoError(`${g.name}: input '${it.input}' dimension ${it.k} is ${it.size}, but ${it.expr} = ${want}${describeBindings(it.expr, env)}`);
  // Plain names first.
  for (const it of items) {
    if (!isPlainName(it.expr)) continue;
    const bound = env.get(it.expr);
    if (bound === undefined) env.set(it.expr, it.size);
    else if (bound !== it.size) throw mismatch(it, bound);
  }
  // Then composite ones: check, or solve for a single unknown name.
  let pending = items.filter((it) => !isPlainName(it.expr));
  for (;;) {
    const next: typeof pending = [];
    for (const it of pending) {
      const v = tryEvalIntExpr(it.expr, env);
      if (v !== undefined) {
        if (v !== it.size) throw mismatch(it, v);
        continue;
      }
      const unknown = [...namesIn(it.expr)].filter((n) => !env.has(n));
      if (unknown.length === 1) {
        const x = solveIntExpr(it.expr, unknown[0]!, it.size, env);
        if (x === undefined || x < 0) {
          throw new QzoError(`${g.name}: input '${it.input}' dimension ${it.k} is ${it.size}, which is not ${it.expr} for any size ${unknown[0]}${describeBindings(it.expr, env)}`);
        }
        env.set(unknown[0]!, x);
        continue;
      }
      next.push(it);
    }
    if (next.length === 0) break;
    if (next.length === pending.length) {
      const it = next[0]!;
      const unknown = [...namesIn(it.expr)].filter((n) => !env.has(n));
      throw new QzoError(`${g.name}: cannot bind ${unknown.join(", ")} from input '${it.input}' dimension ${it.k} (${it.expr} = ${it.size})`);
    }
    pending = next;
  }
  return env;
}

function describeBindings(expr: string, env: ReadonlyMap<string, number>): string {
  const b = [...namesIn(expr)].filter((n) => env.has(n) && n !== expr).map((n) => `${n} = ${env.get(n)}`);
  return b.length ? ` (${b.join(", ")})` : "";
}

function copyOf(a: Float32Array): Float32Array {
  return new Float32Array(a);
}

/** x'[i] = float32(x[i] + sign*eps*z_i) (absolute) or float32(x[i] + sign*eps*|x[i]|*z_i) (relative). */
export function perturbArray(x: Float32Array, t: number, p: Perturbation): Float32Array {
  if (!tensorInDirection(p.seedLo, t, p.period ?? 1)) return Float32Array.from(x);
  const z = new Float32Array(x.length);
  fillZ(z, p.seedLo, p.seedHi, t, 0, p.dist);
  const out = new Float32Array(x.length);
  const k = p.sign * p.eps;
  if (p.epsMode === "relative") {
    for (let i = 0; i < x.length; i++) out[i] = x[i]! + k * Math.abs(x[i]!) * z[i]!;
  } else {
    for (let i = 0; i < x.length; i++) out[i] = x[i]! + k * z[i]!;
  }
  return out;
}

/** w[r, c] = float32(scales[i] * values[r*cols + c] + (mins?.[i] ?? 0)), i = scaleIndex(format, cols, r, c). */
export function dequantize(q: UnpackedTensor, scales: Float32Array = q.scales, mins: Float32Array | undefined = q.mins): Float32Array {
  const { rows, cols, values, format: f } = q;
  const w = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const ro = r * cols;
    for (let c = 0; c < cols; c++) {
      const i = scaleIndex(f, cols, r, c);
      w[ro + c] = scales[i]! * values[ro + c]! + (mins ? mins[i]! : 0);
    }
  }
  return w;
}

interface Ctx {
  m: ModuleIR;
  g: GraphIR;
  weights: WeightSource;
  perturb: Perturbation | undefined;
  /** `${param}|${layer}|${field}` -> t */
  trainable: Map<string, number>;
  dims: Map<string, number>;
  vals: Map<number, Tensor>;
  paramCache: Map<string, Tensor>;
  rounding: RoundingModel | undefined;
  /** The parameter each `param` node's value holds (kept only when a rounding model reads it). */
  paramOfValue: Map<number, ParamIR>;
  /** When set, every evaluated node is appended (reverse-mode gradients, ./gradient.ts). */
  tape: TapeEntry[] | undefined;
}

/**
 * One evaluated node, as reverse-mode differentiation needs it: the tensors it read and wrote, and
 * the integer attributes and parameter layer as they were at that loop iteration.
 */
export interface TapeEntry {
  node: NodeIR;
  inputs: Tensor[];
  out: Tensor;
  /** The concrete layer of a `param` node of an array parameter. */
  layer?: number;
  /** heads and kv_heads of rope and attention, evaluated. */
  ints: Record<string, number>;
}

function key(param: string, layer: number | undefined, field: string): string {
  return `${param}|${layer ?? ""}|${field}`;
}

function checkPerturbation(p: Perturbation): void {
  if (p.sign !== 1 && p.sign !== -1) throw new QzoError(`perturbation sign must be 1 or -1, got ${String(p.sign)}`);
  if (!Number.isFinite(p.eps) || p.eps < 0) throw new QzoError(`perturbation eps must be a finite number >= 0, got ${p.eps}`);
  if (p.epsMode !== "absolute" && p.epsMode !== "relative") throw new QzoError(`unknown eps mode ${String(p.epsMode)}`);
}

/**
 * Evaluates graph `graph` of module m on the inputs (by input name) and returns its output.
 * With `perturb`, every trainable tensor is used perturbed (see the contract above).
 */
export function runGraph(
  m: ModuleIR,
  graph: string,
  inputs: Record<string, Tensor>,
  weights: WeightSource,
  perturb?: Perturbation,
  rounding?: RoundingModel,
): Tensor {
  return evaluateGraph(m, graph, inputs, weights, perturb, rounding, undefined);
}

/** runGraph without perturbation, appending every evaluated node to `tape` in order. */
export function recordGraph(m: ModuleIR, graph: string, inputs: Record<string, Tensor>, weights: WeightSource, tape: TapeEntry[]): Tensor {
  return evaluateGraph(m, graph, inputs, weights, undefined, undefined, tape);
}

function evaluateGraph(
  m: ModuleIR,
  graph: string,
  inputs: Record<string, Tensor>,
  weights: WeightSource,
  perturb: Perturbation | undefined,
  rounding: RoundingModel | undefined,
  tape: TapeEntry[] | undefined,
): Tensor {
  const g = m.graphs.find((x) => x.name === graph);
  if (!g) throw new QzoError(`module ${m.name} has no graph '${graph}' (graphs: ${m.graphs.map((x) => x.name).join(", ")})`);
  if (g.outputs.length !== 1) throw new QzoError(`${graph}: expected one output, found ${g.outputs.length}`);
  if (perturb) checkPerturbation(perturb);
  const dims = bindDims(m, g, inputs);
  const trainable = new Map<string, number>();
  if (perturb) for (const tt of trainableTensors(m)) trainable.set(key(tt.param, tt.layer, tt.field), tt.t);
  const ctx: Ctx = { m, g, weights, perturb, trainable, dims, vals: new Map(), paramCache: new Map(), rounding, paramOfValue: new Map(), tape };
  for (const id of g.inputs) ctx.vals.set(id, inputs[g.values[id]!.name ?? `%${id}`]!);
  evalBlock(ctx, g.body);
  const out = ctx.vals.get(g.outputs[0]!);
  if (!out) throw new Error(`internal: ${graph}: output %${g.outputs[0]} was never computed`);
  return out;
}

function evalBlock(ctx: Ctx, block: BlockIR): void {
  for (const node of block.nodes) {
    if (node.op === "for") {
      evalFor(ctx, node);
      continue;
    }
    const out = evalNode(ctx, node);
    const id = node.outputs[0]!;
    checkValue(ctx, node, id, out);
    if (ctx.tape) ctx.tape.push(tapeEntry(ctx, node, out));
    ctx.vals.set(id, out);
  }
}

function tapeEntry(ctx: Ctx, node: NodeIR, out: Tensor): TapeEntry {
  const ints: Record<string, number> = {};
  if (node.op === "rope" || node.op === "attention") ints["heads"] = intAttr(ctx, node, "heads");
  if (node.op === "attention") ints["kv_heads"] = intAttr(ctx, node, "kv_heads");
  const idx = node.op === "param" ? node.attrs["index"] : undefined;
  return {
    node,
    inputs: node.inputs.map((id) => get(ctx, id)),
    out,
    ints,
    ...(idx === undefined ? {} : { layer: evalIntExpr(String(idx), ctx.dims) }),
  };
}

function evalFor(ctx: Ctx, node: NodeIR): void {
  const body = node.body!;
  const v = String(node.attrs["var"]);
  const from = evalIntExpr(String(node.attrs["from"]), ctx.dims);
  const to = evalIntExpr(String(node.attrs["to"]), ctx.dims);
  if (ctx.dims.has(v)) throw new Error(`internal: loop variable ${v} shadows a dimension`);
  let carried = node.inputs.map((id) => get(ctx, id));
  for (let l = from; l < to; l++) {
    ctx.dims.set(v, l);
    body.args.forEach((id, k) => ctx.vals.set(id, carried[k]!));
    evalBlock(ctx, body);
    carried = body.yields.map((id) => get(ctx, id));
  }
  ctx.dims.delete(v);
  node.outputs.forEach((id, k) => ctx.vals.set(id, carried[k]!));
}

function get(ctx: Ctx, id: number): Tensor {
  const t = ctx.vals.get(id);
  if (!t) throw new Error(`internal: value %${id} used before it is computed`);
  return t;
}

function intAttr(ctx: Ctx, node: NodeIR, name: string): number {
  const a = node.attrs[name];
  if (typeof a === "number") return a;
  if (typeof a === "string") return evalIntExpr(a, ctx.dims);
  throw new Error(`internal: ${node.op}: attribute ${name} is missing`);
}

function numAttr(node: NodeIR, name: string): number {
  const a = node.attrs[name];
  if (typeof a !== "number") throw new Error(`internal: ${node.op}: attribute ${name} is not a number`);
  return a;
}

function evalNode(ctx: Ctx, node: NodeIR): Tensor {
  const x = (k: number): Tensor => get(ctx, node.inputs[k]!);
  switch (node.op) {
    case "param":
      return evalParam(ctx, node);
    case "const":
      return { shape: [], data: Float32Array.of(numAttr(node, "value")) };
    case "embedding":
      return K.embedding(x(0), x(1));
    case "linear": {
      const w = ctx.paramOfValue.get(node.inputs[1]!);
      const input = ctx.rounding?.linearInput && w ? ctx.rounding.linearInput(x(0), w.resolved) : x(0);
      return K.linear(input, x(1), node.inputs.length > 2 ? x(2) : undefined);
    }
    case "rmsnorm":
      return K.rmsnorm(x(0), x(1), numAttr(node, "eps"));
    case "layernorm":
      return K.layernorm(x(0), node.inputs.length > 1 ? x(1) : undefined, node.inputs.length > 2 ? x(2) : undefined, numAttr(node, "eps"));
    case "rope": {
      const style = node.attrs["style"];
      if (style !== "interleaved" && style !== "rotate_half") throw new Error(`internal: rope style ${String(style)}`);
      return K.rope(x(0), intAttr(ctx, node, "heads"), numAttr(node, "theta"), style);
    }
    case "attention":
      return (ctx.rounding?.attention ?? K.attention)(x(0), x(1), x(2), intAttr(ctx, node, "heads"), intAttr(ctx, node, "kv_heads"), node.attrs["causal"] !== false);
    case "silu":
      return K.silu(x(0));
    case "gelu":
      return K.gelu(x(0));
    case "gelu_tanh":
      return K.geluTanh(x(0));
    case "relu":
      return K.relu(x(0));
    case "softmax":
      return K.softmax(x(0));
    case "add":
    case "sub":
    case "mul":
    case "div":
      return K.binary(node.op, x(0), x(1));
    case "neg":
      return K.neg(x(0));
    case "positions":
      return K.positions(x(0), intAttr(ctx, node, "offset"));
    case "unsqueeze":
      return { shape: ctx.g.values[node.outputs[0]!]!.type.shape.map((d) => evalIntExpr(d, ctx.dims)), data: x(0).data };
    case "chunk":
      return K.chunk(x(0), intAttr(ctx, node, "parts"), intAttr(ctx, node, "index"));
    case "concat":
      return K.concat(x(0), x(1), intAttr(ctx, node, "axis"));
    case "patchify":
      return K.patchify(x(0), intAttr(ctx, node, "patch"));
    case "unpatchify":
      return K.unpatchify(x(0), x(1), intAttr(ctx, node, "patch"));
    case "pos_crop":
      return K.posCrop(x(0), x(1), intAttr(ctx, node, "patch"), intAttr(ctx, node, "grid"));
    case "timestep_embedding":
      return K.timestepEmbedding(x(0), intAttr(ctx, node, "dim"), node.attrs["flip_sin_to_cos"] !== false, numAttr(node, "shift"), numAttr(node, "max_period"));
    case "next_token_ce":
      return K.nextTokenCe(x(0), x(1), x(2));
    case "distill_ce":
      return K.distillCe(x(0), x(1), x(2), x(3));
    case "candidate_ce":
      return K.candidateCe(x(0), x(1), x(2), x(3), intAttr(ctx, node, "candidates"));
    case "mse":
      return K.mse(x(0), x(1));
    default:
      throw new QzoError(`the reference interpreter has no op '${node.op}' (${node.loc.file}:${node.loc.line}:${node.loc.col})`);
  }
}

function evalParam(ctx: Ctx, node: NodeIR): Tensor {
  const name = String(node.attrs["name"]);
  const p = paramOf(ctx.m, name);
  if (ctx.rounding?.linearInput) ctx.paramOfValue.set(node.outputs[0]!, p);
  const idx = node.attrs["index"];
  const layer = idx === undefined ? undefined : evalIntExpr(String(idx), ctx.dims);
  if (p.array && layer === undefined) throw new Error(`internal: array parameter ${name} used without an index`);
  const ck = `${name}|${layer ?? ""}`;
  const hit = ctx.paramCache.get(ck);
  if (hit) return hit;
  const where = layer === undefined ? name : `${name}[${layer}]`;
  if (p.array) {
    const from = evalIntExpr(p.array.from, ctx.dims);
    const to = evalIntExpr(p.array.to, ctx.dims);
    if (layer! < from || layer! >= to) throw new QzoError(`parameter ${where}: index out of range ${from}..${to}`);
  }
  const want = p.type.shape.map((s) => evalIntExpr(s, ctx.dims));
  const v = ctx.weights.get(name, layer);
  const tOf = (field: string): number | undefined => (ctx.perturb ? ctx.trainable.get(key(name, layer, field)) : undefined);
  let data: Float32Array;
  if (v.kind === "float") {
    if (v.shape.length !== want.length || v.shape.some((d, i) => d !== want[i])) {
      throw new QzoError(`parameter ${where}: the weight source gives shape ${shapeText(v.shape)}, expected ${shapeText(want)}`);
    }
    if (v.data.length !== numel(want)) throw new QzoError(`parameter ${where}: ${v.data.length} elements for shape ${shapeText(want)}`);
    for (const f of ["scale", "min"]) {
      if (tOf(f) !== undefined) throw new QzoError(`parameter ${where}: its ${f}s are trainable, but the weight source gives a float tensor`);
    }
    const tw = tOf("weight");
    // Ops never write their inputs, but a copy keeps the caller's weights out of reach anyway.
    data = tw === undefined ? copyOf(v.data) : perturbArray(v.data, tw, ctx.perturb!);
  } else {
    const q = v.tensor;
    if (want.length !== 2 || q.rows !== want[0] || q.cols !== want[1]) {
      throw new QzoError(`parameter ${where}: the weight source gives a ${q.format.name} [${q.rows}, ${q.cols}] tensor, expected ${shapeText(want)}`);
    }
    if (q.values.length !== q.rows * q.cols) throw new QzoError(`parameter ${where}: ${q.values.length} values for [${q.rows}, ${q.cols}]`);
    if (tOf("weight") !== undefined) throw new QzoError(`parameter ${where}: trainable as a float weight, but the weight source gives a quantized tensor`);
    const ts = tOf("scale");
    const tm = tOf("min");
    if (tm !== undefined && !q.mins) throw new QzoError(`parameter ${where}: its mins are trainable, but the ${q.format.name} tensor has none`);
    const scales = ts === undefined ? q.scales : perturbArray(q.scales, ts, ctx.perturb!);
    const mins = tm === undefined || !q.mins ? q.mins : perturbArray(q.mins, tm, ctx.perturb!);
    data = dequantize(q, scales, mins);
  }
  const out: Tensor = { shape: want, data };
  ctx.paramCache.set(ck, out);
  return out;
}

/** Checks a computed value against its declared dtype class and symbolic shape. */
function checkValue(ctx: Ctx, node: NodeIR, id: number, t: Tensor): void {
  const v = ctx.g.values[id]!;
  const want = v.type.shape.map((s) => evalIntExpr(s, ctx.dims));
  const isInt = v.type.elem.kind === "dtype" && !["f32", "f16", "bf16"].includes(v.type.elem.dtype);
  const ok =
    t.shape.length === want.length &&
    t.shape.every((d, i) => d === want[i]) &&
    t.data.length === numel(want) &&
    (isInt ? t.data instanceof Int32Array : t.data instanceof Float32Array);
  if (!ok) {
    throw new Error(
      `internal: ${node.op} at ${node.loc.file}:${node.loc.line}:${node.loc.col} produced ${t.data instanceof Int32Array ? "i32" : "f32"}${shapeText(t.shape)}, declared ${shapeText(v.type.shape)} = ${shapeText(want)}`,
    );
  }
}
