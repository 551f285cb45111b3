/**
 * The reference QZO scale update (QZO-NOTES section 2, Q-SPSA with DDC):
 *     d = (L+ - L-) / (2 eps),  d = min(max(d, -C), C)
 *     absolute:  s <- s - lr * d * z_i
 *     relative:  s <- s - lr * d * |s| * z_i
 * then a sign-preserving floor: if |s_new| < floor, or s_new has the other sign than s_old, then
 * s_new = sign(s_old) * floor (sign(0) and sign(-0) count as +), so a negative llama.cpp Q4_0
 * scale never flips sign or collapses to 0, however large a step. z_i is the same
 * direction the two perturbed forwards used: zAt(seedLo, seedHi, t, i, dist); a tensor outside the
 * direction (tensorInDirection with the tensor period) is left as it is.
 *
 * Numerics: the step is computed in float64 from the float32 master value and z, rounded to float32
 * once, and the floor test is made on that float32 value. Pass floor = 0 for tensors that must not be
 * floored (mins, float weights). A NaN d, or a NaN master value, leaves NaN (callers skip such steps).
 */
import { QzoError } from "../../util/errors.js";
import { fillZ, tensorInDirection, type ZDistribution } from "../rng/direction.js";

/** The projected gradient d = (L+ - L-) / (2 eps), and d clamped to [-clip, clip] (DDC). */
export function projectedGradient(lossPlus: number, lossMinus: number, eps: number, clip: number): { raw: number; clipped: number } {
  if (!(eps > 0)) throw new QzoError(`eps must be positive, got ${eps}`);
  if (!(clip >= 0)) throw new QzoError(`the clip threshold must be >= 0, got ${clip}`);
  const raw = (lossPlus - lossMinus) / (2 * eps);
  const clipped = Math.min(Math.max(raw, -clip), clip);
  return { raw, clipped };
}

const CHUNK = 4096;

/** Updates the float32 master copy `values` of trainable tensor t in place. */
export function applyUpdate(
  values: Float32Array,
  t: number,
  seedLo: number,
  seedHi: number,
  d: number,
  lr: number,
  dist: ZDistribution,
  epsMode: "absolute" | "relative",
  floor: number,
  period = 1,
): void {
  if (epsMode !== "absolute" && epsMode !== "relative") throw new QzoError(`unknown eps mode ${String(epsMode)}`);
  if (!(floor >= 0)) throw new QzoError(`the scale floor must be >= 0, got ${floor}`);
  if (!tensorInDirection(seedLo, t, period)) return;
  const k = lr * d;
  const relative = epsMode === "relative";
  const z = new Float32Array(Math.min(CHUNK, values.length));
  for (let start = 0; start < values.length; start += CHUNK) {
    const n = Math.min(CHUNK, values.length - start);
    const zz = n === z.length ? z : z.subarray(0, n);
    fillZ(zz, seedLo, seedHi, t, start, dist);
    for (let j = 0; j < n; j++) {
      const i = start + j;
      const old = values[i]!;
      const step = relative ? k * Math.abs(old) * zz[j]! : k * zz[j]!;
      let s = Math.fround(old - step);
      const flipped = old < 0 ? s > 0 : old > 0 && s < 0;
      if (floor > 0 && (Math.abs(s) < floor || flipped)) s = old < 0 ? -floor : floor;
      values[i] = s;
    }
  }
}
