/**
 * The main job (npm run demo): fine-tune the quantization scales of
 * stories260K Q4_0 (made by llama.cpp) with QZO on the CPU, on text the F32
 * model wrote itself, and measure held-out loss before and after, with qzo and
 * with llama.cpp on the exported GGUF. The training data are that text with the
 * F32 model's top-16 next-token distributions (qzo distill), so the loss is the
 * distillation cross-entropy. Prints how much of the Q4_0-to-F32 gap was
 * recovered and writes RUN_DIR/demo.json.
 *
 *   node dist/scripts/demo.js [--out RUN_DIR] [extra qzo train flags...]
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { packageRoot } from "../src/util/package-root.js";

const root = packageRoot();
const qzo = join(root, "dist", "src", "cli", "qzo.js");
const F32 = join(root, "models", "weights", "stories260K", "stories260K-f32.gguf");
const Q4 = join(root, "models", "weights", "stories260K", "stories260K-q4_0.gguf");
const TRAIN = join(root, "data", "stories260K-self", "train.txt");
const EVAL = join(root, "data", "stories260K-self", "eval.txt");

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function evalLoss(model: string): Promise<{ loss: number; tokens: number }> {
  const r = await execa("node", [qzo, "eval", "--model", model, "--data", EVAL, "--json"]);
  const j = JSON.parse(r.stdout) as { loss: number; tokens: number };
  return { loss: j.loss, tokens: j.tokens };
}

/** Mean NLL that llama.cpp assigns to the same held-out windows (BOS + 127 tokens each). */
async function llamaCppLoss(model: string): Promise<number | undefined> {
  const ref = await import("../test/reference/llama-cpp.js").catch(() => undefined);
  if (!ref || !(await ref.llamaCppAvailable())) return undefined;
  const { bindModel } = await import("../src/runtime/load/bind.js");
  const { modelTokenizer } = await import("../src/runtime/load/tokenizer.js");
  const { loadDataset } = await import("../src/runtime/data/dataset.js");
  const tok = modelTokenizer(bindModel(model).checkpoint);
  const ds = loadDataset(EVAL, tok, 128);
  if (ds.kind !== "lm") return undefined;
  let sum = 0;
  let n = 0;
  for (const w of ds.windows) {
    const lp = await ref.tokenLogProbs(model, Array.from(w));
    for (const x of lp) sum -= x;
    n += lp.length;
  }
  await ref.disposeLlamaCpp();
  return sum / n;
}

async function main(): Promise<void> {
  const out = arg("--out") ?? join(root, "runs", `demo-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  const extra = process.argv.slice(2).filter((_, i, a) => a[i] !== "--out" && a[i - 1] !== "--out");
  for (const f of [F32, Q4, TRAIN, EVAL]) if (!existsSync(f)) throw new Error(`missing ${f} (see data/stories260K-self/README.md)`);
  console.log(`qzo demo on ${cpus().length} x ${cpus()[0]?.model ?? "CPU"}: QZO fine-tuning of stories260K Q4_0 scales`);
  const f32 = await evalLoss(F32);
  const q4 = await evalLoss(Q4);
  console.log(`held-out loss before: F32 ${f32.loss.toFixed(4)}, Q4_0 ${q4.loss.toFixed(4)} nats/token (gap ${(q4.loss - f32.loss).toFixed(4)}, ${f32.tokens} tokens)`);
  mkdirSync(out, { recursive: true });
  const t0 = Date.now();
  const targets = join(out, "train.distill.safetensors");
  await execa("node", [qzo, "distill", "--model", F32, "--data", TRAIN, "--out", targets], { stdio: "inherit" });
  await execa("node", [qzo, "train", "--model", Q4, "--data", targets, "--out", out, ...extra], { stdio: "inherit" });
  const seconds = (Date.now() - t0) / 1000;
  await execa("node", [qzo, "report", out], { stdio: "inherit" });
  const tuned = await evalLoss(join(out, "model.gguf"));
  const recovered = (q4.loss - tuned.loss) / (q4.loss - f32.loss);
  console.log(`held-out loss after ${seconds.toFixed(0)} s of distillation and training: ${tuned.loss.toFixed(4)} nats/token; recovered ${(100 * recovered).toFixed(1)}% of the Q4_0-to-F32 gap`);
  const cpp = { f32: await llamaCppLoss(F32), q4_0: await llamaCppLoss(Q4), tuned: await llamaCppLoss(join(out, "model.gguf")) };
  if (cpp.f32 !== undefined && cpp.q4_0 !== undefined && cpp.tuned !== undefined) {
    const rc = (cpp.q4_0 - cpp.tuned) / (cpp.q4_0 - cpp.f32);
    console.log(`llama.cpp on the same windows: F32 ${cpp.f32.toFixed(4)}, Q4_0 ${cpp.q4_0.toFixed(4)}, fine-tuned ${cpp.tuned.toFixed(4)}; recovered ${(100 * rc).toFixed(1)}%`);
  } else {
    console.log("llama.cpp (node-llama-cpp) is not available: skipped its measurement");
  }
  const run = JSON.parse(readFileSync(join(out, "run.json"), "utf8")) as Record<string, unknown>;
  const result = { machine: { cpu: cpus()[0]?.model, cores: cpus().length, node: process.version }, seconds, qzo: { f32: f32.loss, q4_0: q4.loss, tuned: tuned.loss, recovered }, llamaCpp: cpp, hyper: run["hyper"] };
  writeFileSync(join(out, "demo.json"), JSON.stringify(result, null, 1) + "\n");
  console.log(`wrote ${join(out, "demo.json")}`);
}

main().catch((e: unknown) => {
  console.error(`demo: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
  process.exitCode = 1;
});
