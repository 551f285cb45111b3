/**
 * How a step's clipped directional derivatives d_k (with their seeds) become scale updates.
 *
 * - Plain Q-SPSA (momentum 0, step_size constant): update(seed_k, d_k / K, lr(s)) for each
 *   direction k of step s.
 * - Momentum beta in (0, 1), kept in seed space: the heavy-ball average
 *   m_s = beta m_{s-1} + (1 - beta) g_s of the step estimates g_s = (1/K) sum_k d_k z_k is never
 *   stored as a vector. Step s applies, for every direction j of the last W steps (W the smallest
 *   window with beta^W <= MOMENTUM_TAIL, older terms dropped), update(seed_j, (1 - beta) beta^(s - s_j)
 *   d_j / K, lr(s)): W x K update calls a step and no memory beyond their seeds and d. With relative
 *   eps, z_j is scaled by the current |S| as every update is.
 * - step_size rms: the learning rate divided by a running root mean square of the step's mean
 *   derivative dbar = (1/K) sum_k d_k, v_s = 0.99 v_{s-1} + 0.01 dbar^2 with bias correction,
 *   lr_eff = lr(s) / (sqrt(v_s / (1 - 0.99^n)) + 1e-12), n the steps seen; so lr is the size of a
 *   typical step in units of z, whatever the scale of the loss.
 *
 * The rule's state (v, n, the window) is a pure function of the steps' logged (seed, d): `replay`
 * rebuilds the same updates from a log, and checkpoints store it (`encode`/`decode`) for resume.
 */
import { QzoError } from "../../util/errors.js";

export type StepSize = "constant" | "rms";

export interface StepRuleHyper {
  momentum: number;
  stepSize: StepSize;
}

/** A direction of a step: its seed and clipped d (null when skipped). */
export interface Direction {
  seedLo: number;
  seedHi: number;
  d: number | null;
}

/** One update call: seed, d and lr. */
export interface RuleUpdate {
  seedLo: number;
  seedHi: number;
  d: number;
  lr: number;
}

/** Momentum terms older than this fraction of their first weight are dropped. */
export const MOMENTUM_TAIL = 1e-3;
/** v_s = RMS_BETA v_{s-1} + RMS_WEIGHT dbar^2 (the literals, as documented above). */
const RMS_BETA = 0.99;
const RMS_WEIGHT = 0.01;

export function momentumWindow(beta: number): number {
  return beta > 0 ? Math.ceil(Math.log(MOMENTUM_TAIL) / Math.log(beta)) : 1;
}

/** A usage error (exit 2) naming the first bad setting of a step rule. */
export function checkStepRuleHyper(hp: StepRuleHyper): void {
  if (!(hp.momentum >= 0 && hp.momentum < 1)) throw new QzoError(`momentum must be in [0, 1), got ${hp.momentum}`, 2);
  if (hp.stepSize !== "constant" && hp.stepSize !== "rms") throw new QzoError(`step size is constant or rms, got '${String(hp.stepSize)}'`, 2);
}

export class StepRule {
  private v = 0;
  private n = 0;
  /** The last steps' directions (each with its step), newest last. */
  private window: { step: number; dirs: Direction[] }[] = [];

  constructor(private readonly hp: StepRuleHyper) {
    checkStepRuleHyper(hp);
  }

  /** The updates of step `step` with learning rate `lr` (the schedule's), given its K directions. */
  next(step: number, lr: number, dirs: readonly Direction[]): { updates: RuleUpdate[]; lr: number } {
    const K = dirs.length;
    let eff = lr;
    if (this.hp.stepSize === "rms") {
      const live = dirs.filter((x) => x.d !== null);
      if (live.length) {
        const mean = live.reduce((a, x) => a + x.d!, 0) / K;
        this.v = RMS_BETA * this.v + RMS_WEIGHT * mean * mean;
        this.n++;
      }
      eff = this.n ? lr / (Math.sqrt(this.v / (1 - RMS_BETA ** this.n)) + 1e-12) : lr;
    }
    const beta = this.hp.momentum;
    if (beta === 0) {
      return { lr: eff, updates: dirs.flatMap((x) => (x.d === null ? [] : [{ seedLo: x.seedLo, seedHi: x.seedHi, d: K === 1 ? x.d : x.d / K, lr: eff }])) };
    }
    this.window.push({ step, dirs: [...dirs] });
    const W = momentumWindow(beta);
    while (this.window.length > W) this.window.shift();
    const updates: RuleUpdate[] = [];
    for (const w of this.window) {
      const c = (1 - beta) * beta ** (step - w.step);
      for (const x of w.dirs) if (x.d !== null) updates.push({ seedLo: x.seedLo, seedHi: x.seedHi, d: (c * x.d) / K, lr: eff });
    }
    return { lr: eff, updates };
  }

  /** The state, for a checkpoint. */
  encode(): string {
    return JSON.stringify({ v: this.v, n: this.n, window: this.window });
  }

  /** Restores encode()'s state; `what` names its source in errors. */
  decode(text: string, what: string): void {
    let s: unknown;
    try {
      s = JSON.parse(text);
    } catch {
      throw new QzoError(`${what}: the step rule's state is not JSON`);
    }
    const o = s as { v?: unknown; n?: unknown; window?: unknown };
    if (typeof o.v !== "number" || typeof o.n !== "number" || !Array.isArray(o.window)) throw new QzoError(`${what}: the step rule's state lacks v, n or window`);
    this.v = o.v;
    this.n = o.n;
    this.window = o.window as { step: number; dirs: Direction[] }[];
  }
}
