/**
 * The reference kernels of the interpreter: one plain function per op, on row-major tensors.
 * The numerics contract they implement is written at the top of ./interpreter.ts; in short, every
 * intermediate is a float64 (JavaScript number) and each output element is rounded to float32 once,
 * when it is stored.
 */
import { QzoError } from "../../util/errors.js";

export interface Tensor {
  shape: number[];
  data: Float32Array | Int32Array;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function f32(shape: number[], data?: Float32Array): Tensor & { data: Float32Array } {
  return { shape, data: data ?? new Float32Array(numel(shape)) };
}

function floats(t: Tensor, what: string): Float32Array {
  if (!(t.data instanceof Float32Array)) throw new Error(`internal: ${what} must be a float tensor`);
  return t.data;
}

function ints(t: Tensor, what: string): Int32Array {
  if (!(t.data instanceof Int32Array)) throw new Error(`internal: ${what} must be an integer tensor`);
  return t.data;
}

function lastDim(t: Tensor): number {
  const d = t.shape[t.shape.length - 1];
  if (d === undefined) throw new Error("internal: expected a tensor of rank >= 1");
  return d;
}

// ------------------------------------------------------------------ lookup and products

/** Rows of table[V, D] for every id; an id outside [0, V) is an error. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  const tab = floats(table, "embedding table");
  const id = ints(ids, "embedding ids");
  const [V, D] = table.shape as [number, number];
  const out = f32([...ids.shape, D]);
  for (let i = 0; i < id.length; i++) {
    const v = id[i]!;
    if (v < 0 || v >= V) throw new QzoError(`embedding: token id ${v} is out of range for a table of ${V} rows (valid ids 0..${V - 1})`);
    out.data.set(tab.subarray(v * D, v * D + D), i * D);
  }
  return out;
}

/** y[..., n] = sum_k x[..., k] w[n, k] + bias[n], accumulated in float64. */
export function linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
  const xd = floats(x, "linear input");
  const wd = floats(w, "linear weight");
  const [N, K] = w.shape as [number, number];
  if (lastDim(x) !== K) throw new Error(`internal: linear: input width ${lastDim(x)} != weight cols ${K}`);
  const bd = bias ? floats(bias, "bias") : undefined;
  const M = xd.length / K;
  const out = f32([...x.shape.slice(0, -1), N]);
  const o = out.data;
  for (let m = 0; m < M; m++) {
    const xo = m * K;
    for (let n = 0; n < N; n++) {
      const wo = n * K;
      let acc = 0;
      for (let k = 0; k < K; k++) acc += xd[xo + k]! * wd[wo + k]!;
      if (bd) acc += bd[n]!;
      o[m * N + n] = acc;
    }
  }
  return out;
}

// ------------------------------------------------------------------ norms

/** y = x / sqrt(sum(x^2) / G + eps) * w over each group of G = len(w) values of the last dimension. */
export function rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor {
  const xd = floats(x, "rmsnorm input");
  const wd = floats(w, "rmsnorm weight");
  const D = wd.length;
  if (lastDim(x) % D !== 0) throw new Error(`internal: rmsnorm: weight length ${D} does not divide ${lastDim(x)}`);
  const out = f32([...x.shape]);
  const o = out.data;
  for (let r = 0; r < xd.length; r += D) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += xd[r + i]! * xd[r + i]!;
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) o[r + i] = xd[r + i]! * inv * wd[i]!;
  }
  return out;
}

/**
 * y = (x - mean) / sqrt(var + eps) * w + b over the last dimension; biased (1/D) variance, two
 * passes; without w and b, y = (x - mean) / sqrt(var + eps).
 */
export function layernorm(x: Tensor, w: Tensor | undefined, b: Tensor | undefined, eps: number): Tensor {
  const xd = floats(x, "layernorm input");
  const wd = w && floats(w, "layernorm weight");
  const bd = b && floats(b, "layernorm bias");
  const D = lastDim(x);
  const out = f32([...x.shape]);
  const o = out.data;
  for (let r = 0; r < xd.length; r += D) {
    let s = 0;
    for (let i = 0; i < D; i++) s += xd[r + i]!;
    const mean = s / D;
    let v = 0;
    for (let i = 0; i < D; i++) {
      const c = xd[r + i]! - mean;
      v += c * c;
    }
    const inv = 1 / Math.sqrt(v / D + eps);
    for (let i = 0; i < D; i++) o[r + i] = wd && bd ? (xd[r + i]! - mean) * inv * wd[i]! + bd[i]! : (xd[r + i]! - mean) * inv;
  }
  return out;
}

// ------------------------------------------------------------------ attention

/** Rotary position embedding of x[B, T, heads*hd] at positions p = t. */
export function rope(x: Tensor, heads: number, theta: number, style: "interleaved" | "rotate_half"): Tensor {
  const xd = floats(x, "rope input");
  const [B, T, W] = x.shape as [number, number, number];
  if (W % heads !== 0) throw new QzoError(`rope: width ${W} is not a multiple of heads = ${heads}`);
  const hd = W / heads;
  if (hd % 2 !== 0) throw new QzoError(`rope: head dimension ${hd} is odd`);
  const half = hd / 2;
  const freq = new Float64Array(half);
  for (let j = 0; j < half; j++) freq[j] = Math.pow(theta, (-2 * j) / hd);
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  const out = f32([B, T, W]);
  const o = out.data;
  const interleaved = style === "interleaved";
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < half; j++) {
      const angle = t * freq[j]!;
      cos[j] = Math.cos(angle);
      sin[j] = Math.sin(angle);
    }
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < heads; h++) {
        const base = (b * T + t) * W + h * hd;
        for (let j = 0; j < half; j++) {
          const ia = interleaved ? base + 2 * j : base + j;
          const ib = interleaved ? base + 2 * j + 1 : base + j + half;
          const a = xd[ia]!;
          const c = xd[ib]!;
          o[ia] = a * cos[j]! - c * sin[j]!;
          o[ib] = a * sin[j]! + c * cos[j]!;
        }
      }
    }
  }
  return out;
}

/** Scaled dot-product attention of T queries over S keys with grouped-query heads (causal: S = T); scores and weights stay in float64. */
export function attention(q: Tensor, k: Tensor, v: Tensor, heads: number, kvHeads: number, causal: boolean): Tensor {
  const qd = floats(q, "attention q");
  const kd = floats(k, "attention k");
  const vd = floats(v, "attention v");
  const [B, T, W] = q.shape as [number, number, number];
  const S = k.shape[1]!;
  const KW = lastDim(k);
  if (W % heads !== 0) throw new QzoError(`attention: q width ${W} is not a multiple of heads = ${heads}`);
  if (heads % kvHeads !== 0) throw new QzoError(`attention: heads = ${heads} is not a multiple of kv_heads = ${kvHeads}`);
  const hd = W / heads;
  if (KW !== kvHeads * hd) throw new QzoError(`attention: k width ${KW} != kv_heads * head_dim = ${kvHeads * hd}`);
  const group = heads / kvHeads;
  const out = f32([B, T, W]);
  const o = out.data;
  const p = new Float64Array(S);
  const acc = new Float64Array(hd);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group);
      for (let t = 0; t < T; t++) {
        const qo = (b * T + t) * W + h * hd;
        const n = causal ? t + 1 : S;
        attentionWeights(qd, kd, qo, b * S * KW + kh * hd, KW, hd, n, p);
        acc.fill(0);
        for (let j = 0; j < n; j++) {
          const w = p[j]!;
          const vo = (b * S + j) * KW + kh * hd;
          for (let d = 0; d < hd; d++) acc[d] += w * vd[vo + d]!;
        }
        for (let d = 0; d < hd; d++) o[qo + d] = acc[d]!;
      }
    }
  }
  return out;
}

/**
 * The attention weights p[0, n) of the query at qd[qo, qo + hd) over keys j < n at
 * kd[k0 + j * KW, + hd): softmax of the float64 scores q . k_j / sqrt(hd).
 */
export function attentionWeights(qd: Float32Array, kd: Float32Array, qo: number, k0: number, KW: number, hd: number, n: number, p: Float64Array): void {
  const scale = 1 / Math.sqrt(hd);
  let mx = -Infinity;
  for (let j = 0; j < n; j++) {
    const ko = k0 + j * KW;
    let s = 0;
    for (let d = 0; d < hd; d++) s += qd[qo + d]! * kd[ko + d]!;
    s *= scale;
    p[j] = s;
    if (s > mx) mx = s;
  }
  let sum = 0;
  for (let j = 0; j < n; j++) {
    const e = Math.exp(p[j]! - mx);
    p[j] = e;
    sum += e;
  }
  for (let j = 0; j < n; j++) p[j] = p[j]! / sum;
}

/**
 * NumPy broadcasting of a and b to `shape` (aligned from the last dimension, size-1 dimensions
 * repeated): for each output element i, the flat index into a and into b.
 */
export function broadcastIndices(shape: readonly number[], a: readonly number[], b: readonly number[]): [Int32Array, Int32Array] {
  const n = shape.length;
  const strides = (s: readonly number[]): number[] => {
    const padded = [...Array<number>(n - s.length).fill(1), ...s];
    const st = new Array<number>(n).fill(0);
    let acc = 1;
    for (let d = n - 1; d >= 0; d--) {
      st[d] = padded[d] === 1 ? 0 : acc;
      acc *= padded[d]!;
    }
    return st;
  };
  const stA = strides(a);
  const stB = strides(b);
  const ia = new Int32Array(numel(shape));
  const ib = new Int32Array(ia.length);
  for (let i = 0; i < ia.length; i++) {
    let rest = i;
    for (let d = n - 1; d >= 0; d--) {
      const c = rest % shape[d]!;
      rest = (rest - c) / shape[d]!;
      ia[i] += c * stA[d]!;
      ib[i] += c * stB[d]!;
    }
  }
  return [ia, ib];
}

// ------------------------------------------------------------------ elementwise

export function silu(x: Tensor): Tensor {
  const xd = floats(x, "silu input");
  const out = f32([...x.shape]);
  for (let i = 0; i < xd.length; i++) out.data[i] = xd[i]! / (1 + Math.exp(-xd[i]!));
  return out;
}

export function relu(x: Tensor): Tensor {
  const xd = floats(x, "relu input");
  const out = f32([...x.shape]);
  for (let i = 0; i < xd.length; i++) out.data[i] = xd[i]! > 0 ? xd[i]! : 0;
  return out;
}

const TWO_OVER_SQRT_PI = 1.1283791670955126;

/**
 * erf(x) in float64, absolute error well below 1e-12: for |x| < 6 the everywhere-convergent series
 * erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_{n>=0} 2^n x^(2n+1) / (1*3*5*...*(2n+1)),
 * whose terms are all positive (no cancellation); |erf(x)| rounds to 1 beyond.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax >= 6) return x > 0 ? 1 : -1;
  const x2 = ax * ax;
  let term = ax;
  let sum = ax;
  for (let n = 1; n < 500; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  const r = TWO_OVER_SQRT_PI * Math.exp(-x2) * sum;
  return x < 0 ? -r : r;
}

const SQRT1_2 = Math.SQRT1_2;

/** gelu(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact (erf) form. */
export function gelu(x: Tensor): Tensor {
  const xd = floats(x, "gelu input");
  const out = f32([...x.shape]);
  for (let i = 0; i < xd.length; i++) {
    const v = xd[i]!;
    out.data[i] = 0.5 * v * (1 + erf(v * SQRT1_2));
  }
  return out;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh approximation. */
export function geluTanh(x: Tensor): Tensor {
  const xd = floats(x, "gelu_tanh input");
  const out = f32([...x.shape]);
  for (let i = 0; i < xd.length; i++) {
    const v = xd[i]!;
    out.data[i] = 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)));
  }
  return out;
}

/** softmax over the last dimension, with max subtraction. */
export function softmax(x: Tensor): Tensor {
  const xd = floats(x, "softmax input");
  const D = lastDim(x);
  const out = f32([...x.shape]);
  const e = new Float64Array(D);
  for (let r = 0; r < xd.length; r += D) {
    let mx = -Infinity;
    for (let i = 0; i < D; i++) if (xd[r + i]! > mx) mx = xd[r + i]!;
    let sum = 0;
    for (let i = 0; i < D; i++) {
      e[i] = Math.exp(xd[r + i]! - mx);
      sum += e[i]!;
    }
    for (let i = 0; i < D; i++) out.data[r + i] = e[i]! / sum;
  }
  return out;
}

export type BinaryOp = "add" | "sub" | "mul" | "div";

/**
 * a op b elementwise with NumPy broadcasting: the shapes aligned from the last dimension, each pair
 * equal or one of them 1 (a scalar [] broadcasts everywhere).
 */
export function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const ad = floats(a, `${op} left operand`);
  const bd = floats(b, `${op} right operand`);
  const n = Math.max(a.shape.length, b.shape.length);
  const pad = (s: number[]) => [...Array<number>(n - s.length).fill(1), ...s];
  const sa = pad(a.shape);
  const sb = pad(b.shape);
  const shape = sa.map((d, i) => {
    if (d !== sb[i] && d !== 1 && sb[i] !== 1) throw new Error(`internal: ${op}: shapes [${a.shape}] and [${b.shape}] do not broadcast`);
    return d === 1 ? sb[i]! : d;
  });
  const out = f32(shape);
  const o = out.data;
  const [ia, ib] = broadcastIndices(shape, a.shape, b.shape);
  const f = { add: (x: number, y: number) => x + y, sub: (x: number, y: number) => x - y, mul: (x: number, y: number) => x * y, div: (x: number, y: number) => x / y }[op];
  for (let i = 0; i < o.length; i++) o[i] = f(ad[ia[i]!]!, bd[ib[i]!]!);
  return out;
}

export function neg(x: Tensor): Tensor {
  const xd = floats(x, "neg input");
  const out = f32([...x.shape]);
  for (let i = 0; i < xd.length; i++) out.data[i] = -xd[i]!;
  return out;
}

/** positions(tokens[B, T], offset)[b, t] = t + offset (i32). */
export function positions(tokens: Tensor, offset: number): Tensor {
  const [B, T] = tokens.shape as [number, number];
  const data = new Int32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) data[b * T + t] = t + offset;
  return { shape: [B, T], data };
}

// ------------------------------------------------------------------ layouts

/** chunk(x[..., parts*D], parts, index)[..., j] = x[..., index*D + j]. */
export function chunk(x: Tensor, parts: number, index: number): Tensor {
  const xd = floats(x, "chunk input");
  const W = lastDim(x);
  const D = W / parts;
  const out = f32([...x.shape.slice(0, -1), D]);
  for (let r = 0; r < xd.length / W; r++) out.data.set(xd.subarray(r * W + index * D, r * W + index * D + D), r * D);
  return out;
}

/** a then b along dimension axis. */
export function concat(a: Tensor, b: Tensor, axis: number): Tensor {
  const ad = floats(a, "concat input");
  const bd = floats(b, "concat input");
  const outer = numel(a.shape.slice(0, axis));
  const ia = numel(a.shape.slice(axis));
  const ib = numel(b.shape.slice(axis));
  const out = f32(a.shape.map((d, i) => (i === axis ? d + b.shape[i]! : d)));
  for (let o = 0; o < outer; o++) {
    out.data.set(ad.subarray(o * ia, (o + 1) * ia), o * (ia + ib));
    out.data.set(bd.subarray(o * ib, (o + 1) * ib), o * (ia + ib) + ia);
  }
  return out;
}

/** patchify(x[B, C, h*p, w*p])[b, r*w + c, (ch*p + dy)*p + dx] = x[b, ch, r*p + dy, c*p + dx]. */
export function patchify(x: Tensor, p: number): Tensor {
  const xd = floats(x, "patchify input");
  const [B, C, H, W] = x.shape as [number, number, number, number];
  const h = H / p;
  const w = W / p;
  const out = f32([B, h * w, C * p * p]);
  let i = 0;
  for (let b = 0; b < B; b++)
    for (let r = 0; r < h; r++)
      for (let c = 0; c < w; c++)
        for (let ch = 0; ch < C; ch++)
          for (let dy = 0; dy < p; dy++) for (let dx = 0; dx < p; dx++) out.data[i++] = xd[((b * C + ch) * H + r * p + dy) * W + c * p + dx]!;
  return out;
}

/** unpatchify(y[B, h*w, p*p*C], like[B, C', h*p, w*p])[b, ch, r*p + dy, c*p + dx] = y[b, r*w + c, (dy*p + dx)*C + ch]. */
export function unpatchify(y: Tensor, like: Tensor, p: number): Tensor {
  const yd = floats(y, "unpatchify input");
  const [B, , H, W] = like.shape as [number, number, number, number];
  const C = lastDim(y) / (p * p);
  const w = W / p;
  const out = f32([B, C, H, W]);
  let i = 0;
  for (let b = 0; b < B; b++)
    for (let ch = 0; ch < C; ch++)
      for (let yy = 0; yy < H; yy++)
        for (let xx = 0; xx < W; xx++) {
          const tok = Math.floor(yy / p) * w + Math.floor(xx / p);
          out.data[i++] = yd[(b * (H / p) * w + tok) * p * p * C + ((yy % p) * p + (xx % p)) * C + ch]!;
        }
  return out;
}

/** pos_crop(table[1?, M*M, D], like[B, C, h*p, w*p])[r*w + c] = table[(top + r)*M + left + c], top = (M - h)/2, left = (M - w)/2 (floor). */
export function posCrop(table: Tensor, like: Tensor, p: number, M: number): Tensor {
  const td = floats(table, "position table");
  const D = lastDim(table);
  const h = like.shape[2]! / p;
  const w = like.shape[3]! / p;
  if (h > M || w > M) throw new QzoError(`pos_crop: a ${h} x ${w} patch grid does not fit the ${M} x ${M} position table`);
  const top = Math.floor((M - h) / 2);
  const left = Math.floor((M - w) / 2);
  const out = f32([h * w, D]);
  for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) out.data.set(td.subarray(((top + r) * M + left + c) * D, ((top + r) * M + left + c + 1) * D), (r * w + c) * D);
  return out;
}

/**
 * Sinusoidal timestep embedding as diffusers computes it in float32: e_k = float32(-ln(max_period) * k) /
 * (dim/2 - shift) rounded to float32, f_k = float32(exp(e_k)), a = float32(t * f_k); out = [sin a, cos a]
 * ([cos a, sin a] when flipped), each rounded once.
 */
export function timestepEmbedding(t: Tensor, dim: number, flip: boolean, shift: number, maxPeriod: number): Tensor {
  const td = floats(t, "timesteps");
  const half = dim / 2;
  const f = new Float64Array(half);
  const lnP = Math.fround(-Math.log(maxPeriod));
  for (let k = 0; k < half; k++) f[k] = Math.fround(Math.exp(Math.fround(Math.fround(lnP * k) / Math.fround(half - shift))));
  const out = f32([td.length, dim]);
  for (let b = 0; b < td.length; b++) {
    for (let k = 0; k < half; k++) {
      const a = Math.fround(td[b]! * f[k]!);
      out.data[b * dim + (flip ? half : 0) + k] = Math.sin(a);
      out.data[b * dim + (flip ? 0 : half) + k] = Math.cos(a);
    }
  }
  return out;
}

// ------------------------------------------------------------------ losses

/** The max of row = logits[o .. o + V) and the sum of exp(row - max), in float64. */
/** The max and the sum of exp(l - max) of logits row o (length V), in float64. */
export function softmaxStats(l: Float32Array, o: number, V: number): { mx: number; se: number } {
  let mx = -Infinity;
  for (let i = 0; i < V; i++) if (l[o + i]! > mx) mx = l[o + i]!;
  let se = 0;
  for (let i = 0; i < V; i++) se += Math.exp(l[o + i]! - mx);
  return { mx, se };
}

/** log softmax(row)[target] in float64, for row = logits[o .. o + V). */
function logProb(l: Float32Array, o: number, V: number, target: number): number {
  const { mx, se } = softmaxStats(l, o, V);
  return l[o + target]! - mx - Math.log(se);
}

function checkToken(what: string, id: number, V: number, b: number, t: number): void {
  if (id < 0 || id >= V) throw new QzoError(`${what}: token id ${id} at [${b}, ${t}] is out of range for a vocabulary of ${V}`);
}

/**
 * Mean next-token negative log-likelihood: sum over b and t >= 1 of mask[b,t] * -log softmax(logits[b,t-1])[tokens[b,t]],
 * divided by the sum of those mask values. Positions with mask 0 are skipped (their logits are not read).
 */
export function nextTokenCe(logits: Tensor, tokens: Tensor, mask: Tensor): Tensor {
  const l = floats(logits, "logits");
  const tok = ints(tokens, "tokens");
  const [B, T, V] = logits.shape as [number, number, number];
  return maskedMean("next_token_ce", mask, B, T, (b, t) => {
    const target = tok[b * T + t]!;
    checkToken("next_token_ce", target, V, b, t);
    return -logProb(l, (b * T + t - 1) * V, V, target);
  });
}

/**
 * sum over b and t >= 1 of mask[b,t] * loss(b, t), divided by the sum of those mask values; positions with
 * mask 0 are skipped. An all-zero mask is a QzoError.
 */
function maskedMean(what: string, mask: Tensor, B: number, T: number, loss: (b: number, t: number) => number): Tensor {
  const mk = floats(mask, "mask");
  let sum = 0;
  let den = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 1; t < T; t++) {
      const m = mk[b * T + t]!;
      if (m === 0) continue;
      sum += m * loss(b, t);
      den += m;
    }
  }
  if (den === 0) throw new QzoError(`${what}: the mask selects no prediction target (mask[b, t] is 0 for every t >= 1)`);
  return { shape: [], data: Float32Array.of(sum / den) };
}

/** The floor of the student's tail mass (1 - sum of its probabilities at the teacher's ids) in distill_ce. */
export const DISTILL_TAIL_FLOOR = 1e-12;

/**
 * Distillation cross-entropy: for b and t >= 1 with m = mask[b,t] != 0, the student row l = logits[b,t-1] and the
 * teacher's top-K (ids, probs)[b,t-1] (its distribution of token t) give, in float64,
 *   mx = max l, se = sum_v exp(l_v - mx), S = sum_k exp(l[id_k] - mx), P = sum_k probs_k,
 *   loss_t = -sum_k probs_k (l[id_k] - mx - log se) - max(1 - P, 0) * log(max((se - S) / se, DISTILL_TAIL_FLOOR))
 * (the cross-entropy over the K buckets plus one for the rest of the vocabulary); the result is
 * sum m loss_t / sum m. Positions with mask 0 are skipped; an id outside [0, V) or an all-zero mask is a QzoError.
 */
export function distillCe(logits: Tensor, ids: Tensor, probs: Tensor, mask: Tensor): Tensor {
  const l = floats(logits, "logits");
  const id = ints(ids, "teacher ids");
  const pr = floats(probs, "teacher probs");
  const [B, T, V] = logits.shape as [number, number, number];
  const K = ids.shape[2]!;
  return maskedMean("distill_ce", mask, B, T, (b, t) => {
    const o = (b * T + t - 1) * V;
    const q = (b * T + t - 1) * K;
    const { mx, se } = softmaxStats(l, o, V);
    const lse = Math.log(se);
    let ce = 0;
    let S = 0;
    let P = 0;
    for (let k = 0; k < K; k++) {
      const v = id[q + k]!;
      checkToken("distill_ce", v, V, b, t - 1);
      const lv = l[o + v]! - mx;
      ce -= pr[q + k]! * (lv - lse);
      S += Math.exp(lv);
      P += pr[q + k]!;
    }
    const w = 1 - P;
    if (w > 0) ce -= w * Math.log(Math.max((se - S) / se, DISTILL_TAIL_FLOOR));
    return ce;
  });
}

/** Per-sequence scores of candidate_ce: mask-weighted mean over t >= 1 of log softmax(logits[n,t-1])[tokens[n,t]]. */
export function candidateScores(logits: Tensor, tokens: Tensor, mask: Tensor): Float64Array {
  const l = floats(logits, "logits");
  const tok = ints(tokens, "tokens");
  const mk = floats(mask, "mask");
  const [N, T, V] = logits.shape as [number, number, number];
  const scores = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let s = 0;
    let den = 0;
    for (let t = 1; t < T; t++) {
      const m = mk[n * T + t]!;
      if (m === 0) continue;
      const target = tok[n * T + t]!;
      checkToken("candidate_ce", target, V, n, t);
      s += m * logProb(l, (n * T + t - 1) * V, V, target);
      den += m;
    }
    if (den === 0) throw new QzoError(`candidate_ce: sequence ${n} has no scored token (mask[${n}, t] is 0 for every t >= 1)`);
    scores[n] = s / den;
  }
  return scores;
}

/** MeZO's classification loss: mean over examples of -log softmax_k(score[e*C + k])[label[e]]. */
export function candidateCe(logits: Tensor, tokens: Tensor, mask: Tensor, label: Tensor, C: number): Tensor {
  const lab = ints(label, "label");
  const E = lab.length;
  const N = logits.shape[0]!;
  if (N !== E * C) throw new QzoError(`candidate_ce: ${N} sequences, expected labels (${E}) * candidates (${C}) = ${E * C}`);
  const scores = candidateScores(logits, tokens, mask);
  let loss = 0;
  for (let e = 0; e < E; e++) {
    const y = lab[e]!;
    if (y < 0 || y >= C) throw new QzoError(`candidate_ce: label ${y} of example ${e} is out of range for ${C} candidates`);
    let mx = -Infinity;
    for (let k = 0; k < C; k++) if (scores[e * C + k]! > mx) mx = scores[e * C + k]!;
    let sum = 0;
    for (let k = 0; k < C; k++) sum += Math.exp(scores[e * C + k]! - mx);
    loss += mx + Math.log(sum) - scores[e * C + y]!;
  }
  return { shape: [], data: Float32Array.of(loss / E) };
}

/** mean((a - b)^2) over all elements. */
export function mse(a: Tensor, b: Tensor): Tensor {
  const ad = floats(a, "mse prediction");
  const bd = floats(b, "mse target");
  let s = 0;
  for (let i = 0; i < ad.length; i++) {
    const d = ad[i]! - bd[i]!;
    s += d * d;
  }
  return { shape: [], data: Float32Array.of(s / ad.length) };
}
