/**
 * A training run, as `qzo train` starts or resumes it in a run directory: the model bound to its
 * spec, the data cut into windows and split (the last tenth held out unless an eval set is given),
 * the loss graph chosen from the data, the hyperparameters (the spec's train block, the chosen
 * loss's own settings over it, then on --resume the run's own, then the flags), the backend, the
 * QZO loop (trainer.ts), the run record (run.json), Ctrl-C and SIGTERM (finish the step, save,
 * exit 130), and the export of the best (or final) scales into the input's format.
 *
 * With several ranks (a Communicator from parallel/mpi.ts): every rank loads the model and data
 * itself; the ranks first check that they hold the same spec, model, data and flags as rank 0;
 * rank 0 alone opens the run directory, decides the settings (on --resume from the run's own
 * record) and sends them to the others, writes every file and exports.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, extname, join } from "node:path";
import { trainHyperFor, type ModuleIR } from "../../compiler/ir/ir.js";
import type { ConfigOverrides } from "../../compiler/sema/check.js";
import { configInt, contextLength } from "../../compiler/ir/queries.js";
import { QzoError } from "../../util/errors.js";
import { writeFileAtomic } from "../../util/fs-atomic.js";
import type { Backend } from "../backends/backend.js";
import { selectBackend, type Device } from "../backends/select.js";
import { loadDataset, makeBatch, type Dataset } from "../data/dataset.js";
import { latentsBatch, latentsLoss, loadLatents, lossInputs, readsLatents, type LatentsDataset } from "../data/latents.js";
import { exportModel } from "../export/export.js";
import type { Forward } from "../infer/generate.js";
import { bindModel, type BoundModel } from "../load/bind.js";
import { modelTokenizer } from "../load/tokenizer.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { loadScalesCheckpoint, modelSha256 } from "./checkpoint.js";
import { writeLossChart } from "../report/run-report.js";
import type { ProgressState } from "./progress.js";
import { RUN_FILE, openRunDir } from "./run-dir.js";
import { CollectiveError, PeerLostError, SOLO, checkSameAsRoot, decideOnRoot, type Communicator } from "../parallel/communicator.js";
import {
  BEST_FILE, SCALES_FILE, checkBatchForRanks, checkHyper, checkTrainable, datasetData, evaluate, hyperJson, scoreDataset, subset, train,
  type DatasetScore, type TrainData, type TrainHyper,
} from "./trainer.js";

export const DEFAULT_SEQ_LEN = 128;

/** The model's vocabulary size (config vocab), when the spec has one. */
export const vocabOf = (m: ModuleIR): number | undefined => configInt(m, "vocab");

/** The window length: the requested one (else DEFAULT_SEQ_LEN capped by the context), checked against the context. */
export function windowLength(m: ModuleIR, requested: number | undefined): { ctx: number | undefined; seqLen: number } {
  const ctx = contextLength(m);
  const seqLen = requested ?? Math.min(DEFAULT_SEQ_LEN, ctx ?? DEFAULT_SEQ_LEN);
  if (ctx !== undefined && seqLen > ctx) throw new QzoError(`--seq-len ${seqLen} exceeds the model's context of ${ctx}`, 2);
  return { ctx, seqLen };
}

/** The loss graph for a data set: the spec's train.loss when its inputs are the batch's, else the graph named after the data kind. */
/** A backend for a loss graph, and the forward graph as a function (what `selectBackend` gives). */
export type BackendFor = (loss: string) => { backend: Backend; forward: Forward };

/**
 * Scores a data file (accuracy, or mean loss), optionally with a scales checkpoint's values
 * (checked against the model file by `modelSha`); the backend's own values are restored after.
 */
export function evaluateData(bound: BoundModel, tok: Tokenizer, dataFile: string, backendFor: BackendFor, o: { checkpoint?: string; seqLen?: number; batch: number; modelSha: () => string }): DatasetScore {
  const m = bound.module;
  const { ctx, seqLen } = windowLength(m, o.seqLen);
  const ds = loadDataset(dataFile, tok, seqLen, ctx);
  const { backend, forward } = backendFor(ds.kind === "classify" ? "lm" : lossFor(m, ds));
  return withCheckpoint(backend, o, () => scoreDataset(m, { loss: (b) => backend.loss(b), forward }, ds, o.batch));
}

/**
 * Scores latent data (a diffusion transformer's losses): the mean loss over its examples, the
 * inputs the file lacks drawn for evaluation from the spec's seed (data/latents.ts).
 */
export function evaluateLatents(bound: BoundModel, dataFile: string, backendFor: BackendFor, o: { checkpoint?: string; batch: number; loss?: string; modelSha: () => string }): DatasetScore {
  const m = bound.module;
  const ds = loadLatents(dataFile);
  const lossName = latentsLoss(m, ds, o.loss);
  const inputs = lossInputs(m, lossName);
  const seed = BigInt(trainHyperFor(m.train, lossName).seed);
  const { backend } = backendFor(lossName);
  const score = (): DatasetScore => ({
    kind: "latents",
    lossName,
    examples: ds.size,
    loss: evaluate(backend, { size: ds.size, batch: (idx) => latentsBatch(ds, inputs, idx, seed) }, o.batch),
  });
  return withCheckpoint(backend, o, score);
}

/** f() with a scales checkpoint's values in the backend (checked against the model by `modelSha`), its own restored after. */
function withCheckpoint<T>(backend: Backend, o: { checkpoint?: string; modelSha: () => string }, f: () => T): T {
  if (!o.checkpoint) return f();
  if (!existsSync(o.checkpoint)) throw new QzoError(`${o.checkpoint}: no such file`);
  const own = backend.values().map((v) => Float32Array.from(v));
  backend.setValues(loadScalesCheckpoint(o.checkpoint, { trainables: backend.trainables, modelSha256: o.modelSha() }).values);
  try {
    return f();
  } finally {
    backend.setValues(own);
  }
}

export function lossFor(m: ModuleIR, ds: Dataset): string {
  const keys = Object.keys(makeBatch(ds, [0])).sort().join(",");
  const fits = (name: string) => {
    const g = m.graphs.find((x) => x.name === name && x.role === "loss");
    return g !== undefined && g.inputs.map((id) => g.values[id]!.name ?? "").sort().join(",") === keys;
  };
  if (fits(m.train.loss)) return m.train.loss;
  if (fits(ds.kind)) return ds.kind;
  const any = m.graphs.find((g) => g.role === "loss" && fits(g.name));
  if (any) return any.name;
  const what = { lm: "language-modelling", classify: "classification", distill: "distillation" }[ds.kind];
  throw new QzoError(`${ds.file}: ${what} data needs a loss graph with inputs (${keys}); ${m.source} has none`);
}

/** RUN_DIR/model.<ext>: the input's extension for a file, `model` (a directory) for a Hugging Face directory. */
function exportPath(runDir: string, model: string): string {
  return statSync(model).isDirectory() ? join(runDir, "model") : join(runDir, `model${extname(model) || ".bin"}`);
}

function readRunJson(path: string): Record<string, unknown> | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch {
    throw new QzoError(`${path}: not valid JSON`);
  }
}

export interface TrainRunOptions {
  model: string;
  tokenizer?: string;
  spec?: string;
  set: ConfigOverrides;
  device: Device;
  data: string;
  eval?: string;
  out: string;
  resume: boolean;
  /** On resume, accept data or hyperparameters that differ from the run's own. */
  allowChanges?: boolean;
  /** The hyperparameters given on the command line (the rest come from the spec or the run). */
  flags: Partial<TrainHyper>;
  seqLen?: number;
  /** The command line, recorded in run.json. */
  command: string[];
  /** Status lines (default: stderr). */
  log?(line: string): void;
  /** Called after every step with the progress so far. */
  onProgress?(s: ProgressState): void;
  /** Aborting it finishes the current step, saves, and ends the run like Ctrl-C (exit code 130). */
  signal?: AbortSignal;
  /** Handle SIGINT and SIGTERM like an abort (the command line does; a library caller decides). */
  handleSignals?: boolean;
  /** Draw the progress line on stderr (default true). */
  progress?: boolean;
  /** Known losses to draw beside the run's (e.g. the unquantized model's), by label. */
  references?: Record<string, number>;
  /** The ranks of a data-parallel run (default: this process alone). */
  comm?: Communicator;
  /** With several ranks: compare a hash of the scales every this many steps (default 100). */
  checkEvery?: number;
}

export interface TrainRunResult {
  /** 0: done; 130: stopped (a signal or an abort) after saving. A diverged run is an error (exit 1). */
  exitCode: 0 | 130;
  /** Steps completed. */
  step: number;
  best?: { step: number; evalLoss: number };
  lastEval?: number;
  /** The exported model (a finished run). */
  exported?: string;
}

/** A run whose share of skipped directions (non-finite losses) is above this has diverged. */
const MAX_SKIPPED = 0.5;

/** On resume: the data and the flags must be the run's own unless the user says otherwise. */
function checkResumeChanges(o: TrainRunOptions, prev: Record<string, unknown> | undefined, dataSha: Record<string, string>): void {
  if (!prev || o.allowChanges) return;
  const was = (prev["dataSha256"] ?? {}) as Record<string, string>;
  for (const [what, sha] of Object.entries(dataSha)) {
    if (was[what] !== undefined && was[what] !== sha) {
      throw new QzoError(`${o.out}: the run was trained on other ${what} data (${String(prev[what])}); resume with the same data, or pass --allow-changes`, 2);
    }
  }
  const hyper = (prev["hyper"] ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(o.flags)) {
    // The length of the run and how often it evaluates may change; the trajectory's settings may not.
    if (v === undefined || hyper[k] === undefined || k === "steps" || k === "evalEvery") continue;
    if (String(hyper[k]) !== String(v)) throw new QzoError(`${o.out}: the run has ${k} ${String(hyper[k])}, not ${String(v)}; resume with its own settings, or pass --allow-changes`, 2);
  }
}

/** sha256 of a data file (a file, not a directory). */
function fileSha256(path: string): string {
  return modelSha256(path);
}

/** The run's hyperparameters: the spec's (for the chosen loss), then the run's own on --resume, then the flags. */
function hyperFor(m: ModuleIR, lossName: string, prev: Record<string, unknown> | undefined, flags: Partial<TrainHyper>): TrainHyper {
  const fromSpec = trainHyperFor(m.train, lossName);
  const base: TrainHyper = { ...fromSpec, seed: BigInt(fromSpec.seed) };
  if (prev) Object.assign(base, { ...prev, seed: BigInt(String(prev["seed"] ?? base.seed)) });
  const defined = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined));
  const hp: TrainHyper = { ...base, ...defined };
  checkHyper(hp);
  return hp;
}

/** The training and held-out data: the eval file, or the last tenth of the data. */
function splitData(o: TrainRunOptions, ds: Dataset, load: (file: string) => Dataset): { train: TrainData; eval?: TrainData; what: string } {
  return heldOut(o, datasetData(ds), () => {
    const es = load(o.eval!);
    if (es.kind !== ds.kind) throw new QzoError(`${o.eval}: ${es.kind} data, but ${o.data} is ${ds.kind} data`);
    return datasetData(es);
  });
}

/** Latent data (diffusion losses) split like splitData, its drawn inputs from the run's seed. */
function splitLatents(o: TrainRunOptions, ds: LatentsDataset, inputs: string[], seed: bigint): { train: TrainData; eval?: TrainData; what: string } {
  const data = (d: LatentsDataset): TrainData => ({ size: d.size, batch: (idx, step) => latentsBatch(d, inputs, idx, seed, step) });
  return heldOut(o, data(ds), () => data(loadLatents(o.eval!)));
}

/** How many of n >= 2 examples the trainer holds out for evaluation when no --eval is given: the last tenth. */
export function heldOutCount(n: number): number {
  return Math.max(1, Math.round(n / 10));
}

function heldOut(o: TrainRunOptions, all: TrainData, loadEval: () => TrainData): { train: TrainData; eval?: TrainData; what: string } {
  const n = all.size;
  if (o.eval) {
    const ev = loadEval();
    return { train: all, eval: ev, what: `${o.eval} (${ev.size} examples)` };
  }
  if (n < 2) return { train: all, what: "none (one example)" };
  const held = heldOutCount(n);
  return { train: subset(all, 0, n - held), eval: subset(all, n - held, n), what: `the last ${held} of ${n} examples of ${o.data}` };
}

export async function runTraining(opts: TrainRunOptions): Promise<TrainRunResult> {
  const comm = opts.comm ?? SOLO;
  const say = opts.log ?? ((line: string) => process.stderr.write(line + "\n"));
  const o = { ...opts, log: comm.rank === 0 ? say : () => undefined };
  let dir: ReturnType<typeof openRunDir> | undefined;
  try {
    const notes = await decideOnRoot(comm, () => (dir = openRunDir(o.out, o.resume)).notes);
    for (const note of notes) o.log(`qzo train: ${note}`);
    return await runIn(o, comm);
  } finally {
    dir?.release();
  }
}

/** What every rank must hold the same as rank 0 (flags, spec, model, data), as comparable strings. */
function rankIdentity(o: TrainRunOptions, m: ModuleIR, modelSha: string, dataSha256: Record<string, string>): Record<string, string> {
  const flags = Object.fromEntries(
    Object.entries(o.flags)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => [k, String(v)]),
  );
  const spec = createHash("sha256")
    .update(JSON.stringify(m, (k, v: unknown) => (k === "loc" || k === "source" ? undefined : v)))
    .digest("hex");
  return {
    "model file (sha256)": modelSha,
    "spec (sha256 of the checked module)": spec,
    ...Object.fromEntries(Object.entries(dataSha256).map(([k, v]) => [`${k} file (sha256)`, v])),
    "training flags": JSON.stringify(flags),
    "--set values": JSON.stringify(o.set),
    "--seq-len": String(o.seqLen ?? "(default)"),
    "--device": o.device,
    "--resume": String(o.resume),
  };
}

async function runIn(o: TrainRunOptions & { log(line: string): void }, comm: Communicator): Promise<TrainRunResult> {
  let stop = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop) process.exit(130);
    stop = true;
    // With several ranks the outcome (stopped together, or another rank gone) is the line to read.
    if (comm.size === 1) o.log(`\nqzo train: ${signal === "SIGINT" ? "interrupted" : "terminated"}: finishing the current step and saving (${signal === "SIGINT" ? "Ctrl-C" : "the signal"} again to quit now)`);
  };
  if (o.handleSignals) {
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  }
  try {
    return await trainIn(o, comm, () => stop || o.signal?.aborted === true);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

async function trainIn(o: TrainRunOptions & { log(line: string): void }, comm: Communicator, stopAsked: () => boolean): Promise<TrainRunResult> {
  const wait = { interrupted: stopAsked };
  const runDir = o.out;
  const scalesPath = join(runDir, SCALES_FILE);
  const runJsonPath = join(runDir, RUN_FILE);
  const bound = bindModel(o.model, { ...(o.spec ? { spec: o.spec } : {}), set: o.set });
  const m = bound.module;
  // Diffusion transformers train on latent files and have no tokenizer.
  const latents = readsLatents(m) ? loadLatents(o.data) : undefined;
  const tok = latents ? undefined : modelTokenizer(bound.checkpoint, o.tokenizer, vocabOf(m));
  const sha = modelSha256(o.model);
  const dataSha256: Record<string, string> = { data: fileSha256(o.data), ...(o.eval ? { eval: fileSha256(o.eval) } : {}) };
  if (comm.size > 1) await checkSameAsRoot(comm, rankIdentity(o, m, sha, dataSha256), wait);
  // Rank 0's record of the run (on --resume), read while deciding so that its errors are every rank's.
  let prevRun: Record<string, unknown> | undefined;
  const chosenSeqLen = await decideOnRoot(comm, () => {
    prevRun = o.resume ? readRunJson(runJsonPath) : undefined;
    const prevSeqLen = prevRun?.["seqLen"];
    return windowLength(m, o.seqLen ?? (typeof prevSeqLen === "number" ? prevSeqLen : undefined)).seqLen;
  }, wait);
  const { ctx, seqLen } = windowLength(m, chosenSeqLen);
  const load = (file: string) => loadDataset(file, tok!, seqLen, ctx);
  const ds = latents ?? load(o.data);
  if (ds.kind === "distill" && o.seqLen !== undefined && o.seqLen !== ds.seqLen) {
    throw new CollectiveError(`--seq-len ${o.seqLen}: ${o.data} holds windows of ${ds.seqLen} tokens (made by qzo distill)`, 2);
  }
  const lossName = ds.kind === "latents" ? latentsLoss(m, ds) : lossFor(m, ds);
  const hyper = await decideOnRoot(comm, () => {
    checkResumeChanges(o, prevRun, dataSha256);
    return hyperJson(hyperFor(m, lossName, prevRun?.["hyper"] as Record<string, unknown> | undefined, o.flags));
  }, wait);
  const hp = { ...hyper, seed: BigInt(String(hyper["seed"])) } as TrainHyper;
  const data = ds.kind === "latents" ? splitLatents(o, ds, lossInputs(m, lossName), hp.seed) : splitData(o, ds, load);
  checkBatchForRanks(hp.batch, comm);
  const { backend, device } = selectBackend(bound, lossName, o.device, { train: true });
  checkTrainable(backend, o.model);
  if (comm.size > 1) await checkSameAsRoot(comm, { backend: backend.name, "trainable values": String(backend.values().reduce((a, v) => a + v.length, 0)) }, wait);
  o.log(`qzo: training on ${{ cuda: "the generated CUDA kernels", cpu: "the generated CPU kernels", interp: "the reference interpreter" }[device]}${comm.size > 1 ? `, ${comm.size} ranks (${comm.description})` : ""}`);
  const runJson = {
    command: o.command,
    model: o.model,
    spec: bound.spec,
    data: o.data,
    eval: o.eval ?? null,
    dataSha256,
    ...(o.references && Object.keys(o.references).length ? { references: o.references } : {}),
    heldOut: o.eval ? null : data.eval ? data.eval.size : 0,
    seqLen: ds.kind === "distill" ? ds.seqLen : ds.kind === "latents" ? null : seqLen,
    loss: lossName,
    backend: backend.name,
    trainables: backend.trainables.length,
    scales: backend.values().reduce((a, v) => a + v.length, 0),
    hyper: hyperJson(hp),
    ...(comm.size > 1 ? { parallel: { ranks: comm.size, library: comm.description } } : {}),
    status: "running",
  };
  const writeRun = (extra: Record<string, unknown>) => comm.rank === 0 && writeFileAtomic(runJsonPath, JSON.stringify({ ...runJson, ...extra }, null, 2) + "\n");
  const writeChart = () => comm.rank === 0 && writeLossChart(runDir);
  writeRun({});
  o.log(
    `qzo train: ${basename(o.model)}, ${runJson.scales} trainable values in ${runJson.trainables} tensors, ` +
      `${data.train.size} training examples, eval ${data.what}, loss ${lossName}, ${hp.steps} steps`,
  );
  let r;
  try {
    r = await train({
      backend,
      train: data.train,
      ...(data.eval ? { eval: data.eval } : {}),
      hp,
      runDir,
      model: { path: o.model, sha256: sha, spec: bound.spec },
      resume: o.resume,
      shouldStop: stopAsked,
      ...(o.progress === false || comm.rank > 0 ? { progress: false as const } : {}),
      ...(o.onProgress ? { onStep: o.onProgress } : {}),
      comm,
      ...(o.checkEvery !== undefined ? { checkEvery: o.checkEvery } : {}),
    });
  } catch (e) {
    if (!(e instanceof PeerLostError)) throw e;
    writeRun({ status: "interrupted", result: { peerLost: true } });
    writeChart();
    throw new PeerLostError(comm.rank === 0 ? e.message : `${e.message}; rank 0 keeps the checkpoint`);
  }
  const result = { step: r.step, best: r.best ?? null, lastEval: r.lastEval ?? null, skipped: r.skipped, ...(comm.size > 1 ? { bytesPerStep: r.bytesPerStep } : {}) };
  const tried = (r.step - r.startStep) * hp.directions;
  if (tried > 0 && r.skipped > MAX_SKIPPED * tried) {
    writeRun({ status: "diverged", result });
    writeChart();
    throw new CollectiveError(
      `${runDir}: ${r.skipped} of ${tried} directions were skipped because a loss was not finite: the run diverged and is not exported (lower --lr or --eps; the checkpoints are kept)`,
    );
  }
  const ended = { step: r.step, ...(r.best ? { best: r.best } : {}), ...(r.lastEval !== undefined ? { lastEval: r.lastEval } : {}) };
  if (r.stopped) {
    writeRun({ status: "interrupted", result });
    writeChart();
    o.log(`qzo train: stopped after step ${r.step}; ${scalesPath} saved; continue with --resume`);
    return { exitCode: 130, ...ended };
  }
  if (comm.rank > 0) return { exitCode: 0, ...ended };
  const fromBest = data.eval !== undefined && r.best !== undefined;
  const values = fromBest ? loadScalesCheckpoint(join(runDir, BEST_FILE), { trainables: backend.trainables, modelSha256: sha }).values : backend.values();
  const out = exportPath(runDir, o.model);
  exportModel(bound, backend.trainables, values, out);
  writeRun({ status: "done", result, exported: out, exportedFrom: fromBest ? BEST_FILE : SCALES_FILE });
  writeChart();
  const bestText = r.best ? `, best eval ${r.best.evalLoss.toFixed(4)} at step ${r.best.step}` : "";
  o.log(`qzo train: ${r.step} steps${bestText}; wrote ${out} (from ${fromBest ? BEST_FILE : "the final scales"})`);
  return { ...ended, exitCode: 0, exported: out };
}
