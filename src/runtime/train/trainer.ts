/**
 * The QZO training loop (QZO-NOTES section 2: Q-SPSA with DDC), over any Backend.
 *
 * Step s (0-based, s = 0 .. steps-1) with K = directions:
 *   indices = order(nTrain, batch, runSeed, s);  B = makeBatch(indices)      (the same batch for every k)
 *   for k in 0..K-1:  seed_k = stepSeedPair(runSeed, s*K + k)                (K = 1: seed = stepSeedPair(runSeed, s))
 *                     L+_k = loss(B, +eps, seed_k);  L-_k = loss(B, -eps, seed_k)   (all at the same S)
 *                     d_raw_k = (L+_k - L-_k) / (2 eps);  d_k = clamp(d_raw_k, -C, C)  (DDC)
 *   then, for k in 0..K-1 in order:  update(seed_k, d = d_k / K, lr = lr(s))
 * so the step is S <- S - lr(s) * (1/K) * sum_k d_k z_k (each term floored as it is applied). With
 * tensor_period P > 1 every direction moves one in every P trainable tensors (rng/direction.ts). With
 * momentum or step_size rms the updates are the step rule's (step-rule.ts): the momentum of the
 * last steps' (seed, d), and lr divided by a running rms of d; its state is saved in the checkpoints. eps is
 * absolute (S +- eps z, step lr d z) or relative (S +- eps |S| z, step lr d |S| z), QZO-NOTES section 5.
 * A direction whose L+ or L- is not finite is skipped (no update; logged with d = null).
 *
 * RUN_DIR/log.jsonl: a header line {"qzo_train":1, "run_seed", "eps", "eps_mode", "z", "scale_floor",
 * "directions", "clip", ...}, then per step {"step","seed","loss_plus","loss_minus","d","d_raw","lr",
 * "seconds"} (seed a "0x" + 16 hex digit u64; with K > 1, seed/loss_plus/loss_minus/d/d_raw are arrays
 * of K), and per evaluation {"step", "eval_loss"} where "step" counts the steps completed (0 = before
 * training). `replay` re-applies a log's (seed, d, lr) updates without any forward pass.
 *
 * Evaluation (when an eval set is given): the mean unperturbed loss over the eval set (consecutive
 * chunks of `batch` examples, each chunk's loss weighted by its size), before the first step of a
 * fresh run, after every evalEvery steps and after the last step. Keep-best: best.safetensors is
 * written whenever the eval loss is below every earlier one. scales.safetensors is written at each
 * evaluation point (every evalEvery steps even without an eval set), at the end, and when stopped.
 *
 * Resume: the checkpoint's step and values replace the start; the log is cut back to that step; the
 * run then continues exactly as an uninterrupted one would (batches, seeds and learning rates are
 * pure functions of (runSeed, step)).
 *
 * Data parallel (a Communicator of N ranks, parallel/communicator.ts): every rank draws the same
 * batch indices and seeds, evaluates L+ and L- on its contiguous shard of the batch (shardRange)
 * and contributes (w L+_k, w L-_k for each k, w, stop) to one sum-reduction, w being its shard's
 * batchWeight; L+-_k = sum(w L+-_k) / sum(w) is then the loss of the whole batch (the mean over its
 * predicted tokens, summed in another order), and every rank applies the same update. Evaluation
 * chunks are dealt round-robin and their (loss * weight, weight) sums reduced. A stop asked of any
 * rank ends the run after the step in which it was reduced, on every rank. Only rank 0 writes the
 * log and checkpoints; on resume it sends the checkpoint's step and values to the others. Every
 * checkEvery steps and at the end the ranks compare a hash of their values.
 */
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { writeFileAtomic } from "../../util/fs-atomic.js";
import { join } from "node:path";
import type { ModuleIR } from "../../compiler/ir/ir.js";
import { QzoError } from "../../util/errors.js";
import type { Forward } from "../infer/generate.js";
import { projectedGradient } from "../interpret/update.js";
import { splitSeed, stepSeedPair, type ZDistribution } from "../rng/direction.js";
import { batchOrder, datasetSize, makeBatch, type Dataset } from "../data/dataset.js";
import type { Backend, Batch, PerturbSpec } from "../backends/backend.js";
import { CollectiveError, PeerLostError, SOLO, decideOnRoot, sameOnAllRanks, shardRange, type Communicator, type WaitOptions } from "../parallel/communicator.js";
import { loadScalesCheckpoint, saveScalesCheckpoint } from "./checkpoint.js";
import { Progress, type ProgressState } from "./progress.js";
import { checkSchedule, learningRate, type ScheduleKind } from "./schedule.js";
import { checkStepRuleHyper, StepRule, type StepSize } from "./step-rule.js";

/**
 * Training examples addressed by index. `step` is given for a training step's batch (data that
 * draws part of its inputs, such as a diffusion loss's noise, draws them for that step) and left out
 * for evaluations.
 */
export interface TrainData {
  readonly size: number;
  batch(indices: number[], step?: number): Batch;
}

/** Which examples step `step` trains on (default: dataset.ts's batchOrder). */
export type BatchOrder = (n: number, batchSize: number, seed: bigint, step: number) => number[];

/** A loaded dataset as TrainData. */
export function datasetData(ds: Dataset): TrainData {
  return { size: datasetSize(ds), batch: (indices) => makeBatch(ds, indices) };
}

/** What the checkpoints record about the model trained. */
export interface ModelIdentity {
  path: string;
  sha256: string;
  spec: string;
}

export interface TrainHyper {
  eps: number;
  epsMode: "absolute" | "relative";
  lr: number;
  schedule: ScheduleKind;
  warmup: number;
  clip: number;
  directions: number;
  z: ZDistribution;
  /** Each direction perturbs one in every tensorPeriod trainable tensors (1: all; rng/direction.ts). */
  tensorPeriod: number;
  /** Momentum of the step estimates in seed space (0: none; step-rule.ts). */
  momentum: number;
  stepSize: StepSize;
  scaleFloor: number;
  batch: number;
  steps: number;
  evalEvery: number;
  seed: bigint;
}

export interface TrainOptions {
  backend: Backend;
  train: TrainData;
  eval?: TrainData;
  hp: TrainHyper;
  runDir: string;
  /** Recorded in (and, on resume, checked against) the checkpoints. */
  model: ModelIdentity;
  /** Example order per step (default batchOrder of src/runtime/data/dataset.ts). */
  order?: BatchOrder;
  /** Continue from RUN_DIR/scales.safetensors. */
  resume?: boolean;
  /** Extra string metadata stored in the checkpoints. */
  meta?: Record<string, string>;
  /** Polled after every step and evaluation: true finishes the run early (checkpoint saved). */
  shouldStop?: () => boolean;
  /** Progress display; false for none. */
  progress?: Progress | false;
  /** Called after every step (and the first evaluation) with the progress so far. */
  onStep?: (s: ProgressState) => void;
  /** Yield to the event loop between steps (so signals are seen); default true. */
  yieldEachStep?: boolean;
  /** The ranks of a data-parallel run (default: this process alone). */
  comm?: Communicator;
  /** With several ranks: compare a hash of the values every this many steps (default 100) and at the end. */
  checkEvery?: number;
}

export interface TrainResult {
  /** Steps completed (== hp.steps unless stopped). */
  step: number;
  startStep: number;
  stopped: boolean;
  best?: { step: number; evalLoss: number };
  lastEval?: number;
  skipped: number;
  /** Payload bytes this rank handed to collectives per step (step reductions, scale checks, evaluations); 0 alone. */
  bytesPerStep: number;
}

export interface StepRecord {
  step: number;
  seed: string | string[];
  loss_plus: number | number[];
  loss_minus: number | number[];
  d: number | null | (number | null)[];
  d_raw: number | null | (number | null)[];
  lr: number;
  seconds: number;
}

export interface EvalRecord {
  step: number;
  eval_loss: number;
}

export interface LogHeader {
  qzo_train: 1;
  run_seed: string;
  eps: number;
  eps_mode: "absolute" | "relative";
  z: ZDistribution;
  scale_floor: number;
  directions: number;
  clip: number;
  lr: number;
  schedule: ScheduleKind;
  warmup: number;
  /** Absent in logs of runs that perturb every tensor (1). */
  tensor_period?: number;
  /** Absent in logs of runs without momentum (0). */
  momentum?: number;
  /** Absent in logs of runs with a constant step size. */
  step_size?: StepSize;
  batch: number;
  steps: number;
  backend: string;
}

export const LOG_FILE = "log.jsonl";
/** The checkpoint metadata key of the step rule's state. */
const STEP_RULE_KEY = "stepRule";
export const SCALES_FILE = "scales.safetensors";
export const BEST_FILE = "best.safetensors";

export function seedHex(lo: number, hi: number): string {
  return "0x" + hi.toString(16).padStart(8, "0") + lo.toString(16).padStart(8, "0");
}

export function parseSeedHex(s: string): { lo: number; hi: number } {
  if (!/^0x[0-9a-fA-F]{1,16}$/.test(s)) throw new QzoError(`bad seed '${s}' in the log (expected 0x + up to 16 hex digits)`);
  return splitSeed(BigInt(s));
}

export function checkHyper(hp: TrainHyper): void {
  const bad = (msg: string) => new QzoError(msg, 2);
  if (!(hp.eps > 0) || !Number.isFinite(hp.eps)) throw bad(`eps must be a positive number, got ${hp.eps}`);
  if (hp.epsMode !== "absolute" && hp.epsMode !== "relative") throw bad(`unknown eps mode '${String(hp.epsMode)}'`);
  if (!(hp.clip >= 0)) throw bad(`the clip threshold must be >= 0, got ${hp.clip}`);
  if (!Number.isInteger(hp.directions) || hp.directions < 1) throw bad(`directions must be an integer >= 1, got ${hp.directions}`);
  if (hp.z !== "gaussian" && hp.z !== "rademacher") throw bad(`unknown z distribution '${String(hp.z)}' (gaussian, rademacher)`);
  checkStepRuleHyper(hp);
  if (!Number.isInteger(hp.tensorPeriod) || hp.tensorPeriod < 1 || hp.tensorPeriod >= 2 ** 32) throw bad(`the tensor period must be an integer >= 1, got ${hp.tensorPeriod}`);
  if (!(hp.scaleFloor >= 0) || !Number.isFinite(hp.scaleFloor)) throw bad(`the scale floor must be a number >= 0, got ${hp.scaleFloor}`);
  if (!Number.isInteger(hp.batch) || hp.batch < 1) throw bad(`batch must be an integer >= 1, got ${hp.batch}`);
  if (!Number.isInteger(hp.evalEvery) || hp.evalEvery < 0) throw bad(`eval-every must be an integer >= 0, got ${hp.evalEvery}`);
  if (hp.seed < 0n || hp.seed >= 1n << 64n) throw bad(`the seed must be a u64, got ${hp.seed}`);
  checkSchedule({ kind: hp.schedule, lr: hp.lr, steps: hp.steps, warmup: hp.warmup });
  if (hp.steps * hp.directions >= 2 ** 53) throw bad(`steps * directions must be below 2^53`);
}

/** A backend with no trainable tensor (a float model) has nothing for QZO to train. */
export function checkTrainable(backend: Pick<Backend, "trainables">, model: string): void {
  if (backend.trainables.length === 0) throw new QzoError(`${model}: nothing to train: no parameter matches the spec's trainable list (is the model quantized?)`);
}

/** Every rank needs at least one example of each step. */
export function checkBatchForRanks(batch: number, comm: Communicator): void {
  if (batch < comm.size) throw new CollectiveError(`batch ${batch} is smaller than the ${comm.size} ranks: every rank needs at least one example of each step`, 2);
}

/**
 * The weight of a batch's loss in a mean over batches: the number of examples for a classification
 * batch (its loss is a mean over `label`), else the number of predicted tokens (mask at t >= 1: the lm
 * loss is a mean over them), else the number of rows.
 */
export function batchWeight(b: Batch): number {
  if (b["label"]) return b["label"].data.length;
  const mask = b["mask"];
  if (mask && mask.shape.length === 2) {
    const [B, T] = mask.shape as [number, number];
    let n = 0;
    for (let r = 0; r < B; r++) for (let t = 1; t < T; t++) n += mask.data[r * T + t]!;
    return n;
  }
  return (b["tokens"] ?? Object.values(b)[0])?.shape[0] ?? 1;
}

/**
 * Mean unperturbed loss over a data set: consecutive chunks of `batch` examples, each chunk's loss
 * weighted by batchWeight (so an lm eval is the mean over all predicted tokens, a classification eval
 * the mean over examples).
 */
export function evaluate(backend: Pick<Backend, "loss">, data: TrainData, batch: number): number {
  const { sum, weight } = evaluationSums(backend, data, batch);
  return sum / weight;
}

/** evaluate's sums (loss * weight, weight) over chunks j with j % size === rank. */
function evaluationSums(backend: Pick<Backend, "loss">, data: TrainData, batch: number, rank = 0, size = 1): { sum: number; weight: number } {
  if (data.size === 0) throw new QzoError("the evaluation set is empty");
  let sum = 0;
  let weight = 0;
  for (let start = rank * batch; start < data.size; start += batch * size) {
    const idx: number[] = [];
    for (let i = start; i < Math.min(start + batch, data.size); i++) idx.push(i);
    const b = data.batch(idx);
    const w = batchWeight(b);
    sum += backend.loss(b) * w;
    weight += w;
  }
  return { sum, weight };
}

/** Examples [from, to) of a data set, as their own TrainData. */
export function subset(data: TrainData, from: number, to: number): TrainData {
  if (!(0 <= from && from <= to && to <= data.size)) throw new Error(`internal: subset ${from}..${to} of ${data.size}`);
  return { size: to - from, batch: (indices, step) => data.batch(indices.map((i) => i + from), step) };
}

export interface DatasetScore {
  kind: Dataset["kind"] | "latents";
  /** latents: the loss graph that scored them. */
  lossName?: string;
  examples: number;
  /** Mean loss: per predicted token (lm; distill: the distillation cross-entropy), per example (classify: cross-entropy over candidate scores). */
  loss: number;
  /** lm, distill: predicted tokens. */
  tokens?: number;
  /** classify: fraction of examples whose gold candidate has the highest score. */
  accuracy?: number;
  correct?: number;
}

/**
 * Scores a dataset with the model's graphs. lm, distill: the data's loss graph (token-weighted mean). classify: the
 * `forward` graph's logits; candidate k's score is the mean log-probability of its answer tokens
 * (log softmax in float64), the prediction is the argmax (the first on ties), the loss is
 * logsumexp(scores) - score[label], averaged over examples.
 */
/** What scoring needs of a model: its loss graph on a batch, and its forward graph's logits. */
export interface Scorer {
  loss(b: Batch): number;
  forward: Forward;
}

export function scoreDataset(m: ModuleIR, scorer: Scorer, ds: Dataset, batch: number): DatasetScore {
  const n = datasetSize(ds);
  const data = datasetData(ds);
  if (ds.kind !== "classify") {
    let tokens = 0;
    const loss = evaluate(scorer, data, batch);
    for (const w of ds.windows) tokens += w.length - 1;
    return { kind: ds.kind, examples: n, loss, tokens };
  }
  const fwd = m.graphs.find((g) => g.name === "forward");
  if (!fwd || fwd.inputs.length !== 1) throw new QzoError(`${m.source}: no 'forward(tokens)' graph to score candidates with`);
  let correct = 0;
  let lossSum = 0;
  // One example at a time: examples may have different candidate counts.
  {
    for (let i = 0; i < n; i++) {
      const b = makeBatch(ds, [i]);
      const tok = b["tokens"]!;
      const mask = b["mask"]!.data;
      const [R, T] = tok.shape as [number, number];
      const logits = { data: scorer.forward(tok.data as Int32Array, R, T) };
      const V = logits.data.length / (R * T);
      const scores: number[] = [];
      for (let r = 0; r < R; r++) {
        let sum = 0;
        let cnt = 0;
        for (let t = 1; t < T; t++) {
          if (mask[r * T + t] === 0) continue;
          const row = logits.data.subarray((r * T + t - 1) * V, (r * T + t) * V);
          let mx = -Infinity;
          for (let v = 0; v < V; v++) if (row[v]! > mx) mx = row[v]!;
          let se = 0;
          for (let v = 0; v < V; v++) se += Math.exp(row[v]! - mx);
          sum += row[tok.data[r * T + t]!]! - mx - Math.log(se);
          cnt++;
        }
        scores.push(sum / cnt);
      }
      const label = ds.examples[i]!.label;
      let arg = 0;
      for (let k = 1; k < scores.length; k++) if (scores[k]! > scores[arg]!) arg = k;
      if (arg === label) correct++;
      const mx = Math.max(...scores);
      lossSum += mx + Math.log(scores.reduce((a, x) => a + Math.exp(x - mx), 0)) - scores[label]!;
    }
  }
  return { kind: "classify", examples: n, loss: lossSum / n, accuracy: correct / n, correct };
}

/**
 * The parsed lines of a log (header, steps, evals), in order. A last line without its newline that
 * does not parse is what a kill during an append leaves: it is dropped.
 */
export function parseLog(text: string, file = LOG_FILE): (LogHeader | StepRecord | EvalRecord)[] {
  const out: (LogHeader | StepRecord | EvalRecord)[] = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      if (i === lines.length - 1) return;
      throw new QzoError(`${file}:${i + 1}: not a JSON line`);
    }
    if (typeof v !== "object" || v === null) throw new QzoError(`${file}:${i + 1}: not a JSON object`);
    out.push(v as LogHeader | StepRecord | EvalRecord);
  });
  return out;
}

const isHeader = (r: object): r is LogHeader => "qzo_train" in r;
const isStep = (r: object): r is StepRecord => "seed" in r && "step" in r;
const isEval = (r: object): r is EvalRecord => "eval_loss" in r;

/**
 * Re-applies the updates of a log (its text or its parsed records) to a backend, without forward
 * passes: for every step line, the step rule's updates of its directions (seed_k, d_k) at its lr
 * (plain Q-SPSA: update(seed_k, d_k / K, lr) for each finite d_k). Returns the number of steps
 * replayed. `upTo` stops before that step.
 */
export function replay(log: string | readonly object[], backend: Backend, opts: { upTo?: number } = {}): number {
  const recs = typeof log === "string" ? parseLog(log) : log;
  const header = recs.find(isHeader);
  if (!header) throw new QzoError("the log has no header line (qzo_train): cannot replay it");
  const K = header.directions;
  const rule = new StepRule({ momentum: header.momentum ?? 0, stepSize: header.step_size ?? "constant" });
  let n = 0;
  for (const r of recs) {
    if (!isStep(r)) continue;
    if (opts.upTo !== undefined && r.step >= opts.upTo) break;
    const seeds = Array.isArray(r.seed) ? r.seed : [r.seed];
    const ds = Array.isArray(r.d) ? r.d : [r.d];
    if (seeds.length !== K || ds.length !== K) throw new QzoError(`log step ${r.step}: ${seeds.length} seeds and ${ds.length} d values for ${K} directions`);
    const dirs = seeds.map((seed, k) => {
      const { lo, hi } = parseSeedHex(seed);
      const d = ds[k];
      return { seedLo: lo, seedHi: hi, d: d === null || d === undefined || !Number.isFinite(d) ? null : d };
    });
    for (const u of rule.next(r.step, r.lr, dirs).updates) {
      backend.update({ ...u, epsMode: header.eps_mode, dist: header.z, floor: header.scale_floor, period: header.tensor_period ?? 1 });
    }
    n++;
  }
  return n;
}

function headerOf(hp: TrainHyper, backend: Backend): LogHeader {
  return {
    qzo_train: 1,
    run_seed: "0x" + hp.seed.toString(16).padStart(16, "0"),
    eps: hp.eps,
    eps_mode: hp.epsMode,
    z: hp.z,
    scale_floor: hp.scaleFloor,
    directions: hp.directions,
    clip: hp.clip,
    lr: hp.lr,
    schedule: hp.schedule,
    warmup: hp.warmup,
    ...(hp.tensorPeriod > 1 ? { tensor_period: hp.tensorPeriod } : {}),
    ...(hp.momentum ? { momentum: hp.momentum } : {}),
    ...(hp.stepSize !== "constant" ? { step_size: hp.stepSize } : {}),
    batch: hp.batch,
    steps: hp.steps,
    backend: backend.name,
  };
}

/** The hyperparameters as JSON-friendly values (the seed as a decimal string). */
export function hyperJson(hp: TrainHyper): Record<string, unknown> {
  return { ...hp, seed: hp.seed.toString(10) };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

interface StartState {
  start: number;
  /** On resume: the step rule's state from the checkpoint. */
  rule?: string;
  best?: { step: number; evalLoss: number };
  lastEval?: number;
}

/**
 * Rank 0 (the one that writes): a fresh log with its header, or on resume the checkpoint's step
 * and values (into the backend), the best eval so far, and the log cut back to that step.
 */
function openLog(o: TrainOptions, logPath: string, scalesPath: string): StartState {
  const { backend, hp } = o;
  if (!o.resume) {
    writeFileAtomic(logPath, JSON.stringify(headerOf(hp, backend)) + "\n");
    return { start: 0 };
  }
  if (!existsSync(scalesPath)) throw new QzoError(`${scalesPath}: no checkpoint to resume from`);
  const c = loadScalesCheckpoint(scalesPath, {
    trainables: backend.trainables,
    sizes: backend.values().map((v) => v.length),
    modelSha256: o.model.sha256,
  });
  if (c.runSeed !== hp.seed) throw new QzoError(`${scalesPath}: the checkpoint comes from a run with seed ${c.runSeed}, not ${hp.seed}; resume with the same seed`);
  if (c.step > hp.steps) throw new QzoError(`${scalesPath}: the checkpoint is at step ${c.step}, past the ${hp.steps} steps asked for`);
  backend.setValues(c.values);
  const ruleState = c.meta.extra?.[STEP_RULE_KEY];
  if (ruleState === undefined && (hp.momentum > 0 || hp.stepSize !== "constant")) {
    throw new QzoError(`${scalesPath}: the checkpoint holds no step rule state (momentum, rms step size) to resume with`);
  }
  const state: StartState = { start: c.step, ...(ruleState !== undefined ? { rule: ruleState } : {}) };
  // Keep the log up to the checkpoint (a crash may have left later lines), and the best eval so far.
  const kept: string[] = [JSON.stringify(headerOf(hp, backend))];
  if (existsSync(logPath)) {
    for (const r of parseLog(readFileSync(logPath, "utf8"), logPath)) {
      if (isHeader(r)) continue;
      if (isEval(r)) {
        if (r.step > state.start) continue;
        if (!state.best || r.eval_loss < state.best.evalLoss) state.best = { step: r.step, evalLoss: r.eval_loss };
        state.lastEval = r.eval_loss;
      } else if (isStep(r) && r.step >= state.start) continue;
      kept.push(JSON.stringify(r));
    }
  }
  writeFileAtomic(logPath, kept.join("\n") + "\n");
  return state;
}

/** On resume with several ranks: rank 0's values (read from its checkpoint) on every rank. */
async function shareValues(comm: Communicator, backend: Backend, wait: WaitOptions): Promise<void> {
  const own = backend.values();
  const total = own.reduce((a, v) => a + v.length, 0);
  const all = new Float32Array(total);
  if (comm.rank === 0) {
    let off = 0;
    for (const v of own) all.set(v, (off += v.length) - v.length);
  }
  const got = await comm.broadcast(new Uint8Array(all.buffer), 0, wait);
  if (comm.rank === 0) return;
  if (got.byteLength !== all.byteLength) throw new QzoError(`rank ${comm.rank}: rank 0 sent ${got.byteLength / 4} values, this rank's model has ${total}`);
  new Uint8Array(all.buffer).set(got);
  let off = 0;
  backend.setValues(own.map((v) => all.slice(off, (off += v.length))));
}

/** A step's L+ and L- for every direction on the whole batch, and whether any rank asked to stop. */
async function stepLosses(
  o: TrainOptions,
  comm: Communicator,
  step: number,
  indices: number[],
  perts: Omit<PerturbSpec, "sign">[],
  stopAsked: boolean,
  wait: WaitOptions,
): Promise<{ lp: number[]; lm: number[]; stop: boolean }> {
  const K = perts.length;
  const local = (b: Batch, w: number) => {
    const out = new Float64Array(2 * K + 2);
    perts.forEach((p, k) => {
      out[k] = w * o.backend.loss(b, { ...p, sign: 1 });
      out[K + k] = w * o.backend.loss(b, { ...p, sign: -1 });
    });
    return out;
  };
  if (comm.size === 1) {
    const r = local(o.train.batch(indices, step), 1);
    return { lp: [...r.subarray(0, K)], lm: [...r.subarray(K, 2 * K)], stop: false };
  }
  const { lo, hi } = shardRange(indices.length, comm.rank, comm.size);
  const b = o.train.batch(indices.slice(lo, hi), step);
  const w = batchWeight(b);
  const mine = local(b, w);
  mine[2 * K] = w;
  mine[2 * K + 1] = stopAsked ? 1 : 0;
  const r = await comm.allreduce(mine, "sum", wait);
  const W = r[2 * K]!;
  return { lp: [...r.subarray(0, K)].map((x) => x / W), lm: [...r.subarray(K, 2 * K)].map((x) => x / W), stop: r[2 * K + 1]! > 0 };
}

/** Trains; see the file comment for the exact semantics. */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const { backend, hp, runDir } = o;
  const comm = o.comm ?? SOLO;
  const writer = comm.rank === 0;
  checkHyper(hp);
  if (o.train.size === 0) throw new QzoError("the training set is empty");
  checkTrainable(backend, o.model.path);
  checkBatchForRanks(hp.batch, comm);
  const logPath = join(runDir, LOG_FILE);
  const scalesPath = join(runDir, SCALES_FILE);
  const bestPath = join(runDir, BEST_FILE);
  const K = hp.directions;
  const order = o.order ?? batchOrder;
  const config = hyperJson(hp);
  const checkEvery = o.checkEvery ?? 100;
  const rule = new StepRule({ momentum: hp.momentum, stepSize: hp.stepSize });
  const save = (path: string, step: number) =>
    writer &&
    saveScalesCheckpoint(path, {
      step,
      runSeed: hp.seed,
      values: backend.values() as Float32Array[],
      trainables: [...backend.trainables],
      meta: {
        model: o.model.path,
        modelSha256: o.model.sha256,
        spec: o.model.spec,
        config,
        ...(best ? { bestEvalLoss: best.evalLoss } : {}),
        extra: { ...(o.meta ?? {}), [STEP_RULE_KEY]: rule.encode() },
      },
    });

  const startWait: WaitOptions = { interrupted: () => o.shouldStop?.() === true };
  const state = comm.size === 1 ? openLog(o, logPath, scalesPath) : await decideOnRoot(comm, () => openLog(o, logPath, scalesPath), startWait);
  if (state.rule !== undefined) rule.decode(state.rule, scalesPath);
  if (o.resume && comm.size > 1) await shareValues(comm, backend, startWait);
  const start = state.start;
  let best = state.best;
  let lastEval = state.lastEval ?? undefined;
  const log = (r: object) => writer && appendFileSync(logPath, JSON.stringify(r) + "\n");
  const progress = o.progress === false ? undefined : (o.progress ?? new Progress({ steps: hp.steps, firstStep: start }));
  const report = (s: ProgressState): void => void (progress?.update(s), o.onStep?.(s));
  let step = start;
  let lastSaved = -1;
  // While a rank waits for the others, a stop request saves the last completed step at once (the
  // launcher ends a job whose rank has died within about a second), then gives the others a moment.
  const wait: WaitOptions = {
    interrupted: () => o.shouldStop?.() === true,
    onInterrupted: () => {
      if (lastSaved !== step) save(scalesPath, step);
      lastSaved = step;
    },
  };
  const checkSame = async () => {
    if (!(await sameOnAllRanks(comm, backend.values() as Float32Array[], wait))) {
      throw new CollectiveError(`the ranks' scales differ after step ${step}: a rank applied another update (other kernels, compiler or hardware?)`);
    }
  };

  const runEval = async (at: number): Promise<void> => {
    if (!o.eval) return;
    const { sum, weight } = evaluationSums(backend, o.eval, hp.batch, comm.rank, comm.size);
    const r = comm.size === 1 ? Float64Array.of(sum, weight) : await comm.allreduce(Float64Array.of(sum, weight), "sum", wait);
    const e = r[0]! / r[1]!;
    lastEval = e;
    log({ step: at, eval_loss: e });
    if (Number.isFinite(e) && (!best || e < best.evalLoss)) {
      best = { step: at, evalLoss: e };
      save(bestPath, at);
    }
  };

  const schedule = { kind: hp.schedule, lr: hp.lr, steps: hp.steps, warmup: hp.warmup };
  let stopped = false;
  let stopReduced = false;
  let skipped = 0;
  const sentBefore = comm.bytesSent;
  try {
    if (!o.resume && o.eval) {
      await runEval(0);
      report({ step: 0, steps: hp.steps, ...(lastEval !== undefined ? { evalLoss: lastEval } : {}) });
    }

    while (step < hp.steps) {
      if (comm.size === 1 ? o.shouldStop?.() : stopReduced) {
        stopped = true;
        break;
      }
      const t0 = performance.now();
      const s = step;
      const lr = learningRate(schedule, s);
      const seeds = Array.from({ length: K }, (_, k) => stepSeedPair(hp.seed, s * K + k));
      const perts = seeds.map((seed) => ({ seedLo: seed.lo, seedHi: seed.hi, eps: hp.eps, epsMode: hp.epsMode, dist: hp.z, period: hp.tensorPeriod }));
      const { lp, lm, stop } = await stepLosses(o, comm, s, order(o.train.size, hp.batch, hp.seed, s), perts, comm.size > 1 && o.shouldStop?.() === true, wait);
      stopReduced = stop;
      const dRaw: (number | null)[] = [];
      const dClip: (number | null)[] = [];
      for (let k = 0; k < K; k++) {
        if (Number.isFinite(lp[k]) && Number.isFinite(lm[k])) {
          const g = projectedGradient(lp[k]!, lm[k]!, hp.eps, hp.clip);
          dRaw.push(g.raw);
          dClip.push(g.clipped);
        } else {
          dRaw.push(null);
          dClip.push(null);
          skipped++;
        }
      }
      const next = rule.next(s, lr, seeds.map((x, k) => ({ seedLo: x.lo, seedHi: x.hi, d: dClip[k] ?? null })));
      for (const u of next.updates) backend.update({ ...u, epsMode: hp.epsMode, dist: hp.z, floor: hp.scaleFloor, period: hp.tensorPeriod });
      const one = <T>(a: T[]): T | T[] => (K === 1 ? a[0]! : a);
      log({
        step: s,
        seed: one(seeds.map((x) => seedHex(x.lo, x.hi))),
        loss_plus: one(lp),
        loss_minus: one(lm),
        d: one(dClip),
        d_raw: one(dRaw),
        lr,
        ...(hp.stepSize === "rms" ? { lr_eff: next.lr } : {}),
        seconds: (performance.now() - t0) / 1000,
      });
      step = s + 1;
      if (comm.size > 1 && (step % checkEvery === 0 || step === hp.steps || stopReduced)) await checkSame();
      const evalPoint = (hp.evalEvery > 0 && step % hp.evalEvery === 0) || step === hp.steps;
      let evalNow: number | undefined;
      if (evalPoint) {
        if (o.eval) {
          await runEval(step);
          evalNow = lastEval;
        }
        save(scalesPath, step);
        lastSaved = step;
      }
      let mean = 0;
      for (let k = 0; k < K; k++) mean += (lp[k]! + lm[k]!) / 2;
      report({ step, steps: hp.steps, loss: mean / K, ...(evalNow !== undefined ? { evalLoss: evalNow } : {}) });
      if (o.yieldEachStep !== false) await tick();
    }
  } catch (e) {
    if (e instanceof PeerLostError && writer) throw new PeerLostError(`${e.message}; ${scalesPath} holds step ${lastSaved}; continue with --resume`);
    throw e;
  }
  if (lastSaved !== step) save(scalesPath, step);
  progress?.finish();
  const bytesPerStep = step > start ? (comm.bytesSent - sentBefore) / (step - start) : 0;
  return { step, startStep: start, stopped, ...(best ? { best } : {}), ...(lastEval !== undefined ? { lastEval } : {}), skipped, bytesPerStep };
}
