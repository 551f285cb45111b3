/**
 * AQLM 2x8 against llama.cpp's Q8_0 and Q4_0 on the same models (a program, not a test): for
 * stories260K and babyllama, the relative reconstruction error ||W - What||^2 / ||W||^2 of the
 * decoder layers' linear weights against the F32 model, and the held-out loss of each variant on
 * data/stories260K-self/eval.txt (`qzo eval`). The AQLM files are made here by `qzo quantize` from
 * the F32 files (no calibration data: AQLM's own quantizer also uses input activations, which this
 * one does not).
 *
 *   npm run bench:aqlm     # needs the shared test models beside the repository (../shared/models)
 */
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { configInts, paramLayers } from "../src/compiler/ir/queries.js";
import { machineInfo } from "../src/runtime/bench/machine.js";
import { bindModel } from "../src/runtime/load/bind.js";
import { dequantize } from "../src/runtime/quant/codec.js";
import { packageRoot } from "../src/util/package-root.js";

const root = packageRoot();
const SHARED = join(root, "..", "shared", "models");
const CLI = join(root, "dist", "src", "cli", "qzo.js");
const EVAL = join(root, "data", "stories260K-self", "eval.txt");
const LINEARS = ["wq", "wk", "wv", "wo", "w1", "w2", "w3"];

interface Family {
  name: string;
  files: Record<string, string>;
  /** The F32 source `qzo quantize` reads. */
  source: string;
  tokenizer?: string;
}

function relativeError(variant: string, f32: string): number {
  const a = bindModel(variant);
  const b = bindModel(f32);
  const ints = configInts(b.module);
  let err = 0;
  let norm = 0;
  for (const p of b.module.params.filter((x) => LINEARS.includes(x.name))) {
    for (const layer of paramLayers(p, ints)) {
      const v = a.weights.get(p.name, layer);
      const w = v.kind === "quant" ? dequantize(v.tensor) : v.data;
      const ref = b.weights.get(p.name, layer);
      if (ref.kind !== "float") throw new Error(`${f32}: '${p.name}' is not float`);
      for (let i = 0; i < w.length; i++) {
        err += (w[i]! - ref.data[i]!) ** 2;
        norm += ref.data[i]! ** 2;
      }
    }
  }
  return err / norm;
}

async function evalLoss(model: string, tokenizer?: string): Promise<number> {
  const r = await execa("node", [CLI, "eval", "--model", model, "--data", EVAL, "--json", ...(tokenizer ? ["--tokenizer", tokenizer] : [])], { reject: false });
  if (r.exitCode !== 0) throw new Error(`qzo eval ${model}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { loss: number }).loss;
}

async function main(): Promise<void> {
  if (!existsSync(SHARED)) throw new Error(`${SHARED}: the shared test models are needed`);
  const tmp = mkdtempSync(join(tmpdir(), "qzo-aqlm-bench-"));
  const families: Family[] = [
    {
      name: "stories260K",
      files: { F32: join(SHARED, "gguf", "stories260K-f32.gguf"), Q8_0: join(SHARED, "gguf", "stories260K-q8_0.gguf"), Q4_0: join(SHARED, "gguf", "stories260K-q4_0.gguf") },
      source: join(root, "models", "weights", "stories260K", "hf"),
    },
    {
      name: "babyllama",
      files: { F32: join(SHARED, "gguf", "babyllama-tok105-f32.gguf"), Q8_0: join(SHARED, "gguf", "babyllama-tok105-q8_0.gguf"), Q4_0: join(SHARED, "gguf", "babyllama-tok105-q4_0.gguf") },
      source: join(SHARED, "gguf", "babyllama-tok105-f32.gguf"),
      tokenizer: join(SHARED, "babyllama-tok105", "tok105.model"),
    },
  ];
  const lines = [`AQLM 2x8 (qzo quantize, seed 0) against llama.cpp's Q8_0 and Q4_0; ${machineInfo().date.slice(0, 10)}`, ""];
  const rows: Record<string, unknown>[] = [];
  for (const f of families) {
    const aqlm = join(tmp, f.name);
    const q = await execa("node", [CLI, "quantize", "--model", f.source, "--out", aqlm], { reject: false });
    if (q.exitCode !== 0) throw new Error(`qzo quantize ${f.source}: ${q.stderr}`);
    lines.push(`${f.name}: held-out loss on data/stories260K-self/eval.txt (nats/token) and relative error of the layers' linear weights`);
    lines.push("variant   bits/weight (linears)  rel. error  eval loss");
    const variants: [string, string, string][] = [
      ["F32", f.files["F32"]!, "32"],
      ["Q8_0", f.files["Q8_0"]!, "8.5"],
      ["Q4_0", f.files["Q4_0"]!, "4.5"],
      ["AQLM 2x8", aqlm, "2 (+ tables)"],
    ];
    for (const [name, path, bits] of variants) {
      const err = name === "F32" ? 0 : relativeError(path, f.files["F32"]!);
      const loss = await evalLoss(path, name === "AQLM 2x8" ? f.tokenizer : undefined);
      rows.push({ model: f.name, variant: name, relativeError: err, evalLoss: loss });
      lines.push(`${name.padEnd(8)}  ${bits.padStart(21)}  ${err.toExponential(2).padStart(10)}  ${loss.toFixed(4).padStart(9)}`);
    }
    lines.push("");
  }
  const text = lines.join("\n");
  process.stdout.write(text + "\n");
  if (process.argv.includes("--no-write")) return;
  const dir = join(root, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const stem = join(dir, `aqlm-quality-${new Date().toISOString().slice(0, 10)}`);
  writeFileSync(`${stem}.json`, JSON.stringify({ machine: machineInfo(), rows }, null, 2) + "\n");
  writeFileSync(`${stem}.txt`, text + "\n");
}

await main();
