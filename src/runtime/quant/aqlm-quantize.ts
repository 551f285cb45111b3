/**
 * Data-free additive quantization (AQLM) of a float32 matrix, in AQLM's "MxB" layout with
 * out_group_size 1 as Hugging Face AQLM checkpoints store it: every row is cut into groups of V
 * consecutive weights, and each group is the sum of one V-vector from each of M codebooks of 2^B
 * entries, times a per-row scale:
 *
 *     W[r, g*V + j] = scales[r] * sum_{m < M} codebooks[m, codes[r, g, m], j]
 *
 * Dequantization is defined in float32: the codebook sum is accumulated in order m = 0..M-1, rounding
 * to float32 after every addition, and then multiplied by the scale (rounded once more), which is
 * what a C or CUDA kernel doing `float acc = 0; for (m) acc += cb[...]; out = acc * s;` computes.
 *
 * Quantization minimises ||W - What||_F^2 (the relative error reported) by block coordinate descent
 * on one objective, deterministic from the seed:
 *   1. scales: the row RMS rounded to f16; targets X = W / s. Every later step works on X with the
 *      weight s_r^2 per group, so that errors are counted as they are in W, not in X.
 *   2. codebooks: greedy residual k-means (weighted k-means++ seeding, Lloyd iterations): codebook 0
 *      on the groups of X, codebook m on what codebooks 0..m-1 leave over.
 *   3. `rounds` rounds of: per-row least-squares scale (rounded to f16, kept only if it lowers the
 *      error); codes by coordinate descent over m (each code the best given the others); each
 *      codebook refit as the weighted mean of (target - other codebooks) over the groups using each
 *      entry, which is the exact least-squares update for one codebook with the rest held.
 *   4. codebooks rounded to f16, a last scale step, then a last code pass against the stored
 *      (rounded) codebooks and scales.
 */
import { QzoError } from "../../util/errors.js";
import { roundToDType } from "../../util/float-bits.js";
import { rng } from "../../util/seeded-random.js";

export interface AqlmOptions {
  /** M, the number of codebooks summed per group (e.g. 2). */
  codebooks: number;
  /** Bits per code (1..8, codes are u8); each codebook has 2^bits entries. */
  bits: number;
  /** V, the number of consecutive weights in a row that one code sum covers (e.g. 8). */
  groupSize: number;
  /** Seed of the k-means++ sampling; the same seed gives the same result. */
  seed: number;
  /** Alternating refinement rounds after the greedy initialisation (default 4). */
  rounds?: number;
  /** Lloyd iterations of each initial k-means (default 10). */
  kmeansIters?: number;
}

export interface AqlmResult {
  /** [rows, cols / V, M] row-major: codes[(r * (cols / V) + g) * M + m]. */
  codes: Uint8Array;
  /** [M, 2^bits, V] row-major; every value exactly representable in IEEE f16. */
  codebooks: Float32Array;
  /** [rows]; every value exactly representable in IEEE f16, and > 0. */
  scales: Float32Array;
  /** ||W - What||_F^2 / ||W||_F^2 of the returned quantization (0 when both are 0). */
  relativeError: number;
}

const F16_MAX = 65504;
/** Smallest positive f16 (a subnormal): the scale of rows whose RMS rounds to 0 in f16. */
const F16_MIN_POSITIVE = 2 ** -24;
/**
 * Coordinate-descent sweeps over the M codes of one group: a sweep that changes a code can make an
 * earlier code of the same group no longer the best, so sweeps repeat until none changes, with a cap
 * because each sweep costs as much as a full code search.
 */
const MAX_CODE_SWEEPS = 4;

/** Rounds to the nearest f16 value; magnitudes past the f16 range clamp to +-65504 rather than inf. */
function toF16(x: number): number {
  return roundToDType("f16", x > F16_MAX ? F16_MAX : x < -F16_MAX ? -F16_MAX : x);
}

/** A positive f16 scale: the f16 rounding of s, or the smallest positive f16 where that is not > 0. */
function f16Scale(s: number): number {
  const h = s > 0 ? toF16(s) : 0;
  return h > 0 ? h : F16_MIN_POSITIVE;
}


function checkInt(name: string, x: number, min: number, max = Infinity): void {
  if (!Number.isInteger(x) || x < min || x > max) {
    const range = max === Infinity ? `>= ${min}` : `in ${min}..${max}`;
    throw new QzoError(`AQLM: ${name} must be an integer ${range}, got ${x}`);
  }
}

/** Checks the matrix shape and the layout options shared by quantize and dequantize. */
function checkLayout(rows: number, cols: number, o: Pick<AqlmOptions, "codebooks" | "bits" | "groupSize">): void {
  checkInt("rows", rows, 1);
  checkInt("cols", cols, 1);
  checkInt("codebooks (M)", o.codebooks, 1);
  checkInt("bits (codes are u8)", o.bits, 1, 8);
  checkInt("groupSize (V)", o.groupSize, 1);
  if (cols % o.groupSize !== 0) {
    throw new QzoError(`AQLM: cols ${cols} is not a multiple of the group size ${o.groupSize}`);
  }
}

/**
 * The working state, in float64. Vector i (group g of row r, i = r * G + g) has its V target values
 * at x[i*V .. i*V+V), the same flat offsets as in W; `sum` holds the current decoded vectors (the sum
 * of the chosen codebook entries, in X units) at the same offsets.
 */
interface State {
  rows: number;
  /** Groups per row, cols / V. */
  g: number;
  /** Vectors, rows * G. */
  n: number;
  v: number;
  /** M. */
  m: number;
  /** Entries per codebook, 2^bits. */
  k: number;
  w: Float32Array;
  scales: Float64Array;
  /** Weight of each row, scale^2: the factor between squared errors in X and in W. */
  rowWeight: Float64Array;
  x: Float64Array;
  cb: Float64Array;
  /** Squared norm of each codebook entry, [M * K]. */
  norms: Float64Array;
  codes: Uint8Array;
  sum: Float64Array;
}

function setScale(st: State, r: number, s: number): void {
  st.scales[r] = s;
  st.rowWeight[r] = s * s;
  const cols = st.g * st.v;
  const inv = 1 / s;
  for (let c = r * cols, end = c + cols; c < end; c++) st.x[c] = st.w[c]! * inv;
}

function updateNorms(st: State, m: number): void {
  const { k, v, cb, norms } = st;
  for (let e = 0; e < k; e++) {
    let s = 0;
    for (let j = 0, o = (m * k + e) * v; j < v; j++, o++) s += cb[o]! * cb[o]!;
    norms[m * k + e] = s;
  }
}

/** Recomputes `sum` from scratch, so that incremental updates never accumulate drift. */
function recomputeSum(st: State): void {
  const { n, v, m: M, k, cb, codes, sum } = st;
  sum.fill(0);
  for (let i = 0; i < n; i++) {
    for (let m = 0; m < M; m++) {
      const o = (m * k + codes[i * M + m]!) * v;
      for (let j = 0; j < v; j++) sum[i * v + j]! += cb[o + j]!;
    }
  }
}

/** Index drawn with probability proportional to p[i] (total = sum of p, > 0). */
function sample(p: Float64Array, total: number, rand: () => number): number {
  const target = rand() * total;
  let acc = 0;
  let last = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i]! <= 0) continue;
    acc += p[i]!;
    last = i;
    if (acc > target) return i;
  }
  // Rounding in the running sum can leave target just above the final acc: take the last candidate.
  return last;
}

/**
 * Weighted k-means of the n points `pts` (each weighted by its row's weight) into the K entries of
 * codebook m: k-means++ seeding, then up to `iters` Lloyd updates, ending on an assignment to the
 * final centroids, which is returned.
 */
function kmeans(st: State, m: number, pts: Float64Array, iters: number, rand: () => number): Int32Array {
  const { n, v, k, g } = st;
  const cent = st.cb.subarray(m * k * v, (m + 1) * k * v);
  const wt = new Float64Array(n);
  for (let i = 0; i < n; i++) wt[i] = st.rowWeight[Math.floor(i / g)]!;

  // k-means++: each new centroid is a point drawn with probability weight * distance^2 to the nearest
  // centroid so far. When that is 0 for every point, every point already sits on a centroid and the
  // remaining entries stay zero vectors (a zero entry is harmless, and useful to residual codebooks).
  cent.fill(0);
  const d2 = new Float64Array(n).fill(Infinity);
  const p = new Float64Array(n);
  for (let c = 0; c < k; c++) {
    let total = 0;
    for (let i = 0; i < n; i++) {
      p[i] = c === 0 ? wt[i]! : wt[i]! * d2[i]!;
      total += p[i]!;
    }
    if (!(total > 0)) break;
    const pick = sample(p, total, rand);
    for (let j = 0; j < v; j++) cent[c * v + j] = pts[pick * v + j]!;
    for (let i = 0; i < n; i++) {
      let d = 0;
      for (let j = 0; j < v; j++) {
        const t = pts[i * v + j]! - cent[c * v + j]!;
        d += t * t;
      }
      if (d < d2[i]!) d2[i] = d;
    }
  }

  const assign = new Int32Array(n).fill(-1);
  const dist = new Float64Array(n);
  const sums = new Float64Array(k * v);
  const wsum = new Float64Array(k);
  const cnorm = new Float64Array(k);
  for (let it = 0; ; it++) {
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let j = 0; j < v; j++) s += cent[c * v + j]! * cent[c * v + j]!;
      cnorm[c] = s;
    }
    // ||p - c||^2 = ||p||^2 - 2 p.c + ||c||^2: only the last two terms depend on c.
    let changed = 0;
    for (let i = 0; i < n; i++) {
      let best = 0;
      let bestD = Infinity;
      for (let c = 0; c < k; c++) {
        let dot = 0;
        for (let j = 0; j < v; j++) dot += pts[i * v + j]! * cent[c * v + j]!;
        const d = cnorm[c]! - 2 * dot;
        if (d < bestD) {
          bestD = d;
          best = c;
        }
      }
      if (assign[i] !== best) changed++;
      assign[i] = best;
      let pn = 0;
      for (let j = 0; j < v; j++) pn += pts[i * v + j]! * pts[i * v + j]!;
      dist[i] = wt[i]! * Math.max(0, pn + bestD);
    }
    if (it >= iters || changed === 0) return assign;

    sums.fill(0);
    wsum.fill(0);
    for (let i = 0; i < n; i++) {
      const c = assign[i]!;
      wsum[c]! += wt[i]!;
      for (let j = 0; j < v; j++) sums[c * v + j]! += wt[i]! * pts[i * v + j]!;
    }
    for (let c = 0; c < k; c++) {
      if (wsum[c]! > 0) {
        for (let j = 0; j < v; j++) cent[c * v + j] = sums[c * v + j]! / wsum[c]!;
        continue;
      }
      // An empty cluster moves to the point worst served by its own centroid, which then no longer
      // counts as the worst, so two empty clusters never take the same point.
      let worst = -1;
      let worstD = 0;
      for (let i = 0; i < n; i++) {
        if (dist[i]! > worstD) {
          worstD = dist[i]!;
          worst = i;
        }
      }
      if (worst < 0) continue;
      dist[worst] = 0;
      for (let j = 0; j < v; j++) cent[c * v + j] = pts[worst * v + j]!;
    }
  }
}

/** Greedy residual initialisation: codebook m is k-means of what codebooks 0..m-1 leave over. */
function initCodebooks(st: State, iters: number, rand: () => number): void {
  const { n, v, m: M, k, x, sum, codes, cb } = st;
  const pts = new Float64Array(n * v);
  sum.fill(0);
  for (let m = 0; m < M; m++) {
    for (let i = 0; i < n * v; i++) pts[i] = x[i]! - sum[i]!;
    const assign = kmeans(st, m, pts, iters, rand);
    for (let i = 0; i < n; i++) {
      const e = assign[i]!;
      codes[i * M + m] = e;
      for (let j = 0; j < v; j++) sum[i * v + j]! += cb[(m * k + e) * v + j]!;
    }
    updateNorms(st, m);
  }
}

/**
 * Codes by coordinate descent: for each group and each codebook in turn, the entry nearest to the
 * target minus the other codebooks' current entries (exact for that one code), repeated while any
 * code of the group changes.
 */
function codePass(st: State): void {
  const { n, v, m: M, k, x, sum, cb, codes, norms } = st;
  const res = new Float64Array(v);
  const sweeps = M === 1 ? 1 : MAX_CODE_SWEEPS;
  for (let i = 0; i < n; i++) {
    const xo = i * v;
    for (let sweep = 0; sweep < sweeps; sweep++) {
      let changed = false;
      for (let m = 0; m < M; m++) {
        const old = codes[i * M + m]!;
        const oldO = (m * k + old) * v;
        for (let j = 0; j < v; j++) res[j] = x[xo + j]! - sum[xo + j]! + cb[oldO + j]!;
        let best = old;
        let bestD = Infinity;
        for (let e = 0; e < k; e++) {
          const o = (m * k + e) * v;
          let dot = 0;
          for (let j = 0; j < v; j++) dot += res[j]! * cb[o + j]!;
          const d = norms[m * k + e]! - 2 * dot;
          if (d < bestD) {
            bestD = d;
            best = e;
          }
        }
        if (best !== old) {
          const newO = (m * k + best) * v;
          for (let j = 0; j < v; j++) sum[xo + j]! += cb[newO + j]! - cb[oldO + j]!;
          codes[i * M + m] = best;
          changed = true;
        }
      }
      if (!changed) break;
    }
  }
  recomputeSum(st);
}

/**
 * Refits each codebook in turn, the others held: an entry becomes the weighted mean of (target -
 * other codebooks' entries) over the groups that use it, the exact least-squares solution. An
 * entry no group uses keeps its value.
 */
function codebookPass(st: State): void {
  const { n, v, m: M, k, g, x, cb, codes, sum, rowWeight } = st;
  const sums = new Float64Array(k * v);
  const wsum = new Float64Array(k);
  for (let m = 0; m < M; m++) {
    sums.fill(0);
    wsum.fill(0);
    for (let i = 0; i < n; i++) {
      const e = codes[i * M + m]!;
      const wi = rowWeight[Math.floor(i / g)]!;
      wsum[e]! += wi;
      const o = (m * k + e) * v;
      for (let j = 0; j < v; j++) sums[e * v + j]! += wi * (x[i * v + j]! - sum[i * v + j]! + cb[o + j]!);
    }
    for (let e = 0; e < k; e++) {
      if (!(wsum[e]! > 0)) continue;
      const o = (m * k + e) * v;
      for (let j = 0; j < v; j++) cb[o + j] = sums[e * v + j]! / wsum[e]!;
    }
    updateNorms(st, m);
    recomputeSum(st);
  }
}

/**
 * Per-row least-squares scale for the current decoded row D: s = <W, D> / <D, D>, rounded to f16.
 * It is kept only if it lowers ||W - s D||^2, so the f16 rounding never makes a row worse.
 */
function scalePass(st: State): void {
  const { rows, g, v, w, sum } = st;
  const cols = g * v;
  for (let r = 0; r < rows; r++) {
    let wd = 0;
    let dd = 0;
    for (let c = r * cols, end = c + cols; c < end; c++) {
      wd += w[c]! * sum[c]!;
      dd += sum[c]! * sum[c]!;
    }
    if (!(dd > 0) || !(wd > 0)) continue;
    const old = st.scales[r]!;
    const s = f16Scale(wd / dd);
    // ||W - s D||^2 = ||W||^2 - 2 s <W, D> + s^2 <D, D>; ||W||^2 is common to both scales.
    if (s * s * dd - 2 * s * wd < old * old * dd - 2 * old * wd) setScale(st, r, s);
  }
}

/**
 * Quantizes the row-major [rows, cols] float32 matrix `w` into M codebooks of 2^bits entries of
 * length V (see the file header for the format and the algorithm).
 */
export function quantizeAqlm(w: Float32Array, rows: number, cols: number, o: AqlmOptions): AqlmResult {
  checkLayout(rows, cols, o);
  if (w.length !== rows * cols) {
    throw new QzoError(`AQLM: the weight array has ${w.length} values, expected rows * cols = ${rows} * ${cols} = ${rows * cols}`);
  }
  checkInt("seed", o.seed, -(2 ** 53), 2 ** 53);
  const rounds = o.rounds ?? 4;
  const kmeansIters = o.kmeansIters ?? 10;
  checkInt("rounds", rounds, 0);
  checkInt("kmeansIters", kmeansIters, 0);
  for (let i = 0; i < w.length; i++) {
    if (!Number.isFinite(w[i]!)) {
      throw new QzoError(`AQLM: weight ${i} (row ${Math.floor(i / cols)}, column ${i % cols}) is ${w[i]}, not a finite number`);
    }
  }

  const v = o.groupSize;
  const M = o.codebooks;
  const k = 2 ** o.bits;
  const g = cols / v;
  const n = rows * g;
  const st: State = {
    rows,
    g,
    n,
    v,
    m: M,
    k,
    w,
    scales: new Float64Array(rows),
    rowWeight: new Float64Array(rows),
    x: new Float64Array(rows * cols),
    cb: new Float64Array(M * k * v),
    norms: new Float64Array(M * k),
    codes: new Uint8Array(n * M),
    sum: new Float64Array(rows * cols),
  };

  // The RMS makes the normalised rows unit-RMS, so codebook values sit well inside f16's range and
  // precision. A zero row gets the smallest positive f16 scale: whatever its codes decode to, that
  // scale keeps its reconstruction (and its weight in the fit) next to nothing.
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = r * cols, end = c + cols; c < end; c++) ss += w[c]! * w[c]!;
    setScale(st, r, f16Scale(Math.sqrt(ss / cols)));
  }

  // The generator takes 32 bits: the seed's high part is mixed in (scrambled by a multiply) rather
  // than dropped, so that seeds with the same low 32 bits still give different streams.
  const rand = rng((o.seed >>> 0) ^ Math.imul(Math.floor(o.seed / 2 ** 32), 0x9e3779b1));
  initCodebooks(st, kmeansIters, rand);
  for (let round = 0; round < rounds; round++) {
    scalePass(st);
    codePass(st);
    codebookPass(st);
  }

  for (let i = 0; i < st.cb.length; i++) st.cb[i] = toF16(st.cb[i]!);
  for (let m = 0; m < M; m++) updateNorms(st, m);
  recomputeSum(st);
  // The scales take up part of the codebooks' rounding error; the codes come last so that they are
  // the best for exactly what is stored.
  scalePass(st);
  codePass(st);

  const result = {
    codes: st.codes,
    codebooks: Float32Array.from(st.cb),
    scales: Float32Array.from(st.scales),
  };
  const what = dequantizeAqlm(result, rows, cols, o);
  let err = 0;
  let ref = 0;
  for (let i = 0; i < w.length; i++) {
    const d = w[i]! - what[i]!;
    err += d * d;
    ref += w[i]! * w[i]!;
  }
  const relativeError = ref > 0 ? err / ref : err > 0 ? Infinity : 0;
  return { ...result, relativeError };
}

/**
 * W[r, g*V + j] = scales[r] * sum_m codebooks[m, codes[r, g, m], j], in float32: the sum accumulated
 * in order m = 0..M-1 and rounded after every step, then multiplied by the scale.
 */
export function dequantizeAqlm(
  q: Pick<AqlmResult, "codes" | "codebooks" | "scales">,
  rows: number,
  cols: number,
  o: Pick<AqlmOptions, "codebooks" | "bits" | "groupSize">,
): Float32Array {
  checkLayout(rows, cols, o);
  const v = o.groupSize;
  const M = o.codebooks;
  const k = 2 ** o.bits;
  const g = cols / v;
  if (q.codes.length !== rows * g * M) {
    throw new QzoError(`AQLM: codes has ${q.codes.length} entries, expected rows * cols/V * M = ${rows * g * M}`);
  }
  if (q.codebooks.length !== M * k * v) {
    throw new QzoError(`AQLM: codebooks has ${q.codebooks.length} values, expected M * 2^bits * V = ${M * k * v}`);
  }
  if (q.scales.length !== rows) {
    throw new QzoError(`AQLM: scales has ${q.scales.length} values, expected one per row (${rows})`);
  }
  for (let i = 0; i < q.codes.length; i++) {
    if (q.codes[i]! >= k) throw new QzoError(`AQLM: code ${i} is ${q.codes[i]}, out of range for ${o.bits}-bit codebooks of ${k} entries`);
  }

  const f = Math.fround;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const s = q.scales[r]!;
    for (let gi = 0; gi < g; gi++) {
      const ci = (r * g + gi) * M;
      const oo = r * cols + gi * v;
      for (let j = 0; j < v; j++) {
        let acc = 0;
        for (let m = 0; m < M; m++) acc = f(acc + q.codebooks[(m * k + q.codes[ci + m]!) * v + j]!);
        out[oo + j] = f(acc * s);
      }
    }
  }
  return out;
}
