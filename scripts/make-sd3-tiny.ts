/**
 * Makes the bundled tiny SD3-style transformer, models/weights/sd3-tiny/ (random weights, for the
 * README's diffusion commands and the tests): a float diffusers `transformer/` folder (config.json,
 * diffusion_pytorch_model.safetensors) of 2 blocks of width 32 on 4-channel 16 x 16 latents, and two
 * files of random latents with random text conditioning (train: 64 examples, held: 16).
 *
 * Weights: linear and convolution weights N(0, s^2) with s = clamp(1/sqrt(fan_in), 0.02, 0.2),
 * biases 0.05 N(0, 1), RMSNorm weights 1 + 0.1 N(0, 1) (nothing zero-initialised, so every
 * parameter moves the output); the position table is diffusers' 2D sin-cos table (get_2d_sincos_pos_embed:
 * position k of the M x M grid at k / (M / (sample_size / patch)), frequencies 10000^(-j / (D/4)),
 * [sin, cos] of the column then of the row), evaluated in float64.
 *
 *   node dist/scripts/make-sd3-tiny.js [OUT_DIR]
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { checkFile } from "../src/compiler/check.js";
import { configInts, paramLayers, paramShape } from "../src/compiler/ir/queries.js";
import { writeSafetensors, type SafetensorsTensor } from "../src/runtime/model-files/safetensors-write.js";
import { writeFileAtomic } from "../src/util/fs-atomic.js";
import { packageRoot } from "../src/util/package-root.js";
import { rng } from "../src/util/seeded-random.js";

const root = packageRoot();
const out = process.argv[2] ?? join(root, "models", "weights", "sd3-tiny");
const config = {
  _class_name: "SD3Transformer2DModel",
  sample_size: 16,
  patch_size: 2,
  in_channels: 4,
  num_layers: 2,
  attention_head_dim: 16,
  num_attention_heads: 2,
  joint_attention_dim: 24,
  caption_projection_dim: 32,
  pooled_projection_dim: 20,
  out_channels: 4,
  pos_embed_max_size: 16,
  dual_attention_layers: [],
  qk_norm: "rms_norm",
};
const m = checkFile(join(root, "models", "sd3.qzo"), {
  patch: config.patch_size,
  in_channels: config.in_channels,
  n_layers: config.num_layers,
  head_dim: config.attention_head_dim,
  n_heads: config.num_attention_heads,
  joint_dim: config.joint_attention_dim,
  pooled_dim: config.pooled_projection_dim,
  pos_max: config.pos_embed_max_size,
  weight: "f32",
}).modules[0]!;
const ints = configInts(m);
const r = rng(20261207);
const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** diffusers' 2D sin-cos table [1, M*M, D]: row-major over the grid, the first half of each row from the column. */
function posTable(M: number, D: number, base: number): Float32Array {
  const t = new Float32Array(M * M * D);
  const quarter = D / 4;
  const at = (k: number) => k / (M / base);
  for (let row = 0; row < M; row++) {
    for (let col = 0; col < M; col++) {
      const o = (row * M + col) * D;
      for (let j = 0; j < quarter; j++) {
        const w = 1 / 10000 ** (j / quarter);
        t[o + j] = Math.sin(at(col) * w);
        t[o + quarter + j] = Math.cos(at(col) * w);
        t[o + 2 * quarter + j] = Math.sin(at(row) * w);
        t[o + 3 * quarter + j] = Math.cos(at(row) * w);
      }
    }
  }
  return t;
}

const tensors: SafetensorsTensor[] = [];
for (const p of m.params) {
  const src = p.sources["hf"]![0]!;
  const shape = paramShape(m, p, ints);
  for (const layer of paramLayers(p, ints)) {
    const name = src.tensor.replace(/\{[^}]*\}/g, String(layer ?? ""));
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    let fileShape = shape;
    if (p.name === "pos_table") data = posTable(config.pos_embed_max_size, shape[2]!, config.sample_size / config.patch_size);
    else if (/norm/.test(p.name)) data = Float32Array.from({ length: n }, () => 1 + 0.1 * gauss());
    else if (shape.length === 1) data = Float32Array.from({ length: n }, () => 0.05 * gauss());
    else {
      const s = Math.min(0.2, Math.max(0.02, 1 / Math.sqrt(shape[1]!)));
      data = Float32Array.from({ length: n }, () => s * gauss());
      // The patch embedding is a convolution: [D, C, p, p] in the file.
      if (src.transforms.some((t) => t.name === "flatten")) fileShape = [shape[0]!, config.in_channels, config.patch_size, config.patch_size];
    }
    tensors.push({ name, dtype: "F32", shape: fileShape, data: bytes(data) });
  }
}
mkdirSync(out, { recursive: true });
writeSafetensors(join(out, "diffusion_pytorch_model.safetensors"), tensors, { format: "pt" });
writeFileAtomic(join(out, "config.json"), JSON.stringify(config, null, 2) + "\n");

/** n examples of gaussian latents and text conditioning. */
function latents(file: string, n: number): void {
  const t = (name: string, shape: number[]) => ({ name, dtype: "F32" as const, shape, data: bytes(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, gauss)) });
  writeSafetensors(file, [t("x0", [n, config.in_channels, 16, 16]), t("encoder_hidden_states", [n, 7, config.joint_attention_dim]), t("pooled_projections", [n, config.pooled_projection_dim])]);
}
latents(join(out, "latents-train.safetensors"), 64);
latents(join(out, "latents-held.safetensors"), 16);
process.stderr.write(`make-sd3-tiny: wrote ${out} (${tensors.length} tensors)\n`);
