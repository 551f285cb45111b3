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
import type { Manifest } from "../src/compiler/abi.js";
import { configInts, evalConcrete, paramLayers } from "../src/compiler/ir/queries.js";
import type { StoredModel } from "../src/runtime/backends/kernel-backend.js";
import { bindModel } from "../src/runtime/load/bind.js";
import { packageRoot } from "../src/util/package-root.js";
import { randomModel } from "../src/runtime/bench/random-model.js";

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


export function loadBenchModel(def: BenchModelDef): StoredModel {
  if (def.gguf) {
    const b = bindModel(def.gguf);
    return { module: b.module, stored: b.stored };
  }
  const r = checkFile(join(packageRoot(), "models/llama.qzo"), { ...SYNTHETIC_CONFIG });
  if (r.diagnostics.length) throw new CompileError(r.diagnostics);
  return randomModel(r.modules[0]!, 7, { fanIn: true });
}

export function configInt(m: ModuleIR, name: string): number {
  const c = m.config.find((x) => x.name === name);
  if (!c || c.value.type !== "int") throw new Error(`${m.name}: no int config '${name}'`);
  return c.value.value;
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

export function weightSizes(model: StoredModel, manifest: Manifest): WeightSizes {
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
export function plannedTempBytes(m: ModuleIR, manifest: Manifest, graph: string, dims: Record<string, number>): { formula: string; bytes: number } {
  const g = manifest.graphs.find((x) => x.name === graph);
  if (!g) throw new Error(`no graph '${graph}' in the manifest`);
  const env = configInts(m);
  for (const [k, v] of Object.entries(dims)) env.set(k, v);
  return { formula: g.peakBytes, bytes: evalConcrete(g.peakBytes, env) };
}
