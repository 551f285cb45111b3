/**
 * Round-to-nearest (RTN) quantization of a float32 matrix into any declared
 * format. The rule is chosen by the format's properties, never its name, and
 * every step is computed in float32 like llama.cpp's reference quantizers
 * (ggml-quants.c, quantize_row_*_ref), which the GGUF formats reproduce
 * byte for byte:
 *
 * Let the code range be qmin..qmax (iN: -2^(N-1)..2^(N-1)-1, uN: 0..2^N-1) and
 * the value of a code v(q) = q - offset - Z, where Z = stored zero + adjust
 * (0 without a zero-point). One group is the set of elements that share a
 * scale (scale-tensor order; elements in row-major order within a group).
 *
 * 1. Lookup table (non-additive codebook): levels t[q] = table[q] - Z.
 *    With a min: d = (max - min) / (tmax - tmin), m = min - d*tmin; without:
 *    d = absmax / max|t|. Each element gets the code of the level nearest to
 *    (x - m)/d (ties: the lower code). d = 0 picks the level nearest 0.
 * 2. Zero-point (no lookup), GPTQ-style asymmetric: lo = min(min x, 0),
 *    hi = max(max x, 0) (both 0: -1 and 1), d = (hi - lo)/(qmax - qmin),
 *    Z = qmin - offset + round(-lo/d), clamped to what the stored zero can
 *    hold; q = clamp(round(x/d) + offset + Z). round = half away from zero.
 * 3. Min (no zero-point, no lookup), llama.cpp Q4_1: d = (max - min)/(qmax - qmin),
 *    id = d ? 1/d : 0, m = min - d*(qmin - offset), q = qmin + min(qmax - qmin,
 *    trunc((x - min)*id + 0.5)).
 * 4. Signed codes without offset, llama.cpp Q8_0: d = absmax / qmax,
 *    id = d ? 1/d : 0, q = clamp(roundf(x*id)).
 * 5. Otherwise (unsigned codes, or an offset), llama.cpp Q4_0: with
 *    vlo = qmin - offset, vhi = qmax - offset and `max` the element of largest
 *    magnitude WITH its sign (the first one on ties), d = max / vlo when
 *    |vlo| >= |vhi|, else max / vhi; id = d ? 1/d : 0;
 *    q = clamp(trunc(x*id + (offset - qmin + 0.5)) + qmin).
 *
 * The scale (and min) handed to pack is the float32 d (m); pack rounds it to
 * the declared storage type, as llama.cpp does (GGML_FP32_TO_FP16, nearest
 * even). Codes are always computed from the unrounded float32 d, as llama.cpp does.
 */
import type { FormatIR } from "../../compiler/ir/ir.js";
import { QzoError } from "../../util/errors.js";
import type { PackedTensor } from "./types.js";
import { scaleCount } from "../../compiler/ir/queries.js";
import { scaleIndex } from "./types.js";
import { roundToDType } from "../../util/float-bits.js";
import { type RawQuant, pack } from "./codec.js";

const f = Math.fround;

/** C's roundf: half away from zero. */
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** Row-major flat element indices grouped by the scale they share. */
function groups(fmt: FormatIR, rows: number, cols: number): { start: Int32Array; members: Int32Array } {
  const n = scaleCount(fmt, rows, cols);
  const count = new Int32Array(n + 1);
  const sidx = new Int32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const s = scaleIndex(fmt, cols, r, c);
      sidx[r * cols + c] = s;
      count[s + 1]!++;
    }
  }
  for (let s = 0; s < n; s++) count[s + 1]! += count[s]!;
  const fill = count.slice(0, n);
  const members = new Int32Array(rows * cols);
  for (let j = 0; j < rows * cols; j++) members[fill[sidx[j]!]!++] = j;
  return { start: count, members };
}

function codeRange(signed: boolean, bits: number): [number, number] {
  return signed ? [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] : [0, 2 ** bits - 1];
}

const clamp = (v: number, lo: number, hi: number) => (v < lo ? lo : v > hi ? hi : v);

/** The RTN rule of a format (for documentation and reports): "lookup", "zero", "min", "symmetric" or "signed-max". */
export function rtnRule(fmt: FormatIR): "lookup" | "zero" | "min" | "symmetric" | "signed-max" {
  if (fmt.code.lookup !== undefined) return "lookup";
  if (fmt.zero) return "zero";
  if (fmt.min) return "min";
  if (fmt.code.signed && fmt.code.offset === 0) return "symmetric";
  return "signed-max";
}

/** Quantizes a row-major [rows, cols] float32 matrix to the format by round-to-nearest. */
export function quantizeRTN(fmt: FormatIR, rows: number, cols: number, w: Float32Array): PackedTensor {
  return pack(fmt, rows, cols, quantizeRTNRaw(fmt, rows, cols, w));
}

/** quantizeRTN's raw fields (codes, float32 scales, zeros, mins) before packing. */
export function quantizeRTNRaw(fmt: FormatIR, rows: number, cols: number, w: Float32Array): RawQuant {
  if (w.length !== rows * cols) {
    throw new QzoError(`quantize to '${fmt.name}': ${w.length} weights given for a [${rows}, ${cols}] matrix`);
  }
  if (fmt.block.size > 0 && fmt.block.axis !== "flat" && (fmt.block.axis === "in" ? cols : rows) % fmt.block.size !== 0) {
    throw new QzoError(`quantize to '${fmt.name}': a [${rows}, ${cols}] matrix does not split into blocks of ${fmt.block.size} along ${fmt.block.axis}`);
  }
  const n = scaleCount(fmt, rows, cols);
  const { start, members } = groups(fmt, rows, cols);
  const codes = new Int32Array(rows * cols);
  const scales = new Float32Array(n);
  const zeros = fmt.zero ? new Int32Array(n) : undefined;
  const mins = fmt.min ? new Float32Array(n) : undefined;
  const [qmin, qmax] = codeRange(fmt.code.signed, fmt.code.bits);
  const offset = fmt.code.offset;
  // The zero-point: stored range and the stored value closest to Z = 0 (used where Z is not fitted).
  const [zlo, zhi] = fmt.zero ? codeRange(fmt.zero.signed, fmt.zero.bits) : [0, 0];
  const adjust = fmt.zero?.adjust ?? 0;
  const neutralZero = clamp(-adjust, zlo, zhi);
  const rule = rtnRule(fmt);

  let table: Float32Array | undefined;
  if (rule === "lookup") {
    const cb = fmt.codebooks.find((b) => b.name === fmt.code.lookup);
    if (!cb || cb.additive || !cb.values) {
      throw new QzoError(`quantize to '${fmt.name}': RTN needs a constant lookup table; additive codebooks are not supported`);
    }
    table = Float32Array.from(cb.values, (v) => roundToDType(cb.dtype, v));
  }

  for (let s = 0; s < n; s++) {
    const a = start[s]!;
    const b = start[s + 1]!;
    let lo = Infinity;
    let hi = -Infinity;
    let amax = 0;
    let max = 0;
    for (let k = a; k < b; k++) {
      const x = w[members[k]!]!;
      if (x < lo) lo = x;
      if (x > hi) hi = x;
      const ax = Math.abs(x);
      if (amax < ax) {
        amax = ax;
        max = x;
      }
    }
    switch (rule) {
      case "symmetric": {
        const d = f(amax / qmax);
        const id = d ? f(1 / d) : 0;
        scales[s] = d;
        for (let k = a; k < b; k++) {
          const j = members[k]!;
          codes[j] = clamp(roundf(f(w[j]! * id)), qmin, qmax);
        }
        break;
      }
      case "signed-max": {
        const vlo = qmin - offset;
        const vhi = qmax - offset;
        const d = f(max / (Math.abs(vlo) >= Math.abs(vhi) ? vlo : vhi));
        const id = d ? f(1 / d) : 0;
        const bias = f(offset - qmin + 0.5);
        scales[s] = d;
        for (let k = a; k < b; k++) {
          const j = members[k]!;
          codes[j] = clamp(Math.trunc(f(f(w[j]! * id) + bias)) + qmin, qmin, qmax);
        }
        break;
      }
      case "min": {
        const Z = fmt.zero ? neutralZero + adjust : 0;
        if (zeros) zeros[s] = neutralZero;
        const d = f(f(hi - lo) / (qmax - qmin));
        const id = d ? f(1 / d) : 0;
        scales[s] = d;
        mins![s] = f(lo - f(d * (qmin - offset - Z)));
        for (let k = a; k < b; k++) {
          const j = members[k]!;
          codes[j] = qmin + Math.min(qmax - qmin, Math.trunc(f(f(f(w[j]! - lo) * id) + 0.5)));
        }
        break;
      }
      case "zero": {
        let zl = Math.min(lo, 0);
        let zh = Math.max(hi, 0);
        if (zl === 0 && zh === 0) {
          zl = -1;
          zh = 1;
        }
        const d = f(f(zh - zl) / (qmax - qmin));
        const id = f(1 / d);
        const zstored = clamp(qmin - offset + roundf(f(-zl * id)) - adjust, zlo, zhi);
        const Z = zstored + adjust;
        zeros![s] = zstored;
        scales[s] = d;
        let m = 0;
        if (mins) {
          // A min as well: it absorbs what the zero-point cannot (0 when Z fits).
          m = f(zl - f(d * (qmin - offset - Z)));
          mins[s] = m;
        }
        for (let k = a; k < b; k++) {
          const j = members[k]!;
          codes[j] = clamp(roundf(f(f(w[j]! - m) * id)) + offset + Z, qmin, qmax);
        }
        break;
      }
      case "lookup": {
        const Z = fmt.zero ? neutralZero + adjust : 0;
        if (zeros) zeros[s] = neutralZero;
        const r = lookupGroup(fmt, table!, Z, w, members, a, b, codes, { lo, hi, amax }, Boolean(mins));
        scales[s] = r.d;
        if (mins) mins[s] = r.m;
        break;
      }
    }
  }
  return { codes, scales, ...(zeros ? { zeros } : {}), ...(mins ? { mins } : {}) };
}

/** One group of a lookup-table format: the scale (and min) from the group's range, each code the nearest level. */
function lookupGroup(
  fmt: FormatIR,
  table: Float32Array,
  Z: number,
  w: Float32Array,
  members: Int32Array,
  a: number,
  b: number,
  codes: Int32Array,
  range: { lo: number; hi: number; amax: number },
  withMin: boolean,
): { d: number; m: number } {
  const levels = Float32Array.from(table, (t) => t - Z);
  let tmin = Infinity;
  let tmax = -Infinity;
  let tabs = 0;
  for (const t of levels) {
    tmin = Math.min(tmin, t);
    tmax = Math.max(tmax, t);
    tabs = Math.max(tabs, Math.abs(t));
  }
  let d: number;
  let m = 0;
  if (withMin) {
    d = tmax > tmin ? f(f(range.hi - range.lo) / f(tmax - tmin)) : 0;
    m = f(range.lo - f(d * tmin));
  } else {
    d = tabs > 0 ? f(range.amax / tabs) : 0;
  }
  const id = d ? f(1 / d) : 0;
  for (let k = a; k < b; k++) {
    const j = members[k]!;
    const y = f(f(w[j]! - m) * id);
    let best = 0;
    let err = Infinity;
    for (let q = 0; q < levels.length; q++) {
      const e = Math.abs(y - levels[q]!);
      if (e < err) {
        err = e;
        best = q;
      }
    }
    codes[j] = fmt.code.signed && best >= 2 ** (fmt.code.bits - 1) ? best - 2 ** fmt.code.bits : best;
  }
  return { d, m };
}
