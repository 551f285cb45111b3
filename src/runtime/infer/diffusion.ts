/**
 * What a diffusion transformer does besides its losses: a teacher's velocity predictions over latent
 * data (`qzo distill`, the data of the spec's distill loss), and sampling (`qzo sample`): Euler
 * steps of the flow-matching ODE from seeded noise to latents. Both run the spec's `forward` graph
 * (latents, encoder_hidden_states, pooled_projections, timestep) on whatever backend is selected.
 * Decoding latents to pixels needs the model's VAE, which is out of qzo's scope.
 */
import { QzoError } from "../../util/errors.js";
import type { Batch } from "../backends/backend.js";
import { writeSafetensors, type SafetensorsTensor } from "../model-files/safetensors-write.js";
import { latentsBatch, type LatentsDataset } from "../data/latents.js";
import type { ModuleIR } from "../../compiler/ir/ir.js";
import type { KernelBackend } from "../backends/kernel-backend.js";
import type { Selected } from "../backends/select.js";
import { runGraph, type WeightSource } from "../interpret/interpreter.js";

/** The forward graph of a diffusion transformer: the velocity for latents at timesteps in [0, 1000]. */
export type Velocity = (inputs: Batch) => Float32Array;

const f32bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * The teacher's predictions at the noise and sigmas of every example (the file's, else drawn from
 * `seed` as an evaluation batch draws them): x_t = (1 - sigma) x0 + sigma noise, target =
 * forward(x_t, ..., 1000 sigma). Returns the tensors of a latent file that holds them.
 */
export function teacherVelocities(ds: LatentsDataset, velocity: Velocity, seed: bigint, batch: number): SafetensorsTensor[] {
  const keys = ["x0", "noise", "sigmas", "timestep", "encoder_hidden_states", "pooled_projections"];
  const all = latentsBatch(ds, keys, [...Array(ds.size).keys()], seed);
  const x0 = all["x0"]!;
  const per = x0.data.length / ds.size;
  const target = new Float32Array(x0.data.length);
  // Rows [start, start + n) of one of the drawn tensors.
  const rows = (k: string, start: number, n: number) => {
    const t = all[k]!;
    const w = t.data.length / ds.size;
    return { shape: [n, ...t.shape.slice(1)], data: t.data.subarray(start * w, (start + n) * w) };
  };
  const f = Math.fround;
  for (let start = 0; start < ds.size; start += batch) {
    const n = Math.min(batch, ds.size - start);
    const s = rows("sigmas", start, n).data;
    const x = rows("x0", start, n).data;
    const noise = rows("noise", start, n).data;
    const xt = new Float32Array(n * per);
    // As the flow losses compute it, each operation rounded to float32.
    for (let r = 0; r < n; r++) {
      for (let i = 0; i < per; i++) xt[r * per + i] = f(f(f(1 - s[r]!) * x[r * per + i]!) + f(s[r]! * noise[r * per + i]!));
    }
    const v = velocity({
      latents: { shape: [n, ...x0.shape.slice(1)], data: xt },
      encoder_hidden_states: rows("encoder_hidden_states", start, n),
      pooled_projections: rows("pooled_projections", start, n),
      timestep: rows("timestep", start, n),
    });
    target.set(v, start * per);
  }
  return [...keys.map((k) => ({ name: k, dtype: "F32" as const, shape: all[k]!.shape, data: f32bytes(all[k]!.data as Float32Array) })), { name: "target", dtype: "F32", shape: x0.shape, data: f32bytes(target) }];
}

/** Writes a latent file (atomically). */
export function writeLatents(file: string, tensors: readonly SafetensorsTensor[], meta: Record<string, string>): void {
  writeSafetensors(file, tensors, meta);
}

/** The velocity function of a selected backend: the generated kernels' forward entry, or the interpreter's graph. */
export function velocityOf(m: ModuleIR, sel: Selected, weights: WeightSource): Velocity {
  if (sel.device === "interp") return (b) => runGraph(m, "forward", b, weights).data as Float32Array;
  const kernels = sel.backend as KernelBackend;
  return (b) => {
    const out = new Float32Array(b["latents"]!.data.length);
    kernels.run("forward", b, out);
    return out;
  };
}

/**
 * The sigmas of an Euler flow-matching sampler: n steps from 1 to 0, t_i = 1 - i/n, shifted as SD3's
 * FlowMatchEulerDiscreteScheduler shifts them: sigma = shift t / (1 + (shift - 1) t).
 */
export function flowSigmas(steps: number, shift: number): Float64Array {
  if (!(Number.isInteger(steps) && steps >= 1)) throw new QzoError(`sampling needs at least one step, got ${steps}`, 2);
  if (!(shift > 0)) throw new QzoError(`the sigma shift must be positive, got ${shift}`, 2);
  const out = new Float64Array(steps + 1);
  for (let i = 0; i <= steps; i++) {
    const t = 1 - i / steps;
    out[i] = (shift * t) / (1 + (shift - 1) * t);
  }
  return out;
}

/**
 * Euler steps of dx/dsigma = v(x, 1000 sigma) from x = noise at sigma = 1 to sigma = 0, for every
 * example's text conditioning: x <- x + (sigma_{i+1} - sigma_i) v. The noise is the example's
 * seeded noise (data/latents.ts, the evaluation draw of `seed`). Returns the latents [N, C, H, W].
 */
export function sampleLatents(ds: LatentsDataset, velocity: Velocity, o: { seed: bigint; steps: number; shift: number; batch: number }): { shape: number[]; data: Float32Array } {
  const sigmas = flowSigmas(o.steps, o.shift);
  const x0 = ds.tensors.get("x0")!;
  const per = x0.data.length / ds.size;
  const out = new Float32Array(x0.data.length);
  for (let start = 0; start < ds.size; start += o.batch) {
    const idx = [...Array(Math.min(o.batch, ds.size - start)).keys()].map((i) => i + start);
    const b = latentsBatch(ds, ["noise", "encoder_hidden_states", "pooled_projections"], idx, o.seed);
    const x = Float32Array.from(b["noise"]!.data as Float32Array);
    for (let i = 0; i < o.steps; i++) {
      const v = velocity({
        latents: { shape: [idx.length, ...x0.shape.slice(1)], data: x },
        encoder_hidden_states: b["encoder_hidden_states"]!,
        pooled_projections: b["pooled_projections"]!,
        timestep: { shape: [idx.length], data: new Float32Array(idx.length).fill(Math.fround(1000 * sigmas[i]!)) },
      });
      const dt = sigmas[i + 1]! - sigmas[i]!;
      for (let k = 0; k < x.length; k++) x[k] = x[k]! + dt * v[k]!;
    }
    out.set(x, start * per);
  }
  return { shape: [...x0.shape], data: out };
}
