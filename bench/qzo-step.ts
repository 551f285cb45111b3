/**
 * QZO step benchmark (a program, not a test): the time and memory of one QZO
 * step on the CPU backend, fused (perturbation inside the kernels, one update
 * kernel) against the unfused baseline (every matmul dequantizes its whole
 * weight first, no fusion passes, and the scales are perturbed in place by
 * separate sweeps, the way the reference PyTorch implementations do it), and
 * forward throughput against llama.cpp on the same GGUF.
 *
 *   npm run bench                                   # every model, writes bench/results/cpu-<date>.{json,md}
 *   node dist/bench/qzo-step.js --only stories260K  # one model (comma-separated list allowed)
 *   node dist/bench/qzo-step.js --only stories260K --variant fused   # one child: JSON on stdout
 *
 * Options: --only M[,M]  --reps N (timed steps per variant; default per model)  --threads N (QZO step
 * threads, default all cores)  --fwd-threads N (our forward and llama.cpp, default 1)  --fwd-reps N
 * --no-forward  --no-write  --out DIR  --name STEM (results file stem, default cpu-<date>)  --variant baseline|fused|unfused|forward (child mode).
 *
 * Each variant runs in its own child process (node --expose-gc ... --variant V), which prints one
 * JSON line prefixed with MARK on stdout; memory is that child's peak RSS.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { createKernelBackend } from "../src/runtime/backends/kernel-backend.js";
import { packageRoot } from "../src/util/package-root.js";
import { timeLlamaCppForward, type LlamaCppResult } from "../src/runtime/bench/llama-cpp.js";
import { machineInfo, roundLoad } from "../src/runtime/bench/machine.js";
import { fusedStep, median, STEP, unfusedStep, type StepOut } from "../src/runtime/bench/step.js";
import {
  type BenchModelDef,
  type ModelName,
  MODEL_NAMES,
  SYNTHETIC_CONFIG,
  configInt,
  loadBenchModel,
  modelAvailable,
  modelDefs,
  plannedTempBytes,
  weightSizes,
  type WeightSizes,
} from "./models.js";
import { lmBatch } from "../src/runtime/bench/random-model.js";

const MARK = "@@QZO-BENCH@@ ";

const seedOf = (i: number) => 1000 + i;

type Variant = "baseline" | "fused" | "unfused" | "forward";

interface Args {
  only: ModelName[];
  variant?: Variant;
  reps?: number;
  threads: number;
  fwdThreads: number;
  fwdReps: number;
  forward: boolean;
  write: boolean;
  out: string;
  /** File stem of the results (default cpu-<date>). */
  name?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { only: [...MODEL_NAMES], threads: availableParallelism(), fwdThreads: 1, fwdReps: 10, forward: true, write: true, out: join(packageRoot(), "bench", "results") };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    const int = () => {
      const n = Number.parseInt(v(), 10);
      if (!(n > 0)) throw new Error(`${k} needs a positive integer`);
      return n;
    };
    if (k === "--only") {
      a.only = v().split(",").map((s) => {
        const m = MODEL_NAMES.find((x) => x.toLowerCase() === s.trim().toLowerCase());
        if (!m) throw new Error(`unknown model '${s}' (models: ${MODEL_NAMES.join(", ")})`);
        return m;
      });
    } else if (k === "--variant") {
      const x = v();
      if (!["baseline", "fused", "unfused", "forward"].includes(x)) throw new Error(`unknown variant '${x}'`);
      a.variant = x as Variant;
    } else if (k === "--reps") a.reps = int();
    else if (k === "--threads") a.threads = int();
    else if (k === "--fwd-threads") a.fwdThreads = int();
    else if (k === "--fwd-reps") a.fwdReps = int();
    else if (k === "--no-forward") a.forward = false;
    else if (k === "--no-write") a.write = false;
    else if (k === "--out") a.out = v();
    else if (k === "--name") a.name = v();
    else if (k === "--help" || k === "-h") {
      process.stdout.write(readFileSync(fileURLToPath(import.meta.url), "utf8").split("*/")[0]!.replace(/^\/\*\*|^ \* ?/gm, "") + "\n");
      process.exit(0);
    } else throw new Error(`unknown option '${k}'`);
  }
  return a;
}

// ---------------------------------------------------------------- memory (child side)

function procStatusKB(field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Collects garbage and resets the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0). */
function resetPeak(): { rssKB: number | null; reset: boolean } {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  let reset = false;
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    reset = true;
  } catch {
    reset = false;
  }
  return { rssKB: procStatusKB("VmRSS"), reset };
}

// ---------------------------------------------------------------- child

interface ChildResult {
  model: ModelName;
  variant: Variant;
  threads: number;
  loadMs: number;
  backendMs: number;
  maxRssKB: number;
  /** RSS when the peak mark was reset (after loading, backend creation, batch, gc), and the peak since. */
  rssAtResetKB: number | null;
  hwmSinceResetKB: number | null;
  peakReset: boolean;
  sizes?: WeightSizes;
  planned?: { formula: string; bytes: number };
  loss0?: number;
  first?: StepOut;
  stepsMs?: number[];
  relStepsMs?: number[];
  relFirst?: StepOut;
  parts?: { lossMs: number[]; perturbedLossMs?: number[]; sweepMs?: number[] };
  restore?: { maxAbs: number; maxRel: number; changed: number; total: number };
  ourForwardMs?: number[];
  llamaCpp?: LlamaCppResult;
}

async function child(args: Args, def: BenchModelDef, variant: Variant): Promise<ChildResult> {
  const t0 = performance.now();
  const model = loadBenchModel(def);
  const loadMs = performance.now() - t0;
  const m = model.module;
  const vocab = configInt(m, "vocab");
  const threads = variant === "forward" ? args.fwdThreads : args.threads;
  const t1 = performance.now();
  const be = createKernelBackend(model, "cpu", { loss: "lm", threads, pipeline: variant === "unfused" ? "unfused" : "fused" });
  const backendMs = performance.now() - t1;
  const out: ChildResult = { model: def.name, variant, threads, loadMs, backendMs, maxRssKB: 0, rssAtResetKB: null, hwmSinceResetKB: null, peakReset: false };
  out.sizes = weightSizes(model, be.manifest);
  const B = variant === "forward" ? 1 : def.batch;
  const T = def.seq;
  const batch = lmBatch(42, B, T, vocab);
  out.planned = variant === "forward" ? plannedTempBytes(m, be.manifest, "forward", { B, T }) : plannedTempBytes(m, be.manifest, "lm", { B, T });
  const reps = args.reps ?? def.reps;
  // For the restore check of the unfused step (allocated before the peak mark is reset).
  const snapshot = variant === "unfused" ? be.values().map((v) => Float32Array.from(v)) : [];
  // The kernel's peak mark is reset below; keep the lifetime peak seen so far (getrusage's maxRSS follows the mark).
  const maxRssBeforeKB = process.resourceUsage().maxRSS;
  const r = resetPeak();
  out.rssAtResetKB = r.rssKB;
  out.peakReset = r.reset;

  if (variant === "fused" || variant === "unfused") {
    out.loss0 = be.loss(batch);
    // Warm-up step (untimed), seed 999: the first step's losses are compared across variants.
    if (variant === "fused") out.first = fusedStep(be, batch, 999, "absolute");
    else {
      out.first = unfusedStep(be, batch, 999, () => {
        let maxAbs = 0;
        let maxRel = 0;
        let changed = 0;
        let total = 0;
        be.values().forEach((v, t) => {
          const s = snapshot[t]!;
          for (let i = 0; i < v.length; i++) {
            const e = Math.abs(v[i]! - s[i]!);
            if (e > 0) changed++;
            maxAbs = Math.max(maxAbs, e);
            if (s[i] !== 0) maxRel = Math.max(maxRel, e / Math.abs(s[i]!));
          }
          total += v.length;
        });
        out.restore = { maxAbs, maxRel, changed, total };
      });
    }
    out.stepsMs = [];
    for (let i = 0; i < reps; i++) {
      const s = performance.now();
      if (variant === "fused") fusedStep(be, batch, seedOf(i), "absolute");
      else unfusedStep(be, batch, seedOf(i));
      out.stepsMs.push(performance.now() - s);
    }
    // Parts of the step, timed alone: one loss (fused: with and without the in-kernel perturbation;
    // unfused: plain), and for the unfused baseline one in-place sweep over all scales.
    out.parts = { lossMs: [], ...(variant === "fused" ? { perturbedLossMs: [] } : { sweepMs: [] }) };
    for (let i = 0; i < reps; i++) {
      let s = performance.now();
      be.loss(batch);
      out.parts.lossMs.push(performance.now() - s);
      s = performance.now();
      if (variant === "fused") {
        be.loss(batch, { seedLo: seedOf(200 + i), seedHi: STEP.seedHi, sign: 1, eps: STEP.eps, epsMode: "absolute", dist: "gaussian" });
        out.parts.perturbedLossMs!.push(performance.now() - s);
      } else {
        // +eps z then -eps z: two sweeps, the scales end where they were (to fp32 rounding).
        be.update({ seedLo: seedOf(200 + i), seedHi: STEP.seedHi, d: -1, lr: STEP.eps, epsMode: "absolute", dist: "gaussian", floor: 0 });
        out.parts.sweepMs!.push(performance.now() - s);
        be.update({ seedLo: seedOf(200 + i), seedHi: STEP.seedHi, d: 1, lr: STEP.eps, epsMode: "absolute", dist: "gaussian", floor: 0 });
      }
    }
    if (variant === "fused") {
      out.relFirst = fusedStep(be, batch, 998, "relative");
      out.relStepsMs = [];
      for (let i = 0; i < reps; i++) {
        const s = performance.now();
        fusedStep(be, batch, seedOf(100 + i), "relative");
        out.relStepsMs.push(performance.now() - s);
      }
    }
  } else if (variant === "forward") {
    const tokens = batch["tokens"]!.data as Int32Array;
    for (let i = 0; i < 2; i++) be.forward(tokens, 1, T);
    out.ourForwardMs = [];
    for (let i = 0; i < args.fwdReps; i++) {
      const s = performance.now();
      be.forward(tokens, 1, T);
      out.ourForwardMs.push(performance.now() - s);
    }
    if (def.llamaCpp && def.gguf) out.llamaCpp = await timeLlamaCppForward(def.gguf, [...tokens], args.fwdThreads, 2, args.fwdReps);
  }
  out.hwmSinceResetKB = out.peakReset ? procStatusKB("VmHWM") : null;
  out.maxRssKB = Math.max(maxRssBeforeKB, process.resourceUsage().maxRSS);
  be.close();
  return out;
}

// ---------------------------------------------------------------- parent

function runChild(args: Args, model: ModelName, variant: Variant): ChildResult {
  const script = fileURLToPath(import.meta.url);
  const pass = ["--threads", String(args.threads), "--fwd-threads", String(args.fwdThreads), "--fwd-reps", String(args.fwdReps), ...(args.reps ? ["--reps", String(args.reps)] : [])];
  process.stderr.write(`  ${model} / ${variant} ...`);
  const t0 = performance.now();
  // The update kernel runs on OpenMP's default thread count: make it follow the variant's threads.
  // A fixed glibc mmap threshold: big buffers (the unfused baseline's dequantized weights) are mapped fresh
  // and returned on free, instead of reusing heap pages left resident by loading, so RSS sees them.
  const env = { ...process.env, OMP_NUM_THREADS: String(variant === "forward" ? args.fwdThreads : args.threads), MALLOC_MMAP_THRESHOLD_: process.env["MALLOC_MMAP_THRESHOLD_"] ?? "131072" };
  const r = spawnSync(process.execPath, ["--expose-gc", script, "--only", model, "--variant", variant, ...pass], { encoding: "utf8", env, stdio: ["ignore", "pipe", "inherit"], maxBuffer: 64 << 20 });
  const line = (r.stdout ?? "").split("\n").find((l) => l.startsWith(MARK));
  if (r.status !== 0 || !line) throw new Error(`child ${model}/${variant} failed (exit ${r.status}, signal ${r.signal}): ${(r.stdout ?? "").slice(-2000)}`);
  process.stderr.write(` ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return JSON.parse(line.slice(MARK.length)) as ChildResult;
}

interface ModelReport {
  model: ModelName;
  description: string;
  skipped?: string;
  batch?: [number, number];
  threads?: number;
  reps?: number;
  weights?: WeightSizes;
  fused?: { medianMs: number; stepsMs: number[]; tokensPerS: number; relMedianMs: number; relStepsMs: number[]; first: StepOut; loss0: number; lossMedianMs: number; perturbedLossMedianMs: number };
  unfused?: { medianMs: number; stepsMs: number[]; tokensPerS: number; first: StepOut; loss0: number; restore: ChildResult["restore"]; lossMedianMs: number; sweepMedianMs: number };
  ratio?: number;
  memory?: {
    baselineMaxRssMB: number;
    fused: MemRow;
    unfused: MemRow;
  };
  forward?: {
    threads: number;
    tokens: number;
    reps: number;
    oursMedianMs: number;
    oursTokensPerS: number;
    llamaCpp?: { release: string; binding: string; allLogitsMedianMs: number; allLogitsTokensPerS: number; noLogitsMedianMs: number; noLogitsTokensPerS: number; ratioOursOverLlama: number };
    llamaCppSkipped?: string;
  };
}

interface MemRow {
  maxRssMB: number;
  deltaOverBaselineMB: number;
  /** Peak RSS during the steps above the RSS right before them (VmHWM reset via /proc/self/clear_refs). */
  runPeakMB: number | null;
  plannedTempsMB: number;
  plannedFormula: string;
}

const MB = (kb: number) => Math.round((kb / 1024) * 10) / 10;
const MiB = (bytes: number) => Math.round((bytes / 2 ** 20) * 100) / 100;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

function memRow(c: ChildResult, base: ChildResult): MemRow {
  return {
    maxRssMB: MB(c.maxRssKB),
    deltaOverBaselineMB: MB(c.maxRssKB - base.maxRssKB),
    runPeakMB: c.hwmSinceResetKB !== null && c.rssAtResetKB !== null ? MB(c.hwmSinceResetKB - c.rssAtResetKB) : null,
    plannedTempsMB: MiB(c.planned!.bytes),
    plannedFormula: c.planned!.formula,
  };
}

function benchModel(args: Args, def: BenchModelDef): ModelReport {
  const rep: ModelReport = { model: def.name, description: def.description };
  if (!modelAvailable(def)) {
    rep.skipped = `${def.gguf} is absent`;
    process.stderr.write(`  ${def.name}: skipped (${rep.skipped})\n`);
    return rep;
  }
  const base = runChild(args, def.name, "baseline");
  const fused = runChild(args, def.name, "fused");
  const unfused = runChild(args, def.name, "unfused");
  const tokens = def.batch * def.seq;
  const fMed = median(fused.stepsMs!);
  const uMed = median(unfused.stepsMs!);
  rep.batch = [def.batch, def.seq];
  rep.threads = args.threads;
  rep.reps = fused.stepsMs!.length;
  rep.weights = fused.sizes!;
  rep.fused = { medianMs: r3(fMed), stepsMs: fused.stepsMs!.map(r3), tokensPerS: Math.round(tokens / (fMed / 1000)), relMedianMs: r3(median(fused.relStepsMs!)), relStepsMs: fused.relStepsMs!.map(r3), first: fused.first!, loss0: fused.loss0!, lossMedianMs: r3(median(fused.parts!.lossMs)), perturbedLossMedianMs: r3(median(fused.parts!.perturbedLossMs!)) };
  rep.unfused = { medianMs: r3(uMed), stepsMs: unfused.stepsMs!.map(r3), tokensPerS: Math.round(tokens / (uMed / 1000)), first: unfused.first!, loss0: unfused.loss0!, restore: unfused.restore, lossMedianMs: r3(median(unfused.parts!.lossMs)), sweepMedianMs: r3(median(unfused.parts!.sweepMs!)) };
  rep.ratio = Math.round((uMed / fMed) * 100) / 100;
  rep.memory = { baselineMaxRssMB: MB(base.maxRssKB), fused: memRow(fused, base), unfused: memRow(unfused, base) };
  if (args.forward && def.gguf) {
    const fw = runChild(args, def.name, "forward");
    const oMed = median(fw.ourForwardMs!);
    const ours = def.seq / (oMed / 1000);
    rep.forward = { threads: args.fwdThreads, tokens: def.seq, reps: fw.ourForwardMs!.length, oursMedianMs: r3(oMed), oursTokensPerS: Math.round(ours) };
    const l = fw.llamaCpp;
    if (l?.available) {
      const a = median(l.allLogitsMs);
      const n = median(l.noLogitsMs);
      rep.forward.llamaCpp = {
        release: l.release,
        binding: l.bindingVersion,
        allLogitsMedianMs: r3(a),
        allLogitsTokensPerS: Math.round(def.seq / (a / 1000)),
        noLogitsMedianMs: r3(n),
        noLogitsTokensPerS: Math.round(def.seq / (n / 1000)),
        ratioOursOverLlama: Math.round((ours / (def.seq / (a / 1000))) * 100) / 100,
      };
    } else rep.forward.llamaCppSkipped = l ? l.reason : "not compared";
  }
  return rep;
}

const fmtMs = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`);
const fmtInt = (x: number) => x.toLocaleString("en-US");

function markdown(results: { machine: ReturnType<typeof machineInfo>; models: ModelReport[]; settings: Record<string, unknown> }): string {
  const mc = results.machine;
  const L: string[] = [];
  L.push(`# QZO step benchmark, CPU backend (${mc.date.slice(0, 10)})`, "");
  L.push(`Machine: ${mc.cpu}, ${mc.cores} cores, ${mc.memoryGiB} GiB, Node ${mc.node}, ${mc.gxx}, ${mc.platform}; load average at start ${mc.loadavgAtStart.join(" / ")}${"loadavgAtEnd" in mc ? `, at end ${(mc as { loadavgAtEnd: number[] }).loadavgAtEnd.join(" / ")}` : ""}.`, "");
  const s = results.settings;
  L.push(`One QZO step = L(S+eps z), L(S-eps z), d, update. Absolute eps ${s["eps"]}, lr ${s["lr"]}, clip ${s["clip"]}, gaussian z, QZO step on ${s["threads"]} thread(s). Medians of warm steps (one untimed warm-up step first).`, "");
  L.push("| model | batch | reps | fused step | unfused step | unfused/fused | fused tok/s | unfused tok/s | fused (relative eps) |");
  L.push("|---|---|---|---|---|---|---|---|---|");
  for (const m of results.models) {
    if (m.skipped) {
      L.push(`| ${m.model} | skipped: ${m.skipped} | | | | | | | |`);
      continue;
    }
    L.push(`| ${m.model} | ${m.batch![0]} x ${m.batch![1]} | ${m.reps} | ${fmtMs(m.fused!.medianMs)} | ${fmtMs(m.unfused!.medianMs)} | **${m.ratio!.toFixed(2)}x** | ${fmtInt(m.fused!.tokensPerS)} | ${fmtInt(m.unfused!.tokensPerS)} | ${fmtMs(m.fused!.relMedianMs)} |`);
  }
  L.push("", "Where the time goes (medians of the parts timed alone, same children): a fused step is 2 perturbed fused losses + 1 update kernel; an unfused step is 2 unfused losses + 4 in-place sweeps (3 perturbation sweeps + the update).", "");
  L.push("| model | fused loss, perturbed | fused loss, unperturbed | unfused loss | one in-place sweep | 2 x unfused loss / 2 x perturbed fused loss |");
  L.push("|---|---|---|---|---|---|");
  for (const m of results.models) {
    if (m.skipped) continue;
    L.push(`| ${m.model} | ${fmtMs(m.fused!.perturbedLossMedianMs)} | ${fmtMs(m.fused!.lossMedianMs)} | ${fmtMs(m.unfused!.lossMedianMs)} | ${fmtMs(m.unfused!.sweepMedianMs)} | ${(m.unfused!.lossMedianMs / m.fused!.perturbedLossMedianMs).toFixed(2)}x |`);
  }
  L.push("", "Memory (MB = MiB). Peak RSS of each variant's child minus a baseline child that loads the model and opens the backend but runs nothing; run peak = the child's peak RSS during the steps above its RSS just before them; planned temporaries = the loss graph's manifest peakBytes at this config and batch (the unfused baseline also holds one dequantized f32 weight at a time, listed separately).", "");
  L.push("| model | packed weights | float weights | scales (trainable) | baseline peak RSS | fused: peak - baseline | fused: run peak | fused: planned temps | unfused: peak - baseline | unfused: run peak | unfused: planned temps | unfused: largest f32 weight |");
  L.push("|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const m of results.models) {
    if (m.skipped) continue;
    const w = m.weights!;
    const mm = m.memory!;
    const rp = (x: number | null) => (x === null ? "n/a" : `${x} MB`);
    L.push(
      `| ${m.model} | ${MiB(w.packedBytes)} MB | ${MiB(w.floatBytes)} MB | ${fmtInt(w.trainableCount)} (${MiB(4 * w.trainableCount)} MB f32) | ${mm.baselineMaxRssMB} MB | ${mm.fused.deltaOverBaselineMB} MB | ${rp(mm.fused.runPeakMB)} | ${mm.fused.plannedTempsMB} MB | ${mm.unfused.deltaOverBaselineMB} MB | ${rp(mm.unfused.runPeakMB)} | ${mm.unfused.plannedTempsMB} MB | ${MiB(w.largestDequantBytes)} MB |`,
    );
  }
  L.push("", `Forward throughput, 1 x 128 tokens in one batch, both on ${s["fwdThreads"]} thread(s): our fused forward graph (logits at every position) vs llama.cpp (controlledEvaluate with logits at every position; "no logits" = evaluateWithoutGeneratingNewTokens).`, "");
  L.push("| model | ours | llama.cpp (all logits) | ours / llama.cpp | llama.cpp (no logits) |");
  L.push("|---|---|---|---|---|");
  for (const m of results.models) {
    if (m.skipped || !m.forward) continue;
    const f = m.forward;
    if (f.llamaCpp) {
      L.push(`| ${m.model} | ${fmtInt(f.oursTokensPerS)} tok/s (${fmtMs(f.oursMedianMs)}) | ${fmtInt(f.llamaCpp.allLogitsTokensPerS)} tok/s (${fmtMs(f.llamaCpp.allLogitsMedianMs)}) | **${f.llamaCpp.ratioOursOverLlama.toFixed(2)}x** | ${fmtInt(f.llamaCpp.noLogitsTokensPerS)} tok/s (${fmtMs(f.llamaCpp.noLogitsMedianMs)}) |`);
    } else {
      L.push(`| ${m.model} | ${fmtInt(f.oursTokensPerS)} tok/s (${fmtMs(f.oursMedianMs)}) | skipped: ${f.llamaCppSkipped} | | |`);
    }
  }
  const llama = results.models.find((m) => m.forward?.llamaCpp)?.forward?.llamaCpp;
  if (llama) L.push("", `llama.cpp: release ${llama.release} via node-llama-cpp ${llama.binding} (prebuilt CPU binary).`);
  L.push("", "Sanity (first, untimed step, same seed in both variants; the losses should agree to fp32 rounding):", "");
  L.push("| model | loss | fused L+ / L- / d | unfused L+ / L- / d | unfused restore error (max abs / max rel; scales changed) |");
  L.push("|---|---|---|---|---|");
  for (const m of results.models) {
    if (m.skipped) continue;
    const f = m.fused!.first;
    const u = m.unfused!.first;
    const rs = m.unfused!.restore;
    L.push(`| ${m.model} | ${m.fused!.loss0.toFixed(5)} | ${f.lp.toFixed(6)} / ${f.lm.toFixed(6)} / ${f.d.toPrecision(5)} | ${u.lp.toFixed(6)} / ${u.lm.toFixed(6)} / ${u.d.toPrecision(5)} | ${rs ? `${rs.maxAbs.toExponential(2)} / ${rs.maxRel.toExponential(2)}; ${fmtInt(rs.changed)} of ${fmtInt(rs.total)}` : "n/a"} |`);
  }
  const notes = results.models.filter((m) => m.skipped || m.forward?.llamaCppSkipped || m.model === "synthetic");
  if (notes.length) {
    L.push("", "Notes:");
    for (const m of notes) {
      if (m.skipped) L.push(`- ${m.model}: skipped, ${m.skipped}.`);
      if (m.forward?.llamaCppSkipped) L.push(`- ${m.model}: llama.cpp comparison skipped: ${m.forward.llamaCppSkipped}.`);
      if (m.model === "synthetic" && !m.skipped) L.push(`- synthetic (${JSON.stringify(SYNTHETIC_CONFIG)}): ~${Math.round(m.weights!.trainableCount * 32 / 1e6)}M quantized weights, big for 2 cores; batch 1 x 128 and ${m.reps} timed steps per variant; random weights, so no llama.cpp comparison.`);
    }
  }
  return L.join("\n") + "\n";
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const defs = modelDefs().filter((d) => args.only.includes(d.name));
  if (args.variant) {
    if (defs.length !== 1) throw new Error("--variant needs exactly one model in --only");
    const res = await child(args, defs[0]!, args.variant);
    process.stdout.write(`${MARK}${JSON.stringify(res)}\n`);
    return;
  }
  const mc = machineInfo();
  process.stderr.write(`QZO step benchmark on ${mc.cpu} (${mc.cores} cores), QZO step threads ${args.threads}, forward threads ${args.fwdThreads}\n`);
  const models: ModelReport[] = [];
  for (const d of defs) models.push(benchModel(args, d));
  const machineOut = { ...mc, loadavgAtEnd: roundLoad() };
  const settings = { eps: STEP.eps, epsMode: "absolute", lr: STEP.lr, clip: STEP.clip, floor: STEP.floor, relativeEps: STEP.relEps, relativeLr: STEP.relLr, dist: "gaussian", threads: args.threads, fwdThreads: args.fwdThreads, fwdReps: args.fwdReps };
  const results = { machine: machineOut, settings, models };
  const md = markdown(results);
  process.stdout.write(md);
  if (args.write) {
    mkdirSync(args.out, { recursive: true });
    const stem = args.name ?? `cpu-${mc.date.slice(0, 10)}`;
    writeFileSync(join(args.out, `${stem}.json`), JSON.stringify(results, null, 2) + "\n");
    writeFileSync(join(args.out, `${stem}.md`), md);
    process.stderr.write(`wrote ${join(args.out, `${stem}.json`)} and .md\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
