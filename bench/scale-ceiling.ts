/**
 * How much of the quantization gap the scales can recover at all, and how much of it QZO gets (a
 * program, not a test). On stories260K Q4_0 (bundled; babyllama Q4_0 from the shared test models
 * with `--models babyllama`), for the distillation loss (the F32 model's
 * top-16, `qzo distill`) and the language-modelling loss on the text the F32 model wrote
 * (data/stories260K-self), it trains the same trainable scales two ways:
 *
 * - first order: Adam (beta 0.9, 0.999) on the relative change of every scale, s = s0 (1 + theta),
 *   with exact gradients from the reference interpreter's reverse mode (src/runtime/interpret/
 *   gradient.ts), lr decaying linearly to 0, batches from the run's seeded batch order;
 * - QZO: `qzo train` with the spec's settings for the loss and the given number of steps.
 *
 * Both train on the first nine tenths of the data (the trainer's own split) and are scored on
 * data/stories260K-self/eval.txt (64 stories never used for training), as the share of the Q4_0-to-F32
 * gap recovered; the first-order run is scored at several steps. It also reports where the
 * gradient is at the start: the share of the squared mean gradient (over the first batches) held
 * by each kind of weight. Writes bench/results/scale-ceiling-cpu-<date>.{txt,json}.
 *
 *   npm run bench:ceiling
 *   node dist/bench/scale-ceiling.js --models babyllama --losses distill --steps 100 --qzo-steps 3600 --label babyllama
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { createInterpreterBackend } from "../src/runtime/backends/interp-backend.js";
import { machineInfo } from "../src/runtime/bench/machine.js";
import { batchOrder, datasetSize, loadDataset, makeBatch } from "../src/runtime/data/dataset.js";
import { lossGradient } from "../src/runtime/interpret/gradient.js";
import { bindModel } from "../src/runtime/load/bind.js";
import { modelTokenizer } from "../src/runtime/load/tokenizer.js";
import { modelSha256, saveScalesCheckpoint } from "../src/runtime/train/checkpoint.js";
import { heldOutCount } from "../src/runtime/train/run.js";
import { packageRoot } from "../src/util/package-root.js";
import { heldOutLoss, MODELS, pool, qzo, TEXT } from "./cli-runs.js";

const root = packageRoot();
const SELF = join(root, "dist", "bench", "scale-ceiling.js");
function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const steps = Number(arg("--steps") ?? 300);
const batch = Number(arg("--batch") ?? 4);
const lr = Number(arg("--lr") ?? 1e-2);
const qzoSteps = Number(arg("--qzo-steps") ?? 1500);
const modelName = arg("--models") ?? "stories260K";
const losses = (arg("--losses") ?? "distill,lm").split(",");
const label = arg("--label");
const model = MODELS.find((x) => x.name === modelName);
if (!model) throw new Error(`--models ${modelName}: expected one of ${MODELS.map((x) => x.name).join(", ")}`);
const { q4: Q4, f32: F32 } = model;
const SEED = 1;

interface FirstOrder {
  loss: string;
  /** [step, seconds, checkpoint file] at each scored step. */
  points: [number, number, string][];
  /** Share of the squared mean gradient at the start, by weight kind (param name). */
  gradientShare: Record<string, number>;
}

/** The worker: Adam on the scales for one loss, writing a checkpoint at each scored step. */
function firstOrder(loss: string, data: string, dir: string): FirstOrder {
  const bound = bindModel(Q4);
  const ds = loadDataset(data, modelTokenizer(bound.checkpoint), 128);
  const n = datasetSize(ds);
  const train = n - heldOutCount(n);
  const be = createInterpreterBackend(bound, { loss });
  const s0 = be.values().map((v) => Float32Array.from(v));
  const theta = s0.map((v) => new Float64Array(v.length));
  const m1 = s0.map((v) => new Float64Array(v.length));
  const m2 = s0.map((v) => new Float64Array(v.length));
  const meanGrad = s0.map((v) => new Float64Array(v.length));
  const scored = new Set([25, 50, 100, 200, steps].filter((s) => s <= steps));
  const points: [number, number, string][] = [];
  const t0 = Date.now();
  const scales = () => s0.map((v, t) => Float32Array.from(v, (x, i) => x * (1 + theta[t]![i]!)));
  const shareSteps = Math.min(8, steps);
  for (let s = 1; s <= steps; s++) {
    be.setValues(scales());
    const b = makeBatch(ds, batchOrder(train, batch, SEED, s - 1));
    const { grads } = lossGradient(bound.module, loss, b, be.weights);
    const rate = lr * (1 - (s - 1) / steps);
    for (let t = 0; t < theta.length; t++) {
      for (let i = 0; i < theta[t]!.length; i++) {
        const g = grads[t]![i]! * s0[t]![i]!;
        if (s <= shareSteps) meanGrad[t]![i] += g / shareSteps;
        m1[t]![i] = 0.9 * m1[t]![i]! + 0.1 * g;
        m2[t]![i] = 0.999 * m2[t]![i]! + 0.001 * g * g;
        theta[t]![i] -= (rate * (m1[t]![i]! / (1 - 0.9 ** s))) / (Math.sqrt(m2[t]![i]! / (1 - 0.999 ** s)) + 1e-12);
      }
    }
    if (scored.has(s)) {
      const file = join(dir, `${loss}-${s}.safetensors`);
      saveScalesCheckpoint(file, {
        step: s,
        runSeed: BigInt(SEED),
        values: scales(),
        trainables: [...be.trainables],
        meta: { model: Q4, modelSha256: modelSha256(Q4), spec: bound.spec },
      });
      points.push([s, (Date.now() - t0) / 1000, file]);
    }
  }
  const share: Record<string, number> = {};
  let total = 0;
  be.trainables.forEach((tt, t) => {
    const e = meanGrad[t]!.reduce((a, g) => a + g * g, 0);
    share[tt.param] = (share[tt.param] ?? 0) + e;
    total += e;
  });
  for (const k of Object.keys(share)) share[k] = share[k]! / total;
  return { loss, points, gradientShare: share };
}

if (process.argv.includes("--worker")) {
  const r = firstOrder(arg("--loss")!, arg("--data")!, arg("--dir")!);
  writeFileSync(arg("--result")!, JSON.stringify(r));
  process.exit(0);
}

const work = mkdtempSync(join(tmpdir(), "qzo-ceiling-"));
const machine = machineInfo();
const t0 = Date.now();
const ref = { f32: await heldOutLoss(F32), q4: await heldOutLoss(Q4) };
const gap = (loss: number) => (ref.q4 - loss) / (ref.q4 - ref.f32);
const distillData = join(work, "train.distill");
await qzo(["distill", "--model", F32, "--data", TEXT, "--out", distillData]);
const dataOf = (loss: string) => (loss === "distill" ? distillData : TEXT);

const jobs = losses.flatMap((loss) => [
  async () => {
    const result = join(work, `${loss}.json`);
    await execa("node", [SELF, "--worker", "--models", modelName, "--loss", loss, "--data", dataOf(loss), "--dir", work, "--result", result, "--steps", String(steps), "--batch", String(batch), "--lr", String(lr)], { env: { QZO_THREADS: "1" } });
    const fo = JSON.parse(readFileSync(result, "utf8")) as FirstOrder;
    const scoredPoints = [];
    for (const [s, sec, file] of fo.points) {
      const h = await heldOutLoss(Q4, file);
      scoredPoints.push({ step: s, seconds: sec, heldOut: h, recovered: gap(h) });
    }
    return { kind: "first order" as const, loss, points: scoredPoints, gradientShare: fo.gradientShare };
  },
  async () => {
    const out = join(work, `qzo-${loss}`);
    const s0 = Date.now();
    await qzo(["train", "--model", Q4, "--data", dataOf(loss), "--out", out, "--device", "cpu", "--steps", String(qzoSteps), "--eval-every", "0", "--seed", String(SEED)]);
    const header = JSON.parse(readFileSync(join(out, "log.jsonl"), "utf8").split("\n")[0]!) as { batch: number; lr: number };
    const h = await heldOutLoss(join(out, "model.gguf"));
    return { kind: "qzo" as const, loss, batch: header.batch, lr: header.lr, steps: qzoSteps, seconds: (Date.now() - s0) / 1000, heldOut: h, recovered: gap(h) };
  },
]);
const results = await pool<Awaited<ReturnType<(typeof jobs)[number]>>>(jobs);
rmSync(work, { recursive: true, force: true });

const date = new Date().toISOString().slice(0, 10);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const lines = [
  `How much of the Q4_0 gap the scales can recover: first-order Adam against QZO, ${modelName}, ${date}`,
  `machine: ${machine.cpu} (${machine.cores} cores), Node ${process.version}; ${((Date.now() - t0) / 60000).toFixed(1)} minutes`,
  `held-out: data/stories260K-self/eval.txt; F32 ${ref.f32.toFixed(4)}, Q4_0 ${ref.q4.toFixed(4)}; gap recovered = (Q4_0 - run) / (Q4_0 - F32)`,
  `first order: Adam on s = s0 (1 + theta), lr ${lr} linear to 0 over ${steps} steps, batch ${batch}, exact gradients (interpreter, one thread)`,
  "",
  "loss     method                        steps  sequences  seconds  held-out  gap recovered",
];
for (const loss of losses) {
  for (const r of results.filter((x) => x.loss === loss)) {
    if (r.kind === "qzo") {
      lines.push(`${loss.padEnd(8)} ${`QZO (lr ${r.lr}, batch ${r.batch})`.padEnd(29)} ${String(r.steps).padStart(5)}  ${String(2 * r.steps * r.batch).padStart(9)}  ${r.seconds.toFixed(0).padStart(7)}  ${r.heldOut.toFixed(4).padStart(8)}  ${pct(r.recovered).padStart(13)}`);
    } else {
      for (const p of r.points) {
        lines.push(`${loss.padEnd(8)} ${"first-order Adam".padEnd(29)} ${String(p.step).padStart(5)}  ${String(p.step * batch).padStart(9)}  ${p.seconds.toFixed(0).padStart(7)}  ${p.heldOut.toFixed(4).padStart(8)}  ${pct(p.recovered).padStart(13)}`);
      }
    }
  }
}
lines.push("", "share of the squared mean gradient at the start (first batches), by weight:");
for (const r of results) {
  if (r.kind !== "first order") continue;
  const shares = Object.entries(r.gradientShare).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${pct(v)}`);
  lines.push(`  ${r.loss.padEnd(8)} ${shares.join(", ")}`);
}
lines.push("", "sequences: sequence forward passes for QZO (2 per example a step); forward and backward passes for Adam.");
const text = lines.join("\n") + "\n";
process.stdout.write(text);
if (!process.argv.includes("--no-write")) {
  const dir = join(root, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `scale-ceiling-cpu-${date}${label ? `-${label}` : ""}`);
  writeFileSync(`${base}.txt`, text);
  writeFileSync(`${base}.json`, JSON.stringify({ date, machine, model: modelName, ref, steps, batch, lr, qzoSteps, results }, null, 2) + "\n");
  process.stderr.write(`scale-ceiling: wrote ${base}.txt and .json\n`);
}
