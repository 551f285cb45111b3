/**
 * Variance reduction for QZO (a program, not a test): plain Q-SPSA against the step-rule options
 * (seed-space momentum, the rms step size, more directions per step) and block-coordinate
 * directions (a tensor period) at equal forward passes, on
 * stories260K Q4_0 (bundled) and babyllama Q4_0 (the shared test models, when present), with the
 * distillation loss (the F32 model's top-16, `qzo distill`, as the demo trains) and the language-
 * modelling loss on the text the F32 model wrote (data/stories260K-self). Each run trains with
 * `qzo train` on one thread, two runs at a time, evaluating (and keeping its best checkpoint) on the
 * last tenth of its training data, and is scored by its held-out loss on
 * data/stories260K-self/eval.txt (64 stories), never used for training or model selection; the gap
 * recovered is (Q4_0 - run) / (Q4_0 - F32) of that loss. Writes a table and the curves of the runs'
 * own evaluations (forward passes on the x axis) as an SVG.
 *
 *   npm run bench:ablation                                   # writes bench/results/qzo-ablation-cpu-<date>.{json,txt,svg}
 *   node dist/bench/qzo-ablation.js --passes 3000 --seeds 1,2 --models stories260K --losses distill --variants "plain Q-SPSA,rms step" --label NAME
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { machineInfo } from "../src/runtime/bench/machine.js";
import { packageRoot } from "../src/util/package-root.js";
import { heldOutLoss, MODELS, pool, qzo, TEXT } from "./cli-runs.js";

const root = packageRoot();

/** A variant: extra `qzo train` flags, and its forward passes per step (2 per direction). */
interface Variant {
  name: string;
  flags: string[];
  passesPerStep: number;
}

function variants(loss: string): Variant[] {
  // The spec's settings per loss (models/llama.qzo): distill lr 5e-3, batch 8; lm lr 2e-3, batch 16.
  const lr = loss === "distill" ? 5e-3 : 2e-3;
  return [
    { name: "plain Q-SPSA", flags: [], passesPerStep: 2 },
    { name: "2 directions", flags: ["--directions", "2"], passesPerStep: 4 },
    { name: "momentum 0.9", flags: ["--momentum", "0.9"], passesPerStep: 2 },
    { name: "momentum 0.9, 2x lr", flags: ["--momentum", "0.9", "--lr", String(2 * lr)], passesPerStep: 2 },
    { name: "rms step", flags: ["--step-size", "rms", "--lr", String(lr / 8)], passesPerStep: 2 },
    { name: "momentum 0.9 + rms step", flags: ["--momentum", "0.9", "--step-size", "rms", "--lr", String(lr / 4)], passesPerStep: 2 },
    { name: "tensor period 4", flags: ["--tensor-period", "4"], passesPerStep: 2 },
    { name: "tensor period 4 at 2x lr", flags: ["--tensor-period", "4", "--lr", String(2 * lr)], passesPerStep: 2 },
  ];
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const passes = Number(arg("--passes") ?? 6000);
const seeds = (arg("--seeds") ?? "1,2,3").split(",").map(Number);
const modelNames = (arg("--models") ?? "stories260K,babyllama").split(",");
const losses = (arg("--losses") ?? "distill,lm").split(",");
const only = arg("--variants")?.split(",");
const write = !process.argv.includes("--no-write");
const label = arg("--label");

interface Run {
  model: string;
  loss: string;
  variant: string;
  seed: number;
  steps: number;
  heldOut: number;
  recovered: number;
  /** [forward passes, eval loss on the last tenth of the run's data]. */
  curve: [number, number][];
  seconds: number;
}

const work = mkdtempSync(join(tmpdir(), "qzo-ablation-"));
const machine = machineInfo();
const runs: Run[] = [];
const refs: Record<string, { f32: number; q4: number }> = {};
const t0 = Date.now();
for (const m of MODELS.filter((x) => modelNames.includes(x.name))) {
  if (!existsSync(m.q4) || !existsSync(m.f32)) {
    process.stderr.write(`qzo-ablation: ${m.name} skipped (${m.q4} or ${m.f32} missing)\n`);
    continue;
  }
  const ref = { f32: await heldOutLoss(m.f32), q4: await heldOutLoss(m.q4) };
  refs[m.name] = ref;
  for (const loss of losses) {
    let data = TEXT;
    if (loss === "distill") {
      data = join(work, `${m.name}-train.distill`);
      await qzo(["distill", "--model", m.f32, "--data", TEXT, "--out", data]);
    }
    const vs = variants(loss).filter((v) => !only || only.includes(v.name));
    const jobs = vs.flatMap((v) =>
      seeds.map((seed) => async (): Promise<Run> => {
        const steps = Math.floor(passes / v.passesPerStep);
        const out = join(work, `${m.name}-${loss}-${v.name.replace(/\W+/g, "_")}-${seed}`);
        const s0 = Date.now();
        await qzo(["train", "--model", m.q4, "--data", data, "--out", out, "--device", "cpu", "--steps", String(steps), "--eval-every", String(Math.max(1, Math.floor(steps / 10))), "--seed", String(seed), ...v.flags]);
        const curve = readFileSync(join(out, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step?: number; eval_loss?: number })
          .filter((r) => r.eval_loss !== undefined)
          .map((r): [number, number] => [r.step! * v.passesPerStep, r.eval_loss!]);
        const held = await heldOutLoss(join(out, "model.gguf"));
        rmSync(out, { recursive: true, force: true });
        const run = { model: m.name, loss, variant: v.name, seed, steps, heldOut: held, recovered: (ref.q4 - held) / (ref.q4 - ref.f32), curve, seconds: (Date.now() - s0) / 1000 };
        process.stderr.write(`qzo-ablation: ${m.name} ${loss} ${v.name} seed ${seed}: held-out ${held.toFixed(4)}, ${(100 * run.recovered).toFixed(1)}% of the gap, ${run.seconds.toFixed(0)} s\n`);
        return run;
      }),
    );
    runs.push(...(await pool(jobs)));
  }
}
rmSync(work, { recursive: true, force: true });

/** The table: per model, loss and variant, the mean and range over seeds. */
function table(): string {
  const lines = [
    `QZO variance-reduction ablation at ${passes} forward passes per run, ${new Date().toISOString().slice(0, 10)}`,
    `machine: ${machine.cpu} (${machine.cores} cores), Node ${machine.node}; ${((Date.now() - t0) / 60000).toFixed(1)} minutes`,
    `held-out: data/stories260K-self/eval.txt (language-modelling loss, nats/token); gap recovered = (Q4_0 - run) / (Q4_0 - F32)`,
    "",
  ];
  for (const [name, r] of Object.entries(refs)) lines.push(`${name}: F32 ${r.f32.toFixed(4)}, Q4_0 ${r.q4.toFixed(4)}, gap ${(r.q4 - r.f32).toFixed(4)}`);
  lines.push("", "model        loss     variant                   steps  held-out (mean)  gap recovered: mean [min, max] over seeds");
  const groups = new Map<string, Run[]>();
  for (const r of runs) groups.set(`${r.model}|${r.loss}|${r.variant}`, [...(groups.get(`${r.model}|${r.loss}|${r.variant}`) ?? []), r]);
  for (const g of groups.values()) {
    const mean = (f: (r: Run) => number) => g.reduce((a, r) => a + f(r), 0) / g.length;
    const rec = g.map((r) => 100 * r.recovered);
    lines.push(
      `${g[0]!.model.padEnd(12)} ${g[0]!.loss.padEnd(8)} ${g[0]!.variant.padEnd(25)} ${String(g[0]!.steps).padStart(5)}  ${mean((r) => r.heldOut).toFixed(4).padStart(15)}  ` +
        `${mean((r) => 100 * r.recovered).toFixed(1)}% [${Math.min(...rec).toFixed(1)}, ${Math.max(...rec).toFixed(1)}] (${g.length} seeds)`,
    );
  }
  return lines.join("\n") + "\n";
}

/** The mean eval curve of each (model, loss, variant) over forward passes, one panel per (model, loss). */
function svg(): string {
  const panels = [...new Set(runs.map((r) => `${r.model}|${r.loss}`))];
  const W = 560;
  const H = 300;
  const colors = ["#555555", "#1f5fa8", "#d2531d", "#3a8d3a", "#7b4ea3", "#8a6d1f"];
  const parts: string[] = [];
  panels.forEach((p, i) => {
    const inPanel = runs.filter((r) => `${r.model}|${r.loss}` === p);
    const names = [...new Set(inPanel.map((r) => r.variant))];
    const curves = names.map((n) => {
      const rs = inPanel.filter((r) => r.variant === n);
      return rs[0]!.curve.map(([x], k): [number, number] => [x, rs.reduce((a, r) => a + (r.curve[k]?.[1] ?? Number.NaN), 0) / rs.length]);
    });
    const all = curves.flat();
    const [x0, x1] = [0, Math.max(...all.map((c) => c[0]))];
    const ys = all.map((c) => c[1]).filter(Number.isFinite);
    const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    const ox = (i % 2) * (W + 40) + 60;
    const oy = Math.floor(i / 2) * (H + 70) + 40;
    const X = (x: number) => ox + ((x - x0) / (x1 - x0 || 1)) * W;
    const Y = (y: number) => oy + H - ((y - y0) / (y1 - y0 || 1)) * H;
    parts.push(`<text x="${ox}" y="${oy - 12}" font-size="14">${p.replace("|", ", ")} loss: loss on the held-out tenth (mean over seeds) against forward passes</text>`);
    parts.push(`<rect x="${ox}" y="${oy}" width="${W}" height="${H}" fill="none" stroke="#999"/>`);
    parts.push(`<text x="${ox}" y="${oy + H + 16}" font-size="11">0</text><text x="${ox + W - 40}" y="${oy + H + 16}" font-size="11">${x1}</text>`);
    parts.push(`<text x="${ox - 55}" y="${oy + 10}" font-size="11">${y1.toFixed(4)}</text><text x="${ox - 55}" y="${oy + H}" font-size="11">${y0.toFixed(4)}</text>`);
    curves.forEach((c, k) => {
      parts.push(`<polyline fill="none" stroke="${colors[k % colors.length]}" stroke-width="1.5" points="${c.filter(([, y]) => Number.isFinite(y)).map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ")}"/>`);
      parts.push(`<text x="${ox + W - 180}" y="${oy + 16 + 14 * k}" font-size="11" fill="${colors[k % colors.length]}">${names[k]}</text>`);
    });
  });
  const rows = Math.ceil(panels.length / 2);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * (W + 40) + 60}" height="${rows * (H + 70) + 40}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>${parts.join("")}</svg>\n`;
}

const text = table();
process.stdout.write(text);
if (write) {
  const dir = join(root, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `qzo-ablation-cpu-${new Date().toISOString().slice(0, 10)}${label ? `-${label}` : ""}`);
  writeFileSync(`${base}.txt`, text);
  writeFileSync(`${base}.json`, JSON.stringify({ machine, passes, seeds, refs, runs }, null, 1) + "\n");
  writeFileSync(`${base}.svg`, svg());
  process.stderr.write(`qzo-ablation: wrote ${base}.{txt,json,svg}\n`);
}
