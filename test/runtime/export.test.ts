import { copyFileSync, existsSync, lstatSync, mkdirSync, symlinkSync, mkdtempSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import { exportModel, initialTrainableValues } from "../../src/runtime/export/export.js";
import { trainableTensors, type TrainableTensor } from "../../src/runtime/interpret/interpreter.js";
import { bindModel, type BoundModel } from "../../src/runtime/load/bind.js";
import { decodeBytesToF32, readGguf, readHfModel, readSafetensors } from "../../src/runtime/model-files/index.js";
import { type SafetensorsTensor, writeSafetensors } from "../../src/runtime/model-files/safetensors-write.js";
import { unpack, unpackRaw } from "../../src/runtime/quant/codec.js";
import { roundToDType } from "../../src/util/float-bits.js";
import { evalIntExpr } from "../../src/compiler/ir/int-expr.js";
import { quantizeRTN } from "../../src/runtime/quant/quantize.js";
import { loadScalesCheckpoint, modelSha256, saveScalesCheckpoint, scalesTensorName } from "../../src/runtime/train/checkpoint.js";
import { QzoError } from "../../src/util/errors.js";
import { disposeLlamaCpp, greedyContinuation, llamaCppStatus } from "../reference/llama-cpp.js";

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(here, "../..");
const MODELS = resolve(ROOT, "../shared/models");
const Q4 = join(ROOT, "models/weights/stories260K/stories260K-q4_0.gguf");
const HF = join(MODELS, "hf/stories260K");
const L2C = join(MODELS, "stories260K/stories260K.bin");

const tmp = mkdtempSync(join(tmpdir(), "qzo-export-"));

function err(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(QzoError);
    const m = (e as Error).message;
    expect(m.includes("\n")).toBe(false);
    return m;
  }
  throw new Error("expected a QzoError");
}

/** Names of leftover temporary files in a directory. */
function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.includes(".tmp-") || f.includes(".old-"));
}

const status = await llamaCppStatus();
const mustHaveLlamaCpp = process.platform === "linux" && process.arch === "x64";
afterAll(async () => {
  await disposeLlamaCpp();
});

describe("export of a Q4_0 GGUF with trained scales", () => {
  const bound = bindModel(Q4);
  const tt = trainableTensors(bound.module);
  const init = initialTrainableValues(bound, tt);
  const modified = init.map((v) => v.map((x) => Math.fround(x * 1.01)));
  const out = join(tmp, "q4/nested/model.gguf"); // the directories do not exist yet
  const result = exportModel(bound, tt, modified, out);
  const orig = new Uint8Array(readFileSync(Q4));
  const got = new Uint8Array(readFileSync(out));

  it("starts from the stored scales (the manifest's initial values)", () => {
    expect(tt.length).toBe(31);
    tt.forEach((t, i) => {
      const s = bound.stored(t.param, t.layer);
      if (s.kind !== "quant") throw new Error("expected quantized");
      expect(init[i]).toEqual(unpack(s.packed).scales);
    });
    expect(result.tensors).toBe(31);
    expect(existsSync(out)).toBe(true);
    expect(leftovers(dirname(out))).toEqual([]);
  });

  it("(a) re-binds with the modified scales rounded to f16 and every code unchanged", () => {
    const again = bindModel(out);
    let negative = 0;
    tt.forEach((t, i) => {
      const a = bound.stored(t.param, t.layer);
      const b = again.stored(t.param, t.layer);
      if (a.kind !== "quant" || b.kind !== "quant") throw new Error("expected quantized");
      const ra = unpackRaw(a.packed);
      const rb = unpackRaw(b.packed);
      expect(rb.codes).toEqual(ra.codes);
      const want = modified[i]!.map((x) => roundToDType("f16", x));
      expect(rb.scales).toEqual(want);
      // Negative scales (llama.cpp's Q4_0 quantizer gives many) keep their sign.
      for (let j = 0; j < ra.scales.length; j++) {
        if (ra.scales[j]! < 0) {
          negative++;
          expect(rb.scales[j]!).toBeLessThan(0);
        }
      }
    });
    expect(negative).toBeGreaterThan(1000);
  });

  it("(b) changes no byte outside the scale fields", () => {
    expect(got.length).toBe(orig.length);
    const allowed = new Set<number>();
    for (const t of tt) {
      const s = bound.stored(t.param, t.layer);
      const info = bound.checkpoint.tensors.get(s.tensor)!;
      const rec = info.dtype === "Q4_0" ? 18 : info.dtype === "Q8_0" ? 34 : 0;
      expect(rec).toBeGreaterThan(0);
      for (let o = info.byteOffset; o < info.byteOffset + info.byteLength; o += rec) allowed.add(o).add(o + 1);
    }
    let diffs = 0;
    for (let i = 0; i < orig.length; i++) {
      if (orig[i] !== got[i]) {
        diffs++;
        if (!allowed.has(i)) throw new Error(`byte ${i} changed outside a scale field`);
      }
    }
    expect(diffs).toBeGreaterThan(5000);
    expect(result.bytesPatched).toBeGreaterThan(0);
  });

  it("(c) keeps the GGUF metadata and tensor infos", () => {
    const a = readGguf(Q4);
    const b = readGguf(out);
    expect(b.version).toBe(a.version);
    expect(b.metadata).toEqual(a.metadata);
    expect(b.metadataTypes).toEqual(a.metadataTypes);
    expect(b.dataOffset).toBe(a.dataOffset);
    const infos = (g: typeof a) => [...g.tensors.values()].map(({ file: _file, ...rest }) => rest);
    expect(infos(b)).toEqual(infos(a));
  });

  it("exports the unmodified scales as a byte-identical file", () => {
    const same = join(tmp, "q4-same.gguf");
    exportModel(bound, tt, init, same);
    expect(Buffer.compare(readFileSync(same), readFileSync(Q4))).toBe(0);
  });

  it.runIf(status.available || mustHaveLlamaCpp)("(d) loads in llama.cpp and generates; unmodified scales continue exactly like the original", async () => {
    const prompt = "Once upon a time";
    const tuned = await greedyContinuation(out, prompt, 20);
    expect(tuned.tokens.length).toBeGreaterThan(0);
    expect(tuned.text.trim().length).toBeGreaterThan(0);
    const same = join(tmp, "q4-same-llama.gguf");
    exportModel(bound, tt, init, same);
    const a = await greedyContinuation(Q4, prompt, 20);
    const b = await greedyContinuation(same, prompt, 20);
    expect(b.tokens).toEqual(a.tokens);
    expect(b.text).toBe(a.text);
  });

  it("writes a float weight (F16 ffn_down) in its dtype", () => {
    const w2: TrainableTensor[] = [{ param: "w2", layer: 3, field: "weight", t: 0 }];
    const s = bound.stored("w2", 3);
    if (s.kind !== "float") throw new Error("expected float");
    const v = s.data.map((x, i) => x * 1.5 + (i % 7) * 1e-3);
    const dest = join(tmp, "w2.gguf");
    exportModel(bound, w2, [v], dest);
    const again = bindModel(dest).stored("w2", 3);
    if (again.kind !== "float") throw new Error("expected float");
    expect(again.data).toEqual(v.map((x) => roundToDType("f16", x)));
    // Only that tensor's bytes changed.
    const info = bound.checkpoint.tensors.get(s.tensor)!;
    expect(info.dtype).toBe("F16");
    const b = new Uint8Array(readFileSync(dest));
    for (let i = 0; i < orig.length; i++) {
      if (orig[i] !== b[i] && (i < info.byteOffset || i >= info.byteOffset + info.byteLength)) throw new Error(`byte ${i} changed`);
    }
  });
});

/** graph row -> file row of a Hugging Face q/k matrix (rotate-half in the file, interleaved in the graph). */
function fileRowOf(rows: number, heads: number): number[] {
  const hd = rows / heads;
  const m: number[] = new Array(rows);
  for (let h = 0; h < heads; h++) for (let j = 0; j < hd / 2; j++) for (let k = 0; k < 2; k++) m[h * hd + 2 * j + k] = h * hd + k * (hd / 2) + j;
  return m;
}

describe("export of Hugging Face and llama2.c float models", () => {
  it("writes q/k weights back in the file's rotate-half row order, patching only the shard", () => {
    const bound = bindModel(HF);
    const tt: TrainableTensor[] = [
      { param: "wq", layer: 0, field: "weight", t: 0 },
      { param: "wk", layer: 4, field: "weight", t: 1 },
      { param: "wv", layer: 2, field: "weight", t: 2 },
    ];
    const init = initialTrainableValues(bound, tt);
    const values = init.map((v, k) => v.map((x, i) => Math.fround(x + (k + 1) * 1e-3 * ((i % 13) - 6))));
    const out = join(tmp, "hf-out");
    exportModel(bound, tt, values, out);
    expect(leftovers(tmp)).toEqual([]);
    // Every other file of the directory is copied unchanged.
    for (const f of readdirSync(HF)) {
      if (f === "model.safetensors") continue;
      expect(Buffer.compare(readFileSync(join(out, f)), readFileSync(join(HF, f)))).toBe(0);
    }
    // Re-bound, the values come back in graph order.
    const again = bindModel(out);
    tt.forEach((t, k) => {
      const s = again.stored(t.param, t.layer);
      if (s.kind !== "float") throw new Error("expected float");
      expect(s.data).toEqual(values[k]);
    });
    // In the file, q/k rows are the inverse permutation of the values' rows.
    const hf = readHfModel(out);
    const q = hf.tensors.get("model.layers.0.self_attn.q_proj.weight")!;
    const fq = decodeBytesToF32(q, hf.readTensorBytes(q.name));
    const [rows, cols] = q.shape as [number, number];
    const map = fileRowOf(rows, 8);
    expect(map).not.toEqual([...Array(rows).keys()]);
    for (let g = 0; g < rows; g++) expect(fq.subarray(map[g]! * cols, (map[g]! + 1) * cols)).toEqual(values[0]!.subarray(g * cols, (g + 1) * cols));
    const kp = hf.tensors.get("model.layers.4.self_attn.k_proj.weight")!;
    const fk = decodeBytesToF32(kp, hf.readTensorBytes(kp.name));
    const kmap = fileRowOf(kp.shape[0]!, 4);
    for (let g = 0; g < kp.shape[0]!; g++) expect(fk.subarray(kmap[g]! * cols, (kmap[g]! + 1) * cols)).toEqual(values[1]!.subarray(g * cols, (g + 1) * cols));
    // Bytes outside the three tensors are unchanged.
    const a = new Uint8Array(readFileSync(join(HF, "model.safetensors")));
    const b = new Uint8Array(readFileSync(join(out, "model.safetensors")));
    expect(b.length).toBe(a.length);
    const st = readSafetensors(join(HF, "model.safetensors"));
    const ranges = ["model.layers.0.self_attn.q_proj.weight", "model.layers.4.self_attn.k_proj.weight", "model.layers.2.self_attn.v_proj.weight"].map((n) => st.tensors.get(n)!);
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== b[i] && !ranges.some((r) => i >= r.byteOffset && i < r.byteOffset + r.byteLength)) throw new Error(`byte ${i} changed`);
    }
    // Exporting again over the existing directory replaces it.
    exportModel(bound, tt, init, out);
    expect(Buffer.compare(readFileSync(join(out, "model.safetensors")), readFileSync(join(HF, "model.safetensors")))).toBe(0);
    expect(leftovers(tmp)).toEqual([]);
  });

  it("writes a layer slice of a llama2.c checkpoint", () => {
    const bound = bindModel(L2C);
    const tt: TrainableTensor[] = [{ param: "wq", layer: 2, field: "weight", t: 0 }];
    const [v0] = initialTrainableValues(bound, tt);
    const v = v0!.map((x) => x * 2);
    const out = join(tmp, "l2c/model.bin");
    exportModel(bound, tt, [v], out);
    const again = bindModel(out);
    const s = again.stored("wq", 2);
    if (s.kind !== "float") throw new Error("expected float");
    expect(s.data).toEqual(v);
    const a = new Uint8Array(readFileSync(L2C));
    const b = new Uint8Array(readFileSync(out));
    const info = bound.checkpoint.tensors.get("wq")!;
    const per = info.byteLength / info.shape[0]!;
    const lo = info.byteOffset + 2 * per;
    let diffs = 0;
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) {
        diffs++;
        if (i < lo || i >= lo + per) throw new Error(`byte ${i} changed outside layer 2 of wq`);
      }
    }
    expect(diffs).toBeGreaterThan(0);
  });
});

describe("export of a GPTQ (tensors layout) Hugging Face directory", () => {
  // stories260K with its attention projections quantized by RTN into GPTQ's layout (groups of 32).
  const SPECS = join(ROOT, "test/fixtures/specs");
  const fmt = checkFile(join(SPECS, "gptq_int4_g32.qzo")).formats.find((f) => f.name === "gptq_int4_g32")!;
  const hf = readHfModel(HF);
  const dir = join(tmp, "gptq-in");
  mkdirSync(dir);
  const tensors: SafetensorsTensor[] = [];
  for (const [name, info] of hf.tensors) {
    const m = /^model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj\.weight$/.exec(name);
    if (!m) {
      tensors.push({ name, dtype: "F32", shape: info.shape, data: hf.readTensorBytes(name) });
      continue;
    }
    const [rows, cols] = info.shape as [number, number];
    const p = quantizeRTN(fmt, rows, cols, decodeBytesToF32(info, hf.readTensorBytes(name)));
    if (p.format.layout.kind !== "tensors") throw new Error("expected a tensors layout");
    for (const f of p.format.layout.fields) {
      tensors.push({
        name: name.replace(/weight$/, f.tensor),
        dtype: f.dtype.toUpperCase() as SafetensorsTensor["dtype"],
        shape: f.shape.map((e) => evalIntExpr(e, { in: cols, out: rows })),
        data: p.storage[f.tensor]!,
      });
    }
  }
  const config = { ...hf.config, quantization_config: { quant_method: "gptq", bits: 4, group_size: 32, desc_act: false, sym: false, checkpoint_format: "gptq" } };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  copyFileSync(join(HF, "tokenizer.json"), join(dir, "tokenizer.json"));
  writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
  const spec = join(SPECS, "llama-gptq32.qzo");
  const present = existsSync(spec);

  it.runIf(present)("writes the trained scales into the `scales` tensors, q/k rows back in file order, nothing else changed", () => {
    const bound = bindModel(dir, { spec });
    const tt = trainableTensors(bound.module);
    expect(tt.length).toBe(20);
    const init = initialTrainableValues(bound, tt);
    const modified = init.map((v) => v.map((x, i) => Math.fround(x * (1 + ((i % 5) - 2) * 0.01))));
    const out = join(tmp, "gptq-out");
    exportModel(bound, tt, modified, out);
    const again = bindModel(out, { spec });
    tt.forEach((t, i) => {
      const a = bound.stored(t.param, t.layer);
      const b = again.stored(t.param, t.layer);
      if (a.kind !== "quant" || b.kind !== "quant") throw new Error("expected quantized");
      const ra = unpackRaw(a.packed);
      const rb = unpackRaw(b.packed);
      expect(rb.codes).toEqual(ra.codes);
      expect(rb.zeros).toEqual(ra.zeros);
      expect(rb.scales).toEqual(modified[i]!.map((x) => roundToDType("f16", x)));
    });
    const a = new Uint8Array(readFileSync(join(dir, "model.safetensors")));
    const b = new Uint8Array(readFileSync(join(out, "model.safetensors")));
    expect(b.length).toBe(a.length);
    const scales = [...readSafetensors(join(dir, "model.safetensors")).tensors.values()].filter((t) => t.name.endsWith(".scales"));
    expect(scales.length).toBe(20);
    let diffs = 0;
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) {
        diffs++;
        if (!scales.some((r) => i >= r.byteOffset && i < r.byteOffset + r.byteLength)) throw new Error(`byte ${i} changed outside a scales tensor`);
      }
    }
    expect(diffs).toBeGreaterThan(0);
    // The scales tensor of q_proj holds the values in the file's (rotate-half) row order: column r of
    // scales [in/32, out] is file row r.
    const q = readHfModel(out);
    const qs = q.tensors.get("model.layers.1.self_attn.q_proj.scales")!;
    const fileScales = decodeBytesToF32(qs, q.readTensorBytes(qs.name));
    const [groups, rows] = qs.shape as [number, number];
    const map = fileRowOf(rows, 8);
    const wq1 = modified[tt.findIndex((t) => t.param === "wq" && t.layer === 1)]!;
    for (let g = 0; g < rows; g++) for (let k = 0; k < groups; k++) expect(fileScales[k * rows + map[g]!]).toBe(roundToDType("f16", wq1[g * groups + k]!));
    // The initial values export to an identical directory.
    const same = join(tmp, "gptq-same");
    exportModel(bound, tt, init, same);
    for (const f of readdirSync(dir)) expect(Buffer.compare(readFileSync(join(same, f)), readFileSync(join(dir, f)))).toBe(0);
  });
});

describe("export errors", () => {
  const bound = bindModel(Q4);
  const tt = trainableTensors(bound.module);
  const init = initialTrainableValues(bound, tt);

  it("a directory in the way of the output file: reported, nothing left behind", () => {
    const dir = join(tmp, "busy");
    const target = join(dir, "model.gguf");
    mkdirSync(join(target, "inside"), { recursive: true });
    expect(err(() => exportModel(bound, tt, init, target))).toBe(`${target}: cannot write the exported model: is a directory, expected a file path`);
    expect(readdirSync(dir)).toEqual(["model.gguf"]);
    expect(readdirSync(target)).toEqual(["inside"]);
  });

  it("a file where the output's directory should be", () => {
    const f = join(tmp, "plain-file");
    writeFileSync(f, "x");
    const target = join(f, "sub/model.gguf");
    expect(err(() => exportModel(bound, tt, init, target))).toBe(`${target}: cannot create the output directory ${join(f, "sub")}: a file is in the way (expected a directory)`);
  });

  it("a Hugging Face directory of symbolic links (as in the HF cache): the linked files are never written", () => {
    const linked = join(tmp, "hf-linked");
    mkdirSync(linked);
    const blobs = join(tmp, "blobs");
    mkdirSync(blobs);
    for (const f of readdirSync(HF)) {
      copyFileSync(join(HF, f), join(blobs, f));
      symlinkSync(join(blobs, f), join(linked, f));
    }
    const hf = bindModel(linked);
    const tt1: TrainableTensor[] = [{ param: "wv", layer: 0, field: "weight", t: 0 }];
    const v = initialTrainableValues(hf, tt1).map((a) => a.map((x) => x + 0.5));
    const out = join(tmp, "hf-linked-out");
    exportModel(hf, tt1, v, out);
    expect(Buffer.compare(readFileSync(join(blobs, "model.safetensors")), readFileSync(join(HF, "model.safetensors")))).toBe(0);
    expect(lstatSync(join(out, "model.safetensors")).isSymbolicLink()).toBe(false);
    const s = bindModel(out).stored("wv", 0);
    expect(s.kind === "float" && s.data).toEqual(v[0]);
  });

  it("a failure midway leaves the existing output untouched and no partial file", () => {
    const dir = join(tmp, "keep");
    mkdirSync(dir);
    const target = join(dir, "model.gguf");
    writeFileSync(target, "previous export");
    const bad = init.map((v) => v.slice());
    bad[tt.length - 1]![5] = Number.NaN;
    expect(err(() => exportModel(bound, tt, bad, target))).toBe(`${Q4}: output.scale: value 5 is NaN: expected a finite number`);
    const big = init.map((v) => v.slice());
    big[3]![0] = 1e6;
    expect(err(() => exportModel(bound, tt, big, target))).toBe(`${Q4}: wq[3].scale: value 0 (1000000) does not fit f16`);
    expect(readFileSync(target, "utf8")).toBe("previous export");
    expect(readdirSync(dir)).toEqual(["model.gguf"]);
  });

  it("mismatched values and fields", () => {
    const out = join(tmp, "never.gguf");
    expect(err(() => exportModel(bound, tt, init.slice(1), out))).toBe(`${out}: 30 value arrays for 31 trainable tensors: expected one per tensor`);
    const short = init.map((v, i) => (i === 2 ? v.subarray(1) : v));
    expect(err(() => exportModel(bound, tt, short, out))).toBe(`${Q4}: wq[2].scale: 127 values given, expected 128`);
    expect(err(() => exportModel(bound, [{ param: "wq", layer: 0, field: "weight", t: 0 }], [init[0]!], out))).toBe(
      `${Q4}: wq[0].weight: trainable as a float weight, but 'blk.0.attn_q.weight' is stored as q4_0`,
    );
    expect(err(() => exportModel(bound, [{ param: "w2", layer: 0, field: "scale", t: 0 }], [init[0]!], out))).toBe(
      `${Q4}: w2[0].scale: its scales are trainable, but 'blk.0.ffn_down.weight' is a float (F16) tensor`,
    );
    expect(existsSync(out)).toBe(false);
    expect(leftovers(tmp)).toEqual([]);
  });

  it("a Hugging Face output inside its input, or over a file", () => {
    const hf = bindModel(HF);
    const tt1: TrainableTensor[] = [{ param: "wv", layer: 0, field: "weight", t: 0 }];
    const v = initialTrainableValues(hf, tt1);
    expect(err(() => exportModel(hf, tt1, v, join(HF, "sub")))).toBe(`${join(HF, "sub")}: the output directory is inside the input model directory ${HF}: expected a path outside it`);
    const f = join(tmp, "a-file");
    writeFileSync(f, "x");
    expect(err(() => exportModel(hf, tt1, v, f))).toBe(`${f}: exists and is not a directory: expected a directory path for a Hugging Face model`);
  });
});

describe("scales checkpoints", () => {
  const bound = bindModel(Q4);
  const tt = trainableTensors(bound.module);
  const values = initialTrainableValues(bound, tt).map((v) => v.map((x) => x * 0.5));
  const sha = modelSha256(Q4);
  const path = join(tmp, "run/scales.safetensors");
  saveScalesCheckpoint(path, {
    step: 1200,
    runSeed: 18446744073709551615n,
    values,
    trainables: tt,
    meta: { model: Q4, modelSha256: sha, spec: bound.spec, config: { lr: 1e-7, eps: 1e-3 }, bestEvalLoss: 1.25, extra: { note: "hi" } },
  });

  it("hashes the model file, and a directory's safetensors", () => {
    expect(sha).toMatch(/^[0-9a-f]{64}$/);
    expect(modelSha256(HF)).toBe(modelSha256(join(HF, "model.safetensors")));
    expect(err(() => modelSha256(join(tmp, "nothing")))).toBe(`${join(tmp, "nothing")}: file not found (expected the model file or directory)`);
  });

  it("round-trips values and metadata; stores one F32 tensor per trainable", () => {
    const c = loadScalesCheckpoint(path, { trainables: tt, sizes: values.map((v) => v.length), modelSha256: sha });
    expect(c.step).toBe(1200);
    expect(c.runSeed).toBe(18446744073709551615n);
    expect(c.values).toEqual(values);
    expect(c.trainables).toEqual(tt);
    expect(c.meta).toEqual({ model: Q4, modelSha256: sha, spec: bound.spec, config: { lr: 1e-7, eps: 1e-3 }, bestEvalLoss: 1.25, extra: { note: "hi" } });
    const st = readSafetensors(path);
    expect(st.metadata["format"]).toBe("qzo-scales");
    expect(st.metadata["version"]).toBe("1");
    expect(st.metadata["runSeed"]).toBe("18446744073709551615");
    expect([...st.tensors.keys()].sort()).toEqual(tt.map(scalesTensorName).sort());
    expect(scalesTensorName(tt[0]!)).toBe("wq.0.scale");
    expect(scalesTensorName({ param: "output", field: "scale" })).toBe("output.scale");
    expect(st.tensors.get("output.scale")!.dtype).toBe("F32");
    expect(statSync(path).size).toBeLessThan(40_000);
    expect(leftovers(dirname(path))).toEqual([]);
  });

  it("rejects another model, another spec, other sizes, a truncated or foreign file", () => {
    expect(err(() => loadScalesCheckpoint(path, { trainables: tt, modelSha256: "0".repeat(64) }))).toBe(
      `${path}: wrong model: the checkpoint was trained on ${Q4} (sha256 ${sha.slice(0, 16)}...), this model's sha256 is 0000000000000000...`,
    );
    expect(err(() => loadScalesCheckpoint(path, { trainables: tt.slice(0, 30) }))).toBe(
      `${path}: wrong spec or trainable selection: the checkpoint (spec ${bound.spec}) holds 31 trainable tensors, this run has 30; tensor 30 is output.scale in the checkpoint, (none) here`,
    );
    const other = tt.map((t) => (t.t === 5 ? { ...t, field: "min" as const } : t));
    expect(err(() => loadScalesCheckpoint(path, { trainables: other }))).toBe(
      `${path}: wrong spec or trainable selection: the checkpoint (spec ${bound.spec}) holds 31 trainable tensors, this run has 31; tensor 5 is wk.0.scale in the checkpoint, wk.0.min here`,
    );
    const sizes = values.map((v, i) => (i === 1 ? v.length + 1 : v.length));
    expect(err(() => loadScalesCheckpoint(path, { trainables: tt, sizes }))).toBe(`${path}: tensor "wq.1.scale" has 128 values, this model's wq.1.scale has 129: wrong model or spec`);
    const cut = join(tmp, "cut.safetensors");
    writeFileSync(cut, readFileSync(path));
    truncateSync(cut, statSync(cut).size - 10);
    expect(err(() => loadScalesCheckpoint(cut, { trainables: tt }))).toMatch(new RegExp(`^${cut}: at byte \\d+: truncated tensor data: tensor "[^"]+" expected to end at byte \\d+, but the file ends at byte \\d+$`));
    const foreign = join(tmp, "hf.safetensors");
    writeFileSync(foreign, readFileSync(join(HF, "model.safetensors")));
    expect(err(() => loadScalesCheckpoint(foreign, { trainables: tt }))).toBe(`${foreign}: metadata format is "pt": expected "qzo-scales" (a qzo scales checkpoint)`);
    expect(err(() => loadScalesCheckpoint(join(tmp, "none.safetensors"), { trainables: tt }))).toBe(`${join(tmp, "none.safetensors")}: file not found`);
  });

  it("rejects bad input to save, and replaces an existing checkpoint atomically", () => {
    const p2 = join(tmp, "run2/scales.safetensors");
    const meta = { model: Q4, modelSha256: sha, spec: bound.spec };
    expect(err(() => saveScalesCheckpoint(p2, { step: 1, runSeed: 1n, values: values.slice(1), trainables: tt, meta }))).toBe(
      `${p2}: 30 value arrays for 31 trainable tensors: expected one per tensor`,
    );
    expect(err(() => saveScalesCheckpoint(p2, { step: 1, runSeed: 1n, values, trainables: tt, meta: { ...meta, extra: { step: "9" } } }))).toBe(
      `${p2}: extra metadata key "step" clashes with a standard key`,
    );
    saveScalesCheckpoint(p2, { step: 1, runSeed: 1n, values, trainables: tt, meta });
    saveScalesCheckpoint(p2, { step: 2, runSeed: 1n, values, trainables: tt, meta });
    expect(loadScalesCheckpoint(p2, { trainables: tt }).step).toBe(2);
    expect(readdirSync(dirname(p2))).toEqual(["scales.safetensors"]);
  });
});
