/**
 * Latent data for diffusion transformers: a safetensors file of precomputed VAE latents
 * `x0` [N, C, H, W] with their text conditioning (`encoder_hidden_states` [N, L, D],
 * `pooled_projections` [N, P]), as SD3 training scripts cache them, one example per row. It may
 * also hold what a loss otherwise draws (`noise`, `sigmas`, `timestep`, `ddpm_timesteps`,
 * `ddpm_sqrt_alpha_prod`, `ddpm_sqrt_one_minus_alpha_prod`) and a teacher's predictions
 * (`target`, written by `qzo distill`).
 *
 * A loss input the file lacks is drawn from (seed, step, example), so that a step's L+ and L- see
 * the same noise and every rank of a data-parallel run draws the same values for an example. The
 * stream is Philox4x32-10 as for the directions (rng/direction.ts), keyed by the step seed, with
 * counter [i mod 2^32, floor(i / 2^32), example, stream]:
 *   - noise (stream 0x5A5A0002): element i of the example's x0 shape, gaussianFromWords(x0, x1);
 *   - sigmas (stream 0x5A5A0003, i = 0): SD3's logit-normal sampling, sigma = float32(1 / (1 +
 *     exp(-u))) with u = gaussianFromWords; timestep = float32(1000 sigma);
 *   - ddpm_timesteps (stream 0x5A5A0004, i = 0): t = floor(x0 * 1000 / 2^32), an integer in
 *     [0, 1000), with the DDPM schedule's sqrt(abar_t) and sqrt(1 - abar_t) (ddpmSchedule).
 * Evaluation batches (no step) draw with the run seed itself as the key, the same at every
 * evaluation. Values the file holds are used as they are (`qzo eval` on a file with the noise and
 * sigmas is an exact comparison).
 */
import { existsSync } from "node:fs";
import type { ModuleIR } from "../../compiler/ir/ir.js";
import { QzoError } from "../../util/errors.js";
import type { Batch } from "../backends/backend.js";
import { decodeBytesToF32 } from "../model-files/index.js";
import { readSafetensors } from "../model-files/safetensors.js";
import { gaussianFromWords, splitSeed, stepSeedPair } from "../rng/direction.js";
import { philox4x32 } from "../rng/philox.js";

export interface LatentsDataset {
  kind: "latents";
  file: string;
  /** Examples (the first dimension of every tensor). */
  size: number;
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

/** The tensors every latents file has. */
export const LATENT_KEYS = ["x0", "encoder_hidden_states", "pooled_projections"] as const;

/** Loss inputs a latents file may leave out: drawn per (seed, step, example). */
const DRAWN = ["noise", "sigmas", "timestep", "ddpm_timesteps", "ddpm_sqrt_alpha_prod", "ddpm_sqrt_one_minus_alpha_prod"];

export const NOISE_STREAM = 0x5a5a0002;
export const SIGMA_STREAM = 0x5a5a0003;
export const DDPM_STREAM = 0x5a5a0004;

/** The DDPM timesteps (diffusers' DDPMScheduler defaults: linear betas 1e-4..0.02). */
export const DDPM_STEPS = 1000;

/** True when the spec's training loss reads latents (an input x0): its data are latent files. */
export function readsLatents(m: ModuleIR): boolean {
  const g = m.graphs.find((x) => x.name === m.train.loss && x.role === "loss");
  return g !== undefined && g.inputs.some((id) => g.values[id]!.name === "x0");
}

export function loadLatents(file: string): LatentsDataset {
  if (!existsSync(file)) throw new QzoError(`${file}: no such file`);
  const st = readSafetensors(file);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, info] of st.tensors) {
    if (!["F32", "F16", "BF16"].includes(info.dtype)) throw new QzoError(`${file}: tensor '${name}' is ${info.dtype}; latent data is F32, F16 or BF16`);
    tensors.set(name, { shape: [...info.shape], data: decodeBytesToF32(info, st.readTensorBytes(name)) });
  }
  for (const k of LATENT_KEYS) {
    if (!tensors.has(k)) throw new QzoError(`${file}: no tensor '${k}' (latent data holds ${LATENT_KEYS.join(", ")}; found ${[...tensors.keys()].join(", ") || "none"})`);
  }
  const x0 = tensors.get("x0")!;
  if (x0.shape.length !== 4) throw new QzoError(`${file}: 'x0' has shape [${x0.shape.join(", ")}], expected latents [N, C, H, W]`);
  const size = x0.shape[0]!;
  if (size === 0) throw new QzoError(`${file}: 'x0' holds no examples`);
  for (const [name, t] of tensors) {
    if (t.shape[0] !== size) throw new QzoError(`${file}: '${name}' has ${t.shape[0] ?? 0} rows, but 'x0' holds ${size} examples`);
    if ((name === "noise" || name === "target") && t.shape.join(",") !== x0.shape.join(",")) {
      throw new QzoError(`${file}: '${name}' has shape [${t.shape.join(", ")}], expected x0's [${x0.shape.join(", ")}]`);
    }
    if (DRAWN.includes(name) && name !== "noise" && t.shape.length !== 1) throw new QzoError(`${file}: '${name}' has shape [${t.shape.join(", ")}], expected one value per example [${size}]`);
  }
  if (tensors.has("timestep") && !tensors.has("sigmas")) {
    throw new QzoError(`${file}: 'timestep' without 'sigmas': give both, or 'sigmas' alone (timestep = 1000 sigma)`);
  }
  return { kind: "latents", file, size, tensors };
}

/** DDPMScheduler's sqrt(abar_t) and sqrt(1 - abar_t), t < 1000, computed in float32 as torch does. */
export function ddpmSchedule(): { sqrtAlpha: Float32Array; sqrtOneMinus: Float32Array } {
  const sqrtAlpha = new Float32Array(DDPM_STEPS);
  const sqrtOneMinus = new Float32Array(DDPM_STEPS);
  let prod = 1;
  for (let t = 0; t < DDPM_STEPS; t++) {
    // torch.linspace(1e-4, 0.02, 1000) in float32: start + t * step, the step (end - start) / 999.
    const beta = Math.fround(1e-4 + (t * (0.02 - 1e-4)) / (DDPM_STEPS - 1));
    prod = Math.fround(prod * Math.fround(1 - beta));
    sqrtAlpha[t] = Math.sqrt(prod);
    sqrtOneMinus[t] = Math.sqrt(Math.fround(1 - prod));
  }
  return { sqrtAlpha, sqrtOneMinus };
}

/** A loss graph's input names, in order. */
export function lossInputs(m: ModuleIR, loss: string): string[] {
  const g = m.graphs.find((x) => x.name === loss && x.role === "loss");
  if (!g) throw new QzoError(`${m.source}: no loss '${loss}' (losses: ${m.graphs.filter((x) => x.role === "loss").map((x) => x.name).join(", ")})`, 2);
  return g.inputs.map((id) => g.values[id]!.name ?? "");
}

/**
 * The loss for latent data: `requested` (qzo eval --loss), else a loss that reads the file's
 * teacher `target` when it has one, else the spec's training loss; its inputs must all be in the
 * file or drawable.
 */
export function latentsLoss(m: ModuleIR, ds: LatentsDataset, requested?: string): string {
  const available = (name: string) => ds.tensors.has(name) || DRAWN.includes(name);
  const fits = (loss: string) => lossInputs(m, loss).every(available);
  const losses = m.graphs.filter((g) => g.role === "loss").map((g) => g.name);
  let loss = requested;
  if (!loss && ds.tensors.has("target")) loss = [m.train.loss, ...losses].find((l) => lossInputs(m, l).includes("target") && fits(l));
  loss ??= m.train.loss;
  const missing = lossInputs(m, loss).filter((n) => !available(n));
  if (missing.length) throw new QzoError(`${ds.file}: the ${loss} loss needs ${missing.map((n) => `'${n}'`).join(", ")}, which the file does not hold`);
  return loss;
}

/** One batch of a loss's inputs: the file's rows, and the rest drawn for (seed, step) (no step: the evaluation draw). */
export function latentsBatch(ds: LatentsDataset, inputs: readonly string[], indices: readonly number[], seed: bigint, step?: number): Batch {
  const key = step === undefined ? splitSeed(seed) : stepSeedPair(seed, step);
  const rows = (name: string) => {
    const t = ds.tensors.get(name)!;
    const per = t.data.length / ds.size;
    const data = new Float32Array(indices.length * per);
    indices.forEach((e, r) => data.set(t.data.subarray(e * per, (e + 1) * per), r * per));
    return { shape: [indices.length, ...t.shape.slice(1)], data };
  };
  const words = new Uint32Array(4);
  // Counter [i lo, i hi, example, stream] under the step seed (or the run seed for evaluations).
  const draw = (i: number, example: number, stream: number) => philox4x32(i % 2 ** 32, Math.floor(i / 2 ** 32), example, stream, key.lo, key.hi, words);
  const out: Batch = {};
  const has = (n: string) => ds.tensors.has(n);
  const perExample = (f: (e: number) => number) => ({ shape: [indices.length], data: Float32Array.from(indices, f) });
  const sigma = (e: number) => {
    draw(0, e, SIGMA_STREAM);
    return Math.fround(1 / (1 + Math.exp(-gaussianFromWords(words[0]!, words[1]!))));
  };
  const ddpmT = (e: number) => {
    draw(0, e, DDPM_STREAM);
    return Math.floor((words[0]! * DDPM_STEPS) / 2 ** 32);
  };
  let schedule: ReturnType<typeof ddpmSchedule> | undefined;
  const table = () => (schedule ??= ddpmSchedule());
  for (const name of inputs) {
    if (has(name)) {
      out[name] = rows(name);
      continue;
    }
    switch (name) {
      case "noise": {
        const x0 = ds.tensors.get("x0")!;
        const per = x0.data.length / ds.size;
        const data = new Float32Array(indices.length * per);
        indices.forEach((e, r) => {
          for (let i = 0; i < per; i++) {
            draw(i, e, NOISE_STREAM);
            data[r * per + i] = gaussianFromWords(words[0]!, words[1]!);
          }
        });
        out[name] = { shape: [indices.length, ...x0.shape.slice(1)], data };
        break;
      }
      case "sigmas":
        out[name] = perExample(sigma);
        break;
      case "timestep": {
        const s = has("sigmas") ? rows("sigmas").data : Float32Array.from(indices, sigma);
        out[name] = { shape: [indices.length], data: s.map((v) => Math.fround(1000 * v)) };
        break;
      }
      case "ddpm_timesteps":
        out[name] = has(name) ? rows(name) : perExample(ddpmT);
        break;
      case "ddpm_sqrt_alpha_prod":
      case "ddpm_sqrt_one_minus_alpha_prod": {
        const ts = has("ddpm_timesteps") ? Array.from(rows("ddpm_timesteps").data) : indices.map(ddpmT);
        const tab = name === "ddpm_sqrt_alpha_prod" ? table().sqrtAlpha : table().sqrtOneMinus;
        out[name] = {
          shape: [indices.length],
          data: Float32Array.from(ts, (t) => {
            if (!(Number.isInteger(t) && t >= 0 && t < DDPM_STEPS)) throw new QzoError(`${ds.file}: a ddpm_timesteps value is ${t}; expected an integer from 0 to ${DDPM_STEPS - 1}`);
            return tab[t]!;
          }),
        };
        break;
      }
      default:
        throw new QzoError(`${ds.file}: no tensor '${name}'`);
    }
  }
  return out;
}
