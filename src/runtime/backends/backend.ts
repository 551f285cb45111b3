/**
 * What the QZO trainer needs from an execution backend (the reference
 * interpreter, the generated CPU or CUDA kernels). A backend owns the fp32
 * master copies of the trainable tensors, in the manifest order of
 * `trainableTensors` (src/runtime/interpret/interpreter.ts); the frozen
 * weights stay as loaded.
 */
import type { Perturbation, TrainableTensor } from "../interpret/interpreter.js";
import type { ZDistribution } from "../rng/direction.js";

/** One batch for the loss graph, by input name (tokens i32[B, T], mask f32[B, T], label i32[E] ...). */
export type Batch = Record<string, { shape: number[]; data: Int32Array | Float32Array }>;

/** The perturbation of a loss: the interpreter's own (every backend follows the same numerics contract). */
export type PerturbSpec = Perturbation;

export interface UpdateSpec {
  seedLo: number;
  seedHi: number;
  /** The clipped projected gradient. */
  d: number;
  lr: number;
  epsMode: "absolute" | "relative";
  dist: ZDistribution;
  /** Sign-preserving floor for scales (0 for mins and float weights). */
  floor: number;
  /** The direction's tensor period (default 1: every tensor; rng/direction.ts). */
  period?: number;
}

export interface Backend {
  readonly name: string;
  /** The trainable tensors, in manifest order (index = tensor number t). */
  readonly trainables: readonly TrainableTensor[];
  /** The loss graph on a batch: unperturbed, or with every trainable tensor perturbed. */
  loss(batch: Batch, perturb?: PerturbSpec): number;
  /** s <- s - lr*d*z (or *|s|), then the floor, on every trainable tensor's master copy. */
  update(u: UpdateSpec): void;
  /** The master copies (fp32), index = t; callers must not modify them. */
  values(): readonly Float32Array[];
  /** Replaces the master copies (resume, keep-best restore). */
  setValues(values: readonly Float32Array[]): void;
}
