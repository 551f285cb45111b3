/**
 * qzo as a library: compile a spec, load a model, generate, score, train its quantization scales
 * with QZO, and export it in its own format. Everything the commands `qzoc` and `qzo` do goes
 * through these functions' modules; errors are `QzoError`s (one line, `exitCode` 1 for bad input,
 * 2 for bad usage) or `CompileError`s (located diagnostics).
 *
 *   import { loadModel, train } from "qzo";
 *   const model = loadModel("stories260K-q4_0.gguf");
 *   console.log(model.generate("Once upon a time", { steps: 30, temperature: 0 }));
 *   const run = await train({ model: "stories260K-q4_0.gguf", data: "stories.txt", out: "run", steps: 50,
 *     onProgress: (p) => console.log(p.step, p.loss), signal: AbortSignal.timeout(60_000) });
 */
import { checkFile } from "./compiler/check.js";
import { CompileError } from "./compiler/diagnostics.js";
import type { Manifest } from "./compiler/abi.js";
import type { BuiltLibrary } from "./compiler/build/build-cpu.js";
import type { TargetName } from "./compiler/codegen/target.js";
import { generateCode, TARGETS } from "./compiler/codegen/targets.js";
import type { ModuleIR } from "./compiler/ir/ir.js";
import type { ConfigOverrides } from "./compiler/sema/check.js";
import { printKernels } from "./compiler/kernels/print.js";
import { compileArtifact, defaultGraphs } from "./compiler/pipeline.js";
import type { Backend } from "./runtime/backends/backend.js";
import { selectBackend, type Device } from "./runtime/backends/select.js";
import { exportCheckpoint, type ExportResult } from "./runtime/export/export.js";
import { generate as generateText, type Forward } from "./runtime/infer/generate.js";
import { perplexity as scoreText, type PerplexityResult } from "./runtime/infer/perplexity.js";
import { bindModel, type BoundModel } from "./runtime/load/bind.js";
import { modelTokenizer } from "./runtime/load/tokenizer.js";
import type { Tokenizer } from "./runtime/tokenizer/index.js";
import { modelSha256 } from "./runtime/train/checkpoint.js";
import type { ProgressState } from "./runtime/train/progress.js";
import { evaluateData, runTraining, vocabOf, type TrainRunResult } from "./runtime/train/run.js";
import type { DatasetScore, TrainHyper } from "./runtime/train/trainer.js";
import { QzoError } from "./util/errors.js";

export { CompileError, QzoError };
export type { BuiltLibrary, DatasetScore, Device, ExportResult, Manifest, ModuleIR, PerplexityResult, ProgressState, TargetName, Tokenizer, TrainRunResult };

// ------------------------------------------------------------------ compile

export interface CompiledSpec {
  module: ModuleIR;
  /** The kernel program of each graph after the pass pipeline, as `qzoc compile --emit kernels` prints it. */
  kernels: Record<string, string>;
  /** The generated program (C++ or CUDA) and its manifest. */
  source: string;
  manifest: Manifest;
  /** Builds the program into a shared library (cached; g++ or nvcc). */
  build(): BuiltLibrary;
}

/** Checks a .qzo spec and generates its kernels for a target (default the CPU). */
export function compileSpec(path: string, opts: { set?: ConfigOverrides; graphs?: string[]; target?: TargetName } = {}): CompiledSpec {
  const r = checkFile(path, opts.set ?? {});
  if (r.diagnostics.length) throw new CompileError(r.diagnostics);
  const m = r.modules[0];
  if (!m) throw new QzoError(`${path}: declares no model`);
  const artifact = compileArtifact(m, { graphs: opts.graphs ?? defaultGraphs(m) });
  const target = opts.target ?? "cpu";
  const code = generateCode(artifact, target);
  return {
    module: m,
    kernels: Object.fromEntries(artifact.programs.map((p) => [p.graph, printKernels(p)])),
    source: code.files[0]!.text,
    manifest: code.manifest,
    build: () => TARGETS[target].build(code),
  };
}

// ------------------------------------------------------------------ models

export interface LoadOptions {
  /** The .qzo spec (default: the shipped spec of the file's architecture). */
  spec?: string;
  set?: ConfigOverrides;
  /** A tokenizer file (llama2.c checkpoints carry none). */
  tokenizer?: string;
  /** Where the model runs (default auto: a GPU, else the generated CPU kernels, else the interpreter). */
  device?: Device;
}

export interface Model {
  readonly path: string;
  readonly module: ModuleIR;
  readonly tokenizer: Tokenizer;
  readonly bound: BoundModel;
  /** Continues a prompt; temperature 0 is greedy. */
  generate(prompt: string, opts?: { steps?: number; temperature?: number; seed?: number }): string;
  /** The mean negative log-likelihood of a text, as one sequence after BOS. */
  perplexity(text: string): PerplexityResult;
  /** Accuracy or mean loss on a data file (text, JSON lines, or distillation data), optionally with a checkpoint's scales. */
  evaluate(dataFile: string, opts?: { checkpoint?: string; seqLen?: number; batch?: number }): DatasetScore;
  /** Writes the model with a checkpoint's trained scales, in the input's format. */
  export(checkpoint: string, out: string): ExportResult;
}

/** Loads a model file: a llama2.c .bin, a GGUF file, or a Hugging Face directory. */
export function loadModel(path: string, opts: LoadOptions = {}): Model {
  const bound = bindModel(path, { ...(opts.spec ? { spec: opts.spec } : {}), set: opts.set ?? {} });
  const m = bound.module;
  const tokenizer = modelTokenizer(bound.checkpoint, opts.tokenizer, vocabOf(m));
  const device = opts.device ?? "auto";
  const backends = new Map<string, { backend: Backend; forward: Forward }>();
  const run = (loss: string) => {
    let b = backends.get(loss);
    if (!b) {
      const s = selectBackend(bound, loss, device);
      b = { backend: s.backend, forward: s.forward };
      backends.set(loss, b);
    }
    return b;
  };
  let sha: string | undefined;
  const modelSha = () => (sha ??= modelSha256(path));
  return {
    path,
    module: m,
    tokenizer,
    bound,
    generate: (prompt, g = {}) =>
      generateText(m, run(m.train.loss || "lm").forward, tokenizer, { prompt, steps: g.steps ?? 64, temperature: g.temperature ?? 1, seed: g.seed ?? 0 }).text,
    perplexity: (text) => scoreText(m, (b) => run("lm").backend.loss(b), tokenizer, text, "text"),
    evaluate: (dataFile, e = {}) =>
      evaluateData(bound, tokenizer, dataFile, run, {
        ...(e.checkpoint ? { checkpoint: e.checkpoint } : {}),
        ...(e.seqLen !== undefined ? { seqLen: e.seqLen } : {}),
        batch: e.batch ?? 16,
        modelSha,
      }),
    export: (checkpoint, out) => exportCheckpoint(bound, checkpoint, out, modelSha),
  };
}

// ------------------------------------------------------------------ training

export interface TrainOptions extends LoadOptions, Partial<TrainHyper> {
  model: string;
  /** Training data: text, JSON lines, or `qzo distill`'s output. */
  data: string;
  /** Held-out data (default: the last tenth of `data`). */
  eval?: string;
  /** The run directory (checkpoints, log.jsonl, run.json, the exported model). */
  out: string;
  resume?: boolean;
  seqLen?: number;
  /** Called after every step. */
  onProgress?: (p: ProgressState) => void;
  /** Aborting finishes the current step, saves the checkpoint and returns with exitCode 130. */
  signal?: AbortSignal;
  /** Status lines (default: none). */
  log?: (line: string) => void;
}

/** Fine-tunes the quantization scales with QZO; see `qzo train`. */
export function train(o: TrainOptions): Promise<TrainRunResult> {
  const flags: Partial<TrainHyper> = {
    eps: o.eps, epsMode: o.epsMode, lr: o.lr, schedule: o.schedule, warmup: o.warmup, clip: o.clip, directions: o.directions,
    z: o.z, tensorPeriod: o.tensorPeriod, momentum: o.momentum, stepSize: o.stepSize, scaleFloor: o.scaleFloor, batch: o.batch, steps: o.steps, evalEvery: o.evalEvery, seed: o.seed,
  };
  return runTraining({
    model: o.model,
    ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}),
    ...(o.spec ? { spec: o.spec } : {}),
    set: o.set ?? {},
    device: o.device ?? "auto",
    data: o.data,
    ...(o.eval ? { eval: o.eval } : {}),
    out: o.out,
    resume: o.resume === true,
    flags,
    ...(o.seqLen !== undefined ? { seqLen: o.seqLen } : {}),
    command: ["qzo (library)", "train"],
    log: o.log ?? (() => undefined),
    progress: false,
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  });
}
