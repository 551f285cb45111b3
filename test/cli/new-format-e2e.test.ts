/**
 * A model variant and its quantization formats declared only in .qzo files
 * (test/fixtures/specs/tiny_variant.qzo over test/fixtures/formats/layouts.qzo), end to end through
 * the command line with no TypeScript written for them: a Hugging Face checkpoint in those formats
 * (a record layout as raw bytes, tensors layouts beside each weight's name) is built here from
 * random weights, then `qzo perplexity` agrees between the generated CPU kernels and the reference
 * interpreter, `qzo train` trains the scales and mins and exports the same layout (codes and every
 * other byte unchanged), and the export scores as the checkpoint it came from.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import { evalIntExpr } from "../../src/compiler/ir/int-expr.js";
import { configInts, formatOf, paramLayers, paramShape } from "../../src/compiler/ir/queries.js";
import { readSafetensors } from "../../src/runtime/model-files/safetensors.js";
import { type SafetensorsTensor, writeSafetensors } from "../../src/runtime/model-files/safetensors-write.js";
import { unpackRaw } from "../../src/runtime/quant/codec.js";
import { randomModel } from "../support/random-model.js";

const root = new URL("../../", import.meta.url).pathname;
const SPEC = join(root, "test/fixtures/specs/tiny_variant.qzo");
const HF_TOKENIZER = join(root, "..", "shared", "models", "hf", "stories260K");
const qzo = (...args: string[]) => execa("node", [`${root}dist/src/cli/qzo.js`, ...args], { reject: false, cwd: root });

const STORIES = Array.from(
  { length: 12 },
  (_, i) => `Once upon a time, there was a little girl named Lily. She had ${i + 2} red balls and a big dog. They played in the park every day.`,
);

/** The checkpoint: every parameter's weights, random, quantized into its declared format, in the layout the spec names for HF files. */
function buildCheckpoint(dir: string): void {
  const r = checkFile(SPEC, {});
  expect(r.diagnostics).toEqual([]);
  const m = r.modules[0]!;
  const ints = configInts(m);
  const model = randomModel(m, 2026, { fanIn: true });
  const tensors: SafetensorsTensor[] = [];
  const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (const p of m.params) {
    const shape = paramShape(m, p, ints);
    for (const layer of paramLayers(p, ints)) {
      const name = p.sources["hf"]![0]!.tensor.replace("{l}", String(layer ?? ""));
      const w = model.stored(p.name, layer);
      const f = formatOf(m, p);
      if (w.kind === "float" || !f) {
        if (w.kind !== "float") throw new Error(`${p.name}: quantized without a format`);
        tensors.push({ name, dtype: "F32", shape, data: bytes(w.data) });
        continue;
      }
      const packed = w.packed;
      if (f.layout.kind === "record") {
        tensors.push({ name, dtype: "U8", shape: [packed.storage["blocks"]!.length], data: packed.storage["blocks"]! });
      } else {
        const prefix = name.replace(/[^.]*$/, "");
        for (const fl of f.layout.fields) {
          tensors.push({ name: prefix + fl.tensor, dtype: fl.dtype.toUpperCase() as SafetensorsTensor["dtype"], shape: fl.shape.map((e) => evalIntExpr(e, { in: shape[1]!, out: shape[0]! })), data: packed.storage[fl.tensor]! });
        }
      }
    }
  }
  mkdirSync(dir, { recursive: true });
  writeSafetensors(join(dir, "model.safetensors"), tensors);
  writeFileSync(
    join(dir, "config.json"),
    JSON.stringify({ model_type: "tiny_variant", hidden_size: 128, intermediate_size: 256, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 512, max_position_embeddings: 256, layer_norm_eps: 1e-5 }),
  );
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) cpSync(join(HF_TOKENIZER, f), join(dir, f));
}

describe("a format and a model variant declared only in .qzo files, end to end", () => {
  it("perplexity on the CPU kernels and the interpreter, training, export in the same layout, the export scoring as its checkpoint", async () => {
    const work = mkdtempSync(join(tmpdir(), "qzo-variant-"));
    const model = join(work, "model");
    buildCheckpoint(model);
    const data = join(work, "stories.txt");
    writeFileSync(data, STORIES.join("\n\n") + "\n");
    const text = join(work, "one-story.txt");
    writeFileSync(text, STORIES[0]! + "\n");

    const ppl = async (device: string) => {
      const r = await qzo("perplexity", "--model", model, "--spec", SPEC, "--text", text, "--json", "--device", device);
      expect(r.exitCode, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { nll: number; tokens: number };
    };
    const cpu = await ppl("cpu");
    const interp = await ppl("interp");
    expect(cpu.tokens).toBe(interp.tokens);
    expect(Math.abs(cpu.nll - interp.nll) / interp.nll).toBeLessThan(1e-5);
    expect(cpu.nll).toBeGreaterThan(0);

    const run = join(work, "run");
    const t = await qzo("train", "--model", model, "--spec", SPEC, "--data", data, "--out", run, "--seq-len", "32", "--eval-every", "2", "--device", "cpu");
    expect(t.exitCode, t.stderr).toBe(0);
    expect(t.stderr).toContain("training on the generated CPU kernels");
    const runJson = JSON.parse(readFileSync(join(run, "run.json"), "utf8"));
    expect(runJson).toMatchObject({ status: "done", exported: join(run, "model"), result: { step: 4 } });

    // The export: the same tensors; codes, zero-points and every float tensor byte-identical; the
    // trained scales and mins changed in some of them.
    const before = readSafetensors(join(model, "model.safetensors"));
    const after = readSafetensors(join(run, "model", "model.safetensors"));
    expect([...after.tensors.keys()].sort()).toEqual([...before.tensors.keys()].sort());
    let changed = 0;
    for (const [name, info] of before.tensors) {
      const a = Buffer.from(before.readTensorBytes(name));
      const b = Buffer.from(after.readTensorBytes(name));
      expect(after.tensors.get(name)!.dtype).toBe(info.dtype);
      const holdsScales = /\.(s|scales)$/.test(name) || info.dtype === "U8";
      if (!holdsScales) expect(b.equals(a), name).toBe(true);
      else if (!b.equals(a)) changed++;
    }
    expect(changed).toBeGreaterThan(0);
    // A record tensor keeps its codes (only its scale and min fields change).
    const m = checkFile(SPEC, {}).modules[0]!;
    const wq = m.params.find((p) => p.name === "wq")!;
    const f = formatOf(m, wq)!;
    const rec = (st: typeof before) => unpackRaw({ format: f, rows: 128, cols: 128, storage: { blocks: st.readTensorBytes("model.layers.0.q.weight") } });
    expect(Array.from(rec(after).codes)).toEqual(Array.from(rec(before).codes));

    const evalOf = async (...args: string[]) => {
      const r = await qzo("eval", "--spec", SPEC, "--data", data, "--seq-len", "32", "--json", "--device", "cpu", ...args);
      expect(r.exitCode, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { loss: number };
    };
    const fromCheckpoint = await evalOf("--model", model, "--checkpoint", join(run, runJson.exportedFrom));
    const exported = await evalOf("--model", join(run, "model"));
    // The export rounds the trained fp32 scales and mins to their storage types (f16, bf16).
    expect(Math.abs(exported.loss - fromCheckpoint.loss) / fromCheckpoint.loss).toBeLessThan(2e-3);
  }, 180_000);
});
