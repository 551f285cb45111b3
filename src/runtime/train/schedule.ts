/**
 * Learning-rate schedules of the QZO trainer. Steps are 0-based (step s is the s-th update, the one
 * whose direction comes from stepSeedPair(runSeed, s)); `steps` is the run's total.
 *
 *   warmup W > 0:   lr(s) = base * (s + 1) / W                      for s < W (reaches base at s = W - 1)
 *   then, with p = (s - W) / (steps - W) in [0, 1):
 *     constant      lr(s) = base
 *     linear        lr(s) = base * (1 - p)                          (decays towards 0 at s = steps)
 *     cosine        lr(s) = base * 0.5 * (1 + cos(pi * p))          (decays towards 0 at s = steps)
 *
 * The value is a plain float64 function of (s, base, steps, W, kind): a resumed run gets exactly the
 * rates an uninterrupted one would.
 */
import { QzoError } from "../../util/errors.js";

export type ScheduleKind = "constant" | "linear" | "cosine";

export interface ScheduleSpec {
  kind: ScheduleKind;
  /** The peak learning rate. */
  lr: number;
  /** Total number of steps of the run. */
  steps: number;
  /** Warmup steps (linear from lr/W to lr). */
  warmup: number;
}

export function checkSchedule(s: ScheduleSpec): void {
  if (s.kind !== "constant" && s.kind !== "linear" && s.kind !== "cosine") {
    throw new QzoError(`unknown schedule '${String(s.kind)}' (constant, linear, cosine)`, 2);
  }
  if (!Number.isFinite(s.lr) || s.lr < 0) throw new QzoError(`the learning rate must be a finite number >= 0, got ${s.lr}`, 2);
  if (!Number.isInteger(s.steps) || s.steps < 0) throw new QzoError(`steps must be an integer >= 0, got ${s.steps}`, 2);
  if (!Number.isInteger(s.warmup) || s.warmup < 0) throw new QzoError(`warmup must be an integer >= 0, got ${s.warmup}`, 2);
}

/** The learning rate of 0-based step `step`. */
export function learningRate(s: ScheduleSpec, step: number): number {
  const W = s.warmup;
  if (step < W) return (s.lr * (step + 1)) / W;
  if (s.kind === "constant") return s.lr;
  const span = s.steps - W;
  if (span <= 0) return s.lr;
  const p = Math.min(Math.max((step - W) / span, 0), 1);
  if (s.kind === "linear") return s.lr * (1 - p);
  return s.lr * 0.5 * (1 + Math.cos(Math.PI * p));
}
