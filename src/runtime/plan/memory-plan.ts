/**
 * Memory planning: the bytes a QZO step (two perturbed losses and the update) and an inference
 * forward pass hold, on the CPU backend and on the CUDA backend, computed from a spec and its
 * config alone (no weights needed), term by term from what the backends actually allocate:
 *
 * - weight slots (compiler/codegen/weight-slots.ts): codes as stored, fp32 scales (the trainable
 *   ones are the QZO masters), mins, zero-points, additive codebooks and float parameters (fp32);
 * - the perturbed copies of the trainable scales (CUDA: written once per call, kernels read them);
 * - the graph's inputs and its planned temporaries (the plan-buffers pass's symbolic peak, at the
 *   batch and sequence length asked for), and its output;
 * - per-thread scratch of the CPU kernels (a dequantized weight tile, the lm head's logit tile);
 * - the CUDA tensor-core workspace for calls of at least 256 rows (fp16 activations, fp16 code
 *   values and the per-16-column scale steps of the largest weights; grow-only, so the largest
 *   matmul sets it);
 * - the CUDA context itself, a typical figure (it is not allocated by qzo and depends on the driver).
 * QZO keeps no gradients, optimizer state or activations between the two forward passes: a step's
 * peak is one forward pass's, plus the perturbed scales.
 */
import type { ModuleIR } from "../../compiler/ir/ir.js";
import { configInts, evalConcrete, paramLayers, paramShape } from "../../compiler/ir/queries.js";
import { compileArtifact, type Artifact } from "../../compiler/pipeline.js";
import { kernelsOf } from "../../compiler/kernels/kernel-ir.js";
import type { Manifest } from "../../compiler/abi.js";
import { QzoError } from "../../util/errors.js";

export type PlanDevice = "cpu" | "cuda";

export interface PlanTerm {
  name: string;
  bytes: number;
  /** How the number comes about, for people. */
  why: string;
}

export interface MemoryPlan {
  device: PlanDevice;
  mode: "qzo step" | "inference";
  graph: string;
  terms: PlanTerm[];
  total: number;
}

export interface PlanOptions {
  batch: number;
  /** Tokens per sequence: the second dimension of a language model's inputs. */
  seq?: number;
  /** Other dimensions of the graph's inputs by name (a diffusion transformer's h, w and text length L). */
  dims?: Record<string, number>;
  /** CPU threads (scratch per thread); default 1. */
  threads?: number;
}

/** A typical CUDA context with cuBLAS-free kernels (driver state, module images, stacks). */
export const CUDA_CONTEXT_BYTES = 512 * 2 ** 20;

/** The CUDA matmuls decode codes into tensor-core operands from this many rows on (launch_tiles.cuh). */
const CUDA_PIPE_ROWS = 256;

export function parameterCount(m: ModuleIR): number {
  const ints = configInts(m);
  let n = 0;
  for (const p of m.params) n += paramShape(m, p, ints).reduce((a, b) => a * b, 1) * paramLayers(p, ints).length;
  return n;
}

function weightTerms(man: Omit<Manifest, "target">, mode: MemoryPlan["mode"]): PlanTerm[] {
  const trainable = new Set(man.trainables.map((t) => t.slot));
  const sum = (pick: (part: string, i: number) => boolean) => man.weights.reduce((a, s, i) => a + (pick(s.part, i) ? s.bytes : 0), 0);
  const terms: PlanTerm[] = [
    { name: "quantized codes, as stored", bytes: sum((p) => p === "codes"), why: "the packed code storage of every quantized weight, byte for byte as in the model file" },
    { name: "codebooks, zero-points, mins (fp32)", bytes: sum((p) => p === "books" || p === "zeros" || p === "mins"), why: "per-weight additive codebooks, zero-points and mins, decoded to fp32" },
    {
      name: mode === "qzo step" ? "trainable scales (fp32 masters)" : "scales (fp32)",
      bytes: sum((p, i) => p === "scales" && trainable.has(i)),
      why: "one fp32 per scale of every trainable tensor: the only state QZO trains",
    },
    { name: "frozen scales (fp32)", bytes: sum((p, i) => p === "scales" && !trainable.has(i)), why: "scales of quantized weights the spec does not train" },
    { name: "float parameters (fp32)", bytes: sum((p) => p === "data"), why: "embeddings, norms and any weight kept in float, held as fp32" },
  ];
  return terms.filter((t) => t.bytes > 0);
}

/** The values of a graph's dimensions: batch, the sequence (a language model's [batch, seq] input) and the named ones. */
function graphDims(m: ModuleIR, man: Omit<Manifest, "target">, graph: string, o: PlanOptions): Map<string, number> {
  const g = man.graphs.find((x) => x.name === graph);
  if (!g) throw new QzoError(`${m.source}: no graph '${graph}' to plan (graphs: ${man.graphs.map((x) => x.name).join(", ")})`);
  const env = configInts(m);
  const first = g.inputs[0];
  if (!first || first.shape.length < 1) throw new QzoError(`${m.source}: graph '${graph}' takes no batched input to plan for`);
  env.set(first.shape[0]!, o.batch);
  const second = first.shape[1];
  if (o.seq !== undefined && second !== undefined && g.dims.includes(second)) env.set(second, o.seq);
  for (const [k, v] of Object.entries(o.dims ?? {})) {
    if (!g.dims.includes(k)) throw new QzoError(`--dim ${k}: graph '${graph}' has no dimension '${k}' (its dimensions: ${g.dims.join(", ")})`, 2);
    env.set(k, v);
  }
  const missing = g.dims.filter((d) => !env.has(d));
  if (missing.length) {
    const seqHint = second !== undefined && missing.includes(second) ? `--seq for ${second}, ` : "";
    throw new QzoError(`graph '${graph}' of ${m.source} needs its dimension${missing.length > 1 ? "s" : ""} ${missing.join(", ")}: give ${seqHint}--dim NAME=VALUE`, 2);
  }
  return env;
}

/**
 * The largest matmul's rows (its input's leading dimensions) and the longest attention key sequence
 * of a graph's kernels, at the planned dimensions.
 */
function kernelExtents(a: Artifact, graph: string, env: Map<string, number>): { rows: number; keys: number } {
  const p = a.programs.find((x) => x.graph === graph)!;
  const size = (b: number) => p.buffers[b]!.shape;
  const lead = (shape: string[]) => shape.slice(0, -1).reduce((acc, d) => acc * evalConcrete(d, env), 1);
  let rows = 0;
  let keys = 0;
  for (const k of kernelsOf(p.steps)) {
    if (k.op === "matmul" || k.op === "matmul_glu" || k.op === "matmul_ce" || k.op === "matmul_distill_ce") rows = Math.max(rows, lead(size(k.x.buffer)));
    if (k.op === "attention") keys = Math.max(keys, evalConcrete(size(k.k.buffer)[1]!, env));
  }
  return { rows, keys };
}

function graphTerms(m: ModuleIR, a: Artifact, graph: string, o: PlanOptions): { terms: PlanTerm[]; rows: number; keys: number } {
  const man = a.manifest;
  const g = man.graphs.find((x) => x.name === graph)!;
  const env = graphDims(m, man, graph, o);
  const elems = (shape: string[]) => shape.reduce((acc, d) => acc * evalConcrete(d, env), 1);
  const inputs = g.inputs.reduce((acc, i) => acc + 4 * elems(i.shape), 0);
  const output = 4 * elems(g.output.shape);
  const at = g.dims.map((d) => `${d}=${env.get(d)}`).join(", ");
  return {
    ...kernelExtents(a, graph, env),
    terms: [
      { name: `inputs of '${graph}'`, bytes: inputs, why: `${g.inputs.map((i) => `${i.name} [${i.shape.join(", ")}]`).join(", ")} at ${at}, 4 bytes each` },
      { name: `planned temporaries of '${graph}'`, bytes: evalConcrete(g.peakBytes, env), why: `the plan-buffers pass's peak of live intermediate buffers: ${g.peakBytes}` },
      { name: `output of '${graph}'`, bytes: output, why: `[${g.output.shape.join(", ")}] fp32` },
    ],
  };
}

/** The largest weight matrices' [rows, cols] (2-D parameters). */
function matrices(m: ModuleIR): [number, number][] {
  const ints = configInts(m);
  return m.params.filter((p) => p.type.shape.length === 2).map((p) => paramShape(m, p, ints) as [number, number]);
}

function cpuScratch(m: ModuleIR, o: PlanOptions, rows: number, keys: number): PlanTerm {
  const vocab = configInts(m).get("vocab") ?? 0;
  // kernels.njk: a matmul task dequantizes at most 32768 weights (fp32, and fp64 for the dot
  // products); the fused lm head keeps TILE x V logits in fp64, TILE = max(64, 2^20 / V / 4 * 4) rows.
  const tile = vocab > 0 ? Math.min(rows, Math.max(64, Math.floor(2 ** 20 / vocab / 4) * 4)) : 0;
  // The attention kernel keeps one query's scores and its head's keys and values in fp64.
  const ints = configInts(m);
  const headDim = ints.get("head_dim") ?? 0;
  const attention = (1 + 2 * headDim) * keys * 8;
  const perThread = 32768 * 12 + tile * vocab * 8 + attention;
  const threads = o.threads ?? 1;
  return {
    name: `CPU kernel scratch (${threads} thread${threads === 1 ? "" : "s"})`,
    bytes: threads * perThread,
    why: `per thread: a dequantized weight tile (32768 weights, fp32 + fp64), the lm head's ${tile} x ${vocab} fp64 logit tile, attention's fp64 scores, keys and values of one head (${keys} x ${2 * headDim + 1})`,
  };
}

function cudaWorkspace(m: ModuleIR, rows: number): PlanTerm {
  if (rows < CUDA_PIPE_ROWS) return { name: "CUDA tensor-core workspace", bytes: 0, why: `calls of fewer than ${CUDA_PIPE_ROWS} rows decode codes inside the tiles` };
  const mats = matrices(m);
  const maxK = Math.max(...mats.map(([, k]) => k));
  const weight = ([r, c]: [number, number]) => r * c * 2 + r * Math.ceil(c / 16) * 16;
  const largest = Math.max(...mats.map(weight));
  // A GLU matmul holds both of its weights' operands at once.
  const bytes = rows * maxK * 2 + 2 * largest;
  return { name: "CUDA tensor-core workspace", bytes, why: `fp16 activations (${rows} rows x ${maxK}) and, twice (a GLU's two weights), the largest weight's fp16 code values and per-16-column scale steps` };
}

/** The graph a mode is planned on: a step on the language-model loss when the spec has one (its inputs are [batch, sequence]). */
function graphOf(m: ModuleIR, mode: MemoryPlan["mode"]): string {
  return mode === "inference" ? "forward" : m.graphs.some((g) => g.name === "lm" && g.role === "loss") ? "lm" : m.train.loss;
}

/** The plan of one mode on one device. */
export function planMemory(m: ModuleIR, device: PlanDevice, mode: MemoryPlan["mode"], o: PlanOptions): MemoryPlan {
  return planFrom(m, compileArtifact(m, { graphs: [graphOf(m, mode)] }), device, mode, o);
}

/** Both modes on each device, the spec compiled once. */
export function planMemories(m: ModuleIR, devices: readonly PlanDevice[], o: PlanOptions): MemoryPlan[] {
  const modes = ["qzo step", "inference"] as const;
  const a = compileArtifact(m, { graphs: [...new Set(modes.map((mode) => graphOf(m, mode)))] });
  return devices.flatMap((d) => modes.map((mode) => planFrom(m, a, d, mode, o)));
}

function planFrom(m: ModuleIR, a: Artifact, device: PlanDevice, mode: MemoryPlan["mode"], o: PlanOptions): MemoryPlan {
  const sizes = [o.batch, ...(o.seq !== undefined ? [o.seq] : []), ...Object.values(o.dims ?? {})];
  if (sizes.some((v) => !Number.isInteger(v) || v < 1)) throw new QzoError(`batch, sequence length and dimensions must be integers >= 1`, 2);
  const man = a.manifest;
  const graph = graphOf(m, mode);
  const { terms: gterms, rows, keys } = graphTerms(m, a, graph, o);
  const terms = [...weightTerms(man, mode)];
  const scales = man.trainables.reduce((a, t) => a + 4 * t.size, 0);
  if (mode === "qzo step" && device === "cuda") terms.push({ name: "perturbed scales (fp32)", bytes: scales, why: "the copy s + eps z of every trainable scale that each perturbed call writes once and the kernels read" });
  terms.push(...gterms);
  if (device === "cpu") terms.push(cpuScratch(m, o, rows, keys));
  else terms.push(cudaWorkspace(m, rows), { name: "CUDA context (typical, not allocated by qzo)", bytes: CUDA_CONTEXT_BYTES, why: "driver state and the kernel images; depends on the driver and GPU" });
  const kept = terms.filter((t) => t.bytes > 0 || t.name.startsWith("CUDA tensor"));
  return { device, mode, graph, terms: kept, total: kept.reduce((a, t) => a + t.bytes, 0) };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

/** The plans as text: one table per device and mode, each term with its reason. */
export function formatPlans(m: ModuleIR, plans: MemoryPlan[], o: PlanOptions): string {
  const shape = o.seq !== undefined ? `batch ${o.batch} x ${o.seq} tokens` : `batch ${o.batch}`;
  const dims = Object.entries(o.dims ?? {}).map(([k, v]) => `${k}=${v}`).join(", ");
  const lines = [`qzo plan: ${m.name} (${m.source}), ${(parameterCount(m) / 1e9).toFixed(2)}B parameters; ${shape}${dims ? `, ${dims}` : ""}`];
  for (const p of plans) {
    lines.push("", `${p.mode} on ${p.device.toUpperCase()} ('${p.graph}'): ${formatBytes(p.total)}`);
    const w = Math.max(...p.terms.map((t) => t.name.length));
    for (const t of p.terms) lines.push(`  ${t.name.padEnd(w)}  ${formatBytes(t.bytes).padStart(10)}  ${t.why}`);
  }
  return lines.join("\n");
}
