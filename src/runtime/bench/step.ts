/**
 * One QZO step, timed two ways on the same backend target:
 *   fused    L(S + eps z) and L(S - eps z) with the perturbation computed inside the kernels, then
 *            one update kernel (what `qzo train` runs);
 *   unfused  the reference implementations' way: the scales are perturbed in place by separate
 *            sweeps that regenerate z from the seed, the losses run kernels that dequantize each
 *            whole weight before multiplying (no fusion passes), and the scales are restored by a
 *            further sweep before the update sweep.
 * Both use absolute perturbations (the in-place sweeps are exact only up to fp32 rounding, which
 * the report shows as the restore error).
 */
import { performance } from "node:perf_hooks";
import type { Batch } from "../backends/backend.js";
import type { KernelBackend } from "../backends/kernel-backend.js";

/** The step's hyperparameters; the fused step can also run relative perturbations (eps |s| z). */
export const STEP = { eps: 1e-3, lr: 1e-7, relEps: 1e-2, relLr: 1e-3, clip: 100, floor: 1e-7, seedHi: 0x5eed } as const;

export interface StepOut {
  lp: number;
  lm: number;
  d: number;
}

const clip = (d: number) => Math.min(Math.max(d, -STEP.clip), STEP.clip);

/** The fused step: two perturbed losses and one update kernel. */
export function fusedStep(be: KernelBackend, batch: Batch, seed: number, mode: "absolute" | "relative" = "absolute"): StepOut {
  const eps = mode === "absolute" ? STEP.eps : STEP.relEps;
  const p = { seedLo: seed, seedHi: STEP.seedHi, eps, epsMode: mode, dist: "gaussian" } as const;
  const lp = be.loss(batch, { ...p, sign: 1 });
  const lm = be.loss(batch, { ...p, sign: -1 });
  const d = clip((lp - lm) / (2 * eps));
  be.update({ seedLo: seed, seedHi: STEP.seedHi, d, lr: mode === "absolute" ? STEP.lr : STEP.relLr, epsMode: mode, dist: "gaussian", floor: STEP.floor });
  return { lp, lm, d };
}

/**
 * One in-place sweep s <- s - lr*d*z. With d = -1, lr = eps it is s + eps z; the unfused step is
 * +eps z, loss, -2 eps z, loss, +eps z (restore), then the update sweep.
 */
export function sweep(be: KernelBackend, seed: number, d: number, lr: number, floor = 0): void {
  be.update({ seedLo: seed, seedHi: STEP.seedHi, d, lr, epsMode: "absolute", dist: "gaussian", floor });
}

/** The unfused step (`be` built with the unfused pipeline); `afterRestore` sees the restored scales. */
export function unfusedStep(be: KernelBackend, batch: Batch, seed: number, afterRestore?: () => void): StepOut {
  sweep(be, seed, -1, STEP.eps);
  const lp = be.loss(batch);
  sweep(be, seed, 2, STEP.eps);
  const lm = be.loss(batch);
  sweep(be, seed, -1, STEP.eps);
  afterRestore?.();
  const d = clip((lp - lm) / (2 * STEP.eps));
  sweep(be, seed, d, STEP.lr, STEP.floor);
  return { lp, lm, d };
}

export interface StepTiming {
  first: StepOut;
  stepsMs: number[];
}

/** `steps` timed steps after one untimed step with seed 999 (the step both variants are compared on). */
export function timeSteps(step: (seed: number, first: boolean) => StepOut, steps: number): StepTiming {
  const first = step(999, true);
  const stepsMs: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t = performance.now();
    step(1000 + i, false);
    stepsMs.push(performance.now() - t);
  }
  return { first, stepsMs };
}

export function median(xs: readonly number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}
