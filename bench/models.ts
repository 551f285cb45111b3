/**
 * The models the QZO step benchmark runs on: the bundled stories260K Q4_0 GGUF,
 * the shared babyllama Q4_0 GGUF (when present), and a synthetic Llama shape
 * with random weights, quantized to Q4_0 by the project's round-to-nearest
 * quantizer. Also the sizes the report prints (packed weight bytes, master
 * scale bytes, planned temporaries).
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { checkFile } from "../src/compiler/check.js";
import { CompileError } from "../src/compiler/diagnostics.js";
import type { ModuleIR } from "../src/compiler/ir/ir.js";
import { configInts, evalConcrete, formatOf, paramLayers } from "../src/compiler/codegen/weights.js";
import type { CpuManifest } from "../src/compiler/codegen/cpu.js";
import type { StoredModel } from "../src/runtime/backends/cpu.js";
import { bindModel, type StoredWeight } from "../src/runtime/load/bind.js";
import { quantizeRTN } from "../src/runtime/quant/quantize.js";
import type { Batch } from "../src/runtime/train/backend.js";
import { packageRoot } from "../src/util/package-root.js";

export const MODEL_NAMES = ["stories260K", "babyllama", "synthetic"] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

export interface BenchModelDef {
  name: ModelName;
  description: string;
  /** Batch of the QZO step. */
  batch: number;
  seq: number;
  /** The GGUF file (absent for the synthetic model). */
  gguf?: string;
  /** Compare forward throughput with llama.cpp on the GGUF. */
  llamaCpp: boolean;
  /** Timed repetitions by default. */
  reps: number;
}

/** The synthetic Llama shape (models/llama.qzo with these overrides). */
export const SYNTHETIC_CONFIG = { dim: 768, hidden: 2048, n_layers: 12, n_heads: 12, n_kv_heads: 12, vocab: 8192, seq_len: 256, weight: "q4_0" } as const;

export function modelDefs(): BenchModelDef[] {
  const root = packageRoot();
  return [
    {
      name: "stories260K",
      description: "stories260K Q4_0 GGUF (bundled)",
      batch: 16,
      seq: 128,
      gguf: join(root, "models/weights/stories260K/stories260K-q4_0.gguf"),
      llamaCpp: true,
      reps: 7,
    },
    {
      name: "babyllama",
      description: "babyllama-tok105 Q4_0 GGUF (shared/models; seq_len 256)",
      batch: 16,
      seq: 128,
      gguf: resolve(root, "../shared/models/gguf/babyllama-tok105-q4_0.gguf"),
      llamaCpp: true,
      reps: 5,
    },
    {
      name: "synthetic",
      description: "synthetic Llama q4_0, random weights: 12 layers, dim 768, hidden 2048, 12 heads, 12 kv heads, vocab 8192",
      batch: 1,
      seq: 128,
      llamaCpp: false,
      reps: 3,
    },
  ];
}

export function modelAvailable(def: BenchModelDef): boolean {
  return def.gguf === undefined || existsSync(def.gguf);
}

/** mulberry32: a small seeded generator for weights and tokens. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A model with random weights for any config of a spec: norms near 1, other floats and quantized weights small (RTN-quantized). */
export function randomModel(m: ModuleIR, seed: number): StoredModel {
  const r = rng(seed);
  const ints = configInts(m);
  const stored = new Map<string, StoredWeight>();
  for (const p of m.params) {
    const shape = p.type.shape.map((d) => evalConcrete(d, ints));
    const n = shape.reduce((a, b) => a * b, 1);
    // Uniform with standard deviation about 1/sqrt(fan-in), so activations stay finite through the layers.
    const amp = shape.length === 2 ? Math.sqrt(3 / shape[1]!) : 0.1;
    for (const layer of paramLayers(p, ints)) {
      const norm = shape.length === 1 && /norm|ln|_w$/.test(p.name);
      const w = new Float32Array(n);
      for (let i = 0; i < n; i++) w[i] = norm ? 1 + 0.1 * (r() - 0.5) : amp * (2 * r() - 1);
      const f = formatOf(m, p);
      const key = `${p.name}#${layer ?? ""}`;
      stored.set(key, f ? { kind: "quant", packed: quantizeRTN(f, shape[0]!, shape[1]!, w), tensor: key } : { kind: "float", shape, data: w, tensor: key });
    }
  }
  return { module: m, stored: (param, layer) => stored.get(`${param}#${layer ?? ""}`)! };
}

export function loadBenchModel(def: BenchModelDef): StoredModel {
  if (def.gguf) {
    const b = bindModel(def.gguf);
    return { module: b.module, stored: b.stored };
  }
  const r = checkFile(join(packageRoot(), "models/llama.qzo"), { ...SYNTHETIC_CONFIG });
  if (r.diagnostics.length) throw new CompileError(r.diagnostics);
  return randomModel(r.modules[0]!, 7);
}

export function configInt(m: ModuleIR, name: string): number {
  const c = m.config.find((x) => x.name === name);
  if (!c || c.value.type !== "int") throw new Error(`${m.name}: no int config '${name}'`);
  return c.value.value;
}

/** B x T random tokens; mask 1 everywhere but the first position of each row. */
export function lmBatch(seed: number, B: number, T: number, vocab: number): Batch {
  const r = rng(seed);
  const tokens = Int32Array.from({ length: B * T }, () => Math.floor(r() * vocab));
  const mask = Float32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? 0 : 1));
  return { tokens: { shape: [B, T], data: tokens }, mask: { shape: [B, T], data: mask } };
}

export interface WeightSizes {
  /** Bytes of the quantized tensors as packed (codes, scales, mins, zeros in their storage types). */
  packedBytes: number;
  /** Bytes of the float tensors (norms, f32 embeddings, f16-fallback tensors as loaded in f32). */
  floatBytes: number;
  /** Number of trainable scalars (the QZO scales). */
  trainableCount: number;
  /** Largest quantized matrix as f32 (the unfused baseline's dequantization buffer). */
  largestDequantBytes: number;
}

export function weightSizes(model: StoredModel, manifest: CpuManifest): WeightSizes {
  const m = model.module;
  const ints = configInts(m);
  let packedBytes = 0;
  let floatBytes = 0;
  let largestDequantBytes = 0;
  for (const p of m.params) {
    for (const layer of paramLayers(p, ints)) {
      const w = model.stored(p.name, layer);
      if (w.kind === "float") floatBytes += w.data.byteLength;
      else {
        packedBytes += Object.values(w.packed.storage).reduce((a, s) => a + s.byteLength, 0);
        largestDequantBytes = Math.max(largestDequantBytes, 4 * w.packed.rows * w.packed.cols);
      }
    }
  }
  const trainableCount = manifest.trainables.reduce((a, t) => a + t.size, 0);
  return { packedBytes, floatBytes, trainableCount, largestDequantBytes };
}

/** A graph's planned temporaries (its manifest's peakBytes formula) at this config and batch. */
export function plannedTempBytes(m: ModuleIR, manifest: CpuManifest, graph: string, dims: Record<string, number>): { formula: string; bytes: number } {
  const g = manifest.graphs.find((x) => x.name === graph);
  if (!g) throw new Error(`no graph '${graph}' in the manifest`);
  const env = configInts(m);
  for (const [k, v] of Object.entries(dims)) env.set(k, v);
  return { formula: g.peakBytes, bytes: evalConcrete(g.peakBytes, env) };
}
