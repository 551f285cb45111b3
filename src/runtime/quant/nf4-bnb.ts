/**
 * Writes a bitsandbytes NF4 checkpoint, as diffusers and transformers save a model loaded with
 * `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")`, from a float Hugging Face or
 * diffusers directory. Which weights become NF4 is the spec's choice: every parameter typed by a
 * `format` config entry whose value is `nf4` (models/sd3.qzo: `weight`, the blocks' linears; with
 * `--set outer=nf4`, every linear). Each such weight X.weight becomes
 *   X.weight                                   uint8 [out * in / 2, 1], two codes a byte, the first high
 *   X.weight.absmax                            f32 [ceil(out * in / 64)]
 *   X.weight.quant_map                         f32 [16], the NF4 levels
 *   X.weight.quant_state.bitsandbytes__nf4     uint8, the JSON {quant_type, blocksize, dtype, shape}
 * by round-to-nearest (quantize.ts: absmax per block of 64 along the flattened weight, each weight the
 * nearest level of w / absmax, ties to the lower, which is bitsandbytes' own rule); every other tensor
 * is copied as stored, and config.json gets bitsandbytes' `quantization_config` with the modules kept.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { checkFile } from "../../compiler/check.js";
import type { ConfigOverrides } from "../../compiler/sema/check.js";
import { configInts, paramLayers } from "../../compiler/ir/queries.js";
import { QzoError } from "../../util/errors.js";
import { writeFileAtomic } from "../../util/fs-atomic.js";
import { bindModel, specForArchitecture } from "../load/bind.js";
import { openCheckpoint } from "../load/checkpoint.js";
import { CompileError } from "../../compiler/diagnostics.js";
import { readHfModel } from "../model-files/index.js";
import { writeSafetensors, type SafetensorsTensor, type SafetensorsWriteDType } from "../model-files/safetensors-write.js";
import { quantizeRTN } from "./quantize.js";

export interface Nf4Report {
  quantized: string[];
  kept: string[];
}

/** Quantizes the float directory `src` into a bitsandbytes NF4 directory `out`. */
export function quantizeToBnbNf4(src: string, out: string, o: { spec?: string; set?: ConfigOverrides; log?: (line: string) => void } = {}): Nf4Report {
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new QzoError(`${src}: bitsandbytes checkpoints are Hugging Face or diffusers directories; expected a float one`, 2);
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) throw new QzoError(`${out}: exists and is not an empty directory; choose a new one`, 2);
  const hf = readHfModel(src);
  if (hf.config["quantization_config"] !== undefined) throw new QzoError(`${join(src, "config.json")}: the model is already quantized (quantization_config); start from a float model`);
  const spec = o.spec ?? specForArchitecture(openCheckpoint(src).architecture, src);
  // The storage the spec asks for (its defaults and --set), not the file's (float): which entries are nf4.
  const checked = checkFile(spec, o.set ?? {});
  if (checked.diagnostics.length) throw new CompileError(checked.diagnostics);
  const wanted = checked.modules[0]!;
  const isFormat = (k: string) => wanted.config.some((c) => c.name === k && c.value.type === "format");
  const bound = bindModel(src, { spec, set: Object.fromEntries(Object.entries(o.set ?? {}).filter(([k]) => !isFormat(k))) });
  const nf4Entries = new Set(wanted.config.filter((c) => c.value.type === "format" && c.value.value === "nf4").map((c) => c.name));
  const fmt = bound.module.formats.find((f) => f.name === "nf4") ?? wanted.formats.find((f) => f.name === "nf4");
  if (!fmt || nf4Entries.size === 0) throw new QzoError(`${bound.spec}: no format entry of the spec is nf4, so nothing would be quantized (set one, e.g. --set weight=nf4)`, 2);
  const ints = configInts(bound.module);
  const table = Float32Array.from(fmt.codebooks.find((c) => c.name === fmt.code.lookup)!.values!);
  const replaced = new Map<string, SafetensorsTensor[]>();
  const report: Nf4Report = { quantized: [], kept: [] };
  for (const p of bound.module.params) {
    if (!p.storageEntry || p.type.shape.length !== 2) continue;
    for (const layer of paramLayers(p, ints)) {
      const s = bound.stored(p.name, layer);
      if (s.kind !== "float") throw new QzoError(`${src}: '${s.tensor}' is already quantized; start from a float model`);
      const module = s.tensor.replace(/\.weight$/, "");
      if (!nf4Entries.has(p.storageEntry)) {
        report.kept.push(module);
        continue;
      }
      const [rows, cols] = s.shape as [number, number];
      const packed = quantizeRTN(fmt, rows, cols, s.data);
      const absmax = packed.storage["weight.absmax"]!;
      // Python's json.dumps, as bitsandbytes writes it (", " and ": " separators).
      const state = `{"quant_type": "nf4", "blocksize": ${fmt.block.size}, "dtype": "float32", "shape": [${rows}, ${cols}]}`;
      replaced.set(s.tensor, [
        { name: s.tensor, dtype: "U8", shape: [(rows * cols) / 2, 1], data: packed.storage["weight"]! },
        { name: `${s.tensor}.absmax`, dtype: "F32", shape: [absmax.byteLength / 4], data: absmax },
        { name: `${s.tensor}.quant_map`, dtype: "F32", shape: [table.length], data: new Uint8Array(table.buffer) },
        { name: `${s.tensor}.quant_state.bitsandbytes__nf4`, dtype: "U8", shape: [state.length], data: new TextEncoder().encode(state) },
      ]);
      report.quantized.push(module);
      o.log?.(`${s.tensor} [${rows}, ${cols}]: nf4, ${absmax.byteLength / 4} blocks`);
    }
  }
  if (report.quantized.length === 0) throw new QzoError(`${src}: no weight of the spec's nf4 entries (${[...nf4Entries].join(", ")}) to quantize`);
  const tensors: SafetensorsTensor[] = [];
  for (const info of hf.tensors.values()) {
    tensors.push(...(replaced.get(info.name) ?? [{ name: info.name, dtype: info.dtype as SafetensorsWriteDType, shape: [...info.shape], data: hf.readTensorBytes(info.name) }]));
  }
  const file = existsSync(join(src, "diffusion_pytorch_model.safetensors")) || existsSync(join(src, "diffusion_pytorch_model.safetensors.index.json")) ? "diffusion_pytorch_model.safetensors" : "model.safetensors";
  mkdirSync(out, { recursive: true });
  writeSafetensors(join(out, file), tensors, { format: "pt" });
  const config = {
    ...hf.config,
    quantization_config: {
      quant_method: "bitsandbytes",
      load_in_4bit: true,
      load_in_8bit: false,
      llm_int8_skip_modules: report.kept,
      bnb_4bit_quant_type: "nf4",
      bnb_4bit_use_double_quant: false,
      bnb_4bit_compute_dtype: "float32",
      bnb_4bit_quant_storage: "uint8",
    },
  };
  writeFileAtomic(join(out, "config.json"), JSON.stringify(config, null, 2) + "\n");
  for (const f of readdirSync(src).filter((x) => /^(tokenizer.*|special_tokens_map\.json|generation_config\.json)$/.test(x))) writeFileAtomic(join(out, f), readFileSync(join(src, f)));
  return report;
}
