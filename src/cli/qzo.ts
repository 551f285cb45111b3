#!/usr/bin/env node
/**
 * qzo: the runtime command. `generate` continues a prompt and `perplexity`
 * scores a text, on a llama2.c checkpoint, a GGUF file or a Hugging Face
 * directory; the spec is chosen from the file's architecture unless --spec
 * names one. `train` fine-tunes the quantization scales with QZO, `export`
 * writes a model with a checkpoint's scales, `eval` scores a data set.
 *
 * The commands parse flags and call the runtime (a training run is
 * src/runtime/train/run.ts). `qzo train` exit codes: 0 done; 1 bad input; 2
 * bad usage (including an --out that already holds a run without --resume);
 * 130 stopped by Ctrl-C (SIGINT) or SIGTERM after finishing the current step
 * and saving RUN_DIR/scales.safetensors (no model is exported; `--resume`
 * continues the run).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { loadDataset } from "../runtime/data/dataset.js";
import { teacherTargets, tokenizerSha256, writeDistillData } from "../runtime/data/distill.js";
import { exportCheckpoint } from "../runtime/export/export.js";
import { DEVICES, selectBackend, type Device } from "../runtime/backends/select.js";
import { modelSha256 } from "../runtime/train/checkpoint.js";
import { DEFAULT_SEQ_LEN, evaluateData, evaluateLatents, runTraining, vocabOf, windowLength } from "../runtime/train/run.js";
import { loadLatents, readsLatents } from "../runtime/data/latents.js";
import { sampleLatents, teacherVelocities, velocityOf, writeLatents } from "../runtime/infer/diffusion.js";
import { loadScalesCheckpoint } from "../runtime/train/checkpoint.js";
import { CHART_FILE, writeReport } from "../runtime/report/run-report.js";
import { runBench, type BenchDevice } from "../runtime/bench/suite.js";
import { formatBench, recordBench } from "../runtime/bench/table.js";
import { generate } from "../runtime/infer/generate.js";
import { perplexity } from "../runtime/infer/perplexity.js";
import { bindModel } from "../runtime/load/bind.js";
import { modelTokenizer } from "../runtime/load/tokenizer.js";
import { QzoError } from "../util/errors.js";
import { collectSet, runCli } from "./run-cli.js";
import { quantizeToAqlm } from "../runtime/quant/aqlm-hf.js";
import { quantizeToBnbNf4 } from "../runtime/quant/nf4-bnb.js";
import { formatPlans, parameterCount, planMemories, type PlanDevice } from "../runtime/plan/memory-plan.js";
import { compileModule } from "../compiler/check.js";
import { CollectiveError } from "../runtime/parallel/communicator.js";
import { connectMpi } from "../runtime/parallel/mpi.js";
import { launchedWorld } from "../runtime/parallel/world.js";

/** A numeric flag in [min, max] (max: a ceiling that keeps one process's memory bounded). */
function number(kind: "int" | "float", min: number, max = kind === "int" ? 2 ** 31 - 1 : Number.MAX_VALUE) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || (kind === "int" && !Number.isInteger(n)) || n < min || n > max) {
      throw new InvalidArgumentError(`expected ${kind === "int" ? "an integer" : "a number"} from ${min} to ${max}, found '${v}'`);
    }
    return n;
  };
}

/** `--dim NAME=VALUE`, repeatable: a positive integer per name. */
function collectDims(v: string, prev: Record<string, number>): Record<string, number> {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)=(\d+)$/.exec(v);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > MAX_SEQ) throw new InvalidArgumentError(`expected NAME=VALUE with a positive integer value up to ${MAX_SEQ}, found '${v}'`);
  return { ...prev, [m[1]!]: Number(m[2]) };
}

/** Ceilings of the size flags: rows of a batch, tokens of a window, samples, teacher buckets, directions. */
const MAX_BATCH = 65536;
const MAX_SEQ = 1 << 20;
const MAX_COUNT = 4096;
const MAX_DIRECTIONS = 1024;

interface ModelOpts {
  device: Device;
  model: string;
  tokenizer?: string;
  spec?: string;
  set: Record<string, string>;
}

function modelOptions(c: Command): Command {
  return c
    .requiredOption("--model <path>", "llama2.c .bin, .gguf file, or Hugging Face directory")
    .option("--tokenizer <path>", "tokenizer file (tokenizer.bin, .model, tokenizer.json); GGUF and HF models carry their own")
    .option("--spec <file>", "the .qzo spec (default: models/<architecture>.qzo)")
    .option("--set <key=value>", "override a config entry (repeatable)", collectSet, {})
    .addOption(new Option("--device <device>", "cuda: generated CUDA kernels (an NVIDIA GPU); cpu: generated C++ kernels; interp: the reference interpreter; auto: cuda when there is a GPU, else cpu when it can be built, else interp").choices([...DEVICES]).default("auto"));
}

function load(o: ModelOpts) {
  const bound = bindModel(o.model, { ...(o.spec ? { spec: o.spec } : {}), set: o.set });
  return { bound, tok: modelTokenizer(bound.checkpoint, o.tokenizer, vocabOf(bound.module)) };
}

/** This process's place in an mpirun job, or undefined when it runs alone. */
const world = launchedWorld();

const program = new Command("qzo").description("QZO runtime: fine-tuning, evaluation, generation and export of quantized models").version("0.1.0");

modelOptions(program.command("generate").description("continue a prompt (greedy at temperature 0)"))
  .option("--prompt <text>", "the prompt", "")
  .option("-n, --steps <n>", "tokens to generate (BOS ends early)", number("int", 1, MAX_SEQ), 256)
  .option("--temperature <t>", "sampling temperature; 0 is greedy", number("float", 0), 1)
  .option("--seed <s>", "sampling seed", number("int", 0), 0)
  .option("--count <n>", "independent samples, generated as one batch and printed separated by blank lines", number("int", 1, MAX_COUNT), 1)
  .action((o: ModelOpts & { prompt: string; steps: number; temperature: number; seed: number; count: number }) => {
    const { bound, tok } = load(o);
    const { forward } = selectBackend(bound, bound.module.train.loss || "lm", o.device);
    const r = generate(bound.module, forward, tok, {
      prompt: o.prompt,
      steps: o.steps,
      temperature: o.temperature,
      seed: o.seed,
      count: o.count,
      ...(o.count === 1 ? { onText: (s: string) => process.stdout.write(s) } : {}),
    });
    process.stdout.write(o.count === 1 ? "\n" : r.texts.map((t) => t.trim()).join("\n\n") + "\n");
  });

modelOptions(program.command("perplexity").description("mean negative log-likelihood of a text, as one sequence after BOS"))
  .requiredOption("--text <file>", "the text file")
  .option("--json", "print one JSON line {tokens, nll, ppl}")
  .action((o: ModelOpts & { text: string; json?: boolean }) => {
    if (!existsSync(o.text)) throw new QzoError(`${o.text}: no such file`);
    const { bound, tok } = load(o);
    const { backend } = selectBackend(bound, "lm", o.device);
    const r = perplexity(bound.module, (b) => backend.loss(b), tok, readFileSync(o.text, "utf8"), o.text);
    if (o.json) process.stdout.write(JSON.stringify(r) + "\n");
    else process.stdout.write(`tokens ${r.tokens}  nll ${r.nll.toFixed(6)} nats/token  ppl ${r.ppl.toFixed(4)}\n`);
  });

// ------------------------------------------------------------------ training

/** A u64 seed: decimal or 0x-hex. */
function seedArg(v: string): bigint {
  if (!/^(0x[0-9a-fA-F]{1,16}|\d{1,20})$/.test(v) || BigInt(v) >= 1n << 64n) {
    throw new InvalidArgumentError(`expected a u64 seed (decimal or 0x hex), found '${v}'`);
  }
  return BigInt(v);
}

function choice<T extends string>(...allowed: T[]) {
  return (v: string): T => {
    if (!(allowed as string[]).includes(v)) throw new InvalidArgumentError(`expected one of ${allowed.join(", ")}, found '${v}'`);
    return v as T;
  };
}

interface TrainCliOpts extends ModelOpts {
  data: string;
  eval?: string;
  out: string;
  resume?: boolean;
  allowChanges?: boolean;
  steps?: number;
  lr?: number;
  eps?: number;
  relativeEps?: boolean;
  absoluteEps?: boolean;
  clip?: number;
  batch?: number;
  directions?: number;
  z?: "gaussian" | "rademacher";
  tensorPeriod?: number;
  momentum?: number;
  stepSize?: "constant" | "rms";
  scaleFloor?: number;
  schedule?: "constant" | "linear" | "cosine";
  warmup?: number;
  evalEvery?: number;
  seed?: bigint;
  seqLen?: number;
  reference: Record<string, number>;
  checkEvery: number;
}

/** Parses repeated `--reference label=loss`. */
function collectReference(value: string, prev: Record<string, number>): Record<string, number> {
  const m = /^([^=]+)=(.+)$/.exec(value);
  const v = m ? Number(m[2]) : Number.NaN;
  if (!m || !Number.isFinite(v)) throw new InvalidArgumentError(`expected label=loss with a finite loss, found '${value}'`);
  return { ...prev, [m[1]!]: v };
}

modelOptions(program.command("train").description("fine-tune the quantization scales with QZO (zeroth-order, two forward passes per step)"))
  .requiredOption("--data <file>", "training data: text, or JSON lines ({\"text\"} or {\"prompt\", \"candidates\", \"label\"})")
  .option("--eval <file>", "held-out data (default: the last 10% of --data)")
  .requiredOption("--out <dir>", "the run directory (log.jsonl, scales.safetensors, best.safetensors, run.json, model.*)")
  .option("--resume", "continue the run in --out from its scales.safetensors")
  .option("--allow-changes", "with --resume: accept data or hyperparameters that differ from the run's own")
  .option("--steps <n>", "number of steps", number("int", 0))
  .option("--lr <x>", "learning rate", number("float", 0))
  .option("--eps <x>", "perturbation size", number("float", 0))
  .option("--relative-eps", "perturb and step relative to |scale| (S +- eps |S| z)")
  .option("--absolute-eps", "perturb and step by absolute amounts (S +- eps z)")
  .option("--clip <c>", "DDC threshold: the projected gradient is clamped to [-C, C]", number("float", 0))
  .option("--batch <b>", "examples per step", number("int", 1, MAX_BATCH))
  .option("--directions <k>", "random directions per step (update averaged over them)", number("int", 1, MAX_DIRECTIONS))
  .option("--z <dist>", "direction distribution: gaussian or rademacher", choice("gaussian", "rademacher"))
  .option("--tensor-period <p>", "block-coordinate directions: each moves one in every P trainable tensors, from an offset its seed picks (1: all)", number("int", 1, 2 ** 31 - 1))
  .option("--momentum <b>", "heavy-ball momentum of the step estimates, kept as the last steps' seeds (0: none)", number("float", 0, 0.999))
  .option("--step-size <kind>", "constant: lr as given; rms: lr divided by a running rms of the projected gradient", choice("constant", "rms"))
  .option("--scale-floor <f>", "sign-preserving floor on |scale|", number("float", 0))
  .option("--schedule <kind>", "learning-rate schedule: constant, linear or cosine", choice("constant", "linear", "cosine"))
  .option("--warmup <n>", "warmup steps", number("int", 0))
  .option("--eval-every <n>", "evaluate and checkpoint every N steps (0: only at the end)", number("int", 0))
  .option("--seed <s>", "run seed (u64, decimal or 0x hex)", seedArg)
  .option("--seq-len <t>", `tokens per sequence (default ${DEFAULT_SEQ_LEN}, at most the model's context)`, number("int", 2, MAX_SEQ))
  .option("--reference <label=loss>", "a known loss to draw in loss.svg and the report (repeatable), e.g. f32=1.2020", collectReference, {})
  .option("--check-every <n>", "under mpirun: compare a hash of the scales across ranks every N steps (and at the end)", number("int", 1), 100)
  .action(async (o: TrainCliOpts) => {
    if (o.relativeEps && o.absoluteEps) throw new QzoError("--relative-eps and --absolute-eps exclude each other", 2);
    // One GPU per rank of a machine, unless the user chose them.
    if (world && world.localSize > 1 && process.env["CUDA_VISIBLE_DEVICES"] === undefined) process.env["CUDA_VISIBLE_DEVICES"] = String(world.localRank);
    const comm = world ? connectMpi(world) : undefined;
    const r = await runTraining({
      model: o.model,
      ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}),
      ...(o.spec ? { spec: o.spec } : {}),
      set: o.set,
      device: o.device,
      data: o.data,
      ...(o.eval ? { eval: o.eval } : {}),
      out: o.out,
      resume: o.resume === true,
      allowChanges: o.allowChanges === true,
      flags: {
        eps: o.eps,
        epsMode: o.relativeEps ? "relative" : o.absoluteEps ? "absolute" : undefined,
        lr: o.lr,
        schedule: o.schedule,
        warmup: o.warmup,
        clip: o.clip,
        directions: o.directions,
        z: o.z,
        tensorPeriod: o.tensorPeriod,
        momentum: o.momentum,
        stepSize: o.stepSize,
        scaleFloor: o.scaleFloor,
        batch: o.batch,
        steps: o.steps,
        evalEvery: o.evalEvery,
        seed: o.seed,
      },
      ...(o.seqLen !== undefined ? { seqLen: o.seqLen } : {}),
      command: ["qzo", ...process.argv.slice(2)],
      handleSignals: true,
      references: o.reference,
      checkEvery: o.checkEvery,
      ...(comm ? { comm } : {}),
    }).catch((e: unknown) => {
      if (e instanceof CollectiveError) comm?.finalize();
      throw e;
    });
    comm?.finalize();
    process.exitCode = r.exitCode;
  });

program
  .command("plan")
  .description("the memory of a QZO step and of inference on the CPU and CUDA backends, term by term, from a spec and its config (no weights needed)")
  .requiredOption("--spec <file>", "the .qzo spec")
  .option("--set <key=value>", "override a config entry (repeatable), e.g. the shape of a larger model", collectSet, {})
  .requiredOption("--batch <b>", "sequences (or images) per step", number("int", 1, MAX_BATCH))
  .option("--seq <t>", "tokens per sequence (a language model)", number("int", 1, MAX_SEQ))
  .option("--dim <name=value>", "another dimension of the graph's inputs, e.g. a diffusion transformer's patch grid h, w and text length L (repeatable)", collectDims, {})
  .addOption(new Option("--device <device>", "plan one backend (default: both)").choices(["cpu", "cuda"]))
  .option("--threads <n>", "CPU threads (each has its own kernel scratch)", number("int", 1, 1024), 1)
  .option("--json", "print the plans as one JSON object")
  .action((o: { spec: string; set: Record<string, string>; batch: number; seq?: number; dim: Record<string, number>; device?: PlanDevice; threads: number; json?: boolean }) => {
    if (!existsSync(o.spec)) throw new QzoError(`${o.spec}: no such file`);
    const m = compileModule(o.spec, o.set);
    const opts = { batch: o.batch, ...(o.seq !== undefined ? { seq: o.seq } : {}), dims: o.dim, threads: o.threads };
    const plans = planMemories(m, o.device ? [o.device] : ["cpu", "cuda"], opts);
    process.stdout.write(o.json ? JSON.stringify({ model: m.name, parameters: parameterCount(m), ...opts, plans }) + "\n" : formatPlans(m, plans, opts) + "\n");
  });

program
  .command("quantize")
  .description(
    "quantize a float model: into AQLM's 2x8 additive codebooks (the layout of AQLM's Hugging Face checkpoints), or into bitsandbytes NF4 (the layout diffusers and transformers save)",
  )
  .requiredOption("--model <path>", "a float model: a Hugging Face or diffusers directory (aqlm_2x8 also: a .gguf file or a llama2.c .bin)")
  .option("--spec <file>", "the .qzo spec (default: models/<architecture>.qzo)")
  .option("--set <key=value>", "nf4: override a config entry, e.g. outer=nf4 to quantize every linear of models/sd3.qzo (repeatable)", collectSet, {})
  .requiredOption("--out <dir>", "the new model directory (must not exist or be empty)")
  .addOption(new Option("--format <name>", "the quantization format (nf4: the weights of the spec's format entries that are nf4)").choices(["aqlm_2x8", "nf4"]).default("aqlm_2x8"))
  .option("--seed <n>", "the quantizer's seed", number("int", 0), 0)
  .option("--rounds <n>", "alternating refinement rounds (codes, then codebooks)", number("int", 0, 1000))
  .action((o: { model: string; out: string; spec?: string; set: Record<string, string>; format: string; seed: number; rounds?: number }) => {
    if (o.format === "nf4") {
      const r = quantizeToBnbNf4(o.model, o.out, { ...(o.spec ? { spec: o.spec } : {}), set: o.set, log: (line) => process.stderr.write(line + "\n") });
      process.stderr.write(`qzo quantize: ${r.quantized.length} linear weights in bitsandbytes nf4, ${r.kept.length} kept as stored; wrote ${o.out}\n`);
      return;
    }
    if (Object.keys(o.set).length) throw new QzoError("--set: aqlm_2x8 quantizes every decoder-layer linear; --set chooses the nf4 weights", 2);
    const r = quantizeToAqlm(o.model, o.out, { seed: o.seed, ...(o.spec ? { spec: o.spec } : {}), ...(o.rounds !== undefined ? { rounds: o.rounds } : {}), log: (line) => process.stderr.write(line + "\n") });
    process.stderr.write(`qzo quantize: ${r.quantized.length} linear weights in aqlm_2x8 (relative error ${r.relativeError.toExponential(3)}), ${r.kept.length} kept as stored; wrote ${o.out}\n`);
  });

program
  .command("report")
  .description("write a run's loss chart and a self-contained HTML page of its settings, curves and results")
  .argument("<run-dir>", "a qzo train run directory")
  .option("--out <file>", "the page (default RUN_DIR/report.html)")
  .action((runDir: string, o: { out?: string }) => {
    const page = writeReport(runDir, ...(o.out ? [o.out] : []));
    process.stderr.write(`qzo report: wrote ${page} and ${join(runDir, CHART_FILE)}\n`);
  });

program
  .command("bench")
  .description("time the fused kernels against the unfused baseline and the device's measured roofline; on CPU also a 512-token forward against llama.cpp")
  .addOption(new Option("--device <device>", "the device to measure").choices(["cpu", "cuda"]).default("cpu"))
  .option("--model <path>", "the QZO step's model file (default: the bundled stories260K Q4_0 GGUF)")
  .option("--spec <file>", "the QZO step's spec (with --model: how to read it; alone: random weights at its config)")
  .option("--set <key=value>", "override a config entry of the step's spec (repeatable)", collectSet, {})
  .option("--steps <n>", "timed QZO steps per variant", number("int", 1, MAX_COUNT), 5)
  .option("--threads <n>", "CPU threads (default: all cores)", number("int", 1, 1024))
  .option("--no-forward", "skip the forward comparison with llama.cpp")
  .option("--quick", "small sizes everywhere: a smoke test in seconds, not a measurement")
  .option("--json", "print the report as one JSON object")
  .option("--record <dir>", "also write the report to DIR/qzo-bench-<device>-<date>.json and .txt")
  .action(async (o: { device: BenchDevice; model?: string; spec?: string; set: Record<string, string>; steps: number; threads?: number; forward: boolean; quick?: boolean; json?: boolean; record?: string }) => {
    const report = await runBench({
      device: o.device,
      ...(o.threads ? { threads: o.threads } : {}),
      ...(o.model ? { model: o.model } : {}),
      ...(o.spec ? { spec: o.spec } : {}),
      set: o.set,
      steps: o.steps,
      quick: o.quick ?? false,
      noForward: !o.forward,
      log: (line) => process.stderr.write(`qzo bench: ${line}\n`),
    });
    const text = formatBench(report);
    process.stdout.write(o.json ? JSON.stringify(report) + "\n" : text);
    if (o.record) process.stderr.write(`qzo bench: wrote ${recordBench(o.record, report, text).join(" and ")}\n`);
  });

modelOptions(
  program
    .command("distill")
    .description("write a teacher model's top-K next-token distributions over language-modelling data, or its velocity predictions over latent data (the data of the distill loss)"),
)
  .requiredOption("--data <file>", "text or JSON lines ({\"text\"}), cut into windows as qzo train does; or latents (safetensors)")
  .requiredOption("--out <file>", "the distillation data file (safetensors)")
  .option("--top-k <k>", "teacher buckets per position (the rest of its mass is one more bucket)", number("int", 1, MAX_COUNT), 16)
  .option("--seq-len <t>", `tokens per window (default ${DEFAULT_SEQ_LEN}, at most the model's context)`, number("int", 2, MAX_SEQ))
  .option("--batch <b>", "windows per forward pass", number("int", 1, MAX_BATCH), 16)
  .action((o: ModelOpts & { data: string; out: string; topK: number; seqLen?: number; batch: number }) => {
    const bound = bindModel(o.model, { ...(o.spec ? { spec: o.spec } : {}), set: o.set });
    const m = bound.module;
    if (readsLatents(m)) {
      const ds = loadLatents(o.data);
      const t0 = Date.now();
      const tensors = teacherVelocities(ds, velocityOf(m, selectBackend(bound, m.train.loss, o.device), bound.weights), BigInt(m.train.seed), o.batch);
      writeLatents(o.out, tensors, { teacher: o.model, teacherSha256: modelSha256(o.model), source: o.data });
      process.stderr.write(`qzo distill: ${ds.size} examples of ${m.name} in ${((Date.now() - t0) / 1000).toFixed(1)} s; wrote ${o.out} (with the noise, sigmas and the teacher's velocity as target)\n`);
      return;
    }
    const tok = modelTokenizer(bound.checkpoint, o.tokenizer, vocabOf(m));
    const { ctx, seqLen } = windowLength(m, o.seqLen);
    if (o.topK > tok.vocabSize) throw new QzoError(`--top-k ${o.topK} exceeds the vocabulary of ${tok.vocabSize} tokens`, 2);
    const ds = loadDataset(o.data, tok, seqLen, ctx);
    if (ds.kind !== "lm") throw new QzoError(`${o.data}: ${ds.kind} data: expected language-modelling text to distill`);
    const { forward } = selectBackend(bound, bound.module.train.loss || "lm", o.device);
    const t0 = Date.now();
    const { ids, probs } = teacherTargets(ds.windows, forward, tok.vocabSize, o.topK, { batch: o.batch });
    let mass = 0;
    let positions = 0;
    probs.forEach((p) => {
      for (let i = 0; i < p.length; i++) mass += p[i]!;
      positions += p.length / o.topK;
    });
    writeDistillData(o.out, { windows: ds.windows, ids, probs, K: o.topK, seqLen }, {
      teacher: o.model,
      teacherSha256: modelSha256(o.model),
      source: o.data,
      tokenizerSha256: tokenizerSha256(tok),
      vocab: tok.vocabSize,
    });
    process.stderr.write(
      `qzo distill: ${ds.windows.length} windows, ${positions} positions of ${m.name} in ${((Date.now() - t0) / 1000).toFixed(1)} s; ` +
        `the top ${o.topK} hold ${((100 * mass) / positions).toFixed(1)}% of the teacher's probability on average; wrote ${o.out}\n`,
    );
  });

modelOptions(program.command("sample").description("latents from a diffusion transformer: Euler steps of the flow-matching ODE from seeded noise (decoding them to pixels needs the model's VAE)"))
  .requiredOption("--data <file>", "latents (safetensors) whose text conditioning (encoder_hidden_states, pooled_projections) and latent size (x0) to sample for")
  .requiredOption("--out <file>", "the sampled latents (safetensors, tensor 'latents' [N, C, H, W])")
  .option("--steps <n>", "Euler steps", number("int", 1, MAX_COUNT), 28)
  .option("--shift <s>", "the sigma shift of SD3's scheduler (sigma = s t / (1 + (s - 1) t))", number("float", 1e-3, 1e3), 3)
  .option("--seed <n>", "the seed of the noise", number("int", 0, 2 ** 53 - 1), 0)
  .option("--checkpoint <file>", "use the trained scales of a scales checkpoint")
  .option("--batch <b>", "examples per forward pass", number("int", 1, MAX_BATCH), 4)
  .action((o: ModelOpts & { data: string; out: string; steps: number; shift: number; seed: number; checkpoint?: string; batch: number }) => {
    const bound = bindModel(o.model, { ...(o.spec ? { spec: o.spec } : {}), set: o.set });
    const m = bound.module;
    if (!readsLatents(m)) throw new QzoError(`${o.model}: ${m.name} is not a diffusion model (its training loss reads no latents x0); qzo sample draws latents`, 2);
    const ds = loadLatents(o.data);
    const sel = selectBackend(bound, m.train.loss, o.device);
    if (o.checkpoint) {
      if (sel.device === "interp") throw new QzoError("--checkpoint needs the CPU or CUDA kernels (--device cpu or cuda): the interpreter samples with the model's own scales", 2);
      if (!existsSync(o.checkpoint)) throw new QzoError(`${o.checkpoint}: no such file`);
      sel.backend.setValues(loadScalesCheckpoint(o.checkpoint, { trainables: sel.backend.trainables, modelSha256: modelSha256(o.model) }).values);
    }
    const t0 = Date.now();
    const x = sampleLatents(ds, velocityOf(m, sel, bound.weights), { seed: BigInt(o.seed), steps: o.steps, shift: o.shift, batch: o.batch });
    writeLatents(o.out, [{ name: "latents", dtype: "F32", shape: x.shape, data: new Uint8Array(x.data.buffer) }], { model: o.model, steps: String(o.steps), shift: String(o.shift), seed: String(o.seed) });
    process.stderr.write(`qzo sample: ${ds.size} latents [${x.shape.slice(1).join(", ")}] in ${o.steps} steps, ${((Date.now() - t0) / 1000).toFixed(1)} s; wrote ${o.out}\n`);
  });

modelOptions(program.command("export").description("write a model with the trained scales of a checkpoint, in the input's format"))
  .requiredOption("--checkpoint <file>", "a scales checkpoint (RUN_DIR/scales.safetensors or best.safetensors)")
  .requiredOption("--out <path>", "the output file (directory for a Hugging Face model)")
  .action((o: ModelOpts & { checkpoint: string; out: string }) => {
    const bound = bindModel(o.model, { ...(o.spec ? { spec: o.spec } : {}), set: o.set });
    const r = exportCheckpoint(bound, o.checkpoint, o.out, () => modelSha256(o.model));
    process.stderr.write(`qzo export: wrote ${r.path} (${r.tensors} trained tensors from step ${r.step})\n`);
  });

modelOptions(program.command("eval").description("accuracy (classification data) or mean loss (language-modelling, distillation or latent data) of a model"))
  .requiredOption("--data <file>", "text, JSON lines ({\"text\"} or {\"prompt\", \"candidates\", \"label\"}), qzo distill's data, or latents (safetensors: x0, encoder_hidden_states, pooled_projections)")
  .option("--checkpoint <file>", "use the trained scales of a scales checkpoint")
  .option("--seq-len <t>", `tokens per sequence (default ${DEFAULT_SEQ_LEN}, at most the model's context)`, number("int", 2, MAX_SEQ))
  .option("--batch <b>", "sequences (or latent examples) per forward pass", number("int", 1, MAX_BATCH), 16)
  .option("--loss <name>", "the spec's loss to score latent data with (default: the training loss)")
  .option("--json", "print one JSON line")
  .action((o: ModelOpts & { data: string; checkpoint?: string; seqLen?: number; batch: number; loss?: string; json?: boolean }) => {
    const bound = bindModel(o.model, { ...(o.spec ? { spec: o.spec } : {}), set: o.set });
    if (readsLatents(bound.module)) {
      const r = evaluateLatents(bound, o.data, (loss) => selectBackend(bound, loss, o.device), {
        ...(o.checkpoint ? { checkpoint: o.checkpoint } : {}),
        ...(o.loss ? { loss: o.loss } : {}),
        batch: o.batch,
        modelSha: () => modelSha256(o.model),
      });
      process.stdout.write(o.json ? JSON.stringify({ loss: r.loss, lossName: r.lossName, examples: r.examples }) + "\n" : `examples ${r.examples}  ${r.lossName} loss ${r.loss.toFixed(6)}\n`);
      return;
    }
    if (o.loss) throw new QzoError(`--loss: ${o.model} is scored with the loss its data calls for; --loss chooses among the losses of latent data`, 2);
    const tok = modelTokenizer(bound.checkpoint, o.tokenizer, vocabOf(bound.module));
    const r = evaluateData(bound, tok, o.data, (loss) => selectBackend(bound, loss, o.device), {
      ...(o.checkpoint ? { checkpoint: o.checkpoint } : {}),
      ...(o.seqLen !== undefined ? { seqLen: o.seqLen } : {}),
      batch: o.batch,
      modelSha: () => modelSha256(o.model),
    });
    if (o.json) {
      process.stdout.write(JSON.stringify(r.kind === "lm" ? { ...r, ppl: Math.exp(r.loss) } : r) + "\n");
    } else if (r.kind === "lm") {
      process.stdout.write(`examples ${r.examples}  tokens ${r.tokens}  loss ${r.loss.toFixed(6)} nats/token  ppl ${Math.exp(r.loss).toFixed(4)}\n`);
    } else if (r.kind === "distill") {
      process.stdout.write(`examples ${r.examples}  tokens ${r.tokens}  distillation loss ${r.loss.toFixed(6)} nats/token\n`);
    } else {
      process.stdout.write(`examples ${r.examples}  accuracy ${r.accuracy!.toFixed(4)} (${r.correct}/${r.examples})  loss ${r.loss.toFixed(6)}\n`);
    }
  });

// Under mpirun: errors name the rank; those that every rank meets alike are printed by rank 0 only.
await runCli(program, process.argv, world ? { label: `qzo (rank ${world.rank} of ${world.size})`, quiet: (e) => e instanceof CollectiveError && world.rank > 0 } : {});
