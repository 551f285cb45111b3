/**
 * A Llama-shaped GGUF with random Q4_0 weights, written by qzo itself for the benchmarks: large
 * enough that a forward pass is arithmetic, not per-call overhead, and readable by llama.cpp (the
 * stories260K vocabulary of the bundled GGUF, llama.cpp's tensor names and metadata keys). Written
 * once into the cache directory and reused.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { cacheDir } from "../../compiler/build/build-cpu.js";
import { packageRoot } from "../../util/package-root.js";
import { f32BitsToF16Bits } from "../../util/float-bits.js";
import { readGguf, type GgufValue } from "../model-files/gguf.js";
import { writeGguf, type GgufWriteTensor, type GgufWriteValue } from "../model-files/gguf-write.js";

export interface RandomLlamaConfig {
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  context: number;
}

/** About 155 million parameters: 12 layers of width 1024 and an MLP of 2816. */
export const BENCH_LLAMA: RandomLlamaConfig = { dim: 1024, hidden: 2816, layers: 12, heads: 16, context: 1024 };

export function parameterCount(c: RandomLlamaConfig, vocab: number): number {
  return c.layers * (4 * c.dim * c.dim + 3 * c.dim * c.hidden + 2 * c.dim) + 2 * vocab * c.dim + c.dim;
}

/** A seeded stream of random bytes (xorshift32). */
function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, Math.floor(n / 4));
  let s = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    words[i] = s >>> 0;
  }
  return out;
}

/** Q4_0 blocks of a [rows, cols] matrix: random codes, scales about 1 / (4 sqrt(cols)). */
function q4_0(rows: number, cols: number, seed: number): Uint8Array {
  const blocks = (rows * cols) / 32;
  const data = randomBytes(blocks * 18 + 4, seed).subarray(0, blocks * 18);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let b = 0; b < blocks; b++) {
    f[0] = (0.5 + data[b * 18]! / 255) / (4 * Math.sqrt(cols));
    const h = f32BitsToF16Bits(u[0]!);
    data[b * 18] = h & 0xff;
    data[b * 18 + 1] = h >> 8;
  }
  return data;
}

function norm(dim: number): Uint8Array {
  return new Uint8Array(new Float32Array(dim).fill(1).buffer);
}

/** The path of the benchmark GGUF for a config, writing it when absent. */
export function randomLlamaGguf(c: RandomLlamaConfig = BENCH_LLAMA): string {
  const path = join(cacheDir(), "bench", `llama-q4_0-${c.layers}x${c.dim}-h${c.hidden}.gguf`);
  if (existsSync(path)) return path;
  const vocabFile = readGguf(join(packageRoot(), "models", "weights", "stories260K", "stories260K-q4_0.gguf"));
  const md = vocabFile.metadata;
  const vocab = (md["tokenizer.ggml.tokens"] as GgufValue[]).length;
  const u32 = (value: number): GgufWriteValue => ({ type: "u32", value });
  const metadata: [string, GgufWriteValue][] = [
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: "qzo random llama (benchmark)" }],
    ["general.file_type", u32(2)],
    ["general.quantization_version", u32(2)],
    ["llama.context_length", u32(c.context)],
    ["llama.embedding_length", u32(c.dim)],
    ["llama.feed_forward_length", u32(c.hidden)],
    ["llama.block_count", u32(c.layers)],
    ["llama.attention.head_count", u32(c.heads)],
    ["llama.attention.head_count_kv", u32(c.heads)],
    ["llama.rope.dimension_count", u32(c.dim / c.heads)],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: 1e-5 }],
    ["tokenizer.ggml.model", { type: "string", value: String(md["tokenizer.ggml.model"]) }],
    ["tokenizer.ggml.tokens", { type: "array", of: "string", value: md["tokenizer.ggml.tokens"] as string[] }],
    ["tokenizer.ggml.scores", { type: "array", of: "f32", value: md["tokenizer.ggml.scores"] as number[] }],
    ["tokenizer.ggml.token_type", { type: "array", of: "i32", value: md["tokenizer.ggml.token_type"] as number[] }],
    ["tokenizer.ggml.unknown_token_id", u32(Number(md["tokenizer.ggml.unknown_token_id"]))],
    ["tokenizer.ggml.bos_token_id", u32(Number(md["tokenizer.ggml.bos_token_id"]))],
    ["tokenizer.ggml.eos_token_id", u32(Number(md["tokenizer.ggml.eos_token_id"]))],
  ];
  let seed = 7;
  const q = (name: string, rows: number, cols: number): GgufWriteTensor => ({ name, dtype: "Q4_0", shape: [rows, cols], data: q4_0(rows, cols, seed++) });
  const tensors: GgufWriteTensor[] = [q("token_embd.weight", vocab, c.dim)];
  for (let l = 0; l < c.layers; l++) {
    tensors.push(
      { name: `blk.${l}.attn_norm.weight`, dtype: "F32", shape: [c.dim], data: norm(c.dim) },
      q(`blk.${l}.attn_q.weight`, c.dim, c.dim),
      q(`blk.${l}.attn_k.weight`, c.dim, c.dim),
      q(`blk.${l}.attn_v.weight`, c.dim, c.dim),
      q(`blk.${l}.attn_output.weight`, c.dim, c.dim),
      { name: `blk.${l}.ffn_norm.weight`, dtype: "F32", shape: [c.dim], data: norm(c.dim) },
      q(`blk.${l}.ffn_gate.weight`, c.hidden, c.dim),
      q(`blk.${l}.ffn_up.weight`, c.hidden, c.dim),
      q(`blk.${l}.ffn_down.weight`, c.dim, c.hidden),
    );
  }
  tensors.push({ name: "output_norm.weight", dtype: "F32", shape: [c.dim], data: norm(c.dim) }, q("output.weight", vocab, c.dim));
  writeGguf(path, metadata, tensors);
  return path;
}
