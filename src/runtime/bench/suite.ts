/**
 * `qzo bench`: every number of one run is measured in that run, on one device, beside its
 * baseline:
 *   roofline  the device's triad bandwidth and peak FLOP rate (roofline.ts);
 *   matmul    one Q4_0 linear layer (models/bench/matmul.qzo) evaluated at perturbed scales for
 *             several row counts M: the fused dequantize-matmul against the unfused baseline (an
 *             in-place perturbation sweep, then dequantize the whole weight, then multiply), each
 *             also as a fraction of the roofline time of its minimum traffic and arithmetic;
 *   step      one QZO step of a chosen model, fused against unfused (step.ts);
 *   forward   (CPU) a 512-token forward pass of a random-weight Q4_0 Llama of about 155M
 *             parameters that qzo writes itself, against llama.cpp on the same file and threads.
 */
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { compileModule } from "../../compiler/check.js";
import { configInt } from "../../compiler/ir/queries.js";
import { QzoError } from "../../util/errors.js";
import { packageRoot } from "../../util/package-root.js";
import type { Batch } from "../backends/backend.js";
import { createKernelBackend, type StoredModel } from "../backends/kernel-backend.js";
import { cudaAvailable } from "../backends/cuda-device.js";
import { bindModel } from "../load/bind.js";
import { timeLlamaCppForward } from "./llama-cpp.js";
import { machineInfo, roundLoad, type MachineInfo } from "./machine.js";
import { lmBatch, randomModel, rng } from "./random-model.js";
import { BENCH_LLAMA, parameterCount, randomLlamaGguf, type RandomLlamaConfig } from "./random-llama.js";
import { measureCpuRoofline, measureCudaRoofline, type Roofline } from "./roofline.js";
import { fusedStep, median, STEP, sweep, timeSteps, unfusedStep, type StepOut } from "./step.js";

export type BenchDevice = "cpu" | "cuda";

export interface BenchOptions {
  device: BenchDevice;
  /** CPU threads (default: all cores). */
  threads?: number;
  /** The QZO step's model: a model file (its spec chosen as `qzo train` does, or `spec`). */
  model?: string;
  /** The QZO step's spec: with `model`, the spec to bind it with; alone, random weights at its config. */
  spec?: string;
  set?: Record<string, string>;
  /** Timed QZO steps per variant (default 5). */
  steps?: number;
  /** Small sizes throughout: a smoke test in seconds, not a measurement. */
  quick?: boolean;
  /** Skip the forward comparison with llama.cpp. */
  noForward?: boolean;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
}

export interface MatmulRow {
  m: number;
  fusedMs: number;
  /** The fused kernel at unperturbed scales: what the inline perturbation costs is the difference. */
  fusedPlainMs: number;
  /** The unfused baseline: one in-place perturbation sweep plus the unfused loss. */
  unfusedMs: number;
  unfusedLossMs: number;
  sweepMs: number;
  unfusedOverFused: number;
  /** max(bytes / bandwidth, FLOPs / peak) for the packed weight, x and y moved once. */
  rooflineMs: number;
  fusedOfRoofline: number;
  unfusedOfRoofline: number;
  fusedGflops: number;
}

export interface StepReport {
  model: string;
  batch: [number, number];
  steps: number;
  trainable: number;
  fusedMs: number;
  unfusedMs: number;
  unfusedOverFused: number;
  fusedTokensPerS: number;
  /** The first (untimed) step's L+ of both variants, and their relative difference. */
  first: { fused: StepOut; unfused: StepOut; relDiff: number };
  restoreMaxRel: number;
}

export interface ForwardReport {
  model: string;
  parameters: number;
  tokens: number;
  threads: number;
  reps: number;
  oursMs: number;
  oursGflops: number;
  oursOfPeak: number;
  llamaCpp?: { release: string; binding: string; ms: number; gflops: number; oursOverLlamaCpp: number };
  llamaCppSkipped?: string;
}

export interface BenchReport {
  device: BenchDevice;
  threads: number;
  machine: MachineInfo & { loadavgAtEnd: number[] };
  roofline: Roofline;
  matmul: { spec: string; format: string; k: number; n: number; reps: number; rows: MatmulRow[] };
  step: StepReport;
  forward?: ForwardReport;
  forwardSkipped?: string;
  seconds: number;
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;
const ratio = (x: number) => Math.round(x * 100) / 100;

function timeMs(f: () => void, reps: number): number {
  f();
  const xs: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    f();
    xs.push(performance.now() - t);
  }
  return median(xs);
}

function randomFloats(n: number, seed: number, amp: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => amp * (2 * r() - 1));
}

function benchMatmul(o: Required<Pick<BenchOptions, "device" | "quick">>, threads: number, roof: Roofline, log: (s: string) => void): BenchReport["matmul"] {
  const size = o.quick ? 512 : o.device === "cuda" ? 8192 : 2048;
  const ms = o.quick ? [1, 16] : o.device === "cuda" ? [1, 16, 256, 4096] : [1, 16, 256];
  const reps = o.quick ? 3 : 10;
  const spec = join(packageRoot(), "models", "bench", "matmul.qzo");
  const module = compileModule(spec, { k: String(size), n: String(size) });
  const model = randomModel(module, 11, { fanIn: true });
  const fused = createKernelBackend(model, o.device, { loss: "l2", train: true, threads });
  const unfused = createKernelBackend(model, o.device, { loss: "l2", train: true, threads, pipeline: "unfused" });
  const rows: MatmulRow[] = [];
  try {
    for (const m of ms) {
      log(`matmul ${m} x ${size} x ${size}`);
      const batch: Batch = { x: { shape: [1, m, size], data: randomFloats(m * size, m, 1) }, y: { shape: [1, m, size], data: new Float32Array(m * size) } };
      const perturb = { seedLo: 7, seedHi: STEP.seedHi, sign: 1, eps: STEP.eps, epsMode: "absolute", dist: "gaussian" } as const;
      const fusedMs = timeMs(() => fused.loss(batch, perturb), reps);
      const fusedPlainMs = timeMs(() => fused.loss(batch), reps);
      const sweepMs = timeMs(() => sweep(unfused, 7, 0, STEP.eps), reps);
      const unfusedLossMs = timeMs(() => unfused.loss(batch), reps);
      const unfusedMs = timeMs(() => {
        sweep(unfused, 7, -1, STEP.eps);
        unfused.loss(batch);
      }, reps);
      const flops = 2 * m * size * size;
      const bytes = (size * size * 18) / 32 + 8 * m * size;
      const rooflineMs = 1000 * Math.max(bytes / roof.bandwidth, flops / roof.flops);
      rows.push({
        m,
        fusedMs: r3(fusedMs),
        fusedPlainMs: r3(fusedPlainMs),
        unfusedMs: r3(unfusedMs),
        unfusedLossMs: r3(unfusedLossMs),
        sweepMs: r3(sweepMs),
        unfusedOverFused: ratio(unfusedMs / fusedMs),
        rooflineMs: r3(rooflineMs),
        fusedOfRoofline: r3(rooflineMs / fusedMs),
        unfusedOfRoofline: r3(rooflineMs / unfusedMs),
        fusedGflops: Math.round(flops / fusedMs / 1e6),
      });
    }
  } finally {
    fused.close();
    unfused.close();
  }
  return { spec: "models/bench/matmul.qzo", format: "q4_0", k: size, n: size, reps, rows };
}

/** The step's model: a file (bound as `qzo train` binds it), a spec with random weights, or the bundled GGUF. */
function stepModel(o: BenchOptions): { model: StoredModel; name: string } {
  if (o.model) {
    const b = bindModel(o.model, { ...(o.spec ? { spec: o.spec } : {}), set: o.set ?? {} });
    return { model: b, name: o.model };
  }
  if (o.spec) {
    const module = compileModule(o.spec, o.set ?? {});
    return { model: randomModel(module, 7, { fanIn: true }), name: `${o.spec} (random weights)` };
  }
  const gguf = join(packageRoot(), "models", "weights", "stories260K", "stories260K-q4_0.gguf");
  return { model: bindModel(gguf), name: "stories260K-q4_0.gguf (bundled)" };
}

function benchStep(o: BenchOptions, threads: number, log: (s: string) => void): StepReport {
  const { model, name } = stepModel(o);
  const m = model.module;
  if (!m.graphs.some((g) => g.name === "lm")) throw new QzoError(`${m.source}: qzo bench times the 'lm' loss (next-token cross-entropy over tokens and a mask), and this spec has no graph 'lm'`);
  const vocab = configInt(m, "vocab");
  if (vocab === undefined) throw new QzoError(`${m.source}: qzo bench needs an int config entry 'vocab' for its random tokens`);
  const ctx = configInt(m, "seq_len") ?? 128;
  const B = o.quick ? 2 : 16;
  const T = Math.min(o.quick ? 32 : 128, ctx);
  const steps = o.steps ?? (o.quick ? 1 : 5);
  const batch = lmBatch(42, B, T, vocab);
  log(`QZO step of ${name}: fused`);
  const fused = createKernelBackend(model, o.device, { loss: "lm", train: true, threads });
  let f;
  try {
    f = timeSteps((seed) => fusedStep(fused, batch, seed), steps);
  } finally {
    fused.close();
  }
  log(`QZO step of ${name}: unfused`);
  const unfused = createKernelBackend(model, o.device, { loss: "lm", train: true, threads, pipeline: "unfused" });
  const trainable = unfused.values().reduce((a, v) => a + v.length, 0);
  let u;
  let restoreMaxRel = 0;
  try {
    const before = unfused.values().map((v) => Float32Array.from(v));
    const checkRestore = () =>
      unfused.values().forEach((v, t) => {
        const s = before[t]!;
        for (let i = 0; i < v.length; i++) if (s[i] !== 0) restoreMaxRel = Math.max(restoreMaxRel, Math.abs(v[i]! - s[i]!) / Math.abs(s[i]!));
      });
    u = timeSteps((seed, first) => unfusedStep(unfused, batch, seed, first ? checkRestore : undefined), steps);
  } finally {
    unfused.close();
  }
  const fMed = median(f.stepsMs);
  const uMed = median(u.stepsMs);
  return {
    model: name,
    batch: [B, T],
    steps,
    trainable,
    fusedMs: r3(fMed),
    unfusedMs: r3(uMed),
    unfusedOverFused: ratio(uMed / fMed),
    fusedTokensPerS: Math.round((B * T) / (fMed / 1000)),
    first: { fused: f.first, unfused: u.first, relDiff: Math.abs(f.first.lp - u.first.lp) / Math.abs(u.first.lp) },
    restoreMaxRel,
  };
}

/** The linear layers' multiply-adds of one token (what dominates a forward pass of this shape). */
function linearFlopsPerToken(c: RandomLlamaConfig, vocab: number): number {
  return 2 * (parameterCount(c, vocab) - vocab * c.dim - c.layers * 2 * c.dim - c.dim);
}

async function benchForward(o: BenchOptions, threads: number, roof: Roofline, log: (s: string) => void): Promise<ForwardReport> {
  const config: RandomLlamaConfig = o.quick ? { dim: 256, hidden: 768, layers: 2, heads: 4, context: 256 } : BENCH_LLAMA;
  const tokens = o.quick ? 128 : 512;
  const reps = o.quick ? 1 : 3;
  log(`forward: writing or reusing the random Q4_0 Llama (${config.layers} x ${config.dim})`);
  const gguf = randomLlamaGguf(config);
  const bound = bindModel(gguf);
  const vocab = configInt(bound.module, "vocab")!;
  const ids = lmBatch(3, 1, tokens, vocab)["tokens"]!.data as Int32Array;
  log(`forward: ours, ${tokens} tokens on ${threads} thread(s)`);
  const be = createKernelBackend(bound, "cpu", { loss: "lm", threads });
  let oursMs: number;
  try {
    oursMs = timeMs(() => be.forward(ids, 1, tokens), reps);
  } finally {
    be.close();
  }
  const flops = linearFlopsPerToken(config, vocab) * tokens;
  const rep: ForwardReport = {
    model: `random Llama, Q4_0, ${config.layers} layers x ${config.dim} (hidden ${config.hidden}, vocab ${vocab})`,
    parameters: parameterCount(config, vocab),
    tokens,
    threads,
    reps,
    oursMs: r3(oursMs),
    oursGflops: Math.round(flops / oursMs / 1e6),
    oursOfPeak: r3(flops / (oursMs / 1000) / roof.flops),
  };
  log(`forward: llama.cpp, ${tokens} tokens on ${threads} thread(s)`);
  const l = await timeLlamaCppForward(gguf, [...ids], threads, 1, reps);
  if (l.available) {
    const lm = median(l.allLogitsMs);
    rep.llamaCpp = { release: l.release, binding: l.bindingVersion, ms: r3(lm), gflops: Math.round(flops / lm / 1e6), oursOverLlamaCpp: ratio(lm / oursMs) };
  } else rep.llamaCppSkipped = l.reason;
  return rep;
}

/** Runs the whole benchmark on one device. */
export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  if (o.device === "cuda") {
    const avail = cudaAvailable();
    if (!avail.ok) throw new QzoError(`cannot benchmark the CUDA backend: ${avail.reason}; use --device cpu`);
  }
  const threads = o.device === "cuda" ? 1 : (o.threads ?? availableParallelism());
  // The OpenMP runtime reads this once, when the first kernel library loads it.
  process.env["OMP_NUM_THREADS"] = String(threads);
  const machine = machineInfo(o.device === "cuda");
  log(`roofline of the ${o.device.toUpperCase()}`);
  const roofline = o.device === "cuda" ? measureCudaRoofline() : measureCpuRoofline(threads, o.quick ? { arrayMiB: 64, reps: 2 } : {});
  const matmul = benchMatmul({ device: o.device, quick: o.quick ?? false }, threads, roofline, log);
  const step = benchStep(o, threads, log);
  const report: BenchReport = { device: o.device, threads, machine: { ...machine, loadavgAtEnd: [] }, roofline, matmul, step, seconds: 0 };
  if (o.noForward) report.forwardSkipped = "--no-forward";
  else if (o.device === "cuda") report.forwardSkipped = "the llama.cpp comparison runs on the CPU only (node-llama-cpp's prebuilt CPU binary)";
  else report.forward = await benchForward(o, threads, roofline, log);
  report.machine.loadavgAtEnd = roundLoad();
  report.seconds = Math.round((performance.now() - t0) / 100) / 10;
  return report;
}

