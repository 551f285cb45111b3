/**
 * Data-parallel QZO benchmark (a program, not a test): the step time of `qzo train` on one process
 * with one thread, on two ranks (`mpirun -np 2`, one thread each, the same global batch) and on one
 * process with two threads (the other way to use the same two cores), and the bytes each rank hands
 * to collectives per step (run.json). Step times are the medians of the log's per-step seconds
 * (which, on rank 0, include waiting for the other rank), warm-up steps dropped, over two
 * interleaved rounds of every variant.
 *
 *   npm run bench:parallel                          # writes bench/results/qzo-parallel-cpu-<date>.{json,txt}
 *   node dist/bench/qzo-parallel.js --steps 20 --no-write
 *
 * Needs Open MPI's mpirun (Debian/Ubuntu: apt-get install openmpi-bin).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { machineInfo, type MachineInfo } from "../src/runtime/bench/machine.js";
import { parameterCount, randomLlamaGguf, type RandomLlamaConfig } from "../src/runtime/bench/random-llama.js";
import { median } from "../src/runtime/bench/step.js";
import { packageRoot } from "../src/util/package-root.js";

const root = packageRoot();
const CLI = join(root, "dist", "src", "cli", "qzo.js");
const DATA = join(root, "data", "stories260K-self", "train.txt");

/** About 13M parameters: large enough that a step is arithmetic, small enough for a few minutes. */
const MID_LLAMA: RandomLlamaConfig = { dim: 512, hidden: 1408, layers: 4, heads: 8, context: 256 };

interface Case {
  name: string;
  model: string;
  params: string;
  batch: number;
  seqLen: number;
}

interface VariantResult {
  variant: string;
  ranks: number;
  threads: number;
  stepMs: number;
  examplesPerS: number;
  bytesPerStep: number;
}

const VARIANTS = [
  { variant: "1 process, 1 thread", ranks: 1, threads: 1 },
  { variant: "2 ranks, 1 thread each", ranks: 2, threads: 1 },
  { variant: "1 process, 2 threads", ranks: 1, threads: 2 },
] as const;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const mpirunFlags = ["-q", "--oversubscribe", ...(process.getuid?.() === 0 ? ["--allow-run-as-root"] : [])];

async function runVariant(c: Case, v: (typeof VARIANTS)[number], steps: number, warmup: number): Promise<{ seconds: number[]; bytesPerStep: number }> {
  const out = mkdtempSync(join(tmpdir(), "qzo-bench-parallel-"));
  const run = join(out, "run");
  const train = [CLI, "train", "--model", c.model, "--data", DATA, "--out", run, "--steps", String(steps), "--batch", String(c.batch), "--seq-len", String(c.seqLen), "--eval-every", "0", "--device", "cpu"];
  const env = { QZO_THREADS: String(v.threads) };
  const r =
    v.ranks === 1
      ? await execa("node", train, { reject: false, env })
      : await execa("mpirun", [...mpirunFlags, "-np", String(v.ranks), "-x", `QZO_THREADS=${v.threads}`, "node", ...train], { reject: false });
  if (r.exitCode !== 0) throw new Error(`${v.variant} on ${c.name} failed: ${String(r.stderr).split("\n").filter((l) => l.startsWith("qzo")).join(" | ")}`);
  const seconds = readFileSync(join(run, "log.jsonl"), "utf8")
    .split("\n")
    .filter((l) => l.includes('"seed"'))
    .map((l) => (JSON.parse(l) as { seconds: number }).seconds)
    .slice(warmup);
  const result = (JSON.parse(readFileSync(join(run, "run.json"), "utf8")) as { result: { bytesPerStep?: number } }).result;
  rmSync(out, { recursive: true, force: true });
  return { seconds, bytesPerStep: result.bytesPerStep ?? 0 };
}

function format(machine: MachineInfo, cases: { c: Case; results: VariantResult[] }[], steps: number): string {
  const lines = [`qzo data-parallel training on CPU: ${machine.cpu}, ${machine.cores} cores; ${machine.node}; Open MPI mpirun; ${machine.date.slice(0, 10)}`, ""];
  for (const { c, results } of cases) {
    lines.push(`${c.name} (${c.params}), global batch ${c.batch} x ${c.seqLen} tokens, median step over 2 x ${steps} steps`);
    lines.push("variant                  step (ms)  examples/s  bytes/step/rank");
    for (const r of results) lines.push(`${r.variant.padEnd(23)}  ${r.stepMs.toFixed(1).padStart(9)}  ${r.examplesPerS.toFixed(1).padStart(10)}  ${r.bytesPerStep.toFixed(1).padStart(15)}`);
    const [one, two, threads] = results as [VariantResult, VariantResult, VariantResult];
    lines.push(`speed-up of 2 ranks: ${(one.stepMs / two.stepMs).toFixed(2)}x over 1 process x 1 thread, ${(threads.stepMs / two.stepMs).toFixed(2)}x over 1 process x 2 threads`, "");
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const steps = arg("--steps", 30);
  const warmup = 3;
  const mid = randomLlamaGguf(MID_LLAMA);
  const cases: Case[] = [
    { name: "stories260K Q4_0 (bundled)", model: join(root, "models", "weights", "stories260K", "stories260K-q4_0.gguf"), params: "260K parameters", batch: 16, seqLen: 128 },
    { name: `random Llama Q4_0, ${MID_LLAMA.layers} layers x ${MID_LLAMA.dim}`, model: mid, params: `${(parameterCount(MID_LLAMA, 512) / 1e6).toFixed(1)}M parameters`, batch: 8, seqLen: 128 },
  ];
  const machine = machineInfo();
  const report: { c: Case; results: VariantResult[] }[] = [];
  for (const c of cases) {
    const seconds = VARIANTS.map(() => [] as number[]);
    const bytes = VARIANTS.map(() => 0);
    for (let round = 0; round < 2; round++) {
      for (const [i, v] of VARIANTS.entries()) {
        const r = await runVariant(c, v, steps + warmup, warmup);
        seconds[i]!.push(...r.seconds);
        bytes[i] = r.bytesPerStep;
        process.stderr.write(`${c.name}: ${v.variant}, round ${round + 1}: median ${(median(r.seconds) * 1000).toFixed(1)} ms\n`);
      }
    }
    report.push({
      c,
      results: VARIANTS.map((v, i) => {
        const stepMs = median(seconds[i]!) * 1000;
        return { ...v, stepMs, examplesPerS: (c.batch * 1000) / stepMs, bytesPerStep: bytes[i]! };
      }),
    });
  }
  const text = format(machine, report, steps);
  process.stdout.write(text + "\n");
  if (process.argv.includes("--no-write")) return;
  const dir = join(root, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const stem = join(dir, `qzo-parallel-cpu-${machine.date.slice(0, 10)}`);
  writeFileSync(`${stem}.json`, JSON.stringify({ machine, steps, cases: report }, null, 2) + "\n");
  writeFileSync(`${stem}.txt`, text + "\n");
  process.stderr.write(`wrote ${stem}.json and ${stem}.txt\n`);
}

await main();
