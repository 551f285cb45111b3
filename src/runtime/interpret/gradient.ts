/**
 * Reverse-mode gradients of a loss graph with respect to its trainable tensors, over the reference
 * interpreter: a first-order reference for QZO (what the zeroth-order estimate (L+ - L-) / (2 eps)
 * approximates along z, and what the scales could reach with exact gradients).
 *
 * The forward pass is the interpreter's own (recordGraph, unperturbed); each op's vector-Jacobian
 * product is written here in float64 from the same formulas as its kernel in ./ops.ts (the float32
 * rounding of stored values is treated as exact). A quantized parameter's weight gradient dW is
 * reduced onto its scales as dL/ds[i] = sum of values[r, c] * dW[r, c] over the elements with
 * scaleIndex(r, c) = i, and onto its mins as the plain sum; a float trainable gets dW itself.
 * Ops outside the language-model set (`backward` below) are a QzoError naming the op.
 */
import type { ModuleIR } from "../../compiler/ir/ir.js";
import { QzoError } from "../../util/errors.js";
import { scaleIndex } from "../quant/types.js";
import { recordGraph, trainableTensors, type TapeEntry, type Tensor, type WeightSource } from "./interpreter.js";
import { attentionWeights, broadcastIndices, DISTILL_TAIL_FLOOR, softmaxStats } from "./ops.js";

export interface LossGradient {
  loss: number;
  /** dL/dx for every trainable tensor, in manifest order (index = t). */
  grads: Float64Array[];
}

/** The loss graph's value at the weights, and its gradient with respect to every trainable tensor. */
export function lossGradient(m: ModuleIR, graph: string, inputs: Record<string, Tensor>, weights: WeightSource): LossGradient {
  const trainables = trainableTensors(m);
  const fields = new Map<string, { t: number; field: string }[]>();
  for (const tt of trainables) {
    const k = `${tt.param}#${tt.layer ?? ""}`;
    fields.set(k, [...(fields.get(k) ?? []), { t: tt.t, field: tt.field }]);
  }
  const tape: TapeEntry[] = [];
  const out = recordGraph(m, graph, inputs, weights, tape);
  if (out.data.length !== 1) throw new QzoError(`${graph}: the loss graph returned ${out.data.length} values, expected a scalar`);

  // Which values depend on a trainable tensor, and which parameter each trainable weight value is.
  const live = new Set<Tensor>();
  const paramOf = new Map<Tensor, { param: string; layer: number | undefined }>();
  for (const e of tape) {
    if (e.node.op === "param") {
      const param = String(e.node.attrs["name"]);
      if (fields.has(`${param}#${e.layer ?? ""}`)) {
        live.add(e.out);
        paramOf.set(e.out, { param, layer: e.layer });
      }
    } else if (e.inputs.some((x) => live.has(x))) live.add(e.out);
  }

  const grads = new Map<Tensor, Float64Array>();
  const gradOf = (x: Tensor): Float64Array | undefined => {
    if (!live.has(x)) return undefined;
    let g = grads.get(x);
    if (!g) grads.set(x, (g = new Float64Array(x.data.length)));
    return g;
  };
  gradOf(out)?.fill(1);
  for (let i = tape.length - 1; i >= 0; i--) {
    const e = tape[i]!;
    const g = grads.get(e.out);
    if (!g || e.node.op === "param") continue;
    backward(e, g, gradOf);
  }

  const result = trainables.map((tt) => {
    const v = weights.get(tt.param, tt.layer);
    return new Float64Array(v.kind === "float" ? v.data.length : tt.field === "scale" ? v.tensor.scales.length : (v.tensor.mins?.length ?? 0));
  });
  for (const [w, where] of paramOf) {
    const g = grads.get(w);
    if (!g) continue;
    const v = weights.get(where.param, where.layer);
    for (const { t, field } of fields.get(`${where.param}#${where.layer ?? ""}`)!) {
      if (v.kind === "float") {
        result[t] = Float64Array.from(g);
        continue;
      }
      const q = v.tensor;
      const r = result[t]!;
      for (let row = 0; row < q.rows; row++) {
        for (let c = 0; c < q.cols; c++) {
          const j = row * q.cols + c;
          r[scaleIndex(q.format, q.cols, row, c)] += field === "scale" ? q.values[j]! * g[j]! : g[j]!;
        }
      }
    }
  }
  return { loss: out.data[0]!, grads: result };
}

type GradOf = (x: Tensor) => Float64Array | undefined;

function f(x: Tensor): Float32Array {
  return x.data as Float32Array;
}

/** Adds the vector-Jacobian product of one node to its inputs' gradients. */
function backward(e: TapeEntry, gy: Float64Array, gradOf: GradOf): void {
  const [a, b, c, d] = e.inputs;
  switch (e.node.op) {
    case "linear":
      return linearBack(a!, b!, c, gy, gradOf);
    case "embedding":
      return embeddingBack(a!, b!, gy, gradOf);
    case "rmsnorm":
      return rmsnormBack(a!, b!, Number(e.node.attrs["eps"]), gy, gradOf);
    case "rope":
      return ropeBack(a!, e.ints["heads"]!, Number(e.node.attrs["theta"]), e.node.attrs["style"] === "interleaved", gy, gradOf);
    case "attention":
      return attentionBack(a!, b!, c!, e.ints["heads"]!, e.ints["kv_heads"]!, e.node.attrs["causal"] !== false, gy, gradOf);
    case "silu": {
      const gx = gradOf(a!);
      if (!gx) return;
      const x = f(a!);
      for (let i = 0; i < x.length; i++) {
        const s = 1 / (1 + Math.exp(-x[i]!));
        gx[i] += gy[i]! * s * (1 + x[i]! * (1 - s));
      }
      return;
    }
    case "relu": {
      const gx = gradOf(a!);
      if (gx) for (let i = 0; i < gx.length; i++) if (f(a!)[i]! > 0) gx[i] += gy[i]!;
      return;
    }
    case "neg": {
      const gx = gradOf(a!);
      if (gx) for (let i = 0; i < gx.length; i++) gx[i] -= gy[i]!;
      return;
    }
    case "add":
    case "sub":
    case "mul":
    case "div":
      return binaryBack(e.node.op, a!, b!, e.out.shape, gy, gradOf);
    case "next_token_ce":
      return nextTokenCeBack(a!, b!, c!, gy[0]!, gradOf);
    case "distill_ce":
      return distillCeBack(a!, b!, c!, d!, gy[0]!, gradOf);
    case "mse": {
      const ad = f(a!);
      const bd = f(b!);
      const ga = gradOf(a!);
      const gb = gradOf(b!);
      for (let i = 0; i < ad.length; i++) {
        const g = (2 * (ad[i]! - bd[i]!) * gy[0]!) / ad.length;
        if (ga) ga[i] += g;
        if (gb) gb[i] -= g;
      }
      return;
    }
    case "positions":
    case "const":
      return;
    default:
      throw new QzoError(`no gradient for op '${e.node.op}' (${e.node.loc.file}:${e.node.loc.line}:${e.node.loc.col}): reverse mode covers the language-model ops`);
  }
}

function linearBack(x: Tensor, w: Tensor, bias: Tensor | undefined, gy: Float64Array, gradOf: GradOf): void {
  const [N, K] = w.shape as [number, number];
  const xd = f(x);
  const wd = f(w);
  const M = xd.length / K;
  const gx = gradOf(x);
  const gw = gradOf(w);
  const gb = bias ? gradOf(bias) : undefined;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      const g = gy[m * N + n]!;
      if (g === 0) continue;
      if (gb) gb[n] += g;
      if (gx) for (let k = 0; k < K; k++) gx[m * K + k] += g * wd[n * K + k]!;
      if (gw) for (let k = 0; k < K; k++) gw[n * K + k] += g * xd[m * K + k]!;
    }
  }
}

function embeddingBack(table: Tensor, ids: Tensor, gy: Float64Array, gradOf: GradOf): void {
  const gt = gradOf(table);
  if (!gt) return;
  const D = table.shape[1]!;
  const id = ids.data as Int32Array;
  for (let i = 0; i < id.length; i++) for (let j = 0; j < D; j++) gt[id[i]! * D + j] += gy[i * D + j]!;
}

function rmsnormBack(x: Tensor, w: Tensor, eps: number, gy: Float64Array, gradOf: GradOf): void {
  const xd = f(x);
  const wd = f(w);
  const D = wd.length;
  const gx = gradOf(x);
  const gw = gradOf(w);
  for (let r = 0; r < xd.length; r += D) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += xd[r + i]! * xd[r + i]!;
    const inv = 1 / Math.sqrt(ss / D + eps);
    let dot = 0;
    for (let i = 0; i < D; i++) dot += gy[r + i]! * wd[i]! * xd[r + i]!;
    for (let i = 0; i < D; i++) {
      if (gx) gx[r + i] += inv * wd[i]! * gy[r + i]! - (xd[r + i]! * inv * inv * inv * dot) / D;
      if (gw) gw[i] += gy[r + i]! * xd[r + i]! * inv;
    }
  }
}

function ropeBack(x: Tensor, heads: number, theta: number, interleaved: boolean, gy: Float64Array, gradOf: GradOf): void {
  const gx = gradOf(x);
  if (!gx) return;
  const [B, T, W] = x.shape as [number, number, number];
  const hd = W / heads;
  const half = hd / 2;
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < half; j++) {
      const angle = t * Math.pow(theta, (-2 * j) / hd);
      const cos = Math.cos(angle);
      const sin = Math.sin(angle);
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < heads; h++) {
          const base = (b * T + t) * W + h * hd;
          const ia = interleaved ? base + 2 * j : base + j;
          const ib = interleaved ? base + 2 * j + 1 : base + j + half;
          gx[ia] += gy[ia]! * cos + gy[ib]! * sin;
          gx[ib] += -gy[ia]! * sin + gy[ib]! * cos;
        }
      }
    }
  }
}

function attentionBack(q: Tensor, k: Tensor, v: Tensor, heads: number, kvHeads: number, causal: boolean, gy: Float64Array, gradOf: GradOf): void {
  const qd = f(q);
  const kd = f(k);
  const vd = f(v);
  const [B, T, W] = q.shape as [number, number, number];
  const S = k.shape[1]!;
  const KW = k.shape[2]!;
  const hd = W / heads;
  const group = heads / kvHeads;
  const scale = 1 / Math.sqrt(hd);
  const gq = gradOf(q);
  const gk = gradOf(k);
  const gv = gradOf(v);
  const p = new Float64Array(S);
  const dp = new Float64Array(S);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group);
      for (let t = 0; t < T; t++) {
        const qo = (b * T + t) * W + h * hd;
        const n = causal ? t + 1 : S;
        attentionWeights(qd, kd, qo, b * S * KW + kh * hd, KW, hd, n, p);
        let pdp = 0;
        for (let j = 0; j < n; j++) {
          const vo = (b * S + j) * KW + kh * hd;
          let s = 0;
          for (let dd = 0; dd < hd; dd++) {
            s += gy[qo + dd]! * vd[vo + dd]!;
            if (gv) gv[vo + dd] += p[j]! * gy[qo + dd]!;
          }
          dp[j] = s;
          pdp += p[j]! * s;
        }
        for (let j = 0; j < n; j++) {
          const ds = p[j]! * (dp[j]! - pdp) * scale;
          const ko = (b * S + j) * KW + kh * hd;
          for (let dd = 0; dd < hd; dd++) {
            if (gq) gq[qo + dd] += ds * kd[ko + dd]!;
            if (gk) gk[ko + dd] += ds * qd[qo + dd]!;
          }
        }
      }
    }
  }
}

function binaryBack(op: "add" | "sub" | "mul" | "div", a: Tensor, b: Tensor, shape: number[], gy: Float64Array, gradOf: GradOf): void {
  const ga = gradOf(a);
  const gb = gradOf(b);
  if (!ga && !gb) return;
  const [ia, ib] = broadcastIndices(shape, a.shape, b.shape);
  const ad = f(a);
  const bd = f(b);
  for (let i = 0; i < gy.length; i++) {
    const g = gy[i]!;
    const x = ad[ia[i]!]!;
    const y = bd[ib[i]!]!;
    if (ga) ga[ia[i]!] += op === "mul" ? g * y : op === "div" ? g / y : g;
    if (gb) gb[ib[i]!] += op === "mul" ? g * x : op === "div" ? (-g * x) / (y * y) : op === "sub" ? -g : g;
  }
}

/** The softmax of logits row o (length V) into p. */
function softmaxRow(l: Float32Array, o: number, V: number, p: Float64Array): void {
  const { mx, se } = softmaxStats(l, o, V);
  for (let v = 0; v < V; v++) p[v] = Math.exp(l[o + v]! - mx) / se;
}

/** The masked mean's weights m[b, t] / sum m over t >= 1 (the positions the loss averages). */
function maskWeights(mask: Tensor, B: number, T: number): Float64Array {
  const mk = f(mask);
  const w = new Float64Array(B * T);
  let den = 0;
  for (let b = 0; b < B; b++) for (let t = 1; t < T; t++) den += mk[b * T + t]!;
  for (let b = 0; b < B; b++) for (let t = 1; t < T; t++) w[b * T + t] = mk[b * T + t]! / den;
  return w;
}

function nextTokenCeBack(logits: Tensor, tokens: Tensor, mask: Tensor, g: number, gradOf: GradOf): void {
  const gl = gradOf(logits);
  if (!gl) return;
  const [B, T, V] = logits.shape as [number, number, number];
  const l = f(logits);
  const tok = tokens.data as Int32Array;
  const w = maskWeights(mask, B, T);
  const p = new Float64Array(V);
  for (let b = 0; b < B; b++) {
    for (let t = 1; t < T; t++) {
      const wt = w[b * T + t]! * g;
      if (wt === 0) continue;
      const o = (b * T + t - 1) * V;
      softmaxRow(l, o, V, p);
      for (let v = 0; v < V; v++) gl[o + v] += wt * p[v]!;
      gl[o + tok[b * T + t]!] -= wt;
    }
  }
}

/**
 * distill_ce's gradient (ops.ts): with the softmax pi, the teacher's ids and probs, P = sum probs,
 * the tail weight w = 1 - P and tail mass R = 1 - sum_k pi[id_k], dloss_t/dl_u =
 * P pi_u - probs[u] [u in ids] + (w > 0 and R above the floor: w pi_u - (w / R) pi_u [u not in ids]).
 */
function distillCeBack(logits: Tensor, ids: Tensor, probs: Tensor, mask: Tensor, g: number, gradOf: GradOf): void {
  const gl = gradOf(logits);
  if (!gl) return;
  const [B, T, V] = logits.shape as [number, number, number];
  const K = ids.shape[2]!;
  const l = f(logits);
  const id = ids.data as Int32Array;
  const pr = f(probs);
  const w = maskWeights(mask, B, T);
  const p = new Float64Array(V);
  const inTop = new Uint8Array(V);
  for (let b = 0; b < B; b++) {
    for (let t = 1; t < T; t++) {
      const wt = w[b * T + t]! * g;
      if (wt === 0) continue;
      const o = (b * T + t - 1) * V;
      const q = (b * T + t - 1) * K;
      softmaxRow(l, o, V, p);
      let P = 0;
      let top = 0;
      for (let k = 0; k < K; k++) {
        P += pr[q + k]!;
        top += p[id[q + k]!]!;
        inTop[id[q + k]!] = 1;
      }
      const tail = 1 - P;
      const R = 1 - top;
      const withTail = tail > 0 && R > DISTILL_TAIL_FLOOR;
      for (let v = 0; v < V; v++) {
        let dv = P * p[v]!;
        if (withTail) dv += tail * p[v]! - (inTop[v] ? 0 : (tail / R) * p[v]!);
        gl[o + v] += wt * dv;
      }
      for (let k = 0; k < K; k++) {
        gl[o + id[q + k]!] -= wt * pr[q + k]!;
        inTop[id[q + k]!] = 0;
      }
    }
  }
}
