/**
 * The error model of llama.cpp's CPU forward pass, for tests that compare it with qzo's exact
 * (float64-accumulating) interpreter.
 *
 * Where ggml's CPU backend rounds what our interpreter keeps exact:
 * - the input of a product with a quantized weight is itself quantized to 8-bit blocks of 32
 *   (Q8_0: scale = max|x| / 127 stored as f16, x ~ scale * round(x / scale)); with an f16 weight the
 *   input is rounded to f16;
 * - attention runs on an f16 KV cache with f16 queries (flash attention), and accumulates the
 *   softmax-weighted sum of values in f16, one rounding per key.
 * Which exact sequence of roundings a given llama.cpp binary performs depends on the CPU (ggml
 * picks SIMD kernels by instruction set, and they sum in different orders and tile attention
 * differently), so no deterministic emulation matches every machine. The error model is therefore
 * probabilistic (the standard model of rounding error analysis, e.g. Higham & Mary 2019): each of
 * those roundings adds an independent error uniform in +-half the spacing of its grid (the
 * magnitude of round-to-nearest), and the spread of the resulting mean NLL over seeded draws
 * measures how far llama.cpp's result can lie from the exact one. Measured on stories260K F32, Q8_0
 * and Q4_0 with the AVX2 and the AVX-512 builds of the same llama.cpp (node-llama-cpp 3.22.1), on
 * an AMD EPYC: every deviation from the exact mean NLL lay within 2.4 standard deviations of the
 * model (the two builds differ from each other by up to 3.2e-3 nats on Q4_0).
 */
import type { RoundingModel, Tensor } from "../../src/runtime/interpret/interpreter.js";
import { roundToDType } from "../../src/util/float-bits.js";
import { rng } from "../support/random-model.js";

/** Round to nearest f16 (ggml's FP32_TO_FP16). */
const toF16 = (v: number): number => roundToDType("f16", v);

/** The spacing of f16 values around v (subnormal spacing below 2^-14). */
function f16Spacing(v: number): number {
  const a = Math.abs(v);
  return a < 2 ** -14 ? 2 ** -24 : 2 ** (Math.floor(Math.log2(a)) - 10);
}

/** llama.cpp's CPU roundings as random rounding errors, one independent draw per `seed`. */
export function ggmlRounding(seed: number): RoundingModel {
  const rand = rng(seed);
  /** v rounded to a grid of spacing u, as an error uniform in [-u/2, u/2). */
  const round = (v: number, u: number): number => v + (rand() - 0.5) * u;
  const f16 = (v: number) => round(v, f16Spacing(v));
  const q8Blocks = (x: Float32Array): Float32Array => {
    const out = new Float32Array(x.length);
    for (let s = 0; s < x.length; s += 32) {
      const end = Math.min(s + 32, x.length);
      let amax = 0;
      for (let i = s; i < end; i++) amax = Math.max(amax, Math.abs(x[i]!));
      const d = toF16(amax / 127);
      for (let i = s; i < end; i++) out[i] = d === 0 ? 0 : round(x[i]!, d);
    }
    return out;
  };
  return {
    linearInput(x: Tensor, storage: string): Tensor {
      if (storage === "f32") return x;
      const data = x.data as Float32Array;
      return { shape: x.shape, data: storage === "f16" || storage === "bf16" ? data.map(f16) : q8Blocks(data) };
    },
    attention(q, k, v, heads, kvHeads, causal) {
      const [B, T, W] = q.shape as [number, number, number];
      const KW = k.shape[2]!;
      const hd = W / heads;
      const group = heads / kvHeads;
      const scale = 1 / Math.sqrt(hd);
      const [qd, kd, vd] = [q, k, v].map((t) => (t.data as Float32Array).map(f16)) as [Float32Array, Float32Array, Float32Array];
      const out = new Float32Array(B * T * W);
      const acc = new Float64Array(hd);
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < heads; h++) {
          const kh = Math.floor(h / group);
          for (let t = 0; t < T; t++) {
            const qo = (b * T + t) * W + h * hd;
            let max = -Infinity;
            let sum = 0;
            acc.fill(0);
            for (let j = 0; j < (causal ? t + 1 : T); j++) {
              const ko = (b * T + j) * KW + kh * hd;
              let s = 0;
              for (let d = 0; d < hd; d++) s += qd[qo + d]! * kd[ko + d]!;
              s *= scale;
              // Online softmax: rescale the running sum when the maximum grows (flash attention).
              const ms = s > max ? Math.exp(max - s) : 1;
              const vs = s > max ? 1 : Math.exp(s - max);
              if (s > max) max = s;
              for (let d = 0; d < hd; d++) acc[d] = f16((ms === 1 ? acc[d]! : f16(acc[d]! * ms)) + vd[ko + d]! * vs);
              sum = sum * ms + vs;
            }
            for (let d = 0; d < hd; d++) out[qo + d] = acc[d]! / sum;
          }
        }
      }
      return { shape: [B, T, W], data: out };
    },
  };
}
