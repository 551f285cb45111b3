/**
 * GPU check, part 1 (runs where Node and nvcc are: this machine, or the GPU machine if it has Node).
 * bench/gpu-check.sh runs it, then bench/gpu-check.py on the GPU. Node is not part of the GPU
 * machines' image, so everything that needs the compiler or the CPU backend happens here and is
 * written to a bundle directory (default .qzo-cache/gpu-bundle, carried to the GPU machine):
 *
 *   correctness/<case>/  lib.so (CUDA, fat or --archs), manifest.json, weights.bin (every weight
 *                        slot's host array, back to back), and cases.json: for each (B, T) and each
 *                        perturbation, the inputs (tokens, mask) and the CPU backend's outputs
 *                        (logits, loss, the masters after one update with each z distribution), and
 *                        for specs with a distill loss a random top-8 teacher and its distill losses;
 *                        cpu.so: every graph of lib.so built for the CPU (for --selftest-cpu).
 *                        (B, T) = (1, 8): M = 8, the small-M path; (2, 24): M = 48, partial tiles;
 *                        (4, 64): M = 256, full tiles. The CPU backend is the reference (it agrees
 *                        with the float64-reduction interpreter to 1e-5, test/backends/cpu-vs-interpreter).
 *   training/            stories260K Q4_0 (if the GGUF file is there): lib.so, weights.bin, the batches
 *                        and seeds of N QZO steps and the CPU trajectory (L+, L-, d, eval loss).
 *   matmul/<fmt>-<N>x<K>-{fused,unfused}/  a one-linear spec at Llama-2-7B shapes (weights are drawn
 *                        on the GPU machine from the manifest: random codes, random scales).
 *   step7b/              Llama-2-7B-shaped gptq_int4 library (weights drawn on the GPU machine).
 *
 * Usage: node dist/bench/gpu-check.js [--bundle DIR] [--archs 90a (default; add 80,89 for other GPUs)] [--quick] [--skip-train]
 * With no GPU here, this is the dry run of everything but the GPU parts (which it lists).
 */
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkFile } from "../src/compiler/check.js";
import { packageRoot } from "../src/util/package-root.js";
import { distillBatch } from "../test/support/random-model.js";
import { SMALL, SPEC_CASES } from "../test/support/spec-cases.js";
import { lmBatch, randomModel } from "../src/runtime/bench/random-model.js";
import type { ModuleIR } from "../src/compiler/ir/ir.js";
import { buildCudaLibraryAsync, nvccVersion } from "../src/compiler/build/build-cuda.js";
import { TARGETS } from "../src/compiler/codegen/targets.js";
import { kernelsOf } from "../src/compiler/kernels/kernel-ir.js";
import type { PipelineName } from "../src/compiler/kernels/passes/index.js";
import { compileArtifact } from "../src/compiler/pipeline.js";
import { cudaAvailable } from "../src/runtime/backends/cuda-device.js";
import { weightArrays } from "../src/runtime/backends/kernel-args.js";
import { createKernelBackend, type StoredModel } from "../src/runtime/backends/kernel-backend.js";
import { bindModel } from "../src/runtime/load/bind.js";
import { modelTokenizer } from "../src/runtime/load/tokenizer.js";
import { batchOrder, datasetSize, loadDataset, makeBatch } from "../src/runtime/data/dataset.js";
import { projectedGradient } from "../src/runtime/interpret/update.js";
import { stepSeedPair } from "../src/runtime/rng/direction.js";
import type { Batch, PerturbSpec } from "../src/runtime/backends/backend.js";

const repo = packageRoot();

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : dflt;
};
const bundle = opt("--bundle", join(repo, ".qzo-cache", "gpu-bundle"));
const archs = opt("--archs", "90a").split(",");
const quick = args.includes("--quick");
const skipTrain = args.includes("--skip-train");


const b64 = (a: Float32Array | Int32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");

const CASES: [string, string, Record<string, string | number>, boolean?][] = SPEC_CASES.map((c): [string, string, Record<string, string | number>] => [c.id, c.spec, c.overrides]);
// Unfused programs: plain matmul + unary silu + binary mul + next_token_ce, and the dequantize-then-multiply path.
CASES.splice(1, 0, ["llama-q4_0-unfused", "models/llama.qzo", { ...SMALL, weight: "q4_0" }, true]);
const SHAPES: [number, number][] = [[4096, 4096], [11008, 4096], [4096, 11008]];
const MM_FORMATS = ["q4_0", "gptq_int4"];
/** (QZO_PIPE_STAGES, QZO_PIPE_MIN_BLOCKS) of the timed mm_pipe variants; the default (4, 2) included. */
const PIPE_VARIANTS: [number, number][] = [[4, 2], [3, 2], [4, 1], [3, 1], [5, 1]];

interface Job {
  what: string;
  run: () => Promise<void>;
}

async function pool(jobs: Job[], width: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < jobs.length) {
        const j = jobs[next++]!;
        const t0 = Date.now();
        await j.run();
        console.log(`  built ${j.what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      }
    }),
  );
}

function check(spec: string, over: Record<string, string | number>): ModuleIR {
  const r = checkFile(spec.startsWith("/") ? spec : join(repo, spec), over);
  if (r.diagnostics.length) throw new Error(`${spec}: ${r.diagnostics.map((d) => d.message).join("; ")}`);
  return r.modules[0]!;
}

/** The distill loss of one batch shape: a random teacher (top 8) and the CPU's losses for each perturbation. */
function distillCase(cpu: { loss(b: Batch, p?: PerturbSpec): number }, B: number, T: number, vocab: number, perturbs: (PerturbSpec | null)[]) {
  const batch = distillBatch(2000 + B * 100 + T, B, T, vocab, 8, 0.9, 0.2);
  return {
    tokens: b64(batch["tokens"]!.data as Int32Array),
    mask: b64(batch["mask"]!.data as Float32Array),
    teacher_ids: b64(batch["teacher_ids"]!.data as Int32Array),
    teacher_probs: b64(batch["teacher_probs"]!.data as Float32Array),
    K: 8,
    losses: perturbs.map((p) => ({ perturb: p, loss: p ? cpu.loss(batch, p) : cpu.loss(batch) })),
  };
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const gpu = cudaAvailable();
  let nvcc = "";
  try {
    nvcc = nvccVersion();
  } catch (e) {
    console.log(`gpu-check: ${(e as Error).message}`);
  }
  console.log(`gpu-check prepare: bundle ${bundle}; archs ${archs.join(",")}; nvcc: ${nvcc || "MISSING"}; GPU here: ${gpu.ok ? "yes" : `no (${gpu.reason})`}`);
  mkdirSync(bundle, { recursive: true });
  const jobs: Job[] = [];
  const index: Record<string, unknown> = { created: new Date().toISOString(), archs, nvcc, correctness: [], training: null, matmul: [], step7b: null };

  // 1. Correctness cases: CPU references computed here; libraries built here.
  for (const [name, spec, over, unfused] of CASES) {
    const dir = join(bundle, "correctness", name);
    mkdirSync(dir, { recursive: true });
    const m = check(spec, over);
    const graphs = ["lm", "distill", "forward"].filter((g) => m.graphs.some((x) => x.name === g));
    const pipeline: PipelineName = unfused ? "unfused" : "fused";
    const artifact = compileArtifact(m, { graphs, pipeline });
    const gen = TARGETS.cuda.generate(artifact);
    const model = randomModel(m, 7 + CASES.findIndex((c) => c[0] === name));
    const cpu = createKernelBackend(model, "cpu", { loss: "lm", threads: 2, pipeline });
    const cpuDistill = graphs.includes("distill") ? createKernelBackend(model, "cpu", { loss: "distill", threads: 2, pipeline }) : undefined;
    const vocab = m.config.find((c) => c.name === "vocab")!.value.value as number;
    const runs: unknown[] = [];
    const perturbs: (PerturbSpec | null)[] = [
      null,
      { seedLo: 0x1234, seedHi: 0x9abc, sign: 1, eps: 1e-2, epsMode: "relative", dist: "gaussian" },
      { seedLo: 0x1234, seedHi: 0x9abc, sign: -1, eps: 1e-3, epsMode: "absolute", dist: "rademacher" },
    ];
    for (const [B, T] of quick ? [[1, 8], [4, 64]] : [[1, 8], [2, 24], [4, 64]]) {
      const batch = lmBatch(1000 + B * 100 + T, B!, T!, vocab, 0.2);
      const logits = cpu.forward(batch["tokens"]!.data as Int32Array, B!, T!);
      runs.push({
        B, T,
        tokens: b64(batch["tokens"]!.data as Int32Array),
        mask: b64(batch["mask"]!.data as Float32Array),
        logits: b64(logits),
        losses: perturbs.map((p) => ({ perturb: p, loss: p ? cpu.loss(batch, p) : cpu.loss(batch) })),
        ...(cpuDistill ? { distill: distillCase(cpuDistill, B!, T!, vocab, perturbs) } : {}),
      });
    }
    // The weight arrays (before any update), then the masters after one update of each kind.
    const man = gen.manifest;
    writeWeights(join(dir, "weights.bin"), model, man);
    const updates = [
      { seedLo: 5, seedHi: 6, d: -0.7, lr: 1e-2, epsMode: "relative" as const, dist: "gaussian" as const, floor: 1e-7 },
      { seedLo: 9, seedHi: 1, d: 0.3, lr: 1e-3, epsMode: "absolute" as const, dist: "rademacher" as const, floor: 1e-7 },
    ];
    const before = cpu.values().map((v) => Float32Array.from(v));
    const after = updates.map((u) => {
      cpu.setValues(before);
      cpu.update(u);
      return cpu.values().map((v) => b64(Float32Array.from(v)));
    });
    cpu.setValues(before);
    // Every graph of the CUDA library, on the CPU: for gpu-check.py --selftest-cpu (the Python plumbing, no GPU).
    copyFileSync(TARGETS.cpu.build(TARGETS.cpu.generate(artifact)).path, join(dir, "cpu.so"));
    cpu.close();
    cpuDistill?.close();
    const kernels = [...new Set(artifact.programs.flatMap((p) => kernelsOf(p.steps).map((k) => k.op)))];
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(man));
    writeFileSync(join(dir, "cases.json"), JSON.stringify({ name, spec, overrides: over, kernels, runs, updates: updates.map((u, i) => ({ ...u, masters: after[i] })) }));
    (index["correctness"] as unknown[]).push({ name, dir: `correctness/${name}`, kernels });
    if (nvcc) jobs.push({ what: `correctness/${name}`, run: async () => copyLib(await buildCudaLibraryAsync(gen, { archs }), dir) });
    console.log(`  correctness/${name}: CPU references written (kernels: ${kernels.join(", ")})`);
  }

  // 2. Training: stories260K Q4_0, CPU trajectory here.
  const gguf = [join(repo, "shared/models/gguf/stories260K-q4_0.gguf"), "/work/shared/models/gguf/stories260K-q4_0.gguf"].find((p) => existsSync(p));
  if (skipTrain || !gguf) {
    console.log(`  training: skipped (${skipTrain ? "--skip-train" : "stories260K-q4_0.gguf not found"})`);
  } else {
    const dir = join(bundle, "training");
    mkdirSync(dir, { recursive: true });
    const bound = bindModel(gguf);
    const m = bound.module;
    const gen = TARGETS.cuda.generate(compileArtifact(m, { graphs: ["lm"] }));
    const cpu = createKernelBackend(bound, "cpu", { loss: "lm", threads: 2 });
    const vocab = m.config.find((c) => c.name === "vocab")!.value.value as number;
    const steps = quick ? 10 : 40;
    const B = 16, T = 128;
    const hyper = { eps: 1e-2, epsMode: "relative" as const, lr: 1e-3, clip: 100, dist: "gaussian" as const, floor: 1e-7, runSeed: 42n };
    // Text: the self-generated TinyStories of data/stories260K-self when present, else random tokens.
    const text = join(repo, "data", "stories260K-self");
    const useText = existsSync(join(text, "train.txt")) && existsSync(join(text, "eval.txt"));
    const tok = useText ? modelTokenizer(bound.checkpoint) : undefined;
    const trainDs = tok ? loadDataset(join(text, "train.txt"), tok, T) : undefined;
    const evalDs = tok ? loadDataset(join(text, "eval.txt"), tok, T) : undefined;
    const batchAt = (s: number): Batch =>
      trainDs ? makeBatch(trainDs, batchOrder(datasetSize(trainDs), B, hyper.runSeed, s)) : lmBatch(500 + s, B, T, vocab, 0.2);
    const evalBatch = evalDs ? makeBatch(evalDs, Array.from({ length: Math.min(B, datasetSize(evalDs)) }, (_, i) => i)) : lmBatch(99, B, T, vocab, 0.2);
    if (evalBatch["tokens"]!.shape[0] !== B || evalBatch["tokens"]!.shape[1] !== T) throw new Error(`training: eval batch of shape ${evalBatch["tokens"]!.shape}, expected [${B}, ${T}]`);
    const trajectory: unknown[] = [];
    const batches: string[] = [];
    const man = gen.manifest;
    writeWeights(join(dir, "weights.bin"), bound, man);
    for (let s = 0; s < steps; s++) {
      const batch = batchAt(s);
      if (batch["tokens"]!.shape[0] !== B || batch["tokens"]!.shape[1] !== T) throw new Error(`training: batch of shape ${batch["tokens"]!.shape}, expected [${B}, ${T}]`);
      batches.push(b64(batch["tokens"]!.data as Int32Array) + "|" + b64(batch["mask"]!.data as Float32Array));
      const [seedLo, seedHi] = stepSeedPairNum(hyper.runSeed, s);
      const p = { seedLo, seedHi, eps: hyper.eps, epsMode: hyper.epsMode, dist: hyper.dist };
      const lp = cpu.loss(batch, { ...p, sign: 1 });
      const lm = cpu.loss(batch, { ...p, sign: -1 });
      const g = projectedGradient(lp, lm, hyper.eps, hyper.clip);
      cpu.update({ seedLo, seedHi, d: g.clipped, lr: hyper.lr, epsMode: hyper.epsMode, dist: hyper.dist, floor: hyper.floor });
      trajectory.push({ step: s, seedLo, seedHi, loss_plus: lp, loss_minus: lm, d: g.clipped, eval_loss: cpu.loss(evalBatch) });
    }
    // The CPU library (for --selftest-cpu) starts from the original scales: rebuild it unchanged.
    const cpu0 = createKernelBackend(bindModel(gguf), "cpu", { loss: "lm", threads: 2 });
    copyFileSync(cpu0.library.path, join(dir, "cpu.so"));
    cpu0.close();
    cpu.close();
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(man));
    writeFileSync(join(dir, "train.json"), JSON.stringify({ model: gguf, data: useText ? "data/stories260K-self" : "random tokens", B, T, hyper: { ...hyper, runSeed: String(hyper.runSeed) }, eval: { tokens: b64(evalBatch["tokens"]!.data as Int32Array), mask: b64(evalBatch["mask"]!.data as Float32Array) }, batches, trajectory }));
    index["training"] = { dir: "training", steps };
    if (nvcc) jobs.push({ what: "training", run: async () => copyLib(await buildCudaLibraryAsync(gen, { archs }), dir) });
    console.log(`  training: CPU trajectory of ${steps} steps written (first eval ${(trajectory[0] as { eval_loss: number }).eval_loss.toFixed(4)}, last ${(trajectory[steps - 1] as { eval_loss: number }).eval_loss.toFixed(4)})`);
  }

  // 3. The fused dequant-perturb-matmul at Llama-2-7B shapes (and the unfused baseline).
  const tmpSpecDir = join(repo, ".qzo-cache", "gpu-specs");
  mkdirSync(tmpSpecDir, { recursive: true });
  const timeArch = archs.filter((a) => a !== "80").slice(0, 1);
  for (const fmt of MM_FORMATS) {
    for (const [N, K] of quick ? SHAPES.slice(0, 1) : SHAPES) {
      const specPath = join(tmpSpecDir, `mm_${fmt}_${N}x${K}.qzo`);
      writeFileSync(specPath, linearSpec(fmt, N, K));
      const m = check(specPath, {});
      for (const unfused of [false, true]) {
        const name = `${fmt}-${N}x${K}-${unfused ? "unfused" : "fused"}`;
        const dir = join(bundle, "matmul", name);
        mkdirSync(dir, { recursive: true });
        const gen = TARGETS.cuda.generate(compileArtifact(m, { graphs: ["lin"], pipeline: unfused ? "unfused" : "fused" }));
        writeFileSync(join(dir, "manifest.json"), JSON.stringify(gen.manifest));
        (index["matmul"] as unknown[]).push({ name, dir: `matmul/${name}`, fmt, N, K, unfused });
        if (nvcc) jobs.push({ what: `matmul/${name}`, run: async () => copyLib(await buildCudaLibraryAsync(gen, { archs: timeArch.length ? timeArch : archs }), dir) });
      }
    }
  }

  // 3b. Tuning variants of the large-M kernel (mm_pipe) at 4096x4096: shared stages x CTAs per SM.
  index["variants"] = [];
  for (const fmt of MM_FORMATS) {
    const m = check(join(tmpSpecDir, `mm_${fmt}_4096x4096.qzo`), {});
    const gen = TARGETS.cuda.generate(compileArtifact(m, { graphs: ["lin"] }));
    for (const [stages, minBlocks] of PIPE_VARIANTS) {
      const name = `${fmt}-4096x4096-s${stages}-b${minBlocks}`;
      const dir = join(bundle, "variants", name);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "manifest.json"), JSON.stringify(gen.manifest));
      (index["variants"] as unknown[]).push({ name, dir: `variants/${name}`, fmt, N: 4096, K: 4096, stages, minBlocks });
      const defines = { QZO_PIPE_STAGES: stages, QZO_PIPE_MIN_BLOCKS: minBlocks };
      if (nvcc) jobs.push({ what: `variants/${name}`, run: async () => copyLib(await buildCudaLibraryAsync(gen, { archs: timeArch.length ? timeArch : archs, defines }), dir) });
    }
  }

  // 4. A Llama-2-7B-shaped gptq_int4 model (random weights drawn on the GPU machine).
  {
    const dir = join(bundle, "step7b");
    mkdirSync(dir, { recursive: true });
    const m = check("models/llama.qzo", { weight: "gptq_int4", embed: "f32" });
    const gen = TARGETS.cuda.generate(compileArtifact(m, { graphs: ["lm"] }));
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(gen.manifest));
    index["step7b"] = { dir: "step7b", B: 16, T: 256 };
    if (nvcc) jobs.push({ what: "step7b", run: async () => copyLib(await buildCudaLibraryAsync(gen, { archs: timeArch.length ? timeArch : archs }), dir) });
  }

  writeFileSync(join(bundle, "index.json"), JSON.stringify(index, null, 1));
  if (nvcc) {
    console.log(`building ${jobs.length} CUDA libraries (${archs.join(",")}; timing libraries ${timeArch.join(",") || archs.join(",")})...`);
    await pool(jobs, Math.max(1, Number(process.env["QZO_NVCC_JOBS"] ?? 2)));
  } else {
    console.log("SKIPPED: building the CUDA libraries (no nvcc)");
  }
  console.log(`gpu-check prepare done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (!gpu.ok) {
    console.log(`no GPU here (${gpu.reason}): SKIPPED the GPU parts (bench/gpu-check.py): kernel checks against the CPU references, the GPU-vs-CPU training trajectory, the matmul timings and roofline, the 7B step time and peak memory`);
  }
}

function stepSeedPairNum(runSeed: bigint, step: number): [number, number] {
  const r = stepSeedPair(runSeed, step);
  return [r.lo, r.hi];
}

/** Every weight slot's host array, as the kernel backends pass them, one after the other. */
function writeWeights(path: string, model: StoredModel, man: ReturnType<typeof TARGETS.cuda.generate>["manifest"]): void {
  const { slots } = weightArrays(model, man, "CUDA");
  writeFileSync(path, Buffer.concat(slots.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))));
}

async function copyLib(lib: { path: string }, dir: string): Promise<void> {
  copyFileSync(lib.path, join(dir, "lib.so"));
}

/** A one-linear model at a given shape and format (the timing subject). */
function linearSpec(fmt: string, N: number, K: number): string {
  const file = fmt.startsWith("gptq") ? "gptq" : "gguf";
  return `# Generated by bench/gpu-check.ts: one ${fmt} linear of shape [${N}, ${K}].
import "${join(repo, "models", "formats", `${file}.qzo`)}"

model mm_${fmt}_${N}x${K} {
  config {
    n: int = ${N}
    k: int = ${K}
    weight: format = ${fmt}
  }
  param w: weight[n, k] { gguf "w.weight" }
  graph lin(x: f32[M, k]) -> f32[M, n] {
    return linear(x, w)
  }
}
`;
}

main().catch((e) => {
  console.error(`gpu-check prepare failed: ${(e as Error).message}`);
  process.exit(1);
});
